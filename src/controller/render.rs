//! Where a revision becomes objects: [`render`] takes a Kustomization, the folder its source
//! artifact was unpacked into and its `postBuild` variables, and returns the objects to apply:
//!
//! 1. `spec.path` inside the artifact ([`resolve_path`]);
//! 2. the kustomize build, with the Kustomization's spec (targetNamespace, namePrefix/nameSuffix,
//!    patches, images, components, the v1beta2 patch lists) merged into the kustomization at
//!    `spec.path`, or into the one Flux generates where the path has none; then `commonMetadata`;
//! 3. SOPS decryption ([`render_decrypting`], src/sops): files as the build reads them, then
//!    Secret `data` entries holding whole encrypted files;
//! 4. `postBuild` substitution ([`super::substitute`]);
//! 5. Flux's owner labels.
//!
//! The controller and `ferroflux build ks`/`diff ks` render with the same function. The kustomize
//! engine (`crate::kustomize`) knows nothing of Flux: everything Flux-only is here.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use kube::ResourceExt;
use serde_json::Value;

use super::substitute::{SubstituteError, substitute_objects};
use super::variables::Variables;
use crate::api::kustomize::v1::{Kustomization, KustomizationSpec};
use crate::api::kustomize::{Image, NAME_LABEL, NAMESPACE_LABEL, Patch, Selector, condition as ks_reason};
use crate::api::meta::condition as meta;
use crate::kustomize::{self, BuildOptions, file, object};

/// Settings of a render that do not come from the Kustomization: the controller's flags, the
/// CLI's.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Remote (URL) bases in kustomizations (`--no-remote-bases` turns them off in the
    /// controller, `--enable-remote` on in `ferroflux build`).
    pub enable_remote_bases: bool,
}

/// Why a revision could not become objects. [`RenderError::reason`] is the Kustomization's
/// `Ready=False` reason.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("path '{0}' leaves the source root")]
    PathEscape(String),
    #[error("kustomization path not found: {0}")]
    PathNotFound(String),
    #[error(transparent)]
    Build(kustomize::Error),
    #[error(transparent)]
    Substitute(SubstituteError),
    /// SOPS: no matching key, a tampered file, an unsupported key entry.
    #[error("{0}")]
    Decryption(String),
}

impl RenderError {
    /// Flux's reason for it.
    pub fn reason(&self) -> &'static str {
        match self {
            RenderError::PathEscape(_) => meta::INVALID_PATH,
            RenderError::PathNotFound(_) => ks_reason::ARTIFACT_FAILED,
            RenderError::Build(_) | RenderError::Substitute(_) => ks_reason::BUILD_FAILED,
            RenderError::Decryption(_) => ks_reason::DECRYPTION_FAILED,
        }
    }
}

/// `spec.path` inside the artifact `root`; `..` may not leave it (links out of it are refused by
/// the build).
pub fn resolve_path(root: &Path, path: Option<&str>) -> Result<PathBuf, RenderError> {
    let relative = path.unwrap_or("./");
    let mut resolved = root.to_path_buf();
    for component in Path::new(relative.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => resolved.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(RenderError::PathEscape(relative.to_owned())),
        }
    }
    Ok(resolved)
}

/// What a revision of a Kustomization becomes: `dir` (its `spec.path`, inside the artifact or
/// folder `root`) built with Flux's overlay, then `postBuild` with `vars`, then Flux's owner
/// labels. Pure but for reading files (and cloning remote bases when enabled): the controller and
/// `ferroflux build ks`/`diff ks` both render with it.
pub fn render(ks: &Kustomization, root: &Path, dir: &Path, vars: &Variables, options: RenderOptions) -> Result<Vec<Value>, RenderError> {
    render_decrypting(ks, root, dir, vars, options, None)
}

/// [`render`], decrypting SOPS files with `decryptor` (the keys of `spec.decryption`): as the
/// build reads them (resources, patches, secretGenerator sources), then Secret `data` entries
/// holding whole encrypted files; before the substitution, as in Flux.
pub fn render_decrypting(
    ks: &Kustomization,
    root: &Path,
    dir: &Path,
    vars: &Variables,
    options: RenderOptions,
    decryptor: Option<&crate::sops::Decryptor>,
) -> Result<Vec<Value>, RenderError> {
    if !dir.exists() {
        return Err(RenderError::PathNotFound(ks.spec.path.clone().unwrap_or_else(|| "./".into())));
    }
    let filter = decryptor.map(|d| d as &dyn kustomize::FileFilter);
    let mut objects = build_filtered(root, dir, &ks.spec, options.enable_remote_bases, filter).map_err(|e| match e {
        // Paths inside the source, not on this machine's disk.
        kustomize::Error::Filter { .. } => RenderError::Decryption(e.to_string().replace(&format!("{}/", root.display()), "")),
        e => RenderError::Build(e),
    })?;
    crate::sops::hook::finish(&mut objects, decryptor).map_err(|e| RenderError::Decryption(e.to_string()))?;
    let objects = match &ks.spec.post_build {
        None => objects,
        Some(_) => substitute_objects(objects, &vars.values).map_err(RenderError::Substitute)?,
    };
    Ok(add_labels(objects, &owner_labels(ks)))
}

