//! Artifacts: a directory tree packed as a deterministic `.tar.gz`, and the hardened unpacking
//! that consumers (the Kustomization controller) use.
//!
//! Packing follows Flux's source-controller: only regular files go in (no directory entries,
//! symlinks skipped, as Flux does), filtered by `.sourceignore` rules; headers are normalised
//! (mtime 0, uid/gid 0, no user or group names, mode 0644 or 0755) and entries sorted by path,
//! so the same tree always gives the same bytes and digest.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid ignore pattern in {origin}: {message}")]
    IgnorePattern { origin: String, message: String },
    #[error("writing archive: {0}")]
    Write(#[source] io::Error),
    #[error("reading archive: {0}")]
    Read(#[source] io::Error),
    #[error("archive entry '{path}' refused: {reason}")]
    UnsafeEntry { path: String, reason: &'static str },
    #[error("archive exceeds the limit of {limit} {what}")]
    LimitExceeded { what: &'static str, limit: u64 },
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io { action, path: path.to_path_buf(), source }
}

/// The name of the per-directory ignore file.
pub const SOURCE_IGNORE_FILE: &str = ".sourceignore";

/// Always excluded (Flux's `sourceignore.ExcludeVCS`).
pub const VCS_PATTERNS: &[&str] = &[".git/", ".gitignore", ".gitmodules", ".gitattributes"];

/// Excluded only when the tree has no `.sourceignore` and `spec.ignore` is unset (Flux's
/// `ExcludeExt`, `ExcludeCI` and `ExcludeExtra`).
pub const DEFAULT_PATTERNS: &[&str] = &[
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// Ignore rules for one tree, with Flux's precedence: later sources win (VCS patterns, then
/// the defaults, then `.sourceignore` files from the root down, then `spec.ignore`), and as in
/// Flux any `.sourceignore` file or a set `spec.ignore` replaces the defaults (but never the
/// VCS patterns). A path is matched with its parent directories, like Flux's matcher.
///
/// Only the `.sourceignore` files of a path's own folders can apply to it, so they are found by
/// folder (one lookup per level) rather than tried one after another: a tree with a
/// `.sourceignore` in each of 10,000 folders would otherwise cost files × folders matches.
pub struct IgnoreRules {
    /// VCS patterns, then the defaults when they apply; anchored at the root.
    base: Vec<Gitignore>,
    /// `.sourceignore` files by the folder (relative to the root) that holds them.
    by_folder: HashMap<PathBuf, Gitignore>,
    spec: Option<Gitignore>,
    has_negations: bool,
}

impl IgnoreRules {
    /// Reads every `.sourceignore` under `root` and adds `spec_ignore` (the `GitRepository`'s
    /// `spec.ignore`, `None` when unset).
    pub fn load(root: &Path, spec_ignore: Option<&str>) -> Result<Self, ArtifactError> {
        let mut file_sources = Vec::new();
        collect_sourceignore_files(root, Path::new(""), 0, &mut file_sources)?;
        let mut base = vec![build_matcher(root, Path::new(""), VCS_PATTERNS.iter().copied(), "VCS defaults")?];
        if file_sources.is_empty() && spec_ignore.is_none() {
            base.push(build_matcher(root, Path::new(""), DEFAULT_PATTERNS.iter().copied(), "defaults")?);
        }
        let mut by_folder = HashMap::new();
        for (folder, content) in &file_sources {
            let origin = folder.join(SOURCE_IGNORE_FILE).display().to_string();
            let matcher = build_matcher(root, folder, content.lines(), &origin)?;
            by_folder.insert(folder.clone(), matcher);
        }
        let spec = spec_ignore.map(|spec| build_matcher(root, Path::new(""), spec.lines(), "spec.ignore")).transpose()?;
        let has_negations = base.iter().chain(by_folder.values()).chain(spec.iter()).any(|m| m.num_whitelists() > 0);
        Ok(IgnoreRules { base, by_folder, spec, has_negations })
    }

    /// Whether `relative` (a path inside the tree, `/`-separated components) is excluded.
    pub fn is_ignored(&self, relative: &Path, is_dir: bool) -> bool {
        if relative.as_os_str().is_empty() {
            return false;
        }
        let verdict = |matcher: &Gitignore, inside: &Path| match matcher.matched_path_or_any_parents(inside, is_dir) {
            Match::Ignore(_) => Some(true),
            Match::Whitelist(_) => Some(false),
            Match::None => None,
        };
        if let Some(verdict) = self.spec.as_ref().and_then(|m| verdict(m, relative)) {
            return verdict;
        }
        // The deepest folder's `.sourceignore` first: it came last in Flux's order.
        for folder in relative.ancestors().skip(1) {
            let Some(matcher) = self.by_folder.get(folder) else {
                continue;
            };
            let Ok(inside) = relative.strip_prefix(folder) else {
                continue;
            };
            if let Some(verdict) = verdict(matcher, inside) {
                return verdict;
            }
        }
        self.base.iter().rev().find_map(|m| verdict(m, relative)).unwrap_or(false)
    }
}

fn build_matcher<'a>(root: &Path, domain: &Path, lines: impl Iterator<Item = &'a str>, origin: &str) -> Result<Gitignore, ArtifactError> {
    let mut builder = GitignoreBuilder::new(root.join(domain));
    for line in lines {
        builder.add_line(None, line).map_err(|e| ArtifactError::IgnorePattern { origin: origin.to_owned(), message: e.to_string() })?;
    }
    builder.build().map_err(|e| ArtifactError::IgnorePattern { origin: origin.to_owned(), message: e.to_string() })
}

/// Depth-first, sorted, so that rule order (and thus precedence) is stable.
fn collect_sourceignore_files(root: &Path, relative: &Path, depth: usize, out: &mut Vec<(PathBuf, String)>) -> Result<(), ArtifactError> {
    // The packer refuses such trees anyway; this keeps the walk's recursion bounded.
    if depth > TreeLimits::default().max_depth {
        return Err(ArtifactError::LimitExceeded { what: "folder levels", limit: TreeLimits::default().max_depth as u64 });
    }
    let dir = root.join(relative);
    let candidate = dir.join(SOURCE_IGNORE_FILE);
    if fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_file()) {
        let bytes = fs::read(&candidate).map_err(io_error("reading", &candidate))?;
        out.push((relative.to_path_buf(), String::from_utf8_lossy(&bytes).into_owned()));
    }
    for (name, kind) in sorted_entries(&dir)? {
        if kind == EntryKind::Dir && name != ".git" {
            collect_sourceignore_files(root, &relative.join(&name), depth + 1, out)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File {
        executable: bool,
        size: u64,
    },
    Dir,
    /// Symlinks, sockets, devices: never archived.
    Other,
}

/// Entries of a directory sorted by name bytes, without following symlinks.
fn sorted_entries(dir: &Path) -> Result<Vec<(std::ffi::OsString, EntryKind)>, ArtifactError> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error("reading directory", dir))? {
        let entry = entry.map_err(io_error("reading directory", dir))?;
        let metadata = fs::symlink_metadata(entry.path()).map_err(io_error("inspecting", &entry.path()))?;
        let kind = if metadata.is_file() {
            EntryKind::File { executable: metadata.permissions().mode() & 0o111 != 0, size: metadata.len() }
        } else if metadata.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::Other
        };
        entries.push((entry.file_name(), kind));
    }
    entries.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(entries)
}

/// A file that will go into the archive.
struct PackedFile {
    relative: PathBuf,
    executable: bool,
}

/// What [`collect_files`] has gathered so far, against the limits.
struct Collected<'a> {
    files: Vec<PackedFile>,
    entries: u64,
    bytes: u64,
    limits: &'a TreeLimits,
}

