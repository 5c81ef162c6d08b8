//! Artifact storage on local disk, laid out as Flux's source-controller does:
//! `<root>/<kind>/<namespace>/<name>/<revision-id>.tar.gz`, for example
//! `<root>/gitrepository/flux-system/podinfo/<commit>.tar.gz`. The same relative path is the
//! artifact's URL path on the artifact server.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::artifact::{self, ArtifactError, IgnoreRules, PackSummary};

/// The kind directory for `GitRepository` artifacts.
pub const GIT_REPOSITORY_KIND: &str = "gitrepository";

const ARTIFACT_SUFFIX: &str = ".tar.gz";
const TEMP_PREFIX: &str = ".tmp-";
/// Temp files older than this are leftovers of a crash and are removed by garbage collection.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid {field} '{value}': {reason}")]
    InvalidName { field: &'static str, value: String, reason: &'static str },
    #[error("{action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { action, path: path.to_path_buf(), source }
}

/// Identifies one object's artifacts: kind, namespace and name, validated on construction so
/// that no path built from them can leave the storage root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey {
    kind: String,
    namespace: String,
    name: String,
}

impl ObjectKey {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Result<Self, StorageError> {
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(StorageError::InvalidName { field: "kind", value: kind.to_owned(), reason: "must be lowercase letters" });
        }
        validate_dns_name("namespace", namespace, 63)?;
        validate_dns_name("name", name, 253)?;
        Ok(ObjectKey { kind: kind.to_owned(), namespace: namespace.to_owned(), name: name.to_owned() })
    }

    pub fn git_repository(namespace: &str, name: &str) -> Result<Self, StorageError> {
        Self::new(GIT_REPOSITORY_KIND, namespace, name)
    }

    /// `<kind>/<namespace>/<name>`, `/`-separated.
    pub fn relative_dir(&self) -> String {
        format!("{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// Kubernetes object names are DNS subdomains (namespaces DNS labels): lowercase letters,
/// digits, `-` and `.`. Checked here anyway because these strings become paths.
fn validate_dns_name(field: &'static str, value: &str, max_len: usize) -> Result<(), StorageError> {
    let invalid = |reason| Err(StorageError::InvalidName { field, value: value.to_owned(), reason });
    if value.is_empty() || value.len() > max_len {
        return invalid("length must be between 1 and the Kubernetes limit");
    }
    if !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.') {
        return invalid("only lowercase letters, digits, '-' and '.' are allowed");
    }
    let first_and_last_alnum = [value.as_bytes()[0], value.as_bytes()[value.len() - 1]].iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !first_and_last_alnum || value.contains("..") {
        return invalid("must start and end with a letter or digit");
    }
    Ok(())
}

/// The revision part of a file name: the commit id (hex), or any id made of letters, digits,
/// `-`, `_` and `.` not starting with `.`.
fn validate_revision_id(id: &str) -> Result<(), StorageError> {
    let ok = !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok { Ok(()) } else { Err(StorageError::InvalidName { field: "revision id", value: id.to_owned(), reason: "must be a commit id or similar token" }) }
}

/// A stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    pub path: PathBuf,
    /// Path relative to the storage root, `/`-separated: the URL path on the artifact server.
    pub relative_path: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    /// Uses (and creates) `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io_error("creating storage root", &root))?;
        Ok(Storage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn object_dir(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(&key.kind).join(&key.namespace).join(&key.name)
    }

    /// `<kind>/<namespace>/<name>/<revision_id>.tar.gz`.
    pub fn relative_path(&self, key: &ObjectKey, revision_id: &str) -> Result<String, StorageError> {
        validate_revision_id(revision_id)?;
        Ok(format!("{}/{revision_id}{ARTIFACT_SUFFIX}", key.relative_dir()))
    }

    pub fn artifact_path(&self, key: &ObjectKey, revision_id: &str) -> Result<PathBuf, StorageError> {
        validate_revision_id(revision_id)?;
        Ok(self.object_dir(key).join(format!("{revision_id}{ARTIFACT_SUFFIX}")))
    }

    /// Whether the artifact for this revision is stored (as a regular file, not a symlink).
    pub fn exists(&self, key: &ObjectKey, revision_id: &str) -> bool {
        self.artifact_path(key, revision_id).ok().and_then(|path| fs::symlink_metadata(path).ok()).is_some_and(|m| m.is_file())
    }

    /// Packs `tree` (with `rules`) straight into the artifact for `revision_id`, atomically:
    /// the archive is written to a temp file in the same directory, synced, then renamed, so
    /// readers see either the old file or the complete new one.
    pub fn store_tree(&self, key: &ObjectKey, revision_id: &str, tree: &Path, rules: &IgnoreRules) -> Result<StoredArtifact, StorageError> {
        let mut summary: Option<PackSummary> = None;
        let path = self.write_atomically(key, revision_id, |file| {
            summary = Some(artifact::pack(tree, rules, io::BufWriter::new(&mut *file))?);
            Ok(())
        })?;
        let summary = summary.ok_or_else(|| StorageError::Io { action: "packing", path: path.clone(), source: io::Error::other("archive was not written") })?;
        Ok(StoredArtifact { relative_path: self.relative_path(key, revision_id)?, path, digest: summary.digest, size: summary.size })
    }

    /// Stores a copy of another object's artifact (the same commit, packed alike) as this
    /// object's, atomically; the digest is of the bytes copied.
    pub fn store_copy(&self, key: &ObjectKey, revision_id: &str, from: &Path) -> Result<StoredArtifact, StorageError> {
        let mut source = fs::File::open(from).map_err(io_error("opening", from))?;
        let mut copied = None;
        let path = self.write_atomically(key, revision_id, |file| {
            let mut writer = artifact::HashingWriter::new(file);
            io::copy(&mut source, &mut writer).map_err(ArtifactError::Write)?;
            copied = Some((writer.digest(), writer.written));
            Ok(())
        })?;
        let (digest, size) =
            copied.ok_or_else(|| StorageError::Io { action: "copying", path: path.clone(), source: io::Error::other("nothing was copied") })?;
        Ok(StoredArtifact { relative_path: self.relative_path(key, revision_id)?, path, digest, size })
    }

    /// Stores already-packed bytes (for tests and other producers).
    pub fn store_bytes(&self, key: &ObjectKey, revision_id: &str, bytes: &[u8]) -> Result<StoredArtifact, StorageError> {
        let path = self.write_atomically(key, revision_id, |file| {
            file.write_all(bytes).map_err(ArtifactError::Write)?;
            Ok(())
        })?;
        Ok(StoredArtifact { relative_path: self.relative_path(key, revision_id)?, path, digest: artifact::sha256_digest(bytes), size: bytes.len() as u64 })
    }

    fn write_atomically(
        &self,
        key: &ObjectKey,
        revision_id: &str,
        write: impl FnOnce(&mut fs::File) -> Result<(), ArtifactError>,
    ) -> Result<PathBuf, StorageError> {
        let final_path = self.artifact_path(key, revision_id)?;
        let dir = self.object_dir(key);
        fs::create_dir_all(&dir).map_err(io_error("creating artifact directory", &dir))?;
        // A random name beside the final one (so the rename stays on one filesystem), with the
        // prefix the server never serves and garbage collection removes when stale; dropped
        // (deleted) on any error.
        let mut temp =
            tempfile::Builder::new().prefix(&format!("{TEMP_PREFIX}{revision_id}-")).tempfile_in(&dir).map_err(io_error("creating temp file", &dir))?;
        write(temp.as_file_mut())?;
        temp.as_file().sync_all().map_err(io_error("syncing", temp.path()))?;
        temp.persist(&final_path).map_err(|e| StorageError::Io { action: "renaming into place", path: final_path.clone(), source: e.error })?;
        // The rename is durable only once the directory entry is.
        if let Ok(dir_handle) = fs::File::open(&dir) {
            let _ = dir_handle.sync_all();
        }
        Ok(final_path)
    }

    /// Removes all but the current artifact and the `keep_previous` newest others (by
    /// modification time), plus stale temp files. Returns the removed paths.
    pub fn garbage_collect(&self, key: &ObjectKey, current_revision_id: &str, keep_previous: usize) -> Result<Vec<PathBuf>, StorageError> {
        let current = self.artifact_path(key, current_revision_id)?;
        let dir = self.object_dir(key);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("reading artifact directory", &dir)(e)),
        };
        let now = SystemTime::now();
        let mut candidates: Vec<(SystemTime, PathBuf)> = Vec::new();
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("reading artifact directory", &dir))?;
            let path = entry.path();
            let Ok(metadata) = fs::symlink_metadata(&path) else {
                continue;
            };
            let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            if file_name.starts_with(TEMP_PREFIX) {
                let stale = now.duration_since(modified).is_ok_and(|age| age > STALE_TEMP_AGE);
                if stale && fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
                continue;
            }
            if path == current || !file_name.ends_with(ARTIFACT_SUFFIX) || metadata.is_dir() {
                continue;
            }
            candidates.push((modified, path));
        }
        // Newest first; ties broken by name so the result does not depend on directory order.
        candidates.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        for (_, path) in candidates.into_iter().skip(keep_previous) {
            fs::remove_file(&path).map_err(io_error("removing old artifact", &path))?;
            removed.push(path);
        }
        Ok(removed)
    }

    /// Removes every artifact of the object (for the finalizer), then the now-empty namespace
    /// directory if nothing else is in it.
    pub fn delete_all(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let dir = self.object_dir(key);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("removing artifacts", &dir)(e)),
        }
        if let Some(namespace_dir) = dir.parent() {
            // Fails harmlessly when other objects of the namespace still have artifacts.
            let _ = fs::remove_dir(namespace_dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferroflux-storage-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn names_are_validated() {
        for (ns, name) in [("a/b", "x"), ("ns", "../x"), ("..", "x"), ("ns", "X"), ("", "x"), ("ns", "a..b"), ("ns", ".x")] {
            assert!(ObjectKey::git_repository(ns, name).is_err(), "{ns}/{name}");
        }
        let key = ObjectKey::git_repository("flux-system", "podinfo.v2").unwrap();
        let storage = Storage::new(scratch("names")).unwrap();
        assert!(storage.artifact_path(&key, "../../etc").is_err());
        assert!(storage.artifact_path(&key, ".hidden").is_err());
        assert_eq!(storage.relative_path(&key, "abc123").unwrap(), "gitrepository/flux-system/podinfo.v2/abc123.tar.gz");
        fs::remove_dir_all(storage.root()).unwrap();
    }

    #[test]
    fn store_lookup_gc_delete() {
        let storage = Storage::new(scratch("gc")).unwrap();
        let key = ObjectKey::git_repository("ns", "repo").unwrap();
        let other = ObjectKey::git_repository("ns", "other").unwrap();
        assert!(!storage.exists(&key, "c0"));
        for (i, id) in ["c0", "c1", "c2", "c3"].iter().enumerate() {
            let stored = storage.store_bytes(&key, id, format!("artifact {i}").as_bytes()).unwrap();
            assert_eq!(stored.size, 10);
            // Distinct mtimes, oldest first.
            let file = fs::File::options().write(true).open(&stored.path).unwrap();
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i as u64)).unwrap();
        }
        storage.store_bytes(&other, "z", b"z").unwrap();
        assert!(storage.exists(&key, "c2"));
        // Current is the oldest; keep one previous: the newest other one (c3).
        let removed = storage.garbage_collect(&key, "c0", 1).unwrap();
        assert_eq!(removed.len(), 2);
        assert!(storage.exists(&key, "c0") && storage.exists(&key, "c3"));
        assert!(!storage.exists(&key, "c1") && !storage.exists(&key, "c2"));
        let leftovers: Vec<_> = fs::read_dir(storage.object_dir(&key)).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "no temp files left behind");
        storage.delete_all(&key).unwrap();
        storage.delete_all(&key).unwrap();
        assert!(!storage.object_dir(&key).exists());
        assert!(storage.exists(&other, "z"));
        fs::remove_dir_all(storage.root()).unwrap();
    }
}
