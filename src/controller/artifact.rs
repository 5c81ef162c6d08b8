//! Source artifacts on the Kustomization side, by digest: taken from this process's own storage
//! when the source controller runs in it (no HTTP hop to our own Service, which a cluster without
//! hairpin routing cannot make at all), else downloaded from the source's `status.artifact.url`
//! (Flux's source-controller); either way checked against the digest and unpacked safely, so N
//! Kustomizations on one revision read and unpack it once.
//!
//! A build reads a folder for as long as it holds the [`ArtifactTree`] it got: such folders are
//! pinned and never evicted; the others are evicted least recently used first. Folders appear by
//! an atomic rename of a complete unpack and leave by a rename before their deletion, so no build
//! ever sees a partial tree.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::api::meta::Artifact;
use crate::source::artifact::UnpackLimits;

/// The largest artifact accepted, compressed.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;
/// How many unpacked revisions stay cached (beyond those in use).
const KEEP_REVISIONS: usize = 16;
/// Connecting to the artifact server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Between two reads of the response: a server that stops sending is given up on.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// A whole download, however steadily the server sends.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("unsupported artifact digest {0:?}: expected sha256:<hex>")]
    Digest(String),
    #[error("failed to download artifact from {url}: {message}")]
    Download { url: String, message: String },
    #[error("artifact from {url} is larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    #[error("failed to verify artifact: computed digest {computed} does not match {expected}")]
    DigestMismatch { computed: String, expected: String },
    #[error("failed to unpack artifact: {0}")]
    Unpack(String),
    #[error("artifact cache {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError + use<> {
    let path = path.to_owned();
    move |source| ArtifactError::Io { path, source }
}

/// This process's own artifact storage, as its artifact server advertises it.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    /// The storage root (`--storage-path`).
    pub root: PathBuf,
    /// `http://host:port` as `status.artifact.url` starts (`--storage-adv-addr`).
    pub advertised_base: String,
}

impl LocalStorage {
    /// The stored file of `artifact` when its URL is this process's own server's: the URL is
    /// the advertised base plus the artifact's path, and the path is a plain relative one (the
    /// status is writable by whoever may write it: it may not name files elsewhere).
    fn file_of(&self, artifact: &Artifact) -> Option<PathBuf> {
        let path = artifact.url.strip_prefix(self.advertised_base.trim_end_matches('/'))?.strip_prefix('/')?;
        if path != artifact.path || !path.ends_with(".tar.gz") {
            return None;
        }
        let relative = Path::new(path);
        if !relative.components().all(|c| matches!(c, Component::Normal(_))) {
            return None;
        }
        Some(self.root.join(relative))
    }
}

#[derive(Default)]
struct CacheState {
    /// Unpacked folders by digest (hex): when last used, and how many builds hold them.
    entries: HashMap<String, Entry>,
    /// One lock per digest being fetched, so it is fetched once; removed when nobody waits.
    fetching: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// A clock for `last_used`: increases on every use.
    uses: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    last_used: u64,
    pins: usize,
}

/// Verified, unpacked artifacts, by digest.
pub struct ArtifactCache {
    root: PathBuf,
    http: reqwest::Client,
    local: Option<LocalStorage>,
    state: Arc<Mutex<CacheState>>,
    /// Names scratch files and folders uniquely.
    counter: AtomicU64,
}

/// An unpacked artifact a build reads: its folder is not evicted while this lives.
pub struct ArtifactTree {
    path: PathBuf,
    hex: String,
    state: Arc<Mutex<CacheState>>,
}

impl ArtifactTree {
    /// The folder holding the artifact's files.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ArtifactTree {
    fn drop(&mut self) {
        if let Ok(mut state) = self.state.lock() {
            state.uses += 1;
            let now = state.uses;
            if let Some(entry) = state.entries.get_mut(&self.hex) {
                entry.pins = entry.pins.saturating_sub(1);
                entry.last_used = now;
            }
        }
    }
}

/// Where an artifact's bytes come from.
enum Origin {
    /// This process's storage.
    Local(PathBuf),
    /// An artifact server (Flux's source-controller).
    Http(String),
}

