//! The network side: `ls-remote`, shallow fetch + checkout, and kustomize remote-base clones,
//! with libgit2.
//!
//! Every call is bounded by its own deadline, whatever other calls run at the same time:
//! - the libgit2 work runs on a thread of its own and the caller waits for it at most the
//!   call's timeout ([`within_deadline`]); a call that overruns is answered `Timeout` at its
//!   deadline, and its thread ends at the next callback or socket timeout;
//! - the progress and credential callbacks abort the transfer once the deadline has passed;
//! - libgit2's connect and socket-read timeouts are process-wide, so they are set once, to fixed
//!   inactivity bounds, and never from a call (one tenant's `spec.timeout: 1ms` used to become
//!   everybody's).
//!
//! Sizes are bounded too: the bytes received per transfer, and the tree to check out (entries,
//! total and per-file bytes, depth, read from object headers before anything is written).
//! Credentials go only to the configured host: with credentials, libgit2 follows no redirect to
//! another host, and plain `http://` gets none unless the user opted in (as Flux's Git library
//! refuses them: `basic auth cannot be sent over HTTP`).

use std::cell::RefCell;
use std::fs;
use std::path::Path;
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::time::{Duration, Instant};

use git2::build::CheckoutBuilder;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode, FetchOptions, ObjectType, Remote, RemoteCallbacks,
    RemoteRedirect, Repository, TreeWalkMode, TreeWalkResult,
};

use crate::source::artifact::TreeLimits;

use super::auth::{HostKeyCheck, check_host_key, ssh_fingerprint, verify_server_cert};
use super::refs::{FetchPlan, GitRefSpec, RefSelector, RemoteRef, ResolvedRef, format_revision, resolve, resolve_commit};
use super::url::{GitUrl, Scheme};
use super::{Credentials, GitError};

/// Lists the remote's references (like `git ls-remote`) without a repository on disk, except
/// for HTTP(S) with credentials: there a throwaway empty repository lets the credentials go in
/// the first request (libgit2 only takes custom headers on fetch), so a poll is one request
/// instead of a 401 challenge plus a retry, and bearer tokens work at all.
pub fn ls_remote(url: &str, creds: &Credentials, timeout: Duration) -> Result<Vec<RemoteRef>, GitError> {
    let parsed = GitUrl::parse(url)?;
    let (url, creds) = (url.to_owned(), creds.clone());
    within_deadline(&parsed.clone(), timeout, move || {
        let session = Session::new(&parsed, &creds, timeout, Policy::git_repository())?;
        ls_remote_in_session(&url, &session)
    })
}

fn ls_remote_in_session(url: &str, session: &Session<'_>) -> Result<Vec<RemoteRef>, GitError> {
    let headers = session.preemptive_headers();
    let mut refs = if headers.is_empty() {
        let mut remote = Remote::create_detached(url).map_err(|e| session.classify(e))?;
        let connection = remote.connect_auth(Direction::Fetch, Some(session.callbacks()), None).map_err(|e| session.classify(e))?;
        let heads = connection.list().map_err(|e| session.classify(e))?;
        heads.iter().map(|h| RemoteRef { name: h.name().to_owned(), oid: h.oid().to_string() }).collect::<Vec<_>>()
    } else {
        let scratch = tempfile::Builder::new().prefix("ferroflux-ls-remote-").tempdir().map_err(|source| GitError::Io {
            action: "creating scratch directory",
            path: std::env::temp_dir(),
            source,
        })?;
        let repo = Repository::init_bare(scratch.path()).map_err(|e| session.classify(e))?;
        let mut remote = repo.remote_anonymous(url).map_err(|e| session.classify(e))?;
        let mut options = session.fetch_options(&headers);
        // A refspec that matches nothing: libgit2 connects, reads the advertisement and, with
        // nothing wanted, skips negotiation and the pack request.
        remote.download(&["refs/ferroflux/ls-remote-only"], Some(&mut options)).map_err(|e| session.classify(e))?;
        let heads = remote.list().map_err(|e| session.classify(e))?;
        heads.iter().map(|h| RemoteRef { name: h.name().to_owned(), oid: h.oid().to_string() }).collect()
    };
    refs.sort();
    Ok(refs)
}

