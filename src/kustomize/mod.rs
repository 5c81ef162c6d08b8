//! A native kustomize (`kubectl kustomize`, kustomize v5) in Rust, self-contained so that it can
//! become its own crate: `build(root, dir, options)` reads the kustomization in `dir` and returns
//! the objects in kustomize's order; nothing outside `root` is ever read.
//!
//! A kustomization is built as kustomize does: its `resources` (files, and directories with
//! their own kustomization, built first) are accumulated, its generators add ConfigMaps and
//! Secrets, its `components` apply, and then its transformers run in kustomize's order (strategic
//! merge patches, `patches`, namespace, prefix, suffix, labels, annotations, JSON 6902 patches,
//! replicas, images, replacements). At the end of the whole build, generated objects get their
//! content hash and every reference to a renamed object is pointed at its new name.
//!
//! Also: `vars`, `configurations` (custom field specs), `crds` (name references of custom
//! kinds), `openapi` (a custom schema for strategic merges), `buildMetadata`, `sortOptions`,
//! `replacements`, `transformers:`/`generators:` entries that configure kustomize's builtin
//! plugins, and remote git bases and components when [`BuildOptions::enable_remote`] is set
//! (each clone is the build root of its base). Refused by name, with an error: Helm, external
//! plugins, KRM functions and validators (out of scope), single files over HTTP, and remote
//! bases when not enabled.

mod builtin;
mod config;
pub mod fieldspec;
pub mod file;
pub mod generator;
// Public for the fuzz targets (fuzz/), which drive them as a build does.
pub mod json6902;
pub mod limits;
mod metadata;
mod nameref;
pub mod object;
mod openapi;
mod order;
pub mod patch;
mod regex;
mod remote;
mod replacement;
mod transform;
mod vars;
mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub use file::Kustomization;
pub use object::{Id, Object};
pub use yaml::{parse_objects, to_yaml};

use object::{ObjectKey, Resource};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {message}", file.display())]
    Yaml { file: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("no kustomization file found: unable to find one of 'kustomization.yaml', 'kustomization.yml' or 'Kustomization' in directory '{}'", dir.display())]
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
    #[error("{}: {message}", file.display())]
    Generator { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Replacement { file: PathBuf, message: String },
    #[error("{}: replicas: {message}", file.display())]
    Replicas { file: PathBuf, message: String },
    #[error("{}: images: {message}", file.display())]
    Images { file: PathBuf, message: String },
    #[error("{}: sortOptions: {message}", file.display())]
    SortOptions { file: PathBuf, message: String },
    #[error("remote resource '{url}': remote resources are not enabled")]
    Remote { url: String },
    #[error("remote resource '{url}': {message}")]
    RemoteGit { url: String, message: String },
    #[error(
        "remote resource '{url}': single files over HTTP are not fetched by ferroflux's kustomize engine; name a git repository instead (https://host/org/repo//path?ref=...)"
    )]
    RemoteFile { url: String },
    #[error("accumulating resources from '{entry}' in {}: no such file or directory", dir.display())]
    MissingResource { entry: String, dir: PathBuf },
    #[error("{}: {message}", file.display())]
    Component { file: PathBuf, message: String },
    #[error("{}: vars: {message}", file.display())]
    Vars { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Plugin { file: PathBuf, message: String },
    #[error("{}: {message}", file.display())]
    Filter { file: PathBuf, message: String },
}

/// Settings of a build beyond the kustomization files.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Allow remote git bases and components (cloned into a temporary folder for the build).
    pub enable_remote: bool,
}

/// What a file a build reads is for, as a [`FileFilter`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileUse<'a> {
    /// A file listed in `resources`.
    Resource,
    /// A file named by a `patches` entry's `path`.
    Patch,
    /// A `secretGenerator` `files` entry, with the key it becomes in the Secret.
    SecretFile { key: &'a str },
    /// A `secretGenerator` `envs` (or `env`) file.
    SecretEnv,
}

/// Sees the bytes of the files a build reads as resources, patches and secretGenerator
/// sources, and may replace them (the controller decrypts SOPS files here). An error fails the
/// build with the message as it is.
pub trait FileFilter: Send + Sync {
    fn filter(&self, path: &Path, usage: FileUse<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, String>;
}

/// Which files a kustomization may read, beside the build root that always bounds a build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoadRestrictions {
    /// kustomize's default (`LoadRestrictionsRootOnly`): a kustomization reads files (resources,
    /// patches, generator sources) only in or below its own folder; other kustomizations it
    /// names may be anywhere in the root.
    #[default]
    KustomizationFolder,
    /// Flux's setting (`LoadRestrictionsNone`): any file inside the build root.
    BuildRoot,
}

struct Builder<'a> {
    root: PathBuf,
    options: &'a BuildOptions,
    /// Sees resource, patch and secretGenerator files as they are read (SOPS decryption).
    file_filter: Option<&'a dyn FileFilter>,
    restrictions: LoadRestrictions,
    stack: Vec<PathBuf>,
    /// The `vars` of every kustomization of the build, resolved at the end.
    vars: Vec<vars::Var>,
    /// The field specs of every kustomization's `configurations` and `crds` so far.
    config: config::TransformerConfig,
    /// The schema of strategic merges, decided once for the whole build as kustomize does: by
    /// the first `openapi: {path: …}` met before the first strategic merge (`None`: builtin).
    schema: std::cell::OnceCell<Option<openapi::OpenApi>>,
    /// Whether origins and transformations are recorded (the root lists `buildMetadata`).
    track_origins: bool,
    /// Where each kustomization being built is, for origins: the current one last.
    locations: Vec<metadata::Location>,
}

/// Builds the kustomization in `dir` as `kubectl kustomize` does; nothing outside `root` is
/// read, and each kustomization reads files only in or below its folder.
pub fn build(root: &Path, dir: &Path, options: &BuildOptions) -> Result<Vec<Object>, Error> {
    build_with_restrictions(root, dir, options, LoadRestrictions::KustomizationFolder)
}

