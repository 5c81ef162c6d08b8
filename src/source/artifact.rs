//! Artifacts: a directory tree packed as a deterministic `.tar.gz`, and the hardened unpacking
//! that consumers (the Kustomization controller) use.
//!
//! Packing follows Flux's source-controller: only regular files go in (no directory entries,
//! symlinks skipped, as Flux does), filtered by `.sourceignore` rules; headers are normalised
//! (mtime 0, uid/gid 0, no user or group names, mode 0644 or 0755) and entries sorted by path,
//! so the same tree always gives the same bytes and digest.

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

fn io_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
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

/// One source of patterns, anchored at a directory of the tree.
struct DomainMatcher {
    /// Relative to the tree root; empty for the root.
    domain: PathBuf,
    matcher: Gitignore,
}

/// Ignore rules for one tree, with Flux's precedence: later sources win (VCS patterns, then
/// the defaults, then `.sourceignore` files from the root down, then `spec.ignore`), and as in
/// Flux any `.sourceignore` file or a set `spec.ignore` replaces the defaults (but never the
/// VCS patterns). A path is matched with its parent directories, like Flux's matcher.
pub struct IgnoreRules {
    sources: Vec<DomainMatcher>,
    has_negations: bool,
}

impl IgnoreRules {
    /// Reads every `.sourceignore` under `root` and adds `spec_ignore` (the `GitRepository`'s
    /// `spec.ignore`, `None` when unset).
    pub fn load(root: &Path, spec_ignore: Option<&str>) -> Result<Self, ArtifactError> {
        let mut file_sources = Vec::new();
        collect_sourceignore_files(root, Path::new(""), &mut file_sources)?;
        let mut sources = vec![build_matcher(
            root,
            Path::new(""),
            VCS_PATTERNS.iter().copied(),
            "VCS defaults",
        )?];
        if file_sources.is_empty() && spec_ignore.is_none() {
            sources.push(build_matcher(
                root,
                Path::new(""),
                DEFAULT_PATTERNS.iter().copied(),
                "defaults",
            )?);
        }
        for (domain, content) in &file_sources {
            let origin = domain.join(SOURCE_IGNORE_FILE).display().to_string();
            sources.push(build_matcher(root, domain, content.lines(), &origin)?);
        }
        if let Some(spec) = spec_ignore {
            sources.push(build_matcher(
                root,
                Path::new(""),
                spec.lines(),
                "spec.ignore",
            )?);
        }
        let has_negations = sources.iter().any(|s| s.matcher.num_whitelists() > 0);
        Ok(IgnoreRules {
            sources,
            has_negations,
        })
    }

    /// Whether `relative` (a path inside the tree, `/`-separated components) is excluded.
    pub fn is_ignored(&self, relative: &Path, is_dir: bool) -> bool {
        for source in self.sources.iter().rev() {
            let Ok(inside) = relative.strip_prefix(&source.domain) else {
                continue;
            };
            if inside.as_os_str().is_empty() {
                continue;
            }
            match source.matcher.matched_path_or_any_parents(inside, is_dir) {
                Match::Ignore(_) => return true,
                Match::Whitelist(_) => return false,
                Match::None => {}
            }
        }
        false
    }
}

