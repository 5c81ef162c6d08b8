//! "Skip what did not change": the digest of every file a Kustomization's build can read, so a
//! new source revision that leaves them byte-identical is recorded without building or applying
//! (a monorepo commit to another app's folder costs one digest, not a build and a dry-run).
//!
//! The files a build can read are found without the engine's help and over-approximated, never
//! under-approximated: starting at `spec.path` (and `spec.components`), every folder reached
//! counts with its whole subtree, and every string in a kustomization file that names a file or
//! folder inside the artifact is followed (for `key=path` generator entries, the part after
//! `=`). Strings are taken from anywhere in the file, not from a list of fields, so a field this
//! code does not know cannot hide a reference. A reference that looks remote (`://`, `git@`,
//! `github.com/`) makes the inputs unknowable: no skip then.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tracing::{debug, info};

use super::Context;
use super::conditions;
use crate::api::kustomize::v1::{Kustomization, KustomizationStatus};
use crate::api::meta::condition as meta;

/// Bounds against hostile repositories: how many folders are followed and files hashed.
const MAX_FOLDERS: usize = 10_000;
const MAX_FILES: usize = 100_000;

/// Why the inputs cannot be known: the build then runs as usual.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InputsError {
    #[error("a remote base or component ({0}) is not part of the artifact")]
    Remote(String),
    #[error("more than {0} files or folders to digest")]
    TooLarge(usize),
    #[error("{0} is a symbolic link")]
    Link(String),
    #[error("{0}")]
    Io(String),
}

/// The sha256 of the files (relative path and content) the build of `path` in `root` can read,
/// with `components` (the Kustomization's `spec.components`, relative to `path`).
pub fn inputs_digest(root: &Path, path: &Path, components: &[String]) -> Result<String, InputsError> {
    let io = |e: std::io::Error, p: &Path| InputsError::Io(format!("{}: {e}", p.display()));
    let root = root.canonicalize().map_err(|e| io(e, root))?;
    let start = inside(&root, &root.join(path)).ok_or_else(|| InputsError::Io(format!("{} leaves the artifact", path.display())))?;
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut folders: BTreeSet<PathBuf> = BTreeSet::new();
    let mut queue: Vec<PathBuf> = vec![start.clone()];
    for component in components {
        check_remote(component)?;
        if let Some(p) = inside(&root, &start.join(component)) {
            queue.push(p);
        }
    }
    while let Some(next) = queue.pop() {
        if folders.len() > MAX_FOLDERS || files.len() > MAX_FILES {
            return Err(InputsError::TooLarge(MAX_FILES));
        }
        let meta = std::fs::symlink_metadata(&next).map_err(|e| io(e, &next))?;
        if meta.file_type().is_symlink() {
            // The build may read through it: whatever it points at would be an input too.
            return Err(InputsError::Link(next.display().to_string()));
        }
        if meta.is_file() {
            if files.insert(next.clone()) && is_kustomization_file(&next) {
                if let Some(dir) = next.parent() {
                    follow_references(&root, dir, &next, &mut queue)?;
                }
            }
            continue;
        }
        if !meta.is_dir() || !folders.insert(next.clone()) {
            continue;
        }
        // The whole subtree counts; its kustomization files' references are followed.
        for entry in walk(&next)? {
            queue.push(entry);
        }
    }
    let mut hasher = Sha256::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file);
        let content = std::fs::read(file).map_err(|e| io(e, file))?;
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update((content.len() as u64).to_le_bytes());
        hasher.update(&content);
    }
    // Empty folders change a generated kustomization's view as little as kustomize's: none.
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

fn is_kustomization_file(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| crate::kustomize::file::FILE_NAMES.contains(&n))
}

fn check_remote(reference: &str) -> Result<(), InputsError> {
    let remote = reference.contains("://") || reference.starts_with("git@") || reference.starts_with("github.com/") || reference.starts_with("git::");
    if remote { Err(InputsError::Remote(reference.to_owned())) } else { Ok(()) }
}

