//! The network side: `ls-remote` and shallow fetch + checkout with libgit2.
//!
//! Every call is bounded by a timeout three ways: libgit2's connect and socket-read timeouts
//! (process-wide settings, set from the call's timeout before each operation, so concurrent
//! calls with different timeouts share the last one set), and a deadline checked in the
//! progress and credential callbacks, which abort the transfer once it has passed.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode,
    FetchOptions, Remote, RemoteCallbacks, Repository,
};

use super::auth::{HostKeyCheck, check_host_key, ssh_fingerprint, verify_server_cert};
use super::refs::{
    FetchPlan, GitRefSpec, RefSelector, RemoteRef, ResolvedRef, format_revision, resolve,
    resolve_commit,
};
use super::url::{GitUrl, Scheme};
use super::{Credentials, GitError};

/// Lists the remote's references (like `git ls-remote`) without a repository on disk, except
/// for HTTP(S) with credentials: there a throwaway empty repository lets the credentials go in
/// the first request (libgit2 only takes custom headers on fetch), so a poll is one request
/// instead of a 401 challenge plus a retry, and bearer tokens work at all.
pub fn ls_remote(
    url: &str,
    creds: &Credentials,
    timeout: Duration,
) -> Result<Vec<RemoteRef>, GitError> {
    let parsed = GitUrl::parse(url)?;
    let session = Session::new(&parsed, creds, timeout);
    let headers = session.preemptive_headers();
    let mut refs = if headers.is_empty() {
        let mut remote = Remote::create_detached(url).map_err(|e| session.classify(e))?;
        let connection = remote
            .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
            .map_err(|e| session.classify(e))?;
        let heads = connection.list().map_err(|e| session.classify(e))?;
        heads
            .iter()
            .map(|h| RemoteRef {
                name: h.name().to_owned(),
                oid: h.oid().to_string(),
            })
            .collect::<Vec<_>>()
    } else {
        let scratch = ScratchDir::create()?;
        let repo = Repository::init_bare(&scratch.path).map_err(|e| session.classify(e))?;
        let mut remote = repo
            .remote_anonymous(url)
            .map_err(|e| session.classify(e))?;
        let mut options = session.fetch_options(&headers);
        // A refspec that matches nothing: libgit2 connects, reads the advertisement and, with
        // nothing wanted, skips negotiation and the pack request.
        remote
            .download(&["refs/ferroflux/ls-remote-only"], Some(&mut options))
            .map_err(|e| session.classify(e))?;
        let heads = remote.list().map_err(|e| session.classify(e))?;
        heads
            .iter()
            .map(|h| RemoteRef {
                name: h.name().to_owned(),
                oid: h.oid().to_string(),
            })
            .collect()
    };
    refs.sort();
    Ok(refs)
}

/// Resolves `spec` against the remote: an `ls_remote` plus [`resolve`]. A commit without a
/// branch needs no network. This is the whole of a no-change poll.
pub fn resolve_remote(
    url: &str,
    creds: &Credentials,
    spec: &GitRefSpec,
    timeout: Duration,
) -> Result<ResolvedRef, GitError> {
    let parsed = GitUrl::parse(url)?;
    let selector = spec.selector();
    if let RefSelector::Commit { sha, branch: None } = &selector {
        return resolve_commit(&[], sha, None);
    }
    let refs = ls_remote(url, creds, timeout)?;
    resolve(&refs, &selector, &parsed.redacted)
}

/// What [`fetch`] checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCommit {
    /// Lowercase hex id of the commit whose tree is in the directory. For a branch this can be
    /// newer than the resolved one if the branch moved between the poll and the fetch.
    pub commit: String,
    /// The Flux revision of that commit.
    pub revision: String,
}

/// Fetches the resolved commit (depth 1 for a ref tip, the ref's history for a commit that is
/// not a tip) and writes its tree into `into_dir`, which must be absent or empty. The
/// directory holds only the tree afterwards: the `.git` used for fetching is removed.
pub fn fetch(
    url: &str,
    creds: &Credentials,
    resolved: &ResolvedRef,
    timeout: Duration,
    into_dir: &Path,
) -> Result<FetchedCommit, GitError> {
    let parsed = GitUrl::parse(url)?;
    let session = Session::new(&parsed, creds, timeout);
    prepare_empty_dir(into_dir)?;
    let git_dir = into_dir.join(".git");
    let result = fetch_and_checkout(url, &session, resolved, into_dir);
    // The work tree is what the caller wants; the objects were only the way there.
    if git_dir.exists() {
        fs::remove_dir_all(&git_dir).map_err(|source| GitError::Io {
            action: "removing fetch repository",
            path: git_dir.clone(),
            source,
        })?;
    }
    result
}