fn build_matcher<'a>(
    root: &Path,
    domain: &Path,
    lines: impl Iterator<Item = &'a str>,
    origin: &str,
) -> Result<DomainMatcher, ArtifactError> {
    let mut builder = GitignoreBuilder::new(root.join(domain));
    for line in lines {
        builder
            .add_line(None, line)
            .map_err(|e| ArtifactError::IgnorePattern {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
    }
    let matcher = builder.build().map_err(|e| ArtifactError::IgnorePattern {
        origin: origin.to_owned(),
        message: e.to_string(),
    })?;
    Ok(DomainMatcher {
        domain: domain.to_path_buf(),
        matcher,
    })
}

/// Depth-first, sorted, so that rule order (and thus precedence) is stable.
fn collect_sourceignore_files(
    root: &Path,
    relative: &Path,
    out: &mut Vec<(PathBuf, String)>,
) -> Result<(), ArtifactError> {
    let dir = root.join(relative);
    let candidate = dir.join(SOURCE_IGNORE_FILE);
    if fs::symlink_metadata(&candidate).is_ok_and(|m| m.is_file()) {
        let bytes = fs::read(&candidate).map_err(io_error("reading", &candidate))?;
        out.push((
            relative.to_path_buf(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ));
    }
    for (name, kind) in sorted_entries(&dir)? {
        if kind == EntryKind::Dir && name != ".git" {
            collect_sourceignore_files(root, &relative.join(&name), out)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File {
        executable: bool,
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
        let metadata =
            fs::symlink_metadata(entry.path()).map_err(io_error("inspecting", &entry.path()))?;
        let kind = if metadata.is_file() {
            EntryKind::File {
                executable: metadata.permissions().mode() & 0o111 != 0,
            }
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

fn collect_files(
    root: &Path,
    relative: &Path,
    rules: &IgnoreRules,
    out: &mut Vec<PackedFile>,
) -> Result<(), ArtifactError> {
    for (name, kind) in sorted_entries(&root.join(relative))? {
        let path = relative.join(&name);
        match kind {
            EntryKind::Dir => {
                // Without negations nothing under an ignored directory can come back.
                let prune =
                    name == ".git" || (!rules.has_negations && rules.is_ignored(&path, true));
                if !prune {
                    collect_files(root, &path, rules, out)?;
                }
            }
            EntryKind::File { executable } => {
                if !rules.is_ignored(&path, false) {
                    out.push(PackedFile {
                        relative: path,
                        executable,
                    });
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

/// Writes `root` as a deterministic `.tar.gz` to `out`.
pub fn pack<W: Write>(
    root: &Path,
    rules: &IgnoreRules,
    out: W,
) -> Result<PackSummary, ArtifactError> {
    let mut files = Vec::new();
    collect_files(root, Path::new(""), rules, &mut files)?;
    // Sorting by full path (not per directory) gives the same order whatever the walk did.
    files.sort_by(|a, b| {
        a.relative
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.relative.as_os_str().as_encoded_bytes())
    });

    let hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        written: 0,
    };
    let encoder = GzEncoder::new(hashing, Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for file in &files {
        let path = root.join(&file.relative);
        let handle = fs::File::open(&path).map_err(io_error("opening", &path))?;
        let size = handle
            .metadata()
            .map_err(io_error("inspecting", &path))?
            .len();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(size);
        header.set_mode(if file.executable { 0o755 } else { 0o644 });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        // A file that changes size while being read would corrupt the archive: read exactly
        // `size` bytes and fail if fewer come.
        let reader = ExactReader {
            inner: handle.take(size),
            remaining: size,
        };
        builder
            .append_data(&mut header, &file.relative, reader)
            .map_err(|source| ArtifactError::Io {
                action: "archiving",
                path: path.clone(),
                source,
            })?;
    }
    let encoder = builder.into_inner().map_err(ArtifactError::Write)?;
    let mut hashing = encoder.finish().map_err(ArtifactError::Write)?;
    hashing.flush().map_err(ArtifactError::Write)?;
    Ok(PackSummary {
        digest: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        size: hashing.written,
        files: files.len() as u64,
    })
}

/// `sha256:<hex>` of some bytes, as Flux writes artifact digests.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
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
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Bounds for [`unpack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Decompressed bytes of the whole tar stream (headers included): bounds gzip bombs.
    pub max_total_bytes: u64,
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: 512 * 1024 * 1024,
            max_entries: 100_000,
        }
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
pub fn unpack<R: Read>(
    archive: R,
    into_dir: &Path,
    limits: UnpackLimits,
) -> Result<UnpackSummary, ArtifactError> {
    fs::create_dir_all(into_dir).map_err(io_error("creating", into_dir))?;
    if fs::read_dir(into_dir)
        .map_err(io_error("reading directory", into_dir))?
        .next()
        .is_some()
    {
        return Err(ArtifactError::Io {
            action: "unpacking into non-empty directory",
            path: into_dir.to_path_buf(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "directory not empty"),
        });
    }
    let limited = LimitedReader {
        inner: GzDecoder::new(archive),
        remaining: limits.max_total_bytes,
        limit: limits.max_total_bytes,
    };
    let mut tar = tar::Archive::new(limited);
    let mut summary = UnpackSummary { files: 0, bytes: 0 };
    let mut entry_count = 0u64;
    for entry in tar.entries().map_err(map_read_error)? {
        let mut entry = entry.map_err(map_read_error)?;
        entry_count += 1;
        if entry_count > limits.max_entries {
            return Err(ArtifactError::LimitExceeded {
                what: "entries",
                limit: limits.max_entries,
            });
        }
        let raw_path = entry.path().map_err(map_read_error)?.into_owned();
        let shown = raw_path.display().to_string();
        let relative = safe_relative_path(&raw_path).ok_or(ArtifactError::UnsafeEntry {
            path: shown.clone(),
            reason: "path is absolute or leaves the target directory",
        })?;
        let entry_type = entry.header().entry_type();
        let target = into_dir.join(&relative);
        match entry_type {
            tar::EntryType::Directory => {
                if !relative.as_os_str().is_empty() {
                    create_dirs_inside(into_dir, &relative)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if relative.as_os_str().is_empty() {
                    return Err(ArtifactError::UnsafeEntry {
                        path: shown,
                        reason: "empty file name",
                    });
                }
                if let Some(parent) = relative.parent() {
                    create_dirs_inside(into_dir, parent)?;
                }
                let executable = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
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
                        ArtifactError::UnsafeEntry {
                            path: shown.clone(),
                            reason: "duplicate entry",
                        }
                    } else {
                        ArtifactError::Io {
                            action: "creating",
                            path: target.clone(),
                            source,
                        }
                    }
                })?;
                let copied = io::copy(&mut entry, &mut file).map_err(map_read_error)?;
                summary.files += 1;
                summary.bytes += copied;
            }
            // GNU/PAX metadata entries are consumed by the tar reader itself.
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(ArtifactError::UnsafeEntry {
                    path: shown,
                    reason: "links are not allowed",
                });
            }
            _ => {
                return Err(ArtifactError::UnsafeEntry {
                    path: shown,
                    reason: "only regular files and directories are allowed",
                });
            }
        }
    }
    Ok(summary)
}

fn map_read_error(error: io::Error) -> ArtifactError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<LimitHit>())
    {
        Some(hit) => ArtifactError::LimitExceeded {
            what: "decompressed bytes",
            limit: hit.0,
        },
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
fn create_dirs_inside(root: &Path, relative: &Path) -> Result<(), ArtifactError> {
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(ArtifactError::UnsafeEntry {
                    path: relative.display().to_string(),
                    reason: "a parent path exists and is not a directory",
                });
            }
            Err(_) => fs::create_dir(&current).map_err(io_error("creating", &current))?,
        }
    }
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
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
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
                (
                    e.path().unwrap().display().to_string(),
                    h.mode().unwrap(),
                    e.size(),
                )
            })
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferroflux-artifact-{name}-{}", std::process::id()));
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
        assert_eq!(
            listing(&first),
            vec![
                ("a.yaml".to_owned(), 0o644, 2),
                ("b/deploy.yaml".to_owned(), 0o644, 8),
                ("run.sh".to_owned(), 0o755, 10),
            ]
        );
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
        let names = |archive: &[u8]| {
            listing(archive)
                .into_iter()
                .map(|e| e.0)
                .collect::<Vec<_>>()
        };
        let (with_file, _) = pack_to_vec(&root, None);
        // The .sourceignore replaced the defaults (png kept) and is scoped to apps/.
        assert_eq!(
            names(&with_file),
            vec![
                "apps/.sourceignore",
                "apps/important.tmp",
                "keep.png",
                "x.tmp"
            ]
        );
        // spec.ignore has the last word, as in Flux (go-git's matcher): re-including apps/
        // also re-includes what apps/.sourceignore excluded.
        let (with_spec, _) = pack_to_vec(&root, Some("/*\n!/apps/\n"));
        assert_eq!(
            names(&with_spec),
            vec!["apps/.sourceignore", "apps/important.tmp", "apps/x.tmp"]
        );
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
        assert_eq!(
            fs::read_to_string(target.join("a/b/c.yaml")).unwrap(),
            "deep\n"
        );
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&target).unwrap();
    }

    #[test]
    fn unpack_refuses_hostile_archives() {
        let absolute = std::env::temp_dir()
            .join(format!("ferroflux-absolute-{}.txt", std::process::id()))
            .display()
            .to_string();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "dotdot",
                tar_gz(&[("../escape.txt", tar::EntryType::Regular, b"x", None)]),
            ),
            (
                "nested dotdot",
                tar_gz(&[("a/../../escape.txt", tar::EntryType::Regular, b"x", None)]),
            ),
            (
                "absolute",
                tar_gz(&[(absolute.as_str(), tar::EntryType::Regular, b"x", None)]),
            ),
            (
                "symlink",
                tar_gz(&[("link", tar::EntryType::Symlink, b"", Some("/etc"))]),
            ),
            (
                "hardlink",
                tar_gz(&[("hard", tar::EntryType::Link, b"", Some("/etc/passwd"))]),
            ),
            ("fifo", tar_gz(&[("fifo", tar::EntryType::Fifo, b"", None)])),
            (
                "duplicate",
                tar_gz(&[
                    ("a.txt", tar::EntryType::Regular, b"1", None),
                    ("a.txt", tar::EntryType::Regular, b"2", None),
                ]),
            ),
            (
                "file then dir",
                tar_gz(&[
                    ("a", tar::EntryType::Regular, b"1", None),
                    ("a/b", tar::EntryType::Regular, b"2", None),
                ]),
            ),
        ];
        for (name, archive) in cases {
            let target = scratch("hostile");
            let result = unpack(archive.as_slice(), &target, UnpackLimits::default());
            assert!(
                matches!(result, Err(ArtifactError::UnsafeEntry { .. })),
                "{name}: {result:?}"
            );
            assert!(
                !target.parent().unwrap().join("escape.txt").exists(),
                "{name}"
            );
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
        let limits = UnpackLimits {
            max_total_bytes: 1024 * 1024,
            max_entries: 10,
        };
        let result = unpack(bomb.as_slice(), &target, limits);
        assert!(
            matches!(result, Err(ArtifactError::LimitExceeded { .. })),
            "{result:?}"
        );
        fs::remove_dir_all(&target).unwrap();

        let many: Vec<(String, tar::EntryType, &[u8], Option<&str>)> = (0..20)
            .map(|i| {
                (
                    format!("f{i}"),
                    tar::EntryType::Regular,
                    b"x" as &[u8],
                    None,
                )
            })
            .collect();
        let many_refs: Vec<_> = many
            .iter()
            .map(|(p, k, d, l)| (p.as_str(), *k, *d, *l))
            .collect();
        let target = scratch("many");
        let result = unpack(tar_gz(&many_refs).as_slice(), &target, limits);
        assert!(
            matches!(
                result,
                Err(ArtifactError::LimitExceeded {
                    what: "entries",
                    ..
                })
            ),
            "{result:?}"
        );
        fs::remove_dir_all(&target).unwrap();
    }
}