impl ArtifactCache {
    /// Unpacks into `root`; downloads with bounded time and without following redirects.
    pub fn new(root: PathBuf) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .timeout(DOWNLOAD_TIMEOUT)
            // A redirect could send the request anywhere the controller can reach.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        ArtifactCache { root, http, local: None, state: Arc::new(Mutex::new(CacheState::default())), counter: AtomicU64::new(0) }
    }

    /// Takes the artifacts of `local` (this process's own storage) from disk instead of over HTTP.
    pub fn with_local_storage(mut self, local: LocalStorage) -> Self {
        self.local = Some(local);
        self
    }

    /// Whether `artifact` would be read from this process's own storage.
    pub fn is_local(&self, artifact: &Artifact) -> bool {
        self.local.as_ref().and_then(|l| l.file_of(artifact)).is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheState> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pins the cached folder of `hex` when there is one (also one left by an earlier process:
    /// folders only ever appear complete).
    fn pin(&self, hex: &str, dir: &Path) -> Option<ArtifactTree> {
        let mut state = self.lock();
        if !state.entries.contains_key(hex) && !dir.is_dir() {
            return None;
        }
        state.uses += 1;
        let now = state.uses;
        let entry = state.entries.entry(hex.to_owned()).or_default();
        entry.pins += 1;
        entry.last_used = now;
        Some(ArtifactTree { path: dir.to_owned(), hex: hex.to_owned(), state: self.state.clone() })
    }

    /// The artifact's files, read, verified and unpacked when not cached yet.
    pub async fn fetch(&self, artifact: &Artifact) -> Result<ArtifactTree, ArtifactError> {
        let hex = artifact
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ArtifactError::Digest(artifact.digest.clone()))?
            .to_ascii_lowercase();
        let dir = self.root.join(&hex);
        if let Some(tree) = self.pin(&hex, &dir) {
            return Ok(tree);
        }
        let lock = self.lock().fetching.entry(hex.clone()).or_default().clone();
        let result = {
            let _fetching = lock.lock().await;
            match self.pin(&hex, &dir) {
                Some(tree) => Ok(tree),
                None => self.fetch_new(artifact, &hex, &dir).await,
            }
        };
        let mut state = self.lock();
        // The map and this task hold it: nobody else waits.
        if Arc::strong_count(&lock) <= 2 {
            state.fetching.remove(&hex);
        }
        result
    }

    async fn fetch_new(&self, artifact: &Artifact, hex: &str, dir: &Path) -> Result<ArtifactTree, ArtifactError> {
        tokio::fs::create_dir_all(&self.root).await.map_err(io_error(&self.root))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Our own file when it is there (a regular file, not a link); else over HTTP, as from
        // any source-controller.
        let own = match self.local.as_ref().and_then(|l| l.file_of(artifact)) {
            Some(file) => tokio::fs::symlink_metadata(&file).await.is_ok_and(|m| m.is_file()).then_some(file),
            None => None,
        };
        let origin = match own {
            Some(file) => Origin::Local(file),
            None => Origin::Http(artifact.url.clone()),
        };
        tracing::debug!(digest = %artifact.digest, local = matches!(origin, Origin::Local(_)), "fetching artifact");
        let download = self.root.join(format!(".download-{hex}-{n}"));
        let file = match &origin {
            Origin::Local(path) => tokio::fs::File::open(path).await.map_err(io_error(path))?.into_std().await,
            Origin::Http(url) => self.download(url, &download).await?,
        };
        let staging = self.root.join(format!(".unpack-{hex}-{n}"));
        let expected = format!("sha256:{hex}");
        let (target, url) = (staging.clone(), artifact.url.clone());
        // A blocking thread does not inherit the reconcile's span: the unpack carries its own.
        let span = tracing::info_span!("unpack_artifact", digest = %artifact.digest, revision = %artifact.revision);
        let unpacked = tokio::task::spawn_blocking(move || span.in_scope(|| verify_and_unpack(file, &expected, &target, &url)))
            .await
            .map_err(|e| ArtifactError::Unpack(e.to_string()))
            .and_then(|r| r);
        if let Err(e) = unpacked {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(e);
        }
        if let Err(e) = tokio::fs::rename(&staging, dir).await {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(io_error(dir)(e));
        }
        let tree = self.pin(hex, dir).ok_or_else(|| io_error(dir)(std::io::ErrorKind::NotFound.into()))?;
        self.evict().await;
        Ok(tree)
    }

    /// Streams the response into `into` (deleted once opened: only the handle keeps it), with
    /// the size cap applied as it arrives; nothing is held in memory whole.
    async fn download(&self, url: &str, into: &Path) -> Result<std::fs::File, ArtifactError> {
        let failed = |message: String| ArtifactError::Download { url: url.to_owned(), message };
        let too_large = || ArtifactError::TooLarge { url: url.to_owned(), max: MAX_ARTIFACT_BYTES };
        let mut response = self.http.get(url).send().await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP status {}", response.status())));
        }
        if response.content_length().is_some_and(|l| l > MAX_ARTIFACT_BYTES) {
            return Err(too_large());
        }
        let mut file = tokio::fs::OpenOptions::new().read(true).write(true).create_new(true).open(into).await.map_err(io_error(into))?;
        let _ = tokio::fs::remove_file(into).await;
        let mut written: u64 = 0;
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            written += chunk.len() as u64;
            if written > MAX_ARTIFACT_BYTES {
                return Err(too_large());
            }
            file.write_all(&chunk).await.map_err(io_error(into))?;
        }
        file.flush().await.map_err(io_error(into))?;
        let mut file = file.into_std().await;
        file.rewind().map_err(io_error(into))?;
        Ok(file)
    }

    /// Keeps the [`KEEP_REVISIONS`] most recently used folders and every pinned one. A folder is
    /// renamed away under the lock (no build can pin it after that), then deleted.
    async fn evict(&self) {
        let Ok(mut listing) = tokio::fs::read_dir(&self.root).await else { return };
        let mut on_disk = Vec::new();
        let mut leftovers = Vec::new();
        while let Ok(Some(entry)) = listing.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".evict-") {
                leftovers.push(entry.path());
            } else if !name.starts_with('.') {
                on_disk.push(name);
            }
        }
        let mut doomed = Vec::new();
        {
            let mut state = self.lock();
            if on_disk.len() > KEEP_REVISIONS {
                // Folders of an earlier process were never used by this one: oldest of all.
                on_disk.sort_by_key(|hex| std::cmp::Reverse(state.entries.get(hex).map_or(0, |e| e.last_used)));
                for hex in on_disk.into_iter().skip(KEEP_REVISIONS) {
                    if state.entries.get(&hex).is_some_and(|e| e.pins > 0) {
                        continue;
                    }
                    let n = self.counter.fetch_add(1, Ordering::Relaxed);
                    let away = self.root.join(format!(".evict-{hex}-{n}"));
                    if std::fs::rename(self.root.join(&hex), &away).is_ok() {
                        state.entries.remove(&hex);
                        doomed.push(away);
                    }
                }
            }
        }
        for path in doomed.into_iter().chain(leftovers) {
            let _ = tokio::fs::remove_dir_all(path).await;
        }
    }
}