/// Every string in the kustomization file that names something inside the artifact.
fn follow_references(root: &Path, dir: &Path, file: &Path, queue: &mut Vec<PathBuf>) -> Result<(), InputsError> {
    let text = std::fs::read_to_string(file).map_err(|e| InputsError::Io(format!("{}: {e}", file.display())))?;
    // Not YAML the engine could build either: the build reports it.
    let Ok(value) = serde_saphyr::from_str::<serde_json::Value>(&text) else { return Ok(()) };
    let mut strings = Vec::new();
    collect_strings(&value, &mut strings, 0);
    for s in strings {
        check_remote(&s)?;
        let candidates = [Some(s.as_str()), s.split_once('=').map(|(_, p)| p)];
        for candidate in candidates.into_iter().flatten() {
            if candidate.is_empty() || candidate.contains('\n') {
                continue;
            }
            if let Some(p) = inside(root, &dir.join(candidate)) {
                if p.exists() {
                    queue.push(p);
                }
            }
        }
    }
    Ok(())
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out, depth + 1)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out, depth + 1)),
        _ => {}
    }
}

/// `path` made lexically normal, when it stays inside `root`.
fn inside(root: &Path, path: &Path) -> Option<PathBuf> {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal.starts_with(root).then_some(normal)
}

/// The files of a folder and its subfolders. A link anywhere makes the inputs unknowable (the
/// build could read through it), and the build then runs as usual.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, InputsError> {
    let io = |e: std::io::Error| InputsError::Io(format!("{}: {e}", dir.display()));
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for entry in entries {
        let meta = std::fs::symlink_metadata(&entry).map_err(io)?;
        if meta.file_type().is_symlink() {
            return Err(InputsError::Link(entry.display().to_string()));
        }
        if meta.is_dir() {
            out.extend(walk(&entry)?);
        } else if meta.is_file() {
            out.push(entry);
        }
    }
    Ok(out)
}

/// What the last successful reconcile of each Kustomization built from: the revision, the
/// generation and the digest of its inputs.
#[derive(Debug, Default)]
pub struct InputsMemo {
    entries: std::sync::Mutex<BTreeMap<String, Recorded>>,
}

/// The revision, the generation and the digest of its inputs.
type Recorded = (String, Option<i64>, String);

impl InputsMemo {
    pub fn remember(&self, key: &str, revision: &str, generation: Option<i64>, digest: String) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key.to_owned(), (revision.to_owned(), generation, digest));
        }
    }

    pub fn forget(&self, key: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// The digest recorded for `key` at `generation`, with the revision it was built from.
    pub fn recalled(&self, key: &str, generation: Option<i64>) -> Option<(String, String)> {
        let entries = self.entries.lock().ok()?;
        let (revision, recorded_generation, digest) = entries.get(key)?;
        (*recorded_generation == generation).then(|| (revision.clone(), digest.clone()))
    }
}

/// The outcome of [`check`]: whether the new revision may be recorded without a build, and
/// what to remember once a build succeeded.
pub struct Inputs {
    pub unchanged: bool,
    key: String,
    generation: Option<i64>,
    root: PathBuf,
    path: String,
    components: Vec<String>,
    /// The digest of this revision's inputs, when already computed.
    digest: Option<String>,
}

fn spec_path(ks: &Kustomization) -> String {
    ks.spec.path.as_deref().unwrap_or("./").trim_start_matches('/').to_owned()
}

async fn digest_of(root: PathBuf, path: String, components: Vec<String>) -> Option<String> {
    // A blocking thread does not inherit the reconcile's span: the digest carries a child of it.
    let span = tracing::info_span!("inputs_digest", path = %path);
    let result = tokio::task::spawn_blocking(move || span.in_scope(|| inputs_digest(&root, Path::new(&path), &components))).await.ok()?;
    match result {
        Ok(digest) => Some(digest),
        Err(e) => {
            debug!(reason = %e, "inputs not digested; every new revision is built");
            None
        }
    }
}