/// Resolves `spec` against the remote: an `ls_remote` plus [`resolve`]. A commit without a
/// branch needs no network. This is the whole of a no-change poll.
pub fn resolve_remote(url: &str, creds: &Credentials, spec: &GitRefSpec, timeout: Duration) -> Result<ResolvedRef, GitError> {
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
pub fn fetch(url: &str, creds: &Credentials, resolved: &ResolvedRef, timeout: Duration, into_dir: &Path) -> Result<FetchedCommit, GitError> {
    let parsed = GitUrl::parse(url)?;
    prepare_empty_dir(into_dir)?;
    let (url, creds, resolved, into_dir) = (url.to_owned(), creds.clone(), resolved.clone(), into_dir.to_path_buf());
    within_deadline(&parsed.clone(), timeout, move || {
        let session = Session::new(&parsed, &creds, timeout, Policy::git_repository())?;
        let git_dir = into_dir.join(".git");
        let result = fetch_and_checkout(&url, &session, &resolved, &into_dir);
        // The work tree is what the caller wants; the objects were only the way there.
        remove_git_dir(&git_dir)?;
        result
    })
}

fn remove_git_dir(git_dir: &Path) -> Result<(), GitError> {
    if git_dir.exists() {
        fs::remove_dir_all(git_dir).map_err(|source| GitError::Io { action: "removing fetch repository", path: git_dir.to_path_buf(), source })?;
    }
    Ok(())
}

fn fetch_and_checkout(url: &str, session: &Session<'_>, resolved: &ResolvedRef, into_dir: &Path) -> Result<FetchedCommit, GitError> {
    let repo = Repository::init(into_dir).map_err(|e| session.classify(e))?;
    // Check out bytes as committed, whatever the machine's global Git config says.
    if let Ok(mut config) = repo.config() {
        let _ = config.set_bool("core.autocrlf", false);
        let _ = config.set_bool("core.symlinks", true);
    }
    let mut remote = repo.remote_anonymous(url).map_err(|e| session.classify(e))?;
    let headers = session.preemptive_headers();

    let commit = match &resolved.fetch_plan {
        FetchPlan::ShallowRef(refname) => {
            let local = local_ref_for(refname);
            let mut options = session.fetch_options(&headers);
            options.depth(1);
            remote.fetch(&[format!("+{refname}:{local}")], Some(&mut options), None).map_err(|e| session.classify(e))?;
            let reference = repo.find_reference(&local).map_err(|_| GitError::RefNotFound { url: session.url.redacted.clone(), refname: refname.clone() })?;
            let tip = reference.peel_to_commit().map_err(|e| session.classify(e))?;
            let tip_id = tip.id().to_string();
            if resolved.pinned && tip_id != resolved.commit {
                // The pinned commit was the tip at poll time but the ref moved: dig in history.
                drop(tip);
                drop(reference);
                fetch_history(&repo, &mut remote, session, &headers, std::slice::from_ref(refname), &resolved.commit)?
            } else {
                tip_id
            }
        }
        FetchPlan::History(refnames) => fetch_history(&repo, &mut remote, session, &headers, refnames, &resolved.commit)?,
    };

    let oid = git2::Oid::from_str(&commit).map_err(|e| session.classify(e))?;
    checkout_within_limits(&repo, oid, session)?;
    Ok(FetchedCommit { revision: format_revision(resolved.revision_name.as_deref(), &commit), commit })
}

fn fetch_history(
    repo: &Repository,
    remote: &mut Remote<'_>,
    session: &Session<'_>,
    headers: &[String],
    refnames: &[String],
    commit: &str,
) -> Result<String, GitError> {
    let refspecs: Vec<String> = refnames.iter().map(|r| format!("+{r}:{}", local_ref_for(r))).collect();
    let mut options = session.fetch_options(headers);
    if repo.is_shallow() {
        // After a depth-1 attempt, a plain fetch would keep the shallow boundary; this is
        // libgit2's GIT_FETCH_DEPTH_UNSHALLOW.
        options.depth(i32::MAX);
    }
    remote.fetch(&refspecs, Some(&mut options), None).map_err(|e| session.classify(e))?;
    let not_found = || GitError::CommitNotFound { url: session.url.redacted.clone(), commit: commit.to_owned() };
    let oid = git2::Oid::from_str(commit).map_err(|_| not_found())?;
    repo.find_commit(oid).map_err(|_| not_found())?;
    Ok(commit.to_owned())
}

/// Where a fetched remote ref is stored locally; wildcards map one to one.
fn local_ref_for(remote_ref: &str) -> String {
    format!("refs/ferroflux/{}", remote_ref.strip_prefix("refs/").unwrap_or(remote_ref))
}

/// Checks the commit's tree against the session's limits (from object headers: nothing is
/// inflated or written), then checks it out into the repository's work tree.
fn checkout_within_limits(repo: &Repository, commit: git2::Oid, session: &Session<'_>) -> Result<(), GitError> {
    let commit_object = repo.find_commit(commit).map_err(|e| session.classify(e))?;
    let tree = commit_object.tree().map_err(|e| session.classify(e))?;
    check_tree(repo, &tree, session)?;
    let mut checkout = CheckoutBuilder::new();
    checkout.force().recreate_missing(true);
    repo.checkout_tree(commit_object.as_object(), Some(&mut checkout)).map_err(|e| session.classify(e))
}

/// Counts entries, bytes and depth of `tree` as a checkout would write it; `TooLarge` on the
/// first limit passed. A tiny pack can hold a huge tree (zlib-compressed zeros, one blob
/// referenced from thousands of paths), so the received-bytes limit alone does not bound disk.
fn check_tree(repo: &Repository, tree: &git2::Tree<'_>, session: &Session<'_>) -> Result<(), GitError> {
    let limits = session.policy.tree;
    let odb = repo.odb().map_err(|e| session.classify(e))?;
    let mut entries = 0u64;
    let mut total = 0u64;
    let mut exceeded: Option<(&'static str, u64)> = None;
    let mut failure: Option<git2::Error> = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |parent, entry| {
        entries += 1;
        // `parent` is "" at the root and "a/b/" below: one '/' per level.
        let depth = parent.bytes().filter(|&b| b == b'/').count() + 1;
        if entries > limits.max_entries {
            exceeded = Some(("the number of files and folders", limits.max_entries));
        } else if depth > limits.max_depth {
            exceeded = Some(("the folder depth", limits.max_depth as u64));
        } else if entry.kind() == Some(ObjectType::Blob) {
            match odb.read_header(entry.id()) {
                Ok((size, _)) => {
                    let size = size as u64;
                    total = total.saturating_add(size);
                    if size > limits.max_file_bytes {
                        exceeded = Some(("the size of one file (bytes)", limits.max_file_bytes));
                    } else if total > limits.max_total_bytes {
                        exceeded = Some(("the size of the tree (bytes)", limits.max_total_bytes));
                    }
                }
                Err(e) => failure = Some(e),
            }
        }
        if exceeded.is_some() || failure.is_some() || !session.before_deadline() { TreeWalkResult::Abort } else { TreeWalkResult::Ok }
    });
    if let Some((what, limit)) = exceeded {
        return Err(GitError::TooLarge { url: session.url.redacted.clone(), what, limit });
    }
    if let Some(e) = failure {
        return Err(session.classify(e));
    }
    walked.map_err(|e| session.classify(e))
}

/// How a kustomize remote base is cloned: [`clone_remote_base`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloneOptions {
    /// The whole clone (listing, fetch, checkout, submodules).
    pub timeout: Duration,
    /// Fetch submodules too (kustomize's `?submodules=`). Off unless asked: a submodule URL
    /// is one more repository chosen by whoever wrote `.gitmodules`.
    pub submodules: bool,
    /// Bytes received per transfer.
    pub max_received_bytes: u64,
    pub tree: TreeLimits,
}