fn fetch_and_checkout(
    url: &str,
    session: &Session<'_>,
    resolved: &ResolvedRef,
    into_dir: &Path,
) -> Result<FetchedCommit, GitError> {
    let repo = Repository::init(into_dir).map_err(|e| session.classify(e))?;
    // Check out bytes as committed, whatever the machine's global Git config says.
    if let Ok(mut config) = repo.config() {
        let _ = config.set_bool("core.autocrlf", false);
        let _ = config.set_bool("core.symlinks", true);
    }
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(|e| session.classify(e))?;
    let headers = session.preemptive_headers();

    let commit = match &resolved.fetch_plan {
        FetchPlan::ShallowRef(refname) => {
            let local = local_ref_for(refname);
            let mut options = session.fetch_options(&headers);
            options.depth(1);
            remote
                .fetch(&[format!("+{refname}:{local}")], Some(&mut options), None)
                .map_err(|e| session.classify(e))?;
            let reference = repo
                .find_reference(&local)
                .map_err(|_| GitError::RefNotFound {
                    url: session.url.redacted.clone(),
                    refname: refname.clone(),
                })?;
            let tip = reference
                .peel_to_commit()
                .map_err(|e| session.classify(e))?;
            let tip_id = tip.id().to_string();
            if resolved.pinned && tip_id != resolved.commit {
                // The pinned commit was the tip at poll time but the ref moved: dig in history.
                drop(tip);
                drop(reference);
                fetch_history(
                    &repo,
                    &mut remote,
                    session,
                    &headers,
                    std::slice::from_ref(refname),
                    &resolved.commit,
                )?
            } else {
                tip_id
            }
        }
        FetchPlan::History(refnames) => fetch_history(
            &repo,
            &mut remote,
            session,
            &headers,
            refnames,
            &resolved.commit,
        )?,
    };

    let oid = git2::Oid::from_str(&commit).map_err(|e| session.classify(e))?;
    let commit_object = repo.find_commit(oid).map_err(|e| session.classify(e))?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force().recreate_missing(true);
    repo.checkout_tree(commit_object.as_object(), Some(&mut checkout))
        .map_err(|e| session.classify(e))?;
    Ok(FetchedCommit {
        revision: format_revision(resolved.revision_name.as_deref(), &commit),
        commit,
    })
}

fn fetch_history(
    repo: &Repository,
    remote: &mut Remote<'_>,
    session: &Session<'_>,
    headers: &[String],
    refnames: &[String],
    commit: &str,
) -> Result<String, GitError> {
    let refspecs: Vec<String> = refnames
        .iter()
        .map(|r| format!("+{r}:{}", local_ref_for(r)))
        .collect();
    let mut options = session.fetch_options(headers);
    if repo.is_shallow() {
        // After a depth-1 attempt, a plain fetch would keep the shallow boundary; this is
        // libgit2's GIT_FETCH_DEPTH_UNSHALLOW.
        options.depth(i32::MAX);
    }
    remote
        .fetch(&refspecs, Some(&mut options), None)
        .map_err(|e| session.classify(e))?;
    let not_found = || GitError::CommitNotFound {
        url: session.url.redacted.clone(),
        commit: commit.to_owned(),
    };
    let oid = git2::Oid::from_str(commit).map_err(|_| not_found())?;
    repo.find_commit(oid).map_err(|_| not_found())?;
    Ok(commit.to_owned())
}

/// Where a fetched remote ref is stored locally; wildcards map one to one.
fn local_ref_for(remote_ref: &str) -> String {
    format!(
        "refs/ferroflux/{}",
        remote_ref.strip_prefix("refs/").unwrap_or(remote_ref)
    )
}

fn prepare_empty_dir(dir: &Path) -> Result<(), GitError> {
    let io = |action, source| GitError::Io {
        action,
        path: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(|e| io("creating checkout directory", e))?;
    let mut entries = fs::read_dir(dir).map_err(|e| io("reading checkout directory", e))?;
    if entries.next().is_some() {
        return Err(io(
            "checkout directory is not empty",
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory not empty"),
        ));
    }
    Ok(())
}

/// A failure a callback saw first; it explains libgit2's generic error better than its text.
enum CallbackFailure {
    Authentication(String),
    HostKey(String),
    Certificate(String),
    Timeout,
}

/// Per-call state shared by the callbacks.
struct Session<'a> {
    url: &'a GitUrl,
    creds: &'a Credentials,
    timeout: Duration,
    deadline: Instant,
    credential_attempts: RefCell<u32>,
    failure: RefCell<Option<CallbackFailure>>,
}

/// Serialises writes of libgit2's process-wide timeout options.
static TIMEOUT_SETTINGS: Mutex<()> = Mutex::new(());