/// Whether `revision` (unpacked at `root`) may be recorded as applied without building: the
/// last successful reconcile applied an earlier revision at this generation, it is still Ready,
/// and the files its build could read are byte-identical. Values from outside the artifact
/// (`postBuild.substituteFrom`) could have changed: no skip with them.
pub async fn check(ks: &Kustomization, ctx: &Context, status: &KustomizationStatus, revision: &str, root: &Path) -> Inputs {
    let key = format!("{}/{}", ks.namespace().unwrap_or_default(), ks.name_any());
    let generation = ks.meta().generation;
    let mut inputs = Inputs {
        unchanged: false,
        key,
        generation,
        root: root.to_owned(),
        path: spec_path(ks),
        components: ks.spec.components.clone().unwrap_or_default(),
        digest: None,
    };
    let Some((recorded_revision, recorded_digest)) = ctx.inputs.recalled(&inputs.key, generation) else {
        return inputs;
    };
    if recorded_revision == revision {
        // Not a new revision: a usual reconcile (interval, drift); the digest still holds.
        inputs.digest = Some(recorded_digest);
        return inputs;
    }
    inputs.digest = digest_of(inputs.root.clone(), inputs.path.clone(), inputs.components.clone()).await;
    let still_applied = status.last_applied_revision.as_deref() == Some(recorded_revision.as_str())
        && status.observed_generation == generation
        && conditions::is_true(&status.conditions, meta::READY);
    let substitutes_from_outside = ks.spec.post_build.as_ref().is_some_and(|p| p.substitute_from.as_ref().is_some_and(|f| !f.is_empty()));
    if still_applied && !substitutes_from_outside && inputs.digest.as_deref() == Some(recorded_digest.as_str()) {
        info!(revision, previous = %recorded_revision, "the files under the path are unchanged: revision recorded without building or applying");
        ctx.inputs.remember(&inputs.key, revision, generation, recorded_digest);
        inputs.unchanged = true;
    }
    inputs
}

impl Inputs {
    /// Digests this revision's inputs unless done already; call while the unpacked tree is
    /// still there.
    pub async fn digest(&mut self) {
        if self.digest.is_none() {
            self.digest = digest_of(self.root.clone(), self.path.clone(), self.components.clone()).await;
        }
    }

    /// After a successful reconcile of `revision`: remembers the digest of its inputs.
    pub async fn remember(self, ctx: &Context, revision: &str) {
        match self.digest {
            Some(digest) => ctx.inputs.remember(&self.key, revision, self.generation, digest),
            None => ctx.inputs.forget(&self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, files: &[(&str, &str)]) {
        for (path, content) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, content).expect("write");
        }
    }

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        write(
            dir.path(),
            &[
                (
                    "apps/a/kustomization.yaml",
                    "resources:\n- ../../base\n- deploy.yaml\nconfigMapGenerator:\n- name: c\n  files:\n  - conf=../../config/a.conf\n",
                ),
                ("apps/a/deploy.yaml", "kind: Deployment\n"),
                ("apps/b/kustomization.yaml", "resources:\n- svc.yaml\n"),
                ("apps/b/svc.yaml", "kind: Service\n"),
                ("base/kustomization.yaml", "resources:\n- ns.yaml\n"),
                ("base/ns.yaml", "kind: Namespace\n"),
                ("config/a.conf", "x=1\n"),
                ("config/b.conf", "y=1\n"),
                ("README.md", "hello\n"),
            ],
        );
        dir
    }

    #[test]
    fn changes_elsewhere_keep_the_digest_and_changes_to_inputs_move_it() {
        let dir = repo();
        let digest = |d: &Path| inputs_digest(d, Path::new("apps/a"), &[]).expect("digest");
        let before = digest(dir.path());
        write(dir.path(), &[("apps/b/svc.yaml", "kind: Service # edited\n"), ("README.md", "changed\n"), ("config/b.conf", "y=2\n")]);
        assert_eq!(digest(dir.path()), before, "another app's files, the README and an unreferenced config are not inputs");
        write(dir.path(), &[("base/ns.yaml", "kind: Namespace # edited\n")]);
        let after_base = digest(dir.path());
        assert_ne!(after_base, before, "../../base is an input");
        write(dir.path(), &[("config/a.conf", "x=2\n")]);
        assert_ne!(digest(dir.path()), after_base, "a generator's key=path file is an input");
        // A new file in an input folder (a generated kustomization would pick it up).
        let now = digest(dir.path());
        write(dir.path(), &[("apps/a/extra/new.yaml", "kind: ConfigMap\n")]);
        assert_ne!(digest(dir.path()), now);
    }

    #[test]
    fn remote_references_make_the_inputs_unknowable() {
        let dir = repo();
        write(dir.path(), &[("apps/a/kustomization.yaml", "resources:\n- https://github.com/org/repo//base?ref=main\n")]);
        assert!(matches!(inputs_digest(dir.path(), Path::new("apps/a"), &[]), Err(InputsError::Remote(_))));
    }

    #[test]
    fn references_outside_the_artifact_are_not_followed() {
        let dir = repo();
        write(dir.path(), &[("apps/a/kustomization.yaml", "resources:\n- ../../../../../etc\n")]);
        assert!(inputs_digest(dir.path(), Path::new("apps/a"), &[]).is_ok());
        assert!(inputs_digest(dir.path(), Path::new("../.."), &[]).is_err());
    }
}