/// The longest a remote base clone may take, whatever `?timeout=` says.
pub const MAX_REMOTE_BASE_TIMEOUT: Duration = Duration::from_secs(300);
/// The most a remote base's transfer may bring.
pub const MAX_REMOTE_BASE_BYTES: u64 = 256 * 1024 * 1024;
/// The most a `GitRepository` fetch may bring.
pub const MAX_FETCH_BYTES: u64 = 1024 * 1024 * 1024;
/// How deep submodules of submodules go.
const MAX_SUBMODULE_DEPTH: usize = 4;

impl CloneOptions {
    /// `timeout` capped at [`MAX_REMOTE_BASE_TIMEOUT`], the default size limits.
    pub fn new(timeout: Duration, submodules: bool) -> Self {
        CloneOptions { timeout: timeout.min(MAX_REMOTE_BASE_TIMEOUT), submodules, max_received_bytes: MAX_REMOTE_BASE_BYTES, tree: TreeLimits::default() }
    }
}

/// Clones `reference` of a kustomize remote base (`https://`, `ssh://`, scp-like `git@host:…`,
/// `file://`) into the empty folder `into`, shallowly where the transport allows, with the work
/// tree checked out and `.git` left in place. `reference` is empty for the remote's HEAD, else a
/// full ref name, a branch, a tag or a full commit id, as `git fetch origin <ref>` takes them.
/// No secret of the controller is used: SSH goes through the user's SSH agent and host keys are
/// checked by libgit2 against the user's `known_hosts`. Returns the commit checked out.
pub fn clone_remote_base(url: &str, reference: &str, options: &CloneOptions, into: &Path) -> Result<String, GitError> {
    let parsed = GitUrl::parse_remote_base(url)?;
    prepare_empty_dir(into)?;
    let (url, reference, options, into) = (url.to_owned(), reference.to_owned(), *options, into.to_path_buf());
    within_deadline(&parsed.clone(), options.timeout, move || {
        let creds = Credentials::default();
        let policy = Policy { remote_base: true, max_received_bytes: options.max_received_bytes, tree: options.tree };
        let session = Session::new(&parsed, &creds, options.timeout, policy)?;
        clone_in_session(&url, &reference, options.submodules, &session, &into)
    })
}