impl Collected<'_> {
    fn count(&mut self, relative: &Path, size: u64) -> Result<(), ArtifactError> {
        let limits = self.limits;
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        let exceeded = |what: &'static str, limit: u64| Err(ArtifactError::LimitExceeded { what, limit });
        if self.entries > limits.max_entries {
            return exceeded("files and folders", limits.max_entries);
        }
        if relative.components().count() > limits.max_depth {
            return exceeded("folder levels", limits.max_depth as u64);
        }
        if size > limits.max_file_bytes {
            return exceeded("bytes in one file", limits.max_file_bytes);
        }
        if self.bytes > limits.max_total_bytes {
            return exceeded("bytes in all files", limits.max_total_bytes);
        }
        Ok(())
    }
}

fn collect_files(root: &Path, relative: &Path, rules: &IgnoreRules, out: &mut Collected<'_>) -> Result<(), ArtifactError> {
    for (name, kind) in sorted_entries(&root.join(relative))? {
        let path = relative.join(&name);
        match kind {
            EntryKind::Dir => {
                // Without negations nothing under an ignored directory can come back.
                let prune = name == ".git" || (!rules.has_negations && rules.is_ignored(&path, true));
                if !prune {
                    out.count(&path, 0)?;
                    collect_files(root, &path, rules, out)?;
                }
            }
            EntryKind::File { executable, size } => {
                if !rules.is_ignored(&path, false) {
                    out.count(&path, size)?;
                    out.files.push(PackedFile { relative: path, executable });
                }
            }
            EntryKind::Other => {}
        }
    }
    Ok(())
}

