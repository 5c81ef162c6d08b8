//! Git for the source controller: list a remote's refs, resolve a `GitRepository`'s `spec.ref`
//! to a commit, and fetch that commit's tree into a directory.
//!
//! # Why git2 (libgit2) and not gix or the `git` binary
//! - gix 0.90 shells out to `ssh` for SSH transport, so host-key pinning and in-memory keys from
//!   a secret would go through files and `ssh` options; and against servers speaking only
//!   protocol v0/v1 (libgit2's and many self-hosted servers') it silently did a full clone where
//!   a shallow one was asked for. A controller polling many repositories cannot afford that.
//! - Build cost on a 2-core machine: gix with its transports pulled ~290 crates and took 5m51s
//!   for a release build; git2 with vendored libgit2 ~58 crates and 1m50s.
//! - git2 gives in-process `ls-remote` without a repository on disk (`Remote::create_detached`),
//!   depth-1 single-ref fetches, in-memory SSH keys and a certificate callback through which a
//!   secret's `known_hosts` and `ca.crt` are enforced per repository. Its `ls-remote` took
//!   60–120 ms on loopback.
//! - Shelling out to `git` would need a `git` binary in the image, credentials written to disk
//!   or passed through helpers, and parsing of human-oriented output.
//!
//! Limits of libgit2 that show through: protocol v0/v1 only; no TLS client certificates
//! (a secret with `tls.crt`/`tls.key` is refused with [`CredentialsError::ClientCertificateUnsupported`]);
//! connect and read timeouts are process-wide settings, so they are fixed inactivity bounds here
//! and each call's own deadline is enforced apart from them (see [`remote`]).
//!
//! The same session (deadline, size limits, host checks, credential scrubbing) clones
//! kustomize remote bases: [`clone_remote_base`].
//!
//! # Blocking
//! Everything here is synchronous and may block for up to the given timeout: call it from
//! `tokio::task::spawn_blocking` (or another blocking thread).

pub mod auth;
pub mod refs;
pub mod remote;
pub mod url;

use std::path::PathBuf;

pub use crate::source::artifact::TreeLimits;
pub use auth::{Credentials, CredentialsError};
pub use refs::{FetchPlan, GitRefSpec, RefSelector, RemoteRef, ResolvedRef, format_revision, resolve};
pub use remote::{CloneOptions, FetchedCommit, clone_remote_base, fetch, ls_remote, resolve_remote};
pub use url::{GitUrl, redact_url};

/// Why a Git operation failed, as the reconciler reports it in a condition's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// Flux's `AuthenticationFailed`: bad or rejected credentials, or an unusable secret.
    AuthenticationFailed,
    /// Flux's `URLInvalid`.
    UrlInvalid,
    /// Flux's `GitOperationFailed`: everything else (unreachable host, missing ref, host key or
    /// certificate refused, timeout, empty repository).
    GitOperationFailed,
}

impl FailureReason {
    /// The reason string Flux uses in conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::AuthenticationFailed => "AuthenticationFailed",
            FailureReason::UrlInvalid => "URLInvalid",
            FailureReason::GitOperationFailed => "GitOperationFailed",
        }
    }
}

/// Every URL in these errors is redacted, and messages from libgit2 have any secret value
/// from the credentials scrubbed before they are stored here.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("invalid URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid Git credentials secret: {0}")]
    InvalidCredentials(CredentialsError),
    #[error("unable to authenticate to '{url}': {message}")]
    AuthenticationFailed { url: String, message: String },
    #[error("invalid reference: {message}")]
    InvalidRef { message: String },
    #[error("unable to clone '{url}': couldn't find remote ref '{refname}'")]
    RefNotFound { url: String, refname: String },
    #[error("unable to clone '{url}': no tag matches semver constraint '{constraint}'")]
    NoSemverMatch { url: String, constraint: String },
    #[error("unable to clone '{url}': commit '{commit}' not found")]
    CommitNotFound { url: String, commit: String },
    #[error("unable to clone '{url}': remote repository is empty")]
    EmptyRepository { url: String },
    #[error("unable to clone '{url}': SSH host key verification failed: {message}")]
    HostKeyRejected { url: String, message: String },
    #[error("unable to clone '{url}': TLS certificate verification failed: {message}")]
    CertificateRejected { url: String, message: String },
    #[error("unable to clone '{url}': timed out after {seconds}s")]
    Timeout { url: String, seconds: u64 },
    #[error("unable to clone '{url}': {message}")]
    Operation { url: String, message: String },
    #[error("unable to clone '{url}': {what} exceeds the limit of {limit}")]
    TooLarge { url: String, what: &'static str, limit: u64 },
    #[error("refusing to send credentials to '{url}': {message}")]
    InsecureCredentials { url: String, message: String },
    #[error("{action} '{}': {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    pub fn reason(&self) -> FailureReason {
        match self {
            GitError::InvalidUrl { .. } => FailureReason::UrlInvalid,
            GitError::InvalidCredentials(_) | GitError::AuthenticationFailed { .. } | GitError::InsecureCredentials { .. } => {
                FailureReason::AuthenticationFailed
            }
            _ => FailureReason::GitOperationFailed,
        }
    }
}