fn clone_in_session(url: &str, reference: &str, submodules: bool, session: &Session<'_>, into: &Path) -> Result<String, GitError> {
    let repo = Repository::init(into).map_err(|e| session.classify(e))?;
    if let Ok(mut config) = repo.config() {
        let _ = config.set_bool("core.autocrlf", false);
    }
    let mut remote = repo.remote_anonymous(url).map_err(|e| session.classify(e))?;
    let advertised: Vec<RemoteRef> = {
        let connection = remote.connect_auth(Direction::Fetch, Some(session.callbacks()), None).map_err(|e| session.classify(e))?;
        connection.list().map_err(|e| session.classify(e))?.iter().map(|head| RemoteRef { name: head.name().to_owned(), oid: head.oid().to_string() }).collect()
    };
    let wanted = choose_remote_base_ref(&advertised, reference).ok_or_else(|| GitError::Operation {
        url: session.url.redacted.clone(),
        message: if reference.is_empty() {
            "the repository has no HEAD".to_owned()
        } else {
            format!("ref '{reference}' not found (no such branch, tag or commit)")
        },
    })?;
    let local = "refs/ferroflux/remote-base";
    let refspec = format!("+{wanted}:{local}");
    let headers = session.preemptive_headers();
    let mut shallow = session.fetch_options(&headers);
    shallow.depth(1);
    // Shallow where the transport allows it; some (local ones) do not.
    if let Err(shallow_error) = remote.fetch(&[refspec.as_str()], Some(&mut shallow), None) {
        let shallow_error = session.classify(shallow_error);
        if matches!(shallow_error, GitError::Timeout { .. } | GitError::TooLarge { .. } | GitError::HostKeyRejected { .. }) {
            return Err(shallow_error);
        }
        let mut full = session.fetch_options(&headers);
        remote.fetch(&[refspec.as_str()], Some(&mut full), None).map_err(|e| session.classify(e))?;
    }
    let commit = repo.find_reference(local).and_then(|r| r.peel_to_commit()).map_err(|e| session.classify(e))?.id();
    repo.set_head_detached(commit).map_err(|e| session.classify(e))?;
    checkout_within_limits(&repo, commit, session)?;
    if submodules {
        update_submodules(&repo, session, 0)?;
    }
    Ok(commit.to_string())
}