/// [`build`] with a choice of load restrictions (Flux builds with [`LoadRestrictions::BuildRoot`]).
pub fn build_with_restrictions(root: &Path, dir: &Path, options: &BuildOptions, restrictions: LoadRestrictions) -> Result<Vec<Object>, Error> {
    let _budget = limits::Budget::install();
    let (mut builder, dir) = Builder::start(root, dir, options, restrictions)?;
    let (file, kustomization) = builder.load(&dir)?;
    builder.build_root(&dir, &file, kustomization)
}

/// Reads the kustomization file of a folder inside the build root, refusing one that leads out
/// of the root (a symlink) before anything of it is read or quoted.
pub type RootLoader<'a> = &'a dyn Fn(&Path) -> Result<(PathBuf, Kustomization), Error>;

/// Builds `dir` from the root kustomization `root_kustomization` gives for it (its file and
/// content), called with `dir` canonical and checked to be inside `root`, and with the build's
/// own loader for reading kustomization files safely: for callers that edit the root
/// kustomization before the build or generate one (Flux's controller).
pub fn build_kustomization(
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    restrictions: LoadRestrictions,
    root_kustomization: impl FnOnce(&Path, RootLoader) -> Result<(PathBuf, Kustomization), Error>,
) -> Result<Vec<Object>, Error> {
    build_kustomization_filtered(root, dir, options, restrictions, root_kustomization, None)
}

/// [`build_kustomization`], with `file_filter` seeing every resource, patch and secretGenerator
/// file the build reads (the controller decrypts SOPS files there).
pub fn build_kustomization_filtered(
    root: &Path,
    dir: &Path,
    options: &BuildOptions,
    restrictions: LoadRestrictions,
    root_kustomization: impl FnOnce(&Path, RootLoader) -> Result<(PathBuf, Kustomization), Error>,
    file_filter: Option<&dyn FileFilter>,
) -> Result<Vec<Object>, Error> {
    let _budget = limits::Budget::install();
    let (mut builder, dir) = Builder::start(root, dir, options, restrictions)?;
    builder.file_filter = file_filter;
    let (file, kustomization) = {
        let loader = |d: &Path| builder.load(d);
        root_kustomization(&dir, &loader)?
    };
    builder.build_root(&dir, &file, kustomization)
}

/// Whether `dir` has a kustomization file.
pub fn has_kustomization(dir: &Path) -> bool {
    file::FILE_NAMES.iter().any(|n| dir.join(n).is_file())
}

/// What a file a generator reads is for, when a [`FileFilter`] should see it: only Secrets'.
fn secret_source_use<'a>(kind: generator::GeneratedKind, spec: &'a file::Generator, relative: &str) -> Option<FileUse<'a>> {
    if kind != generator::GeneratedKind::Secret {
        return None;
    }
    if spec.env.iter().chain(&spec.envs).any(|e| e == relative) {
        return Some(FileUse::SecretEnv);
    }
    spec.files.iter().find_map(|source| match source.split_once('=') {
        Some((key, path)) if path == relative => Some(FileUse::SecretFile { key }),
        None if source == relative => Some(FileUse::SecretFile { key: source }),
        _ => None,
    })
}

/// The kustomization file in `dir` and what it says. The file may be a symlink, but only to a
/// file in `dir` itself: one leading elsewhere is refused before anything of it is read or
/// quoted (the builder checks the kustomizations it meets against the whole root).
pub fn load(dir: &Path) -> Result<(PathBuf, Kustomization), Error> {
    let folder = dir.canonicalize().map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    for name in file::FILE_NAMES {
        let path = dir.join(name);
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let escape = || Error::PathEscape { path: path.clone(), root: folder.clone() };
        let canonical = path.canonicalize().map_err(|_| escape())?;
        if canonical.parent() != Some(folder.as_path()) {
            return Err(escape());
        }
        if canonical.is_file() {
            return read_kustomization(&path);
        }
    }
    Err(Error::NoKustomization { dir: dir.to_owned() })
}

/// Reads and parses a kustomization file already checked to be readable.
fn read_kustomization(file: &Path) -> Result<(PathBuf, Kustomization), Error> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io { path: file.to_owned(), source })?;
    let kustomization = yaml::parse_kustomization(&text, file)?;
    Ok((file.to_owned(), kustomization))
}

/// What an entry of `resources` or `components` names.
enum Entry {
    Local(PathBuf),
    Remote(remote::RepoSpec),
}

/// `path` with `.` and `..` resolved without the file system.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

