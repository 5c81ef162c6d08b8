//! A native kustomize (`kubectl kustomize`, kustomize v5) in Rust, self-contained so that it can
//! become its own crate: `build(root, dir, options)` reads the kustomization in `dir` and returns
//! the objects in kustomize's order; nothing outside `root` is ever read.
//!
//! Supported: `resources` (files, directories, nested kustomizations), `bases`, `components`,
//! `namespace`, `namePrefix`/`nameSuffix` with name-reference updates, `commonLabels`, `labels`,
//! `commonAnnotations`, `images`, `replicas`, `patches`, `patchesStrategicMerge`,
//! `patchesJson6902`. Refused by name, with an error: generators, `replacements`, `vars`, `crds`,
//! `configurations`, `openapi`, `sortOptions` (not yet), Helm, plugins and functions (out of
//! scope), remote resources (unless enabled, and then not yet).

pub mod file;
mod order;
pub mod patch;
mod transform;
mod yaml;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use file::Kustomization;
pub use yaml::{parse_objects, to_yaml};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", file.display())]
    Yaml { file: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'", dir.display())]
    NoKustomization { dir: PathBuf },
    #[error("invalid kustomization {}: {message}", file.display())]
    InvalidKustomization { file: PathBuf, message: String },
    #[error("{}: field '{field}' {why}", file.display())]
    Unsupported { file: PathBuf, field: &'static str, why: &'static str },
    #[error("security; file '{}' is not in or below '{}'", path.display(), root.display())]
    PathEscape { path: PathBuf, root: PathBuf },
    #[error("cycle detected: {} includes itself", dir.display())]
    Cycle { dir: PathBuf },
    #[error("may not add resource with an already registered id: {id}")]
    DuplicateId { id: String },
    #[error("{}: {message}", file.display())]
    Patch { file: PathBuf, message: String },
    #[error("remote resource '{url}': remote resources are not enabled")]
    Remote { url: String },
    #[error("remote resource '{url}': remote resources are not supported by ferroflux's kustomize engine yet")]
    RemoteUnsupported { url: String },
    #[error("accumulating resources from '{entry}' in {}: no such file or directory", dir.display())]
    MissingResource { entry: String, dir: PathBuf },
}

/// Settings of a build beyond the kustomization files: how a caller (Flux's Kustomization spec)
/// overrides the root kustomization.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Allow URL resources (refused with a clear error today either way).
    pub enable_remote: bool,
    pub overlay: Overlay,
}

/// What Flux merges into the root kustomization: the namespace, prefix and suffix replace the
/// kustomization's; patches, images and components are appended.
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
    fn merge_into(&self, k: &mut Kustomization) {
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

struct Builder<'a> {
    root: PathBuf,
    options: &'a BuildOptions,
    stack: Vec<PathBuf>,
}

/// Builds the kustomization in `dir`; nothing outside `root` is read.
pub fn build(root: &Path, dir: &Path, options: &BuildOptions) -> Result<Vec<Value>, Error> {
    let root = root.canonicalize().map_err(|source| Error::Io { path: root.to_owned(), source })?;
    let mut builder = Builder { root, options, stack: Vec::new() };
    let dir = builder.inside_root(dir)?;
    let (file, mut kustomization) = load(&dir)?;
    options.overlay.merge_into(&mut kustomization);
    let mut objects = builder.build_kustomization(&dir, &file, kustomization)?;
    order::legacy_sort(&mut objects);
    Ok(objects)
}

/// Builds a directory without a kustomization file the way Flux does: as if it had one listing
/// its YAML files and the subdirectories that have a kustomization file.
pub fn build_generated(root: &Path, dir: &Path, options: &BuildOptions) -> Result<Vec<Value>, Error> {
    let root = root.canonicalize().map_err(|source| Error::Io { path: root.to_owned(), source })?;
    let mut builder = Builder { root, options, stack: Vec::new() };
    let dir = builder.inside_root(dir)?;
    let mut kustomization = generate_kustomization(&dir)?;
    options.overlay.merge_into(&mut kustomization);
    let mut objects = builder.build_kustomization(&dir, &dir.join("kustomization.yaml"), kustomization)?;
    order::legacy_sort(&mut objects);
    Ok(objects)
}

/// Whether `dir` has a kustomization file.
pub fn has_kustomization(dir: &Path) -> bool {
    file::FILE_NAMES.iter().any(|n| dir.join(n).is_file())
}

/// The kustomization Flux generates for a directory without one.
pub fn generate_kustomization(dir: &Path) -> Result<Kustomization, Error> {
    fn scan(base: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), Error> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|source| Error::Io { path: dir.to_owned(), source })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let meta = std::fs::symlink_metadata(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            if meta.file_type().is_symlink() {
                // Links could point anywhere: not followed.
                continue;
            }
            let relative = path.strip_prefix(base).unwrap_or(&path).to_string_lossy().into_owned();
            if meta.is_dir() {
                if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                    continue;
                }
                if has_kustomization(&path) {
                    out.push(relative);
                } else {
                    scan(base, &path, out)?;
                }
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(relative);
            }
        }
        Ok(())
    }
    let mut resources = Vec::new();
    scan(dir, dir, &mut resources)?;
    Ok(Kustomization { resources, ..Kustomization::default() })
}