/// The advertised ref to fetch for a remote base's `reference`: HEAD when empty, else a full ref
/// name, a branch, a tag or a full commit id (fetched by id: servers allow it for advertised
/// tips, local transports for any commit).
fn choose_remote_base_ref(advertised: &[RemoteRef], reference: &str) -> Option<String> {
    let has = |name: &str| advertised.iter().any(|r| r.name == name);
    if reference.is_empty() {
        return has("HEAD").then(|| "HEAD".to_owned());
    }
    let candidates = [reference.to_owned(), format!("refs/heads/{reference}"), format!("refs/tags/{reference}")];
    if let Some(found) = candidates.into_iter().find(|c| c.starts_with("refs/") && has(c)) {
        return Some(found);
    }
    (reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit())).then(|| reference.to_ascii_lowercase())
}

fn update_submodules(repo: &Repository, session: &Session<'_>, depth: usize) -> Result<(), GitError> {
    if depth >= MAX_SUBMODULE_DEPTH {
        return Err(GitError::TooLarge { url: session.url.redacted.clone(), what: "the nesting of submodules", limit: MAX_SUBMODULE_DEPTH as u64 });
    }
    for mut submodule in repo.submodules().map_err(|e| session.classify(e))? {
        let mut options = git2::SubmoduleUpdateOptions::new();
        options.fetch(session.fetch_options(&[]));
        submodule.update(true, Some(&mut options)).map_err(|e| session.classify(e))?;
        let inner = submodule.open().map_err(|e| session.classify(e))?;
        update_submodules(&inner, session, depth + 1)?;
    }
    Ok(())
}

/// libgit2's connect timeout: process-wide, so fixed here and never taken from a call.
const SOCKET_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// libgit2's socket-read timeout (no byte for this long ends a transfer): process-wide, fixed.
const SOCKET_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long past its deadline a call waits for its worker's own, more precise error.
const DEADLINE_GRACE: Duration = Duration::from_millis(500);

/// Sets libgit2's process-wide socket timeouts, once.
// The one unsafe block of the crate (lib.rs denies `unsafe_code`): git2 has no safe way to set
// these. Its `opts::set_server_*_timeout_in_milliseconds` are `unsafe fn` because they write
// libgit2's global options (`git_libgit2_opts`) without synchronisation against Git operations
// reading them on other threads, and git2-rs offers no safe wrapper. Calling them once, before
// our first Git operation, is what makes it sound.
#[allow(unsafe_code)]
fn set_socket_timeouts_once() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let millis = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: these store an integer in libgit2's global settings, once per process,
        // before any of our Git calls runs (every call goes through `within_deadline`).
        unsafe {
            let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(SOCKET_CONNECT_TIMEOUT));
            let _ = git2::opts::set_server_timeout_in_milliseconds(millis(SOCKET_READ_TIMEOUT));
        }
    });
}