impl Builder<'_> {
    /// The kustomization file of `dir` (which is inside the root), read only when it is inside
    /// the root itself: a kustomization file may be a symlink, and one leading out of the root is
    /// refused before anything of it is read or quoted.
    fn load(&self, dir: &Path) -> Result<(PathBuf, Kustomization), Error> {
        for name in file::FILE_NAMES {
            let path = dir.join(name);
            if self.locate(&path)?.is_some_and(|canonical| canonical.is_file()) {
                return read_kustomization(&path);
            }
        }
        Err(Error::NoKustomization { dir: dir.to_owned() })
    }

    /// Where `path` leads: `Some` canonical path inside the root, or `None` when nothing is
    /// there; refused when it leads out of the root. A missing path is judged like an existing
    /// one (by its deepest existing ancestor, `..` resolved lexically), so that the errors never
    /// tell whether a file outside the root exists.
    fn locate(&self, path: &Path) -> Result<Option<PathBuf>, Error> {
        let escape = || Error::PathEscape { path: path.to_owned(), root: self.root.clone() };
        let normal = lexically_normal(path);
        if !normal.starts_with(&self.root) {
            return Err(escape());
        }
        match normal.canonicalize() {
            Ok(canonical) if canonical.starts_with(&self.root) => return Ok(Some(canonical)),
            Ok(_) => return Err(escape()),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::Io { path: path.to_owned(), source: e }),
            Err(_) => {}
        }
        // Missing: its deepest existing ancestor must be inside the root, and the first missing
        // part no dangling symlink (its target, wherever it is, stays unknown).
        let mut missing = normal.as_path();
        while let Some(parent) = missing.parent() {
            match parent.canonicalize() {
                Ok(canonical) if canonical.starts_with(&self.root) => {
                    return if std::fs::symlink_metadata(missing).is_ok() { Err(escape()) } else { Ok(None) };
                }
                Ok(_) => return Err(escape()),
                Err(_) => missing = parent,
            }
        }
        Err(escape())
    }

    fn start<'a>(root: &Path, dir: &Path, options: &'a BuildOptions, restrictions: LoadRestrictions) -> Result<(Builder<'a>, PathBuf), Error> {
        let root = root.canonicalize().map_err(|source| Error::Io { path: root.to_owned(), source })?;
        let builder = Builder {
            root,
            options,
            file_filter: None,
            restrictions,
            stack: Vec::new(),
            vars: Vec::new(),
            config: config::TransformerConfig::default(),
            schema: std::cell::OnceCell::new(),
            track_origins: false,
            locations: vec![metadata::Location::default()],
        };
        let dir = builder.inside_root(dir)?;
        Ok((builder, dir))
    }

    fn build_root(&mut self, dir: &Path, file: &Path, kustomization: Kustomization) -> Result<Vec<Object>, Error> {
        let sort_options = kustomization.sort_options.clone();
        let build_metadata = metadata::BuildMetadata::from_options(&kustomization.build_metadata);
        self.track_origins = metadata::BuildMetadata::tracks_origins(&kustomization.build_metadata);
        let mut resources = self.build_kustomization(dir, file, kustomization, false)?;
        // Hashes come last, over the final data, and then the references follow the new names.
        for resource in resources.iter_mut().filter(|r| r.needs_hash) {
            let hash = generator::content_hash(&resource.object);
            let new_name = format!("{}-{hash}", object::name(&resource.object));
            resource.rename(&new_name);
        }
        nameref::fix_references(&mut resources, &self.config.name_reference);
        let unused = vars::resolve(&self.vars, &mut resources, &self.config.var_reference).map_err(|message| Error::Vars { file: file.to_owned(), message })?;
        if !unused.is_empty() {
            tracing::info!(vars = ?unused, "well-defined vars that were never replaced");
        }
        if build_metadata != metadata::BuildMetadata::default() {
            for resource in &mut resources {
                metadata::annotate(&mut resource.object, build_metadata, resource.origin.as_ref(), &resource.transformations);
            }
        }
        let mut objects: Vec<Object> = resources.into_iter().map(|r| r.object).collect();
        order::sort(&mut objects, sort_options.as_ref()).map_err(|message| Error::SortOptions { file: file.to_owned(), message })?;
        Ok(objects)
    }

    /// The canonical path, refused when it leaves the root (through `..` or a symlink).
    fn inside_root(&self, path: &Path) -> Result<PathBuf, Error> {
        let canonical = path.canonicalize().map_err(|source| Error::Io { path: path.to_owned(), source })?;
        if canonical.starts_with(&self.root) { Ok(canonical) } else { Err(Error::PathEscape { path: path.to_owned(), root: self.root.clone() }) }
    }

    /// A file a kustomization in `dir` may read: inside the root and, with kustomize's default
    /// restrictions, in or below `dir`.
    fn file_inside(&self, dir: &Path, path: &Path) -> Result<PathBuf, Error> {
        let canonical = self.inside_root(path)?;
        if self.restrictions == LoadRestrictions::KustomizationFolder && !canonical.starts_with(dir) {
            return Err(Error::PathEscape { path: canonical, root: dir.to_owned() });
        }
        Ok(canonical)
    }

    /// A file named in a kustomization, relative to its directory.
    fn read(&self, dir: &Path, relative: &str) -> Result<(PathBuf, Vec<u8>), Error> {
        let path = self.locate(&dir.join(relative))?.ok_or_else(|| Error::MissingResource { entry: relative.to_owned(), dir: dir.to_owned() })?;
        let path = self.file_inside(dir, &path)?;
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        Ok((path, bytes))
    }

    /// `bytes` of `path` as the build's [`FileFilter`] (if any) returns them.
    fn filtered(&self, path: &Path, usage: FileUse<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self.file_filter {
            Some(filter) => filter.filter(path, usage, bytes).map_err(|message| Error::Filter { file: path.to_owned(), message }),
            None => Ok(bytes),
        }
    }

    fn read_text(&self, dir: &Path, relative: &str) -> Result<(PathBuf, String), Error> {
        let (path, bytes) = self.read(dir, relative)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
        Ok((path, text))
    }

    fn build_dir(&mut self, dir: &Path) -> Result<Vec<Resource>, Error> {
        let (file, kustomization) = self.load(dir)?;
        if kustomization.kind.as_deref() == Some("Component") {
            return Err(Error::Component { file, message: "a Component can only be used in 'components', not in 'resources'".into() });
        }
        self.build_kustomization(dir, &file, kustomization, false)
    }

    /// Builds a kustomization (or, with `component`, checks that it is one).
    fn build_kustomization(&mut self, dir: &Path, file: &Path, k: Kustomization, component: bool) -> Result<Vec<Resource>, Error> {
        self.enter(dir, file, &k)?;
        let result = self.accumulate(dir, file, &k, Vec::new(), component);
        self.stack.pop();
        result
    }

    fn enter(&mut self, dir: &Path, file: &Path, k: &Kustomization) -> Result<(), Error> {
        if let Some((field, why)) = k.unsupported() {
            return Err(Error::Unsupported { file: file.to_owned(), field, why });
        }
        if self.stack.iter().any(|d| d == dir) {
            return Err(Error::Cycle { dir: dir.to_owned() });
        }
        if self.stack.len() >= limits::MAX_NESTING {
            return Err(Error::InvalidKustomization {
                file: file.to_owned(),
                message: format!("kustomizations nest more than {} levels deep (a base of a base of ...)", limits::MAX_NESTING),
            });
        }
        if let Some(settings) = &k.openapi {
            self.choose_schema(dir, file, settings)?;
        }
        self.stack.push(dir.to_owned());
        Ok(())
    }

    /// `openapi:` of a kustomization: a builtin version must be one kustomize has; a custom
    /// schema becomes the build's schema unless one was chosen (or used) before.
    fn choose_schema(&self, dir: &Path, file: &Path, settings: &BTreeMap<String, String>) -> Result<(), Error> {
        let invalid = |message: &str| Error::InvalidKustomization { file: file.to_owned(), message: format!("openapi: {message}") };
        let version = settings.get("version").map(String::as_str).unwrap_or("");
        match settings.get("path") {
            Some(_) if settings.contains_key("version") => Err(invalid("builtin version and custom schema provided, cannot use both")),
            Some(path) => {
                let (path, text) = self.read_text(dir, path)?;
                let schema = openapi::OpenApi::parse(&text, &path)?;
                // Already decided: the first schema (or the builtin one, once used) stays.
                let _ = self.schema.set(Some(schema));
                Ok(())
            }
            None if version.is_empty() => Ok(()),
            None if !openapi::BUILTIN_VERSIONS.contains(&version) => Err(invalid(&format!(
                "the specified OpenAPI version {version:?} is not built in (kustomize v5.5 has {})",
                openapi::BUILTIN_VERSIONS.join(", ")
            ))),
            // Naming the builtin version decides the schema, as in kustomize.
            None => {
                let _ = self.schema.set(None);
                Ok(())
            }
        }
    }

    /// A component: it transforms what its parent accumulated so far.
    fn accumulate_component(&mut self, component_dir: &Path, resources: Vec<Resource>) -> Result<Vec<Resource>, Error> {
        let (component_file, component_k) = self.load(component_dir)?;
        if component_k.kind.as_deref() != Some("Component") {
            return Err(Error::Component { file: component_file, message: "a kustomization listed in 'components' must have 'kind: Component'".into() });
        }
        self.enter(component_dir, &component_file, &component_k)?;
        let result = self.accumulate(component_dir, &component_file, &component_k, resources, true);
        self.stack.pop();
        result
    }

    /// What a `resources` or `components` entry of the kustomization in `dir` names: a local
    /// file or folder (inside the root), else a remote base.
    fn entry(&self, dir: &Path, entry: &str) -> Result<Entry, Error> {
        if let Some(path) = self.locate(&dir.join(entry))? {
            return Ok(Entry::Local(path));
        }
        match self.remote_spec(entry)? {
            Some(spec) => Ok(Entry::Remote(spec)),
            None => Err(Error::MissingResource { entry: entry.to_owned(), dir: dir.to_owned() }),
        }
    }

    /// The remote base an entry that is not a local path names, if it names one; an error when
    /// remote bases are not enabled, or for a single file over HTTP.
    fn remote_spec(&self, entry: &str) -> Result<Option<remote::RepoSpec>, Error> {
        let refused = || Error::Remote { url: entry.to_owned() };
        if remote::is_http_file(entry) {
            return Err(if self.options.enable_remote { Error::RemoteFile { url: entry.to_owned() } } else { refused() });
        }
        match remote::parse(entry) {
            Ok(_) if !self.options.enable_remote => Err(refused()),
            Ok(spec) => Ok(Some(spec)),
            Err(_) => Ok(None),
        }
    }

    /// Clones a remote base into a temporary folder and runs `build` on its kustomization folder,
    /// with the clone as the build root (nothing outside it is read while it builds).
    fn with_remote<T>(&mut self, spec: &remote::RepoSpec, entry: &str, build: impl FnOnce(&mut Self, &Path) -> Result<T, Error>) -> Result<T, Error> {
        let error = |message: String| Error::RemoteGit { url: entry.to_owned(), message };
        let clone = tempfile::Builder::new().prefix("kustomize-remote-").tempdir().map_err(|e| error(format!("creating a temporary folder: {e}")))?;
        remote::clone(spec, clone.path()).map_err(error)?;
        let clone_root = clone.path().canonicalize().map_err(|source| Error::Io { path: clone.path().to_owned(), source })?;
        let base_dir = clone_root.join(&spec.root_path);
        if !base_dir.is_dir() {
            return Err(error(format!("no folder '{}' in the repository", spec.root_path)));
        }
        let saved_root = std::mem::replace(&mut self.root, clone_root);
        self.locations.push(metadata::Location { path: spec.root_path.clone(), repo: spec.clone_url.clone(), reference: spec.reference.clone() });
        let result = self.inside_root(&base_dir).and_then(|dir| build(self, &dir));
        self.locations.pop();
        self.root = saved_root;
        // The clone goes when `clone` drops: everything it held is in memory now.
        result
    }

    /// Where the kustomization being built is.
    fn location(&self) -> metadata::Location {
        self.locations.last().cloned().unwrap_or_default()
    }

    /// The origin of what a kustomization (`file`) or a file it names (`entry`) configured.
    fn configured(&self, file: &Path, entry: Option<&str>, by: metadata::ConfiguredBy) -> Option<metadata::Origin> {
        if !self.track_origins {
            return None;
        }
        let file_name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Some(metadata::Origin::configured(&self.location().join(entry.unwrap_or(&file_name)), by))
    }

    /// Records that a transformer ran over every resource (kustomize records it whether or not
    /// the transformer changed the resource).
    fn record(&self, resources: &mut [Resource], file: &Path, entry: Option<&str>, by: metadata::ConfiguredBy) {
        if let Some(origin) = self.configured(file, entry, by) {
            for resource in resources {
                resource.transformations.push(origin.clone());
            }
        }
    }

    /// Adds resources, refusing a second object with the same id. `seen` holds the ids of
    /// `resources`, kept along so that adding many files stays linear.
    fn append(resources: &mut Vec<Resource>, seen: &mut std::collections::HashSet<ObjectKey>, found: Vec<Resource>) -> Result<(), Error> {
        for resource in &found {
            let id = resource.id();
            if !seen.insert(ObjectKey::of(&id)) {
                return Err(Error::DuplicateId { id: id.to_string() });
            }
        }
        resources.extend(found);
        Ok(())
    }

    /// kustomize's accumulation of one kustomization, on top of `resources` (non-empty for a
    /// component, which transforms what its parent accumulated so far).
    fn accumulate(&mut self, dir: &Path, file: &Path, k: &Kustomization, mut resources: Vec<Resource>, component: bool) -> Result<Vec<Resource>, Error> {
        let mut seen: std::collections::HashSet<ObjectKey> = resources.iter().map(|r| ObjectKey::of(&r.id())).collect();
        for entry in k.resources.iter().chain(k.bases.iter()) {
            let path = match self.entry(dir, entry)? {
                Entry::Local(path) => path,
                Entry::Remote(spec) => {
                    let found = self.with_remote(&spec, entry, |builder, base_dir| builder.build_dir(base_dir))?;
                    Self::append(&mut resources, &mut seen, found)?;
                    continue;
                }
            };
            let found = if path.is_dir() {
                self.locations.push(self.location().join(entry));
                let built = self.build_dir(&path);
                self.locations.pop();
                built?
            } else {
                let path = self.file_inside(dir, &path)?;
                let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
                let bytes = self.filtered(&path, FileUse::Resource, bytes)?;
                let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
                let objects = yaml::parse_objects(&text, &path)?;
                let mut found = Vec::with_capacity(objects.len());
                for object in objects {
                    if object::kind(&object).is_empty() || object::api_version(&object).is_empty() {
                        return Err(Error::Yaml { file: path.clone(), message: "missing apiVersion or kind in a resource".into() });
                    }
                    if object::kind(&object) == "Kustomization" && object::api_version(&object).starts_with("kustomize.config.k8s.io") {
                        return Err(Error::Yaml {
                            file: path.clone(),
                            message: "a kustomization file cannot be a resource: name its directory instead".into(),
                        });
                    }
                    let mut resource = Resource::new(object);
                    if self.track_origins {
                        resource.origin = Some(metadata::Origin::file(&self.location().join(entry)));
                    }
                    found.push(resource);
                }
                found
            };
            Self::append(&mut resources, &mut seen, found)?;
        }
        for entry in &k.configurations {
            let (path, text) = self.read_text(dir, entry)?;
            self.config.merge_file(&text, &path)?;
        }
        for entry in &k.crds {
            let (path, text) = self.read_text(dir, entry)?;
            self.config.merge_crds(openapi::crd_config(&text, &path)?);
        }
        self.generate(dir, file, k, &mut resources)?;
        for entry in &k.components {
            let component_dir = match self.entry(dir, entry)? {
                Entry::Local(path) => path,
                Entry::Remote(spec) => {
                    let accumulated = std::mem::take(&mut resources);
                    resources = self.with_remote(&spec, entry, |builder, component_dir| builder.accumulate_component(component_dir, accumulated))?;
                    continue;
                }
            };
            self.locations.push(self.location().join(entry));
            let result = self.accumulate_component(&component_dir, std::mem::take(&mut resources));
            self.locations.pop();
            resources = result?;
        }
        let _ = component;
        let resources = self.transform(dir, file, k, resources)?;
        for var in vars::parse(&k.vars).map_err(|message| Error::Vars { file: file.to_owned(), message })? {
            if self.vars.iter().any(|v| v.name == var.name) {
                return Err(Error::Vars { file: file.to_owned(), message: format!("var '{}' already encountered", var.name) });
            }
            self.vars.push(var);
        }
        Ok(resources)
    }

    /// `configMapGenerator` and `secretGenerator`.
    /// The documents of `transformers:` or `generators:` entries: files (in or below the
    /// kustomization's folder) or inline YAML.
    /// Each comes with the file it was configured in (`None`: the kustomization itself).
    fn plugin_documents<'e>(&self, dir: &Path, file: &Path, entries: &'e [String]) -> Result<Vec<(Option<&'e str>, Value)>, Error> {
        let mut documents = Vec::new();
        for entry in entries {
            let inline = entry.contains('\n') || entry.contains(": ");
            let (source, text) = if inline {
                (file.to_owned(), entry.clone())
            } else {
                if self.locate(&dir.join(entry))?.is_some_and(|path| path.is_dir()) {
                    return Err(Error::Plugin {
                        file: file.to_owned(),
                        message: format!(
                            "'{entry}': a kustomization as a source of transformer or generator configurations is not supported by ferroflux's kustomize engine"
                        ),
                    });
                }
                self.read_text(dir, entry)?
            };
            let configured_in = (!inline).then_some(entry.as_str());
            documents.extend(yaml::parse_objects(&text, &source)?.into_iter().map(|d| (configured_in, d)));
        }
        Ok(documents)
    }

    fn generate(&self, dir: &Path, file: &Path, k: &Kustomization, resources: &mut Vec<Resource>) -> Result<(), Error> {
        let by_field = |kind: &str| self.configured(file, None, metadata::ConfiguredBy::builtin(kind));
        let mut generators: Vec<(generator::GeneratedKind, file::Generator, Option<metadata::Origin>)> = k
            .config_map_generator
            .iter()
            .map(|g| (generator::GeneratedKind::ConfigMap, g.clone(), by_field("ConfigMapGenerator")))
            .chain(k.secret_generator.iter().map(|g| (generator::GeneratedKind::Secret, g.clone(), by_field("SecretGenerator"))))
            .collect();
        // `generators:` configuring builtin generators run after the fields, as in kustomize.
        for (configured_in, document) in self.plugin_documents(dir, file, &k.generators)? {
            let (kind, spec) = builtin::generator(&document).map_err(|message| Error::Plugin { file: file.to_owned(), message })?;
            generators.push((kind, spec, self.configured(file, configured_in, metadata::ConfiguredBy::of_document(&document))));
        }
        for (kind, spec, origin) in &generators {
            let kind = *kind;
            let error = |message: String| Error::Generator { file: file.to_owned(), message };
            let mut read = |relative: &str| -> Result<Vec<u8>, String> {
                let (path, bytes) = self.read(dir, relative).map_err(|e| e.to_string())?;
                match secret_source_use(kind, spec, relative) {
                    Some(usage) => self.filtered(&path, usage, bytes).map_err(|e| e.to_string()),
                    None => Ok(bytes),
                }
            };
            let collected = generator::collect(spec, &mut read).map_err(error)?;
            let (object, needs_hash) = generator::object(kind, spec, k.generator_options.as_ref(), collected);
            let id = Id::of(&object);
            let existing = resources.iter().position(|r| r.matches_any_id(&id));
            match (spec.behavior.as_deref().unwrap_or("create"), existing) {
                ("create", None) => {
                    let mut resource = Resource::new(object);
                    resource.needs_hash = needs_hash;
                    resource.origin.clone_from(origin);
                    resources.push(resource);
                }
                ("create", Some(_)) => return Err(error(format!("id {id} exists; behavior must be merge or replace"))),
                ("merge", Some(i)) => {
                    let target = &mut resources[i];
                    merge_generated(&mut target.object, &object);
                    target.needs_hash = target.needs_hash && needs_hash;
                }
                ("replace", Some(i)) => {
                    let target = &mut resources[i];
                    let name = object::name(&target.object).to_owned();
                    let namespace = object::namespace(&target.object).to_owned();
                    target.object = object;
                    object::set_metadata(&mut target.object, "name", &name);
                    if !namespace.is_empty() {
                        object::set_metadata(&mut target.object, "namespace", &namespace);
                    }
                    // Hashed only when both were (a replaced plain object keeps its name), as
                    // kustomize keeps the old resource's options; the origin is the new one's.
                    target.needs_hash = target.needs_hash && needs_hash;
                    target.origin.clone_from(origin);
                }
                ("merge" | "replace", None) => {
                    return Err(error(format!("id {id} does not exist; cannot merge or replace")));
                }
                (other, _) => return Err(error(format!("unknown generator behavior {other:?}: use create, merge or replace"))),
            }
        }
        Ok(())
    }

    /// The documents of a patch (inline or from a file): one JSON 6902 list, or strategic
    /// merge patches.
    fn patch_documents(&self, dir: &Path, file: &Path, patch: &file::Patch) -> Result<(PathBuf, Vec<Value>), Error> {
        let (source, text) = match (&patch.path, &patch.patch) {
            (Some(path), _) => {
                let (path, bytes) = self.read(dir, path)?;
                let bytes = self.filtered(&path, FileUse::Patch, bytes)?;
                let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
                (path, text)
            }
            (None, Some(text)) => (file.to_owned(), text.clone()),
            (None, None) => return Err(Error::Patch { file: file.to_owned(), message: "a patch needs 'path' or 'patch'".into() }),
        };
        // kustomize reads a patch that starts with `[` as JSON operations, strictly: a YAML flow
        // list there (`[{op: add, …}]`) is an error.
        if text.starts_with('[') {
            return match serde_json::from_str::<Value>(&text) {
                Ok(list) => Ok((source, vec![list])),
                Err(e) => Err(Error::Patch { file: source, message: format!("unable to parse SM or JSON patch: {e}") }),
            };
        }
        match yaml::parse_value(&text, &source) {
            Ok(list @ Value::Array(_)) => Ok((source, vec![list])),
            _ => Ok((source.clone(), yaml::parse_objects(&text, &source)?)),
        }
    }

    fn apply_patch(&self, dir: &Path, file: &Path, patch: &file::Patch, resources: &mut [Resource], json6902_only: bool) -> Result<(), Error> {
        let (source, documents) = self.patch_documents(dir, file, patch)?;
        let patch_error = |message: String| Error::Patch { file: source.clone(), message };
        for document in documents {
            if json6902_only && !document.is_array() {
                return Err(patch_error("a patchesJson6902 patch must be a list of operations".into()));
            }
            if document.is_array() && patch.target.is_none() {
                return Err(patch_error("a JSON 6902 patch needs a target".into()));
            }
            let mut applied = false;
            let patch_id = Id::of(&document);
            if let Some(target) = &patch.target {
                patch::check_patterns(target).map_err(|e| patch_error(e.to_string()))?;
            }
            for resource in resources.iter_mut().filter(|r| !r.object.is_null()) {
                let selected = match &patch.target {
                    Some(target) => patch::selects_patch_target(target, resource).map_err(|e| patch_error(e.to_string()))?,
                    None => resource.matches_any_id(&patch_id),
                };
                if !selected {
                    continue;
                }
                applied = true;
                if document.is_array() {
                    json6902_like_kustomize(&mut resource.object, &document).map_err(|e| patch_error(format!("{e} (in {})", resource.id())))?;
                } else {
                    let schema = self.schema.get_or_init(|| None).as_ref();
                    patch::strategic_merge_with_schema(&mut resource.object, &without_identity(&document), schema)
                        .map_err(|e| patch_error(format!("{e} (in {})", resource.id())))?;
                    // With `allowNameChange` / `allowKindChange`, the patch's name and kind win.
                    let allowed = |option: &str| patch.options.as_ref().is_some_and(|o| o.get(option).copied().unwrap_or(false));
                    if allowed("allowNameChange") && !patch_id.name.is_empty() && patch_id.name != object::name(&resource.object) {
                        resource.rename(&patch_id.name);
                    }
                    if allowed("allowKindChange")
                        && !patch_id.kind.is_empty()
                        && let Some(map) = resource.object.as_object_mut()
                    {
                        map.insert("kind".into(), Value::String(patch_id.kind.clone()));
                    }
                }
            }
            if !applied && patch.target.is_none() {
                return Err(patch_error(format!("no resource matches strategic merge patch \"{patch_id}\"")));
            }
        }
        Ok(())
    }

    fn transform(&mut self, dir: &Path, file: &Path, k: &Kustomization, mut resources: Vec<Resource>) -> Result<Vec<Resource>, Error> {
        for entry in &k.patches_strategic_merge {
            let patch = match entry {
                Value::String(text) if !text.contains('\n') && !text.contains(':') => file::Patch { path: Some(text.clone()), ..file::Patch::default() },
                Value::String(text) => file::Patch { patch: Some(text.clone()), ..file::Patch::default() },
                other => file::Patch { patch: Some(other.to_string()), ..file::Patch::default() },
            };
            self.apply_patch(dir, file, &patch, &mut resources, false)?;
        }
        if !k.patches_strategic_merge.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchStrategicMergeTransformer"));
        }
        for patch in &k.patches {
            self.apply_patch(dir, file, patch, &mut resources, false)?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchTransformer"));
        }
        resources.retain(|r| !r.object.is_null());
        let config = &self.config;
        let with_custom = |builtin: &[fieldspec::FieldSpec], custom: &[fieldspec::FieldSpec]| -> Vec<fieldspec::FieldSpec> {
            builtin.iter().chain(custom).cloned().collect()
        };
        if let Some(namespace) = k.namespace.as_deref().filter(|n| !n.is_empty()) {
            transform::set_namespace(&mut resources, namespace);
            transform::set_custom_namespace_fields(&mut resources, namespace, &config.namespace);
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("NamespaceTransformer"));
        }
        let config = &self.config;
        let (prefix, suffix) = (k.name_prefix.as_deref().unwrap_or(""), k.name_suffix.as_deref().unwrap_or(""));
        transform::add_prefix_suffix(&mut resources, prefix, suffix);
        if !prefix.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PrefixTransformer"));
        }
        if !suffix.is_empty() {
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("SuffixTransformer"));
        }
        if !k.common_labels.is_empty() {
            transform::add_pairs(&mut resources, &k.common_labels, &with_custom(&fieldspec::COMMON_LABEL_SPECS, &config.common_labels));
        }
        for labels in &k.labels {
            let mut specs = transform::label_specs(labels.include_selectors, labels.include_templates, &labels.fields);
            if labels.include_selectors {
                specs.extend(config.common_labels.iter().cloned());
            } else if labels.include_templates {
                specs.extend(config.template_labels.iter().cloned());
            }
            transform::add_pairs(&mut resources, &labels.pairs, &specs);
        }
        // kustomize runs one label transformer per `labels` entry and one for `commonLabels`.
        if !k.labels.is_empty() || !k.common_labels.is_empty() {
            for _ in 0..=k.labels.len() {
                self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("LabelTransformer"));
            }
        }
        let config = &self.config;
        if !k.common_annotations.is_empty() {
            transform::add_pairs(&mut resources, &k.common_annotations, &with_custom(&fieldspec::COMMON_ANNOTATION_SPECS, &config.common_annotations));
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("AnnotationsTransformer"));
        }
        for patch in &k.patches_json6902 {
            if patch.target.is_none() {
                return Err(Error::Patch { file: file.to_owned(), message: "a patchesJson6902 entry needs a target".into() });
            }
            self.apply_patch(dir, file, patch, &mut resources, true)?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("PatchJson6902Transformer"));
        }
        // One replica and one image transformer per entry, as kustomize configures them.
        for replica in &k.replicas {
            transform::set_replicas(&mut resources, std::slice::from_ref(replica), &self.config.replicas)
                .map_err(|message| Error::Replicas { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ReplicaCountTransformer"));
        }
        for image in &k.images {
            transform::set_images(&mut resources, std::slice::from_ref(image), &self.config.images)
                .map_err(|message| Error::Images { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ImageTagTransformer"));
        }
        if !k.replacements.is_empty() {
            let mut read = |relative: &str| -> Result<String, String> { self.read_text(dir, relative).map(|(_, text)| text).map_err(|e| e.to_string()) };
            replacement::apply(&k.replacements, &mut resources, &mut read).map_err(|message| Error::Replacement { file: file.to_owned(), message })?;
            self.record(&mut resources, file, None, metadata::ConfiguredBy::builtin("ReplacementTransformer"));
        }
        // `transformers:` configuring builtin transformers run after the fields, as in kustomize.
        for (configured_in, document) in self.plugin_documents(dir, file, &k.transformers)? {
            let plugin_error = |message: String| Error::Plugin { file: file.to_owned(), message };
            match builtin::transformer(&document).map_err(plugin_error)? {
                builtin::BuiltinTransformer::Labels { pairs, specs } | builtin::BuiltinTransformer::Annotations { pairs, specs } => {
                    transform::add_pairs(&mut resources, &pairs, &specs)
                }
                builtin::BuiltinTransformer::Namespace { namespace } => {
                    if !namespace.is_empty() {
                        transform::set_namespace(&mut resources, &namespace);
                    }
                }
                builtin::BuiltinTransformer::PrefixSuffix { prefix, suffix } => transform::add_prefix_suffix(&mut resources, &prefix, &suffix),
                builtin::BuiltinTransformer::Image { image, specs } => {
                    transform::set_images(&mut resources, std::slice::from_ref(&image), &specs)
                        .map_err(|message| Error::Images { file: file.to_owned(), message })?;
                }
                builtin::BuiltinTransformer::Replicas { replica, specs } => {
                    let specs = if specs.is_empty() { fieldspec::REPLICA_SPECS.clone() } else { specs };
                    transform::set_replicas(&mut resources, std::slice::from_ref(&replica), &specs)
                        .map_err(|message| Error::Replicas { file: file.to_owned(), message })?;
                }
                builtin::BuiltinTransformer::Patch(patch) => {
                    self.apply_patch(dir, file, &patch, &mut resources, false)?;
                    resources.retain(|r| !r.object.is_null());
                }
                builtin::BuiltinTransformer::Json6902(patch) => self.apply_patch(dir, file, &patch, &mut resources, true)?,
                builtin::BuiltinTransformer::StrategicMerge { paths, inline } => {
                    for path in paths {
                        self.apply_patch(dir, file, &file::Patch { path: Some(path), ..file::Patch::default() }, &mut resources, false)?;
                    }
                    if let Some(text) = inline {
                        self.apply_patch(dir, file, &file::Patch { patch: Some(text), ..file::Patch::default() }, &mut resources, false)?;
                    }
                    resources.retain(|r| !r.object.is_null());
                }
            }
            self.record(&mut resources, file, configured_in, metadata::ConfiguredBy::of_document(&document));
        }
        Ok(resources)
    }
}

/// A JSON 6902 patch as kustomize applies it: its objects always carry (internal) annotations,
/// so `metadata/annotations` exists for the patch even when the object has none.
fn json6902_like_kustomize(object: &mut Value, operations: &Value) -> Result<(), String> {
    let metadata_without_annotations = object.get("metadata").and_then(Value::as_object).is_some_and(|m| !m.contains_key("annotations"));
    if metadata_without_annotations && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.insert("annotations".into(), Value::Object(Default::default()));
    }
    let result = json6902::apply(object, operations);
    if metadata_without_annotations
        && let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && metadata.get("annotations").and_then(Value::as_object).is_some_and(|a| a.is_empty())
    {
        metadata.remove("annotations");
    }
    result
}

/// `behavior: merge`: the generated data and metadata go over the existing object's.
fn merge_generated(existing: &mut Value, generated: &Value) {
    for field in ["data", "binaryData"] {
        if let Some(new) = generated.get(field).and_then(Value::as_object)
            && let Some(map) = existing.as_object_mut()
        {
            let entry = map.entry(field).or_insert_with(|| Value::Object(Default::default()));
            if let Some(entry) = entry.as_object_mut() {
                entry.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    for field in ["labels", "annotations"] {
        if let Some(new) = generated.pointer(&format!("/metadata/{field}")).and_then(Value::as_object)
            && let Some(metadata) = existing.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let entry = metadata.entry(field).or_insert_with(|| Value::Object(Default::default()));
            if let Some(entry) = entry.as_object_mut() {
                entry.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    if let Some(immutable) = generated.get("immutable") {
        existing["immutable"] = immutable.clone();
    }
}

/// A strategic merge patch's own identity is not part of what it changes.
fn without_identity(patch: &Value) -> Value {
    let mut patch = patch.clone();
    if let Some(map) = patch.as_object_mut() {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
            if meta.is_empty() {
                map.remove("metadata");
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes `files` (relative path, content) under a fresh temporary folder.
    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary folder");
        for (path, content) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
            std::fs::write(path, content).expect("file");
        }
        dir
    }

    const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n";

    #[test]
    fn out_of_scope_fields_and_remote_resources_are_refused_by_name() {
        for (field, text) in [
            ("external plugin", "transformers:\n- |\n  apiVersion: example.com/v1\n  kind: Sed\n  metadata: {name: x}\n"),
            ("external plugin", "generators:\n- |\n  apiVersion: example.com/v1\n  kind: Gen\n  metadata: {name: x}\n"),
            ("helmCharts", "helmCharts: [{name: x}]\n"),
            ("validators", "validators: [v.yaml]\n"),
        ] {
            let dir = tree(&[("kustomization.yaml", text)]);
            let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("refused");
            assert!(error.to_string().contains(field), "{error}");
        }
        let dir = tree(&[("kustomization.yaml", "resources: [github.com/org/repo//x?ref=v1]\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("refused");
        assert!(error.to_string().contains("not enabled"), "{error}");
        let dir = tree(&[("kustomization.yaml", "resources: [https://example.com/manifests/app.yaml]\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions { enable_remote: true }).expect_err("refused");
        assert!(error.to_string().contains("single files over HTTP"), "{error}");
    }

    #[test]
    fn unknown_fields_and_bad_yaml_name_the_field_and_line() {
        let dir = tree(&[("kustomization.yaml", "resources: []\nnamePrefx: a-\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("unknown field").to_string();
        assert!(error.contains("namePrefx") && error.contains("line 2"), "{error}");
        let dir = tree(&[("kustomization.yaml", "resources: [a.yaml]\n"), ("a.yaml", "kind: ConfigMap\nmetadata:\n  name: [x\n")]);
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("bad yaml").to_string();
        assert!(error.contains("a.yaml") && error.contains("line"), "{error}");
    }

    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let outside = tree(&[("secret.yaml", CONFIG_MAP)]);
        let dir = tree(&[("kustomization.yaml", "resources: [link.yaml]\n")]);
        std::os::unix::fs::symlink(outside.path().join("secret.yaml"), dir.path().join("link.yaml")).expect("symlink");
        let error = build(dir.path(), dir.path(), &BuildOptions::default()).expect_err("escapes").to_string();
        assert!(error.contains("is not in or below"), "{error}");
    }

    #[test]
    fn load_refuses_a_kustomization_file_linking_out_of_its_folder_unread() {
        let outside = tree(&[("passwd", "root:x:0:0:root:/root:/bin/bash\n")]);
        let dir = tree(&[]);
        std::os::unix::fs::symlink(outside.path().join("passwd"), dir.path().join("kustomization.yaml")).expect("symlink");
        let error = load(dir.path()).expect_err("escapes").to_string();
        assert!(error.contains("is not in or below") && !error.contains("root:x"), "{error}");
        // A link to a file next to it is read.
        let dir = tree(&[("real.yaml", "resources: []\n")]);
        std::os::unix::fs::symlink(dir.path().join("real.yaml"), dir.path().join("kustomization.yaml")).expect("symlink");
        let (file, _) = load(dir.path()).expect("loads");
        assert!(file.ends_with("kustomization.yaml"));
    }

    #[test]
    fn flux_load_restrictions_allow_files_elsewhere_in_the_root() {
        let dir = tree(&[("shared/cm.yaml", CONFIG_MAP), ("app/kustomization.yaml", "resources: [../shared/cm.yaml]\n")]);
        let app = dir.path().join("app");
        assert!(build(dir.path(), &app, &BuildOptions::default()).is_err());
        let objects = build_with_restrictions(dir.path(), &app, &BuildOptions::default(), LoadRestrictions::BuildRoot).expect("builds");
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn property_yaml_output_parses_back_to_the_same_objects() {
        let mut seed: u64 = 0x1234_5678_9abc_def1;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // Strings that YAML could misread if they were not quoted.
        let tricky = [
            "yes",
            "no",
            "on",
            "0777",
            "1e3",
            "~",
            "null",
            "true",
            "- a",
            "a: b",
            "#x",
            "",
            " lead",
            "multi\nline\n",
            "'q'",
            "\"dq\"",
            "@at",
            "*star",
            "0x1F",
            "1.0",
        ];
        for _ in 0..200 {
            let mut data = serde_json::Map::new();
            for i in 0..(next() % 6) {
                let value = match next() % 4 {
                    0 => Value::String(tricky[(next() % tricky.len() as u64) as usize].to_owned()),
                    1 => Value::from(next() % 100_000),
                    2 => Value::Bool(next() % 2 == 0),
                    _ => Value::Array(vec![Value::String(tricky[(next() % tricky.len() as u64) as usize].to_owned()), Value::Null]),
                };
                data.insert(format!("k{i}"), value);
            }
            let objects = vec![
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": data}),
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "y"}}),
            ];
            let text = to_yaml(&objects);
            let parsed = parse_objects(&text, Path::new("round-trip")).expect("parses");
            assert_eq!(parsed, objects, "{text}");
        }
    }
}