impl<'a> Session<'a> {
    fn new(url: &'a GitUrl, creds: &'a Credentials, timeout: Duration) -> Self {
        let millis = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        if let Ok(_guard) = TIMEOUT_SETTINGS.lock() {
            // SAFETY: these only store an integer in libgit2's global settings; the mutex keeps
            // our writers from interleaving.
            unsafe {
                let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis);
                let _ = git2::opts::set_server_timeout_in_milliseconds(millis);
            }
        }
        Session {
            url,
            creds,
            timeout,
            deadline: Instant::now() + timeout,
            credential_attempts: RefCell::new(0),
            failure: RefCell::new(None),
        }
    }

    fn is_http(&self) -> bool {
        matches!(self.url.scheme, Scheme::Http | Scheme::Https)
    }

    /// `Authorization` header sent with every HTTP request, so no 401 round trip is needed.
    fn preemptive_headers(&self) -> Vec<String> {
        if !self.is_http() {
            return Vec::new();
        }
        if let Some(token) = &self.creds.bearer_token {
            return vec![format!("Authorization: Bearer {token}")];
        }
        if let Some(basic) = &self.creds.basic_auth {
            let encoded =
                base64_encode(format!("{}:{}", basic.username, basic.password).as_bytes());
            return vec![format!("Authorization: Basic {encoded}")];
        }
        Vec::new()
    }

    fn record(&self, failure: CallbackFailure) {
        let mut slot = self.failure.borrow_mut();
        if slot.is_none() {
            *slot = Some(failure);
        }
    }

    fn before_deadline(&self) -> bool {
        if Instant::now() < self.deadline {
            true
        } else {
            self.record(CallbackFailure::Timeout);
            false
        }
    }

    fn fetch_options(&'a self, headers: &[String]) -> FetchOptions<'a> {
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        options.download_tags(AutotagOption::None);
        options.update_fetchhead(false);
        if !headers.is_empty() {
            let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            options.custom_headers(&header_refs);
        }
        options
    }

    fn callbacks(&'a self) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, username_from_url, allowed| {
            self.credentials(username_from_url, allowed)
        });
        callbacks.certificate_check(move |cert, host| self.check_certificate(cert, host));
        callbacks.transfer_progress(move |_| self.before_deadline());
        callbacks.sideband_progress(move |_| self.before_deadline());
        callbacks.pack_progress(move |_, _, _| {
            let _ = self.before_deadline();
        });
        callbacks
    }

    fn credentials(
        &self,
        username_from_url: Option<&str>,
        allowed: CredentialType,
    ) -> Result<Cred, git2::Error> {
        let refuse = |message: String| {
            self.record(CallbackFailure::Authentication(message.clone()));
            Err(git2::Error::from_str(&message))
        };
        if !self.before_deadline() {
            return Err(git2::Error::from_str("timed out"));
        }
        let ssh_user = username_from_url
            .map(str::to_owned)
            .or_else(|| self.url.username.clone())
            .unwrap_or_else(|| "git".to_owned());
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(&ssh_user);
        }
        let attempts = {
            let mut attempts = self.credential_attempts.borrow_mut();
            *attempts += 1;
            *attempts
        };
        // Credentials sent up front count as the first attempt: a 401 after them is a refusal.
        let already_sent = !self.preemptive_headers().is_empty();
        if attempts > 1 || already_sent {
            return refuse("credentials were rejected".to_owned());
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return match &self.creds.ssh {
                Some(ssh) => Cred::ssh_key_from_memory(
                    &ssh_user,
                    None,
                    &ssh.identity,
                    ssh.passphrase.as_deref(),
                )
                .or_else(|e| {
                    refuse(format!(
                        "unusable SSH identity: {}",
                        self.scrub(e.message())
                    ))
                }),
                None => refuse(
                    "the server requires an SSH key and the secret has no 'identity'".to_owned(),
                ),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return match &self.creds.basic_auth {
                Some(basic) => Cred::userpass_plaintext(&basic.username, &basic.password),
                None => refuse("the server requires credentials and none were given".to_owned()),
            };
        }
        refuse(format!(
            "the server asks for an unsupported authentication method ({allowed:?})"
        ))
    }

    fn check_certificate(
        &self,
        cert: &git2::cert::Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        let refuse_with = |failure: CallbackFailure, message: &str| {
            self.record(failure);
            Err(git2::Error::from_str(message))
        };
        if let Some(hostkey) = cert.as_hostkey() {
            let Some(ssh) = &self.creds.ssh else {
                let message =
                    "no known_hosts given: refusing to trust an unverified SSH host key".to_owned();
                return refuse_with(CallbackFailure::HostKey(message.clone()), &message);
            };
            let Some(blob) = hostkey.hostkey() else {
                let message =
                    "the server's raw host key is not available for verification".to_owned();
                return refuse_with(CallbackFailure::HostKey(message.clone()), &message);
            };
            return match check_host_key(&ssh.known_hosts, &self.url.host, self.url.port, blob) {
                HostKeyCheck::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                HostKeyCheck::Mismatch => {
                    let message = format!(
                        "host key {} for '{}' does not match known_hosts",
                        ssh_fingerprint(blob),
                        self.url.host
                    );
                    refuse_with(CallbackFailure::HostKey(message.clone()), &message)
                }
                HostKeyCheck::Unknown => {
                    let message = format!(
                        "host '{}' (port {}) is not in known_hosts (key {})",
                        self.url.host,
                        self.url.port,
                        ssh_fingerprint(blob)
                    );
                    refuse_with(CallbackFailure::HostKey(message.clone()), &message)
                }
            };
        }
        if let (Some(x509), Some(ca)) = (cert.as_x509(), &self.creds.ca_pem) {
            // Our verdict replaces libgit2's: only the secret's CA is trusted, not the system's.
            let name = if host.is_empty() {
                self.url.host.as_str()
            } else {
                host
            };
            return match verify_server_cert(ca, x509.data(), name) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(message) => {
                    refuse_with(CallbackFailure::Certificate(message.clone()), &message)
                }
            };
        }
        // No CA of our own: libgit2's verification against the system store decides.
        Ok(CertificateCheckStatus::CertificatePassthrough)
    }

    /// Removes secret values from a message that came from libgit2 or a server.
    fn scrub(&self, message: &str) -> String {
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(basic) = &self.creds.basic_auth {
            secrets.push(&basic.password);
        }
        if let Some(token) = &self.creds.bearer_token {
            secrets.push(token);
        }
        if let Some(passphrase) = self
            .creds
            .ssh
            .as_ref()
            .and_then(|s| s.passphrase.as_deref())
        {
            secrets.push(passphrase);
        }
        let mut out = message.to_owned();
        for secret in secrets.into_iter().filter(|s| s.len() >= 3) {
            out = out.replace(secret, "<redacted>");
        }
        out
    }

    fn classify(&self, error: git2::Error) -> GitError {
        let url = self.url.redacted.clone();
        let message = self.scrub(error.message());
        if let Some(failure) = self.failure.borrow_mut().take() {
            return match failure {
                CallbackFailure::Authentication(message) => {
                    GitError::AuthenticationFailed { url, message }
                }
                CallbackFailure::HostKey(message) => GitError::HostKeyRejected { url, message },
                CallbackFailure::Certificate(message) => {
                    GitError::CertificateRejected { url, message }
                }
                CallbackFailure::Timeout => GitError::Timeout {
                    url,
                    seconds: self.timeout.as_secs(),
                },
            };
        }
        if Instant::now() >= self.deadline || message.contains("timed out") {
            return GitError::Timeout {
                url,
                seconds: self.timeout.as_secs(),
            };
        }
        let lower = message.to_ascii_lowercase();
        match (error.code(), error.class()) {
            (ErrorCode::Auth, _) => GitError::AuthenticationFailed { url, message },
            (ErrorCode::Certificate, _) | (_, ErrorClass::Ssl) => {
                GitError::CertificateRejected { url, message }
            }
            _ if lower.contains("certificate") => GitError::CertificateRejected { url, message },
            // libssh2 reports a wrong key passphrase or a refused key while authenticating.
            (_, ErrorClass::Ssh)
                if lower.contains("authenticat") || lower.contains("publickey") =>
            {
                GitError::AuthenticationFailed { url, message }
            }
            (_, ErrorClass::Http)
                if lower.contains("401")
                    || lower.contains("403")
                    || lower.contains("authentication") =>
            {
                GitError::AuthenticationFailed { url, message }
            }
            (_, _)
                if lower.contains("unsupported url protocol")
                    || lower.contains("malformed url") =>
            {
                GitError::InvalidUrl {
                    url,
                    reason: message,
                }
            }
            _ => GitError::Operation { url, message },
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A private temporary directory removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create() -> Result<Self, GitError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "ferroflux-ls-remote-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        fs::create_dir(&path).map_err(|source| GitError::Io {
            action: "creating scratch directory",
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encoding() {
        assert_eq!(base64_encode(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
    }

    #[test]
    fn local_refs_mirror_remote_names() {
        assert_eq!(
            local_ref_for("refs/heads/main"),
            "refs/ferroflux/heads/main"
        );
        assert_eq!(local_ref_for("refs/heads/*"), "refs/ferroflux/heads/*");
    }
}