/// What [`pack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackSummary {
    /// `sha256:<hex>` of the compressed archive.
    pub digest: String,
    /// Bytes of the compressed archive.
    pub size: u64,
    pub files: u64,
}

/// Writes `root` as a deterministic `.tar.gz` to `out`, within the default [`TreeLimits`].
pub fn pack<W: Write>(root: &Path, rules: &IgnoreRules, out: W) -> Result<PackSummary, ArtifactError> {
    pack_within(root, rules, &TreeLimits::default(), out)
}

/// [`pack`] with other limits: a tree beyond them is refused before anything is written (what
/// is packed can always be unpacked with the same limits).
pub fn pack_within<W: Write>(root: &Path, rules: &IgnoreRules, limits: &TreeLimits, out: W) -> Result<PackSummary, ArtifactError> {
    let mut collected = Collected { files: Vec::new(), entries: 0, bytes: 0, limits };
    collect_files(root, Path::new(""), rules, &mut collected)?;
    let mut files = collected.files;
    // Sorting by full path (not per directory) gives the same order whatever the walk did.
    files.sort_by(|a, b| a.relative.as_os_str().as_encoded_bytes().cmp(b.relative.as_os_str().as_encoded_bytes()));

    let hashing = HashingWriter::new(out);
    let encoder = GzEncoder::new(hashing, Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for file in &files {
        let path = root.join(&file.relative);
        let handle = fs::File::open(&path).map_err(io_error("opening", &path))?;
        let size = handle.metadata().map_err(io_error("inspecting", &path))?.len();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        // A file that changes size while being read would corrupt the archive: read exactly
        // `size` bytes and fail if fewer come.
        let reader = ExactReader { inner: handle.take(size), remaining: size };
        builder.append_data(&mut header, &file.relative, reader).map_err(|source| ArtifactError::Io { action: "archiving", path: path.clone(), source })?;
    }
    let encoder = builder.into_inner().map_err(ArtifactError::Write)?;
    let mut hashing = encoder.finish().map_err(ArtifactError::Write)?;
    hashing.flush().map_err(ArtifactError::Write)?;
    Ok(PackSummary { digest: hashing.digest(), size: hashing.written, files: files.len() as u64 })
}

/// `sha256:<hex>` of some bytes, as Flux writes artifact digests.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Writes through to `inner`, hashing (Flux's `sha256:<hex>`) and counting what was written.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    pub(crate) written: u64,
}

impl<W> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), written: 0 }
    }

    /// `sha256:<hex>` of everything written so far.
    pub(crate) fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being archived"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Bounds on a tree: what the packer packs, the unpacker unpacks and a Git checkout writes.
/// Every byte of an artifact comes from a Git author, and the controller is shared: a tree
/// beyond these fails cleanly instead of filling the disk or the memory of every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLimits {
    /// Files and folders.
    pub max_entries: u64,
    /// The bytes of all files. [`unpack`] also bounds the decompressed tar stream (gzip bombs)
    /// by this plus [`TAR_OVERHEAD_PER_ENTRY`] per entry.
    pub max_total_bytes: u64,
    pub max_file_bytes: u64,
    /// Folder levels below the root (`a/b/c.yaml` is 3).
    pub max_depth: usize,
}

/// What a tar stream may hold beyond file contents, per entry: its header, padding, and long
/// names (GNU or PAX records).
pub const TAR_OVERHEAD_PER_ENTRY: u64 = 8 * 1024;

/// The limits of [`unpack`] are the tree's.
pub type UnpackLimits = TreeLimits;

