//! Reading what a build may read: kustomization files, the files they name, remote bases;
//! nothing outside the build root, and with kustomize's default restrictions nothing outside a
//! kustomization's own folder. A missing path is judged like an existing one, so errors never
//! tell whether a file outside the root exists.

use std::path::{Path, PathBuf};

use super::{Builder, Error, Kustomization, file, metadata, remote, yaml};

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

/// Whether `dir` has a kustomization file.
pub fn has_kustomization(dir: &Path) -> bool {
    file::FILE_NAMES.iter().any(|n| dir.join(n).is_file())
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
pub(super) enum Entry {
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
    pub(super) fn load(&self, dir: &Path) -> Result<(PathBuf, Kustomization), Error> {
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
    pub(super) fn locate(&self, path: &Path) -> Result<Option<PathBuf>, Error> {
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

    /// The canonical path, refused when it leaves the root (through `..` or a symlink).
    pub(super) fn inside_root(&self, path: &Path) -> Result<PathBuf, Error> {
        let canonical = path.canonicalize().map_err(|source| Error::Io { path: path.to_owned(), source })?;
        if canonical.starts_with(&self.root) { Ok(canonical) } else { Err(Error::PathEscape { path: path.to_owned(), root: self.root.clone() }) }
    }

    /// A file a kustomization in `dir` may read: inside the root and, with kustomize's default
    /// restrictions, in or below `dir`.
    pub(super) fn file_inside(&self, dir: &Path, path: &Path) -> Result<PathBuf, Error> {
        let canonical = self.inside_root(path)?;
        if self.restrictions == LoadRestrictions::KustomizationFolder && !canonical.starts_with(dir) {
            return Err(Error::PathEscape { path: canonical, root: dir.to_owned() });
        }
        Ok(canonical)
    }

    /// A file named in a kustomization, relative to its directory.
    pub(super) fn read(&self, dir: &Path, relative: &str) -> Result<(PathBuf, Vec<u8>), Error> {
        let path = self.locate(&dir.join(relative))?.ok_or_else(|| Error::MissingResource { entry: relative.to_owned(), dir: dir.to_owned() })?;
        let path = self.file_inside(dir, &path)?;
        let bytes = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
        Ok((path, bytes))
    }

    /// `bytes` of `path` as the build's [`FileFilter`] (if any) returns them.
    pub(super) fn filtered(&self, path: &Path, usage: FileUse<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, Error> {
        match self.file_filter {
            Some(filter) => filter.filter(path, usage, bytes).map_err(|message| Error::Filter { file: path.to_owned(), message }),
            None => Ok(bytes),
        }
    }

    pub(super) fn read_text(&self, dir: &Path, relative: &str) -> Result<(PathBuf, String), Error> {
        let (path, bytes) = self.read(dir, relative)?;
        let text = String::from_utf8(bytes).map_err(|_| Error::Yaml { file: path.clone(), message: "the file is not UTF-8".into() })?;
        Ok((path, text))
    }

    /// What a `resources` or `components` entry of the kustomization in `dir` names: a local
    /// file or folder (inside the root), else a remote base.
    pub(super) fn entry(&self, dir: &Path, entry: &str) -> Result<Entry, Error> {
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
    pub(super) fn remote_spec(&self, entry: &str) -> Result<Option<remote::RepoSpec>, Error> {
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
    pub(super) fn with_remote<T>(
        &mut self,
        spec: &remote::RepoSpec,
        entry: &str,
        build: impl FnOnce(&mut Self, &Path) -> Result<T, Error>,
    ) -> Result<T, Error> {
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
}