/// Runs `work` (which must give up by itself once `timeout` has passed, through the session's
/// callbacks) on a thread of its own, and waits for it at most `timeout`: a socket libgit2 is
/// blocked on cannot be interrupted, so a stalled server would otherwise hold the caller until
/// the process-wide read timeout. An abandoned worker ends at its next callback or that timeout;
/// whatever it writes is inside the folder the caller gave it and is discarding.
fn within_deadline<T: Send + 'static>(url: &GitUrl, timeout: Duration, work: impl FnOnce() -> Result<T, GitError> + Send + 'static) -> Result<T, GitError> {
    set_socket_timeouts_once();
    let (sender, receiver) = sync_channel(1);
    let span = tracing::Span::current();
    let spawned = std::thread::Builder::new().name("ferroflux-git".to_owned()).spawn(move || {
        let _entered = span.enter();
        let _ = sender.send(work());
    });
    if let Err(source) = spawned {
        return Err(GitError::Operation { url: url.redacted.clone(), message: format!("cannot start a thread for the Git operation: {source}") });
    }
    match receiver.recv_timeout(timeout.saturating_add(DEADLINE_GRACE)) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(GitError::Timeout { url: url.redacted.clone(), seconds: timeout.as_secs() }),
        Err(RecvTimeoutError::Disconnected) => {
            Err(GitError::Operation { url: url.redacted.clone(), message: "the Git operation ended without a result".to_owned() })
        }
    }
}

fn prepare_empty_dir(dir: &Path) -> Result<(), GitError> {
    let io = |action, source| GitError::Io { action, path: dir.to_path_buf(), source };
    fs::create_dir_all(dir).map_err(|e| io("creating checkout directory", e))?;
    let mut entries = fs::read_dir(dir).map_err(|e| io("reading checkout directory", e))?;
    if entries.next().is_some() {
        return Err(io("checkout directory is not empty", std::io::Error::new(std::io::ErrorKind::AlreadyExists, "directory not empty")));
    }
    Ok(())
}

/// A failure a callback saw first; it explains libgit2's generic error better than its text.
enum CallbackFailure {
    Authentication(String),
    HostKey(String),
    Certificate(String),
    Timeout,
    TooLarge(u64),
}

/// What a session may do beyond its URL and credentials.
#[derive(Debug, Clone, Copy)]
struct Policy {
    /// A kustomize remote base: no secret, so SSH uses the user's agent and libgit2 checks host
    /// keys against the user's `known_hosts`.
    remote_base: bool,
    max_received_bytes: u64,
    tree: TreeLimits,
}

impl Policy {
    fn git_repository() -> Self {
        Policy { remote_base: false, max_received_bytes: MAX_FETCH_BYTES, tree: TreeLimits::default() }
    }
}

/// Per-call state shared by the callbacks.
struct Session<'a> {
    url: &'a GitUrl,
    creds: &'a Credentials,
    policy: Policy,
    timeout: Duration,
    deadline: Instant,
    credential_attempts: RefCell<u32>,
    failure: RefCell<Option<CallbackFailure>>,
}