fn load(dir: &Path) -> Result<(PathBuf, Kustomization), Error> {
    let file = file::FILE_NAMES
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoKustomization { dir: dir.to_owned() })?;
    let text = std::fs::read_to_string(&file).map_err(|source| Error::Io { path: file.clone(), source })?;
    let value = yaml::parse_value(&text, &file)?;
    let kustomization: Kustomization = if value.is_null() {
        Kustomization::default()
    } else {
        serde_json::from_value(value).map_err(|e| Error::InvalidKustomization { file: file.clone(), message: e.to_string() })?
    };
    Ok((file, kustomization))
}

/// `apiVersion`'s group and version, kind, namespace and name, as kustomize prints resource ids.
fn resource_id(object: &Value) -> String {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("[noNs]");
    let gvk = if group.is_empty() { format!("{}.{version}", transform::kind(object)) } else { format!("{}.{version}.{group}", transform::kind(object)) };
    format!("{gvk}/{}.{namespace}", transform::name(object))
}

impl Builder<'_> {
    /// The canonical path, refused when it leaves the build root (through `..` or a symlink).
    fn inside_root(&self, path: &Path) -> Result<PathBuf, Error> {
        let canonical = path.canonicalize().map_err(|source| Error::Io { path: path.to_owned(), source })?;
        if canonical.starts_with(&self.root) {
            Ok(canonical)
        } else {
            Err(Error::PathEscape { path: path.to_owned(), root: self.root.clone() })
        }
    }

    /// A file a kustomization reads: like kustomize's default load restrictor, it must be in or
    /// below the kustomization's own folder (other kustomizations may be anywhere in the root).
    fn file_inside(&self, dir: &Path, path: &Path) -> Result<PathBuf, Error> {
        let canonical = self.inside_root(path)?;
        if canonical.starts_with(dir) {
            Ok(canonical)
        } else {
            Err(Error::PathEscape { path: canonical, root: dir.to_owned() })
        }
    }

    fn read(&self, dir: &Path, relative: &str) -> Result<(PathBuf, String), Error> {
        let path = dir.join(relative);
        if !path.exists() {
            return Err(Error::MissingResource { entry: relative.to_owned(), dir: dir.to_owned() });
        }
        let path = self.file_inside(dir, &path)?;
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        Ok((path, text))
    }

    fn build_dir(&mut self, dir: &Path) -> Result<Vec<Value>, Error> {
        let (file, kustomization) = load(dir)?;
        self.build_kustomization(dir, &file, kustomization)
    }

    fn build_kustomization(&mut self, dir: &Path, file: &Path, k: Kustomization) -> Result<Vec<Value>, Error> {
        if let Some((field, why)) = k.unsupported() {
            return Err(Error::Unsupported { file: file.to_owned(), field, why });
        }
        if self.stack.iter().any(|d| d == dir) {
            return Err(Error::Cycle { dir: dir.to_owned() });
        }
        self.stack.push(dir.to_owned());
        let result = self.accumulate_and_transform(dir, file, k);
        self.stack.pop();
        result
    }

    fn accumulate_and_transform(&mut self, dir: &Path, file: &Path, k: Kustomization) -> Result<Vec<Value>, Error> {
        let mut objects: Vec<Value> = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for entry in k.resources.iter().chain(k.bases.iter()) {
            if entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
                return Err(if self.options.enable_remote {
                    Error::RemoteUnsupported { url: entry.clone() }
                } else {
                    Error::Remote { url: entry.clone() }
                });
            }
            let path = dir.join(entry);
            if !path.exists() {
                return Err(Error::MissingResource { entry: entry.clone(), dir: dir.to_owned() });
            }
            let found = if path.is_dir() {
                let path = self.inside_root(&path)?;
                self.build_dir(&path)?
            } else {
                let path = self.file_inside(dir, &path)?;
                let text = std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                yaml::parse_objects(&text, &path)?
            };
            for object in found {
                if transform::kind(&object).is_empty() || object.get("apiVersion").is_none() {
                    return Err(Error::Yaml { file: path.clone(), message: "missing apiVersion or kind in a resource".into() });
                }
                if !ids.insert(resource_id(&object)) {
                    return Err(Error::DuplicateId { id: resource_id(&object) });
                }
                objects.push(object);
            }
        }
        for component in &k.components {
            let component_dir = self.inside_root(&dir.join(component))?;
            let (component_file, component_k) = load(&component_dir)?;
            objects = self.apply_component(&component_dir, &component_file, component_k, objects)?;
        }
        self.transform(dir, file, &k, objects)
    }

    /// A Component's resources join the objects so far, and its transformations apply to all.
    fn apply_component(&mut self, dir: &Path, file: &Path, component: Kustomization, mut objects: Vec<Value>) -> Result<Vec<Value>, Error> {
        let resources = Kustomization { resources: component.resources.clone(), ..Kustomization::default() };
        if !resources.resources.is_empty() {
            objects.extend(self.build_kustomization(dir, file, resources)?);
        }
        let transforms = Kustomization { resources: Vec::new(), bases: Vec::new(), ..component };
        self.transform(dir, file, &transforms, objects)
    }

    fn patch_documents(&self, dir: &Path, file: &Path, patch: &file::Patch) -> Result<(PathBuf, Vec<Value>), Error> {
        let (source, text) = match (&patch.path, &patch.patch) {
            (Some(path), _) => self.read(dir, path)?,
            (None, Some(text)) => (file.to_owned(), text.clone()),
            (None, None) => return Err(Error::Patch { file: file.to_owned(), message: "a patch needs 'path' or 'patch'".into() }),
        };
        let value = yaml::parse_value(&text, &source);
        match value {
            // JSON 6902 operations are one list; strategic merge patches may be several documents.
            Ok(list @ Value::Array(_)) => Ok((source, vec![list])),
            _ => Ok((source.clone(), yaml::parse_objects(&text, &source)?)),
        }
    }

    fn apply_patch(&self, dir: &Path, file: &Path, patch: &file::Patch, objects: &mut [Value]) -> Result<(), Error> {
        let (source, documents) = self.patch_documents(dir, file, patch)?;
        for document in documents {
            let mut applied = false;
            for object in objects.iter_mut() {
                let selected = match &patch.target {
                    Some(target) => patch::selects(target, object),
                    None => document.is_object() && patch::patch_targets(&document, object),
                };
                if !selected {
                    continue;
                }
                applied = true;
                if document.is_array() {
                    patch::json6902(object, &document).map_err(|message| Error::Patch { file: source.clone(), message })?;
                } else {
                    patch::strategic_merge(object, &without_identity(&document, patch.target.is_some()));
                }
            }
            if !applied && patch.target.is_none() {
                return Err(Error::Patch {
                    file: source.clone(),
                    message: format!("no resource matches the patch for {}/{}", transform::kind(&document), transform::name(&document)),
                });
            }
        }
        Ok(())
    }

    fn transform(&mut self, dir: &Path, file: &Path, k: &Kustomization, mut objects: Vec<Value>) -> Result<Vec<Value>, Error> {
        for entry in &k.patches_strategic_merge {
            let patch = match entry {
                Value::String(text) if !text.contains('\n') && !text.contains(':') => file::Patch { path: Some(text.clone()), ..file::Patch::default() },
                Value::String(text) => file::Patch { patch: Some(text.clone()), ..file::Patch::default() },
                other => file::Patch { patch: Some(serde_json::to_string(other).unwrap_or_default()), ..file::Patch::default() },
            };
            self.apply_patch(dir, file, &patch, &mut objects)?;
        }
        for patch in &k.patches {
            self.apply_patch(dir, file, patch, &mut objects)?;
        }
        objects.retain(|o| !o.is_null());
        if let Some(namespace) = &k.namespace {
            transform::set_namespace(&mut objects, namespace);
        }
        let mut renamed = std::collections::BTreeMap::new();
        if k.name_prefix.is_some() || k.name_suffix.is_some() {
            renamed = transform::add_prefix_suffix(&mut objects, k.name_prefix.as_deref().unwrap_or(""), k.name_suffix.as_deref().unwrap_or(""));
            transform::update_name_references(&mut objects, &renamed);
        }
        transform::add_labels(&mut objects, &k.common_labels, true, true);
        for labels in &k.labels {
            if labels.fields.is_some() {
                return Err(Error::Unsupported { file: file.to_owned(), field: "labels.fields", why: "is not supported by ferroflux's kustomize engine yet" });
            }
            transform::add_labels(&mut objects, &labels.pairs, labels.include_selectors, labels.include_templates);
        }
        transform::add_annotations(&mut objects, &k.common_annotations);
        for patch in &k.patches_json6902 {
            self.apply_patch(dir, file, patch, &mut objects)?;
        }
        transform::set_replicas(&mut objects, &k.replicas, &renamed);
        transform::set_images(&mut objects, &k.images);
        Ok(objects)
    }
}

/// A targeted strategic merge patch applies to every selected object whatever name it carries.
fn without_identity(patch: &Value, targeted: bool) -> Value {
    let mut patch = patch.clone();
    if let Some(map) = patch.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            if targeted {
                meta.remove("namespace");
            }
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    patch
}