/// Checks `file` against the digest, then unpacks it into `into`: nothing is unpacked from bytes
/// that do not match.
fn verify_and_unpack(mut file: std::fs::File, expected: &str, into: &Path, url: &str) -> Result<(), ArtifactError> {
    let read_failed = |e: std::io::Error| ArtifactError::Download { url: url.to_owned(), message: e.to_string() };
    let size = file.metadata().map_err(read_failed)?.len();
    if size > MAX_ARTIFACT_BYTES {
        return Err(ArtifactError::TooLarge { url: url.to_owned(), max: MAX_ARTIFACT_BYTES });
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer).map_err(read_failed)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let computed = format!("sha256:{}", hex::encode(hasher.finalize()));
    if computed != expected {
        return Err(ArtifactError::DigestMismatch { computed, expected: expected.to_owned() });
    }
    file.rewind().map_err(read_failed)?;
    crate::source::artifact::unpack(std::io::BufReader::new(file), into, UnpackLimits::default()).map(|_| ()).map_err(|e| ArtifactError::Unpack(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::artifact::IgnoreRules;
    use crate::source::storage::{ObjectKey, Storage};

    /// Stores a one-file tree as the GitRepository `ns/repo` at `commit`, as the source
    /// controller does, and returns its artifact as our server advertises it.
    fn stored(storage: &Storage, commit: &str, content: &str) -> Artifact {
        let tree = tempfile::tempdir().expect("temp dir");
        std::fs::write(tree.path().join("cm.yaml"), content).expect("file");
        let rules = IgnoreRules::load(tree.path(), None).expect("rules");
        let key = ObjectKey::git_repository("ns", "repo").expect("key");
        let stored = storage.store_tree(&key, commit, tree.path(), &rules).expect("stored");
        Artifact {
            url: format!("http://ferroflux.flux-system.svc/{}", stored.relative_path),
            path: stored.relative_path,
            revision: format!("main@sha1:{commit}"),
            digest: stored.digest,
            last_update_time: crate::controller::now(),
            size: None,
            metadata: None,
        }
    }

    fn cache_over(storage: &Storage, cache: &Path) -> ArtifactCache {
        let local = LocalStorage { root: storage.root().to_owned(), advertised_base: "http://ferroflux.flux-system.svc".into() };
        ArtifactCache::new(cache.to_owned()).with_local_storage(local)
    }

    #[tokio::test]
    async fn own_artifacts_are_read_from_storage_verified_and_without_http() {
        let dirs = tempfile::tempdir().expect("temp dir");
        let storage = Storage::new(dirs.path().join("storage")).expect("storage");
        let cache = cache_over(&storage, &dirs.path().join("cache"));
        let artifact = stored(&storage, "aaaa", "kind: ConfigMap\n");
        assert!(cache.is_local(&artifact));
        // Nothing listens at the advertised address: only the local read can succeed.
        let tree = cache.fetch(&artifact).await.expect("read from storage");
        assert_eq!(std::fs::read_to_string(tree.path().join("cm.yaml")).expect("unpacked"), "kind: ConfigMap\n");
        drop(tree);
        assert!(cache.lock().fetching.is_empty(), "per-digest locks are dropped once done");

        // The stored file no longer matching the digest is refused, and nothing is cached.
        let mut tampered = stored(&storage, "bbbb", "kind: Secret\n");
        tampered.digest = format!("sha256:{}", "0".repeat(64));
        let error = cache.fetch(&tampered).await.err().expect("refused");
        assert!(matches!(error, ArtifactError::DigestMismatch { .. }), "{error}");
        assert!(!dirs.path().join("cache").join("0".repeat(64)).exists());

        // A status naming a path outside the storage, or another host, is not read from disk.
        for (url, path) in [
            ("http://ferroflux.flux-system.svc/../etc/passwd.tar.gz", "../etc/passwd.tar.gz"),
            ("http://elsewhere.example/gitrepository/ns/repo/aaaa.tar.gz", "gitrepository/ns/repo/aaaa.tar.gz"),
        ] {
            let hostile = Artifact { url: url.into(), path: path.into(), ..artifact.clone() };
            assert!(!cache.is_local(&hostile), "{url}");
        }
    }

    #[tokio::test]
    async fn eviction_is_least_recently_used_and_never_touches_a_tree_in_use() {
        let dirs = tempfile::tempdir().expect("temp dir");
        let storage = Storage::new(dirs.path().join("storage")).expect("storage");
        let cache = cache_over(&storage, &dirs.path().join("cache"));
        let first = stored(&storage, "c000", "n: 0\n");
        let held = cache.fetch(&first).await.expect("first");
        let mut others = Vec::new();
        for i in 1..=KEEP_REVISIONS + 4 {
            let artifact = stored(&storage, &format!("c{i:03}"), &format!("n: {i}\n"));
            drop(cache.fetch(&artifact).await.expect("fetched"));
            others.push(artifact);
            // The oldest revision is in use all along: never evicted, never partial.
            assert_eq!(std::fs::read_to_string(held.path().join("cm.yaml")).expect("still whole"), "n: 0\n");
        }
        drop(held);
        let cached = |a: &Artifact| dirs.path().join("cache").join(a.digest.trim_start_matches("sha256:")).is_dir();
        assert!(cached(&first), "the tree in use was kept");
        // Unpacked before the newer ones, but used again: the most recent now, so it outlives
        // folders unpacked after it (eviction is by last use, not by unpack time).
        assert!(cached(&others[4]) && cached(&others[5]));
        drop(cache.fetch(&others[4]).await.expect("a cache hit"));
        for i in 0..3 {
            let artifact = stored(&storage, &format!("d{i:03}"), &format!("m: {i}\n"));
            drop(cache.fetch(&artifact).await.expect("fetched"));
        }
        assert!(cached(&others[4]), "recently used: kept");
        assert!(!cached(&others[5]), "least recently used: evicted");
        let folders = std::fs::read_dir(dirs.path().join("cache")).expect("cache").count();
        assert_eq!(folders, KEEP_REVISIONS, "only whole folders are left, no scratch");
    }
}