impl Default for TreeLimits {
    fn default() -> Self {
        TreeLimits { max_entries: 100_000, max_total_bytes: 512 * 1024 * 1024, max_file_bytes: 128 * 1024 * 1024, max_depth: 64 }
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackSummary {
    pub files: u64,
    pub bytes: u64,
}

/// Unpacks a `.tar.gz` into `into_dir` (created if absent, must be empty so that nothing in it,
/// such as a planted symlink, can redirect writes). Refuses, before writing anything for that
/// entry: absolute paths, `..` components, links (symbolic and hard), device and FIFO entries,
/// duplicate paths, and archives beyond `limits`. On error the directory may hold a partial
/// tree: the caller discards it.
pub fn unpack<R: Read>(archive: R, into_dir: &Path, limits: UnpackLimits) -> Result<UnpackSummary, ArtifactError> {
    fs::create_dir_all(into_dir).map_err(io_error("creating", into_dir))?;
    if fs::read_dir(into_dir).map_err(io_error("reading directory", into_dir))?.next().is_some() {
        return Err(ArtifactError::Io {
            action: "unpacking into non-empty directory",
            path: into_dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "directory not empty"),
        });
    }
    let stream_limit = limits.max_total_bytes.saturating_add(limits.max_entries.saturating_mul(TAR_OVERHEAD_PER_ENTRY));
    let limited = LimitedReader { inner: GzDecoder::new(archive), remaining: stream_limit, limit: stream_limit };
    let mut tar = tar::Archive::new(limited);
    let mut summary = UnpackSummary { files: 0, bytes: 0 };
    let mut entry_count = 0u64;
    // Folders this unpack created: checked once, not again for every file in them.
    let mut known_dirs: HashSet<PathBuf> = HashSet::new();
    for entry in tar.entries().map_err(map_read_error)? {
        let mut entry = entry.map_err(map_read_error)?;
        entry_count += 1;
        if entry_count > limits.max_entries {
            return Err(ArtifactError::LimitExceeded { what: "entries", limit: limits.max_entries });
        }
        let raw_path = entry.path().map_err(map_read_error)?.into_owned();
        let shown = raw_path.display().to_string();
        let relative = safe_relative_path(&raw_path)
            .ok_or(ArtifactError::UnsafeEntry { path: shown.clone(), reason: "path is absolute or leaves the target directory" })?;
        if relative.components().count() > limits.max_depth {
            return Err(ArtifactError::LimitExceeded { what: "folder levels", limit: limits.max_depth as u64 });
        }
        // The header's size is checked before a byte is written; the copy below is bounded by
        // it (the tar reader never yields more than an entry's size).
        if entry.size() > limits.max_file_bytes {
            return Err(ArtifactError::LimitExceeded { what: "bytes in one file", limit: limits.max_file_bytes });
        }
        if summary.bytes.saturating_add(entry.size()) > limits.max_total_bytes {
            return Err(ArtifactError::LimitExceeded { what: "bytes in all files", limit: limits.max_total_bytes });
        }
        let entry_type = entry.header().entry_type();
        let target = into_dir.join(&relative);
        match entry_type {
            tar::EntryType::Directory => {
                if !relative.as_os_str().is_empty() {
                    create_dirs_inside(into_dir, &relative, &mut known_dirs)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if relative.as_os_str().is_empty() {
                    return Err(ArtifactError::UnsafeEntry { path: shown, reason: "empty file name" });
                }
                if let Some(parent) = relative.parent() {
                    create_dirs_inside(into_dir, parent, &mut known_dirs)?;
                }
                let executable = entry.header().mode().map(|m| m & 0o111 != 0).unwrap_or(false);
                let mut options = fs::OpenOptions::new();
                // create_new is O_CREAT|O_EXCL, which also refuses to follow a symlink at the
                // last component.
                options.write(true).create_new(true);
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(if executable { 0o755 } else { 0o644 });
                }
                let mut file = options.open(&target).map_err(|source| {
                    if source.kind() == io::ErrorKind::AlreadyExists {
                        ArtifactError::UnsafeEntry { path: shown.clone(), reason: "duplicate entry" }
                    } else {
                        ArtifactError::Io { action: "creating", path: target.clone(), source }
                    }
                })?;
                let copied = io::copy(&mut entry, &mut file).map_err(map_read_error)?;
                summary.files += 1;
                summary.bytes += copied;
            }
            // GNU/PAX metadata entries are consumed by the tar reader itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(ArtifactError::UnsafeEntry { path: shown, reason: "links are not allowed" });
            }
            _ => {
                return Err(ArtifactError::UnsafeEntry { path: shown, reason: "only regular files and directories are allowed" });
            }
        }
    }
    Ok(summary)
}