/// What Flux merges into the root kustomization: the namespace, prefix and suffix replace the
/// kustomization's; patches, images and components are appended. (Flux's `commonMetadata` is
/// applied after the build with [`add_common_metadata`].)
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub patches: Vec<file::Patch>,
    pub patches_strategic_merge: Vec<Value>,
    pub patches_json6902: Vec<file::Patch>,
    pub images: Vec<file::Image>,
    pub components: Vec<String>,
}

impl Overlay {
    /// Merges the overlay into a root kustomization, as Flux edits the kustomization file.
    pub fn merge_into(&self, k: &mut kustomize::Kustomization) {
        if self.namespace.is_some() {
            k.namespace.clone_from(&self.namespace);
        }
        if self.name_prefix.is_some() {
            k.name_prefix.clone_from(&self.name_prefix);
        }
        if self.name_suffix.is_some() {
            k.name_suffix.clone_from(&self.name_suffix);
        }
        k.patches.extend(self.patches.iter().cloned());
        k.patches_strategic_merge.extend(self.patches_strategic_merge.iter().cloned());
        k.patches_json6902.extend(self.patches_json6902.iter().cloned());
        k.images.extend(self.images.iter().cloned());
        k.components.extend(self.components.iter().cloned());
    }
}

/// Flux's `commonMetadata`: labels and annotations on every object's metadata (not in selectors
/// or templates).
pub fn add_common_metadata(objects: &mut [Value], labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) {
    for object in objects.iter_mut() {
        for (field, pairs) in [("labels", labels), ("annotations", annotations)] {
            if pairs.is_empty() {
                continue;
            }
            let Some(map) = object.as_object_mut() else { continue };
            let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
            let Some(metadata) = metadata.as_object_mut() else { continue };
            let entry = metadata.entry(field).or_insert_with(|| Value::Object(Default::default()));
            if !entry.is_object() {
                *entry = Value::Object(Default::default());
            }
            if let Some(entry) = entry.as_object_mut() {
                for (k, v) in pairs {
                    entry.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
    }
}

/// Whether a YAML file holds Kubernetes objects (every document has `apiVersion` and `kind`).
/// A file that is not valid YAML is an error, as in Flux ("failed to decode Kubernetes YAML"):
/// skipping it would apply a commit with a broken file as if the file were not there.
fn is_kubernetes_yaml(path: &Path) -> Result<bool, kustomize::Error> {
    let text = std::fs::read_to_string(path).map_err(|source| kustomize::Error::Io { path: path.to_owned(), source })?;
    let objects = kustomize::parse_objects(&text, path)?;
    Ok(!objects.is_empty() && objects.iter().all(|o| !object::kind(o).is_empty() && !object::api_version(o).is_empty()))
}

/// The kustomization Flux generates for a directory without one: its Kubernetes YAML files,
/// recursively, and the subdirectories that have a kustomization of their own.
pub fn generate_kustomization(dir: &Path) -> Result<kustomize::Kustomization, kustomize::Error> {
    fn scan(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), kustomize::Error> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| kustomize::Error::Io { path, source }
        };
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
            if meta.file_type().is_symlink() {
                // Links could point anywhere: not followed.
                continue;
            }
            let relative = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().into_owned();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if meta.is_dir() {
                if kustomize::has_kustomization(&path) {
                    out.push(relative);
                } else {
                    scan(base, &path, out)?;
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") && is_kubernetes_yaml(&path)? {
                out.push(relative);
            }
        }
        Ok(())
    }
    let mut resources = Vec::new();
    scan(dir, dir, &mut resources)?;
    Ok(kustomize::Kustomization { resources, ..kustomize::Kustomization::default() })
}

fn selector(s: &Selector) -> file::Selector {
    file::Selector {
        group: s.group.clone(),
        version: s.version.clone(),
        kind: s.kind.clone(),
        name: s.name.clone(),
        namespace: s.namespace.clone(),
        label_selector: s.label_selector.clone(),
        annotation_selector: s.annotation_selector.clone(),
    }
}

fn patch(p: &Patch) -> file::Patch {
    file::Patch { path: None, patch: Some(p.patch.clone()), target: p.target.as_ref().map(selector), options: None }
}

fn image(i: &Image) -> file::Image {
    file::Image { name: i.name.clone(), new_name: i.new_name.clone(), new_tag: i.new_tag.clone(), digest: i.digest.clone(), tag_suffix: None }
}

/// What the spec adds to the root kustomization.
pub fn overlay(spec: &KustomizationSpec) -> Overlay {
    Overlay {
        namespace: spec.target_namespace.clone(),
        name_prefix: spec.name_prefix.clone(),
        name_suffix: spec.name_suffix.clone(),
        patches: spec.patches.iter().flatten().map(patch).collect(),
        patches_strategic_merge: spec.patches_strategic_merge.clone().unwrap_or_default(),
        patches_json6902: spec
            .patches_json6902
            .iter()
            .flatten()
            .map(|p| file::Patch {
                path: None,
                patch: Some(serde_json::to_string(&p.patch).unwrap_or_default()),
                target: Some(selector(&p.target)),
                options: None,
            })
            .collect(),
        images: spec.images.iter().flatten().map(image).collect(),
        components: spec.components.clone().unwrap_or_default(),
    }
}

/// Builds `dir` (inside the artifact `root`) with the spec's settings, remote (URL) bases allowed
/// or not. As in Flux, files may be read from anywhere inside the artifact (not only below each
/// kustomization's folder), and nothing outside it.
#[cfg(test)]
fn build_with(root: &Path, dir: &Path, spec: &KustomizationSpec, enable_remote: bool) -> Result<Vec<Value>, kustomize::Error> {
    build_filtered(root, dir, spec, enable_remote, None)
}

/// [`build_with`], with a filter seeing the files the build reads (SOPS decryption).
fn build_filtered(
    root: &Path,
    dir: &Path,
    spec: &KustomizationSpec,
    enable_remote: bool,
    file_filter: Option<&dyn kustomize::FileFilter>,
) -> Result<Vec<Value>, kustomize::Error> {
    let options = BuildOptions { enable_remote };
    let overlay = overlay(spec);
    // Called with `dir` canonical and inside the root: nothing is read before that check.
    let root_kustomization = |dir: &Path, load: kustomize::RootLoader| {
        let (file, mut kustomization) =
            if kustomize::has_kustomization(dir) { load(dir)? } else { (dir.join("kustomization.yaml"), generate_kustomization(dir)?) };
        overlay.merge_into(&mut kustomization);
        Ok((file, kustomization))
    };
    let mut objects = kustomize::build_kustomization_filtered(root, dir, &options, kustomize::LoadRestrictions::BuildRoot, root_kustomization, file_filter)?;
    if let Some(common) = &spec.common_metadata {
        add_common_metadata(&mut objects, &common.labels.clone().unwrap_or_default(), &common.annotations.clone().unwrap_or_default());
    }
    Ok(objects)
}

/// The owner labels Flux puts on every object of a Kustomization (the controller when applying,
/// the CLI when building and diffing).
pub fn owner_labels(ks: &Kustomization) -> BTreeMap<String, String> {
    BTreeMap::from([(NAME_LABEL.to_owned(), ks.name_any()), (NAMESPACE_LABEL.to_owned(), ks.namespace().unwrap_or_default())])
}

/// Sets `labels` on every object.
fn add_labels(objects: Vec<Value>, labels: &BTreeMap<String, String>) -> Vec<Value> {
    objects
        .into_iter()
        .map(|mut object| {
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                let entry = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
                if let Some(map) = entry.as_object_mut() {
                    for (k, v) in labels {
                        map.insert(k.clone(), Value::String(v.clone()));
                    }
                }
            }
            object
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kustomize::testing::{CONFIG_MAP, tree};
    use serde_json::json;

    fn spec(fields: Value) -> KustomizationSpec {
        let mut spec = json!({"interval": "5m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"}});
        if let (Some(spec), Some(fields)) = (spec.as_object_mut(), fields.as_object()) {
            spec.extend(fields.clone());
        }
        serde_json::from_value(spec).expect("a Kustomization spec")
    }

    #[test]
    fn flux_overlay_merges_into_the_root_kustomization() {
        let dir = tree(&[
            ("kustomization.yaml", "resources: [cm.yaml, d.yaml]\nnamespace: original\nnamePrefix: a-\n"),
            ("cm.yaml", CONFIG_MAP),
            (
                "d.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: app}]\n",
            ),
        ]);
        let spec = spec(json!({
            "targetNamespace": "flux",
            "nameSuffix": "-s",
            "images": [{"name": "app", "newTag": "v2"}],
            "patches": [{"patch": r#"[{"op": "add", "path": "/data", "value": {"a": "b"}}]"#, "target": {"kind": "ConfigMap"}}],
        }));
        let objects = build_with(dir.path(), dir.path(), &spec, false).expect("builds");
        assert_eq!(objects[0]["metadata"], json!({"name": "a-cm-s", "namespace": "flux"}));
        assert_eq!(objects[0]["data"], json!({"a": "b"}));
        assert_eq!(objects[1]["spec"]["template"]["spec"]["containers"][0]["image"], "app:v2");
    }

    #[test]
    fn directories_without_a_kustomization_are_generated_like_flux() {
        let dir = tree(&[
            ("cm.yaml", CONFIG_MAP),
            ("notes.yaml", "just: some config\n"),
            ("sub/more.yml", "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n"),
            ("app/kustomization.yaml", "resources: [x.yaml]\n"),
            ("app/x.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"),
            (".hidden/y.yaml", CONFIG_MAP),
        ]);
        let error = kustomize::build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("no kustomization file");
        assert!(error.to_string().contains("no kustomization file found"), "{error}");
        let generated = generate_kustomization(dir.path()).expect("generates");
        assert_eq!(generated.resources, vec!["app", "cm.yaml", "sub/more.yml"]);
        let objects = build_with(dir.path(), dir.path(), &spec(json!({})), false).expect("builds");
        let kinds: Vec<&str> = objects.iter().map(object::kind).collect();
        assert_eq!(kinds, vec!["ConfigMap", "Secret", "Service"]);
    }

    #[test]
    fn a_path_linking_out_of_the_root_is_refused_before_anything_is_read() {
        let outside = tree(&[("cm.yaml", CONFIG_MAP), ("broken.yaml", "kind: [\n")]);
        let dir = tree(&[]);
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        let error = build_with(dir.path(), &dir.path().join("link"), &spec(json!({})), false).expect_err("escapes").to_string();
        assert!(error.contains("is not in or below"), "{error}");
    }

    #[test]
    fn paths_stay_inside_the_artifact() {
        let root = Path::new("/artifact");
        assert_eq!(resolve_path(root, Some("./")).ok(), Some(PathBuf::from("/artifact")));
        assert_eq!(resolve_path(root, Some("./apps/prod")).ok(), Some(PathBuf::from("/artifact/apps/prod")));
        assert_eq!(resolve_path(root, Some("/apps")).ok(), Some(PathBuf::from("/artifact/apps")));
        assert_eq!(resolve_path(root, None).ok(), Some(PathBuf::from("/artifact")));
        assert!(matches!(resolve_path(root, Some("../etc")), Err(RenderError::PathEscape(_))));
        assert!(resolve_path(root, Some("apps/../../etc")).is_err());
    }

    fn kustomization(spec: Value) -> Kustomization {
        let mut object =
            json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "apps", "namespace": "flux-system"}});
        object["spec"] = serde_json::to_value(self::spec(spec)).expect("spec");
        serde_json::from_value(object).expect("a Kustomization")
    }

    #[test]
    fn render_builds_substitutes_and_labels_and_names_each_failure() {
        let dir = tree(&[("apps/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  cluster: ${cluster}\n")]);
        let ks = kustomization(json!({"path": "./apps", "targetNamespace": "prod", "postBuild": {"substitute": {"cluster": "eu-1"}}}));
        let apps = resolve_path(dir.path(), ks.spec.path.as_deref()).expect("inside");
        let vars = Variables::plain(ks.spec.post_build.as_ref().and_then(|p| p.substitute.clone()).unwrap_or_default());
        let objects = render(&ks, dir.path(), &apps, &vars, RenderOptions::default()).expect("renders");
        assert_eq!(objects[0]["metadata"]["namespace"], "prod");
        assert_eq!(objects[0]["data"]["cluster"], "eu-1");
        assert_eq!(objects[0]["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "apps");

        let missing = render(&ks, dir.path(), &dir.path().join("nowhere"), &vars, RenderOptions::default()).expect_err("no such path");
        assert_eq!(missing.reason(), ks_reason::ARTIFACT_FAILED);
        assert!(missing.to_string().contains("kustomization path not found: ./apps"), "{missing}");
        let remote = tree(&[("kustomization.yaml", "resources: [https://github.com/org/repo//x?ref=v1]\n")]);
        let refused = render(&ks, remote.path(), remote.path(), &vars, RenderOptions::default()).expect_err("remote bases are off");
        assert_eq!(refused.reason(), ks_reason::BUILD_FAILED);
        assert!(refused.to_string().contains("not enabled"), "{refused}");
    }

    #[test]
    fn common_metadata_goes_on_metadata_only() {
        let mut objects =
            vec![json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"a": "b"}}}})];
        let labels = BTreeMap::from([("team".to_owned(), "x".to_owned())]);
        add_common_metadata(&mut objects, &labels, &BTreeMap::new());
        assert_eq!(objects[0]["metadata"]["labels"], json!({"team": "x"}));
        assert_eq!(objects[0]["spec"]["selector"]["matchLabels"], json!({"a": "b"}));
        assert!(objects[0]["metadata"].get("annotations").is_none());
    }
}
