//! Source artifacts on the Kustomization side: downloaded from the source's `status.artifact.url`
//! (ferroflux's own storage server or Flux's source-controller), checked against the digest,
//! unpacked safely, and cached by digest, so N Kustomizations on one revision download and unpack
//! it once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use crate::api::meta::Artifact;
use crate::source::artifact::{UnpackLimits, sha256_digest};

/// The largest artifact accepted, compressed.
pub const MAX_ARTIFACT_BYTES: u64 = 512 * 1024 * 1024;
/// How many unpacked revisions stay cached.
const KEEP_REVISIONS: usize = 16;

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
    #[error("artifact cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Downloaded, verified and unpacked artifacts, by digest.
pub struct ArtifactCache {
    root: PathBuf,
    http: reqwest::Client,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl ArtifactCache {
    pub fn new(root: PathBuf) -> Self {
        ArtifactCache { root, http: reqwest::Client::new(), locks: Mutex::new(HashMap::new()) }
    }

    /// The folder holding the artifact's files, downloading and unpacking it when not cached.
    pub async fn fetch(&self, artifact: &Artifact) -> Result<PathBuf, ArtifactError> {
        let hex = artifact
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| ArtifactError::Digest(artifact.digest.clone()))?
            .to_ascii_lowercase();
        let dir = self.root.join(&hex);
        let lock = self.locks.lock().await.entry(hex.clone()).or_default().clone();
        let _guard = lock.lock().await;
        if tokio::fs::metadata(&dir).await.is_ok() {
            return Ok(dir);
        }
        let bytes = self.download(&artifact.url).await?;
        let computed = sha256_digest(&bytes);
        if computed != format!("sha256:{hex}") {
            return Err(ArtifactError::DigestMismatch { computed, expected: artifact.digest.clone() });
        }
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ArtifactError::Io { path, source }
        };
        tokio::fs::create_dir_all(&self.root).await.map_err(io(&self.root))?;
        let staging = self.root.join(format!(".unpack-{hex}"));
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let target = staging.clone();
        tokio::task::spawn_blocking(move || unpack(&bytes, &target))
            .await
            .map_err(|e| ArtifactError::Unpack(e.to_string()))??;
        tokio::fs::rename(&staging, &dir).await.map_err(io(&dir))?;
        self.collect_garbage().await;
        Ok(dir)
    }

    async fn download(&self, url: &str) -> Result<Vec<u8>, ArtifactError> {
        let failed = |message: String| ArtifactError::Download { url: url.to_owned(), message };
        let mut response = self.http.get(url).send().await.map_err(|e| failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP status {}", response.status())));
        }
        if response.content_length().is_some_and(|l| l > MAX_ARTIFACT_BYTES) {
            return Err(ArtifactError::TooLarge { url: url.to_owned(), max: MAX_ARTIFACT_BYTES });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed(e.to_string()))? {
            if bytes.len() as u64 + chunk.len() as u64 > MAX_ARTIFACT_BYTES {
                return Err(ArtifactError::TooLarge { url: url.to_owned(), max: MAX_ARTIFACT_BYTES });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Keeps the most recently used revisions.
    async fn collect_garbage(&self) {
        let Ok(mut entries) = tokio::fs::read_dir(&self.root).await else { return };
        let mut dirs = Vec::new();
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            if let Ok(meta) = entry.metadata().await {
                dirs.push((meta.modified().ok(), entry.path()));
            }
        }
        if dirs.len() <= KEEP_REVISIONS {
            return;
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
        for (_, path) in dirs.into_iter().skip(KEEP_REVISIONS) {
            let _ = tokio::fs::remove_dir_all(path).await;
        }
    }
}

fn unpack(bytes: &[u8], into: &Path) -> Result<(), ArtifactError> {
    crate::source::artifact::unpack(bytes, into, UnpackLimits::default())
        .map(|_| ())
        .map_err(|e| ArtifactError::Unpack(e.to_string()))
}