fn map_read_error(error: io::Error) -> ArtifactError {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<LimitHit>()) {
        Some(hit) => ArtifactError::LimitExceeded { what: "decompressed bytes", limit: hit.0 },
        None => ArtifactError::Read(error),
    }
}

/// Keeps only normal components; `None` for anything absolute or with `..`.
fn safe_relative_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Creates `relative`'s directories under `root`, refusing to pass through anything that is
/// not a real directory (a symlink could point outside).
fn create_dirs_inside(root: &Path, relative: &Path, known_dirs: &mut HashSet<PathBuf>) -> Result<(), ArtifactError> {
    if relative.as_os_str().is_empty() || known_dirs.contains(relative) {
        return Ok(());
    }
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(ArtifactError::UnsafeEntry { path: relative.display().to_string(), reason: "a parent path exists and is not a directory" });
            }
            Err(_) => fs::create_dir(&current).map_err(io_error("creating", &current))?,
        }
    }
    known_dirs.insert(relative.to_path_buf());
    Ok(())
}

#[derive(Debug)]
struct LimitHit(u64);

impl std::fmt::Display for LimitHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "archive exceeds {} decompressed bytes", self.0)
    }
}

impl std::error::Error for LimitHit {}

struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One probe byte tells a stream that ends exactly at the limit from a longer one.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(LimitHit(self.limit))),
            };
        }
        let max = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn write(root: &Path, relative: &str, content: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    fn listing(archive: &[u8]) -> Vec<(String, u32, u64)> {
        let mut tar = tar::Archive::new(GzDecoder::new(archive));
        tar.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                assert_eq!(h.mtime().unwrap(), 0);
                assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
                assert_eq!(h.username().unwrap(), Some(""));
                (e.path().unwrap().display().to_string(), h.mode().unwrap(), e.size())
            })
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ferroflux-artifact-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pack_to_vec(root: &Path, spec: Option<&str>) -> (Vec<u8>, PackSummary) {
        let rules = IgnoreRules::load(root, spec).unwrap();
        let mut out = Vec::new();
        let summary = pack(root, &rules, &mut out).unwrap();
        (out, summary)
    }

    #[test]
    fn default_rules_and_determinism() {
        let root = scratch("defaults");
        write(&root, "b/deploy.yaml", "kind: x\n");
        write(&root, "a.yaml", "a\n");
        write(&root, "run.sh", "#!/bin/sh\n");
        fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(0o700)).unwrap();
        write(&root, ".git/HEAD", "ref\n");
        write(&root, ".github/workflows/ci.yml", "x");
        write(&root, "logo.png", "x");
        write(&root, "sub/.sops.yaml", "x");
        write(&root, ".gitignore", "x");
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let (first, summary) = pack_to_vec(&root, None);
        assert_eq!(listing(&first), vec![("a.yaml".to_owned(), 0o644, 2), ("b/deploy.yaml".to_owned(), 0o644, 8), ("run.sh".to_owned(), 0o755, 10),]);
        assert_eq!(summary.size, first.len() as u64);
        assert_eq!(summary.digest, sha256_digest(&first));
        // Same tree, different mtimes and creation order: same bytes.
        let other = scratch("defaults-again");
        write(&other, "run.sh", "#!/bin/sh\n");
        fs::set_permissions(other.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        write(&other, "a.yaml", "a\n");
        write(&other, "b/deploy.yaml", "kind: x\n");
        let (second, again) = pack_to_vec(&other, None);
        assert_eq!(first, second);
        assert_eq!(summary.digest, again.digest);
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }

    #[test]
    fn sourceignore_and_spec_ignore_replace_defaults() {
        let root = scratch("sourceignore");
        write(&root, "keep.png", "x");
        write(&root, "apps/.sourceignore", "*.tmp\n!important.tmp\n");
        write(&root, "apps/x.tmp", "x");
        write(&root, "apps/important.tmp", "x");
        write(&root, "x.tmp", "x");
        write(&root, ".gitmodules", "x");
        let names = |archive: &[u8]| listing(archive).into_iter().map(|e| e.0).collect::<Vec<_>>();
        let (with_file, _) = pack_to_vec(&root, None);
        // The .sourceignore replaced the defaults (png kept) and is scoped to apps/.
        assert_eq!(names(&with_file), vec!["apps/.sourceignore", "apps/important.tmp", "keep.png", "x.tmp"]);
        // spec.ignore has the last word, as in Flux (go-git's matcher): re-including apps/
        // also re-includes what apps/.sourceignore excluded.
        let (with_spec, _) = pack_to_vec(&root, Some("/*\n!/apps/\n"));
        assert_eq!(names(&with_spec), vec!["apps/.sourceignore", "apps/important.tmp", "apps/x.tmp"]);
        fs::remove_dir_all(&root).unwrap();
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (path, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            // Write the raw name so hostile paths survive (the builder would refuse them).
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn unpack_round_trip() {
        let root = scratch("roundtrip-src");
        write(&root, "a/b/c.yaml", "deep\n");
        write(&root, "top.yaml", "top\n");
        let (archive, _) = pack_to_vec(&root, None);
        let target = scratch("roundtrip-dst");
        let summary = unpack(archive.as_slice(), &target, UnpackLimits::default()).unwrap();
        assert_eq!(summary, UnpackSummary { files: 2, bytes: 9 });
        assert_eq!(fs::read_to_string(target.join("a/b/c.yaml")).unwrap(), "deep\n");
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&target).unwrap();
    }

    #[test]
    fn unpack_refuses_hostile_archives() {
        let absolute = std::env::temp_dir().join(format!("ferroflux-absolute-{}.txt", std::process::id())).display().to_string();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("dotdot", tar_gz(&[("../escape.txt", tar::EntryType::Regular, b"x", None)])),
            ("nested dotdot", tar_gz(&[("a/../../escape.txt", tar::EntryType::Regular, b"x", None)])),
            ("absolute", tar_gz(&[(absolute.as_str(), tar::EntryType::Regular, b"x", None)])),
            ("symlink", tar_gz(&[("link", tar::EntryType::Symlink, b"", Some("/etc"))])),
            ("hardlink", tar_gz(&[("hard", tar::EntryType::Link, b"", Some("/etc/passwd"))])),
            ("fifo", tar_gz(&[("fifo", tar::EntryType::Fifo, b"", None)])),
            ("duplicate", tar_gz(&[("a.txt", tar::EntryType::Regular, b"1", None), ("a.txt", tar::EntryType::Regular, b"2", None)])),
            ("file then dir", tar_gz(&[("a", tar::EntryType::Regular, b"1", None), ("a/b", tar::EntryType::Regular, b"2", None)])),
        ];
        for (name, archive) in cases {
            let target = scratch("hostile");
            let result = unpack(archive.as_slice(), &target, UnpackLimits::default());
            assert!(matches!(result, Err(ArtifactError::UnsafeEntry { .. })), "{name}: {result:?}");
            assert!(!target.parent().unwrap().join("escape.txt").exists(), "{name}");
            fs::remove_dir_all(&target).unwrap();
        }
        assert!(!Path::new(&absolute).exists());
    }

    #[test]
    fn unpack_enforces_limits() {
        // 10 MiB of zeros compress to a few KiB: a small bomb.
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let bomb = tar_gz(&[("zeros", tar::EntryType::Regular, &zeros, None)]);
        assert!(bomb.len() < 100 * 1024);
        let target = scratch("bomb");
        let limits = UnpackLimits { max_total_bytes: 1024 * 1024, max_entries: 10, ..TreeLimits::default() };
        let result = unpack(bomb.as_slice(), &target, limits);
        assert!(matches!(result, Err(ArtifactError::LimitExceeded { .. })), "{result:?}");
        fs::remove_dir_all(&target).unwrap();

        let many: Vec<(String, tar::EntryType, &[u8], Option<&str>)> =
            (0..20).map(|i| (format!("f{i}"), tar::EntryType::Regular, b"x" as &[u8], None)).collect();
        let many_refs: Vec<_> = many.iter().map(|(p, k, d, l)| (p.as_str(), *k, *d, *l)).collect();
        let target = scratch("many");
        let result = unpack(tar_gz(&many_refs).as_slice(), &target, limits);
        assert!(matches!(result, Err(ArtifactError::LimitExceeded { what: "entries", .. })), "{result:?}");
        fs::remove_dir_all(&target).unwrap();
    }

    #[test]
    fn unpack_refuses_big_files_and_deep_trees_before_writing() {
        let limits = TreeLimits { max_file_bytes: 1000, max_depth: 3, ..TreeLimits::default() };
        let big = vec![b'x'; 1001];
        let target = scratch("big-file");
        let result = unpack(tar_gz(&[("big", tar::EntryType::Regular, &big, None)]).as_slice(), &target, limits);
        assert!(matches!(result, Err(ArtifactError::LimitExceeded { what: "bytes in one file", .. })), "{result:?}");
        assert!(!target.join("big").exists(), "nothing is written for a refused entry");
        fs::remove_dir_all(&target).unwrap();

        let target = scratch("deep");
        let result = unpack(tar_gz(&[("a/b/c/d.yaml", tar::EntryType::Regular, b"x", None)]).as_slice(), &target, limits);
        assert!(matches!(result, Err(ArtifactError::LimitExceeded { what: "folder levels", .. })), "{result:?}");
        assert!(!target.join("a").exists());
        fs::remove_dir_all(&target).unwrap();
    }

    #[test]
    fn pack_enforces_limits_and_what_it_packs_unpacks() {
        let root = scratch("pack-limits");
        write(&root, "a/b/c.yaml", "c");
        write(&root, "big.yaml", &"x".repeat(2000));
        let rules = IgnoreRules::load(&root, None).unwrap();
        let limit = |limits: TreeLimits| pack_within(&root, &rules, &limits, io::sink());
        let base = TreeLimits::default();
        for (limits, what) in [
            (TreeLimits { max_entries: 3, ..base }, "files and folders"),
            (TreeLimits { max_depth: 2, ..base }, "folder levels"),
            (TreeLimits { max_file_bytes: 1999, ..base }, "bytes in one file"),
            (TreeLimits { max_total_bytes: 2000, ..base }, "bytes in all files"),
        ] {
            let result = limit(limits);
            assert!(matches!(&result, Err(ArtifactError::LimitExceeded { what: w, .. }) if *w == what), "{what}: {result:?}");
        }
        let exact = TreeLimits { max_entries: 4, max_depth: 3, max_file_bytes: 2000, max_total_bytes: 2001 };
        let mut archive = Vec::new();
        pack_within(&root, &rules, &exact, &mut archive).unwrap();
        let target = scratch("pack-limits-out");
        unpack(archive.as_slice(), &target, exact).unwrap_or_else(|e| panic!("{e}"));
        fs::remove_dir_all(&target).unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    /// A `.sourceignore` in each of many folders: each file is matched against its own
    /// folders' rules only (this took files × folders matches before).
    #[test]
    fn many_sourceignore_files_stay_linear() {
        let root = scratch("many-ignores");
        for i in 0..2000 {
            write(&root, &format!("d{i}/.sourceignore"), "*.tmp\n");
            write(&root, &format!("d{i}/keep.yaml"), "k");
            write(&root, &format!("d{i}/drop.tmp"), "t");
        }
        write(&root, "sub/.sourceignore", "!*.tmp\n");
        write(&root, "sub/inner/.sourceignore", "*.tmp\n");
        write(&root, "sub/x.tmp", "x");
        write(&root, "sub/inner/y.tmp", "y");
        let rules = IgnoreRules::load(&root, Some("d1999/\n")).unwrap();
        let (archive, summary) = pack_to_vec(&root, Some("d1999/\n"));
        let names: Vec<String> = listing(&archive).into_iter().map(|e| e.0).collect();
        assert!(names.contains(&"d0/keep.yaml".to_owned()));
        assert!(!names.contains(&"d0/drop.tmp".to_owned()));
        assert!(!names.iter().any(|n| n.starts_with("d1999/")), "spec.ignore wins");
        assert!(names.contains(&"sub/x.tmp".to_owned()), "a negation in its folder");
        assert!(!names.contains(&"sub/inner/y.tmp".to_owned()), "the deeper file wins");
        assert!(rules.is_ignored(Path::new("d5/drop.tmp"), false));
        assert_eq!(summary.files as usize, names.len());
        fs::remove_dir_all(&root).unwrap();
    }
}