impl<'a> Session<'a> {
    /// Refuses credentials over plain HTTP unless the user opted in
    /// ([`Credentials::allow_insecure_http`]), with the messages of Flux's Git library.
    fn new(url: &'a GitUrl, creds: &'a Credentials, timeout: Duration, policy: Policy) -> Result<Self, GitError> {
        if url.scheme == Scheme::Http && !creds.allow_insecure_http {
            let refuse = |message: &str| {
                Err(GitError::InsecureCredentials {
                    url: url.redacted.clone(),
                    message: format!(
                        "{message} (use https, or start the controller with \
                         --allow-insecure-http-credentials)"
                    ),
                })
            };
            if url.redacted.contains('@') {
                return refuse("URL cannot contain credentials when using HTTP");
            }
            if creds.basic_auth.is_some() {
                return refuse("basic auth cannot be sent over HTTP");
            }
            if creds.bearer_token.is_some() {
                return refuse("bearer token cannot be sent over HTTP");
            }
        }
        Ok(Session { url, creds, policy, timeout, deadline: Instant::now() + timeout, credential_attempts: RefCell::new(0), failure: RefCell::new(None) })
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
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", basic.username, basic.password));
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

    /// Whether a transfer may go on after `received` bytes.
    fn within_limits(&self, received: usize) -> bool {
        if received as u64 > self.policy.max_received_bytes {
            self.record(CallbackFailure::TooLarge(self.policy.max_received_bytes));
            return false;
        }
        self.before_deadline()
    }

    fn fetch_options(&'a self, headers: &[String]) -> FetchOptions<'a> {
        let mut options = FetchOptions::new();
        options.remote_callbacks(self.callbacks());
        options.download_tags(AutotagOption::None);
        options.update_fetchhead(false);
        if !headers.is_empty() {
            // libgit2 sends custom headers with every request, redirected ones included: with
            // credentials in them, follow no redirect to another host.
            options.follow_redirects(RemoteRedirect::None);
            let header_refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            options.custom_headers(&header_refs);
        }
        options
    }

    fn callbacks(&'a self) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |url, username_from_url, allowed| self.credentials(url, username_from_url, allowed));
        callbacks.certificate_check(move |cert, host| self.check_certificate(cert, host));
        callbacks.transfer_progress(move |stats| self.within_limits(stats.received_bytes()));
        callbacks.sideband_progress(move |_| self.before_deadline());
        callbacks.pack_progress(move |_, _, _| {
            let _ = self.before_deadline();
        });
        callbacks
    }

    fn credentials(&self, asking_url: &str, username_from_url: Option<&str>, allowed: CredentialType) -> Result<Cred, git2::Error> {
        let refuse = |message: String| {
            self.record(CallbackFailure::Authentication(message.clone()));
            Err(git2::Error::from_str(&message))
        };
        if !self.before_deadline() {
            return Err(git2::Error::from_str("timed out"));
        }
        // A redirect may have moved the conversation elsewhere: credentials are for our host.
        let asking_host = GitUrl::parse_remote_base(asking_url).map(|u| u.host);
        if asking_host.as_deref().is_ok_and(|host| host != self.url.host) {
            return refuse(format!("'{}' asks for credentials, which are only sent to '{}'", super::redact_url(asking_url), self.url.host));
        }
        let ssh_user = username_from_url.map(str::to_owned).or_else(|| self.url.username.clone()).unwrap_or_else(|| "git".to_owned());
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
        if allowed.contains(CredentialType::SSH_KEY) && self.policy.remote_base {
            return Cred::ssh_key_from_agent(&ssh_user).or_else(|e| refuse(format!("remote bases over SSH use the SSH agent: {}", e.message())));
        }
        if allowed.contains(CredentialType::SSH_KEY) {
            return match &self.creds.ssh {
                Some(ssh) => Cred::ssh_key_from_memory(&ssh_user, None, &ssh.identity, ssh.passphrase.as_deref())
                    .or_else(|e| refuse(format!("unusable SSH identity: {}", self.scrub(e.message())))),
                None => refuse("the server requires an SSH key and the secret has no 'identity'".to_owned()),
            };
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            return match &self.creds.basic_auth {
                Some(basic) => Cred::userpass_plaintext(&basic.username, &basic.password),
                None => refuse("the server requires credentials and none were given".to_owned()),
            };
        }
        refuse(format!("the server asks for an unsupported authentication method ({allowed:?})"))
    }

    fn check_certificate(&self, cert: &git2::cert::Cert<'_>, host: &str) -> Result<CertificateCheckStatus, git2::Error> {
        let refuse_with = |failure: CallbackFailure, message: &str| {
            self.record(failure);
            Err(git2::Error::from_str(message))
        };
        if let Some(hostkey) = cert.as_hostkey() {
            if self.policy.remote_base {
                // No secret to pin keys with: libgit2 checks the user's known_hosts.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            }
            let Some(ssh) = &self.creds.ssh else {
                let message = "no known_hosts given: refusing to trust an unverified SSH host key".to_owned();
                return refuse_with(CallbackFailure::HostKey(message.clone()), &message);
            };
            let Some(blob) = hostkey.hostkey() else {
                let message = "the server's raw host key is not available for verification".to_owned();
                return refuse_with(CallbackFailure::HostKey(message.clone()), &message);
            };
            return match check_host_key(&ssh.known_hosts, &self.url.host, self.url.port, blob) {
                HostKeyCheck::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                HostKeyCheck::Mismatch => {
                    let message = format!("host key {} for '{}' does not match known_hosts", ssh_fingerprint(blob), self.url.host);
                    refuse_with(CallbackFailure::HostKey(message.clone()), &message)
                }
                HostKeyCheck::Unknown => {
                    let message = format!("host '{}' (port {}) is not in known_hosts (key {})", self.url.host, self.url.port, ssh_fingerprint(blob));
                    refuse_with(CallbackFailure::HostKey(message.clone()), &message)
                }
            };
        }
        if let (Some(x509), Some(ca)) = (cert.as_x509(), &self.creds.ca_pem) {
            // Our verdict replaces libgit2's: only the secret's CA is trusted, not the system's.
            let name = if host.is_empty() { self.url.host.as_str() } else { host };
            return match verify_server_cert(ca, x509.data(), name) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(message) => refuse_with(CallbackFailure::Certificate(message.clone()), &message),
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
        if let Some(passphrase) = self.creds.ssh.as_ref().and_then(|s| s.passphrase.as_deref()) {
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
                CallbackFailure::Authentication(message) => GitError::AuthenticationFailed { url, message },
                CallbackFailure::HostKey(message) => GitError::HostKeyRejected { url, message },
                CallbackFailure::Certificate(message) => GitError::CertificateRejected { url, message },
                CallbackFailure::Timeout => GitError::Timeout { url, seconds: self.timeout.as_secs() },
                CallbackFailure::TooLarge(limit) => GitError::TooLarge { url, what: "the transfer (bytes received)", limit },
            };
        }
        if Instant::now() >= self.deadline || message.contains("timed out") {
            return GitError::Timeout { url, seconds: self.timeout.as_secs() };
        }
        let lower = message.to_ascii_lowercase();
        match (error.code(), error.class()) {
            (ErrorCode::Auth, _) => GitError::AuthenticationFailed { url, message },
            (ErrorCode::Certificate, _) | (_, ErrorClass::Ssl) => GitError::CertificateRejected { url, message },
            _ if lower.contains("certificate") => GitError::CertificateRejected { url, message },
            // libssh2 reports a wrong key passphrase or a refused key while authenticating.
            (_, ErrorClass::Ssh) if lower.contains("authenticat") || lower.contains("publickey") => GitError::AuthenticationFailed { url, message },
            (_, ErrorClass::Http) if lower.contains("401") || lower.contains("403") || lower.contains("authentication") => {
                GitError::AuthenticationFailed { url, message }
            }
            (_, _) if lower.contains("unsupported url protocol") || lower.contains("malformed url") => GitError::InvalidUrl { url, reason: message },
            _ if lower.contains("redirect") => GitError::Operation {
                url,
                message: format!(
                    "{message} (with credentials, ferroflux follows no redirect to another \
                     host: put the URL it redirects to in spec.url)"
                ),
            },
            _ => GitError::Operation { url, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_refs_mirror_remote_names() {
        assert_eq!(local_ref_for("refs/heads/main"), "refs/ferroflux/heads/main");
        assert_eq!(local_ref_for("refs/heads/*"), "refs/ferroflux/heads/*");
    }
}
