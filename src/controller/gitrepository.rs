//! The GitRepository reconciler: resolve the ref with one ref listing; when the revision (or the
//! ignore rules) changed, fetch shallowly, pack the tree into a deterministic tar.gz, store it
//! atomically, serve it, and write Flux's artifact, conditions and events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::coalesce::Coalescer;
use super::conditions::{self, Status};
use super::reconciler::{self, Done, write_status};
use super::{Context, Failure, ReconcileError, now, with_jitter};
use crate::api::meta::{Artifact, RECONCILE_REQUEST_ANNOTATION, condition as meta, parse_duration};
use crate::api::source::condition as reason;
use crate::api::source::v1::{GitRepository, GitRepositoryStatus};
use crate::source::artifact::IgnoreRules;
use crate::source::git::{self, Credentials, GitRefSpec};
use crate::source::storage::{ObjectKey, Storage, StoredArtifact};

/// Artifacts kept per GitRepository besides the current one.
const KEEP_PREVIOUS: usize = 2;

/// What the GitRepository reconciler needs besides the shared context.
pub struct GitContext {
    pub ctx: Arc<Context>,
    pub storage: Arc<Storage>,
    /// `http://host:port` of the artifact server as other controllers reach it.
    pub advertised_base: String,
    /// Asks whether an artifact URL another instance wrote still answers (see [`keep_url`]).
    pub http: reqwest::Client,
    /// Ref listings shared by GitRepositories with the same URL, credentials and ref.
    listings: Coalescer<ListingKey, Result<git::ResolvedRef, FetchFailure>>,
    /// Fetch-and-pack rounds shared by GitRepositories with the same URL, credentials, commit
    /// and ignore rules: the first stores its artifact, the others copy it.
    fetches: Coalescer<FetchKey, Result<StoredCommit, FetchFailure>>,
}

/// What a ref listing depends on: the spec ([`content_spec`]) and the credentials (by digest).
#[derive(Clone, PartialEq, Eq, Hash)]
struct ListingKey {
    spec: String,
    credentials: [u8; 32],
}

/// What an artifact's bytes depend on: the spec, the credentials (by digest: who may read it)
/// and the commit.
#[derive(Clone, PartialEq, Eq, Hash)]
struct FetchKey {
    spec: String,
    credentials: [u8; 32],
    commit: String,
}

/// The spec without what only decides when and how long to work (interval, timeout, suspend)
/// and the Secret's name (its content is in the credentials' digest): two GitRepositories with
/// equal content specs and credentials list the same refs and store the same bytes.
fn content_spec(repo: &GitRepository) -> String {
    let mut spec = repo.spec.clone();
    spec.interval = String::new();
    spec.timeout = None;
    spec.suspend = None;
    spec.secret_ref = None;
    serde_json::to_string(&spec).unwrap_or_default()
}

/// An artifact stored by a fetch round, with the revision Flux writes for it.
#[derive(Clone)]
struct StoredCommit {
    stored: StoredArtifact,
    /// The commit fetched: a branch may have moved past the listed one meanwhile.
    fetched: git::FetchedCommit,
}

/// A failed Git or storage step: the condition to set and why.
type FetchFailure = (&'static str, Failure);

impl GitContext {
    pub fn new(ctx: Arc<Context>, storage: Arc<Storage>, advertised_base: String) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).redirect(reqwest::redirect::Policy::none()).build().unwrap_or_default();
        GitContext { ctx, storage, advertised_base, http, listings: Coalescer::default(), fetches: Coalescer::default() }
    }
}

/// The GitRepository's `spec.timeout` (default 60 s): bounds its Git operations.
pub fn timeout(repo: &GitRepository) -> Duration {
    repo.spec.timeout.as_deref().and_then(|t| parse_duration(t).ok()).unwrap_or(Duration::from_secs(60))
}

#[instrument(skip_all, fields(gitrepository = %format!("{}/{}", repo.namespace().unwrap_or_default(), repo.name_any())))]
pub async fn reconcile(repo: Arc<GitRepository>, gctx: Arc<GitContext>) -> Result<Action, ReconcileError> {
    let ctx = gctx.ctx.clone();
    reconciler::reconcile_with_finalizer(&ctx, repo, |repo| apply(repo, gctx.clone()), |repo| cleanup(repo, gctx.clone())).await
}

pub fn error_policy(repo: Arc<GitRepository>, error: &ReconcileError, gctx: Arc<GitContext>) -> Action {
    reconciler::error_policy(repo.as_ref(), error, &gctx.ctx)
}

async fn apply(repo: Arc<GitRepository>, gctx: Arc<GitContext>) -> Result<Done, ReconcileError> {
    let mut status = repo.status.clone().unwrap_or_default();
    if let Some(requested) = repo.annotations().get(RECONCILE_REQUEST_ANNOTATION) {
        status.last_handled_reconcile_at = Some(requested.clone());
    }
    if repo.spec.suspend == Some(true) {
        info!("suspended, skipping");
        write_status(&gctx.ctx, repo.as_ref(), &status).await?;
        return Ok(Done { action: Action::await_change(), ready: true });
    }
    let interval = parse_duration(&repo.spec.interval).unwrap_or(Duration::from_secs(60));
    let generation = repo.meta().generation;
    let timeout = timeout(&repo);
    // The Git operations are bounded by the timeout themselves; this bounds the whole, so a stuck
    // remote never holds a worker past it.
    let outcome = match tokio::time::timeout(timeout, run(&repo, &gctx, &mut status)).await {
        Ok(outcome) => outcome,
        Err(_) => Err((
            reason::FETCH_FAILED,
            Failure::new(
                reason::GIT_OPERATION_FAILED,
                format!("failed to checkout and determine revision: timeout after {timeout:?} waiting for '{}'", repo.spec.url),
            ),
        )),
    };
    // When the conditions change, not when the reconcile started.
    let time = now();
    let mut new_artifact_message = None;
    let ready = match outcome {
        Ok(new_artifact) => {
            let Some(artifact) = status.artifact.clone() else {
                return Err(ReconcileError::Internal("artifact missing after a successful reconcile"));
            };
            let message = format!("stored artifact for revision '{}'", artifact.revision);
            status.observed_generation = generation;
            status.observed_ignore = repo.spec.ignore.clone();
            conditions::set(&mut status.conditions, meta::READY, Status::True, meta::SUCCEEDED, &message, generation, &time);
            conditions::set(&mut status.conditions, reason::ARTIFACT_IN_STORAGE, Status::True, meta::SUCCEEDED, &message, generation, &time);
            for stale in [meta::RECONCILING, meta::STALLED, reason::FETCH_FAILED, reason::STORAGE_OPERATION_FAILED] {
                conditions::remove(&mut status.conditions, stale);
            }
            if new_artifact {
                new_artifact_message = Some(message);
            }
            true
        }
        Err((condition, failure)) => {
            status.observed_generation = generation;
            conditions::set(&mut status.conditions, meta::READY, Status::False, failure.reason, &failure.message, generation, &time);
            conditions::set(&mut status.conditions, condition, Status::True, failure.reason, &failure.message, generation, &time);
            if failure.reason == reason::INVALID_URL {
                // Retrying cannot help until the spec changes.
                conditions::set(&mut status.conditions, meta::STALLED, Status::True, failure.reason, &failure.message, generation, &time);
            }
            gctx.ctx.event(repo.as_ref(), true, failure.reason, failure.message.clone()).await;
            false
        }
    };
    write_status(&gctx.ctx, repo.as_ref(), &status).await?;
    // Only after the status says so: an instance whose write lost a conflict announces nothing.
    if let Some(message) = new_artifact_message {
        gctx.ctx.event(repo.as_ref(), false, reason::NEW_ARTIFACT, message).await;
    }
    Ok(Done { action: Action::requeue(with_jitter(interval)), ready })
}

/// Brings the artifact up to date. `Ok(true)` when a new artifact was stored; on failure, the
/// condition to set (`FetchFailed` or `StorageOperationFailed`) and why.
async fn run(repo: &GitRepository, gctx: &GitContext, status: &mut GitRepositoryStatus) -> Result<bool, (&'static str, Failure)> {
    let fetch_failed = |reason: &'static str, message: String| (reason::FETCH_FAILED, Failure::new(reason, message));
    let ns = repo.namespace().unwrap_or_default();
    let name = repo.name_any();
    let timeout = timeout(repo);

    let mut credentials = match &repo.spec.secret_ref {
        None => Credentials::default(),
        Some(secret_ref) => {
            let secrets: Api<Secret> = Api::namespaced(gctx.ctx.client.clone(), &ns);
            let secret = secrets
                .get(&secret_ref.name)
                .await
                .map_err(|e| fetch_failed(reason::AUTHENTICATION_FAILED, format!("failed to get secret '{ns}/{}': {}", secret_ref.name, kube_message(e))))?;
            let data: BTreeMap<String, Vec<u8>> = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            Credentials::from_secret_data(&data)
                .map_err(|e| fetch_failed(reason::AUTHENTICATION_FAILED, format!("failed to configure authentication options: {e}")))?
        }
    };
    credentials.allow_insecure_http = gctx.ctx.options.allow_insecure_http_credentials;
    let spec_ref = repo.spec.r#ref.clone().unwrap_or_default();
    let ref_spec = GitRefSpec { branch: spec_ref.branch, tag: spec_ref.tag, semver: spec_ref.semver, name: spec_ref.name, commit: spec_ref.commit };
    let git_failed = |e: git::GitError| fetch_failed(e.reason().as_str(), git_message(e));

    // The Git work runs on blocking threads, which do not inherit the reconcile's span: each
    // carries one of its own (a child of it), so libgit2's progress and errors stay attributed.
    let redacted_url = git::redact_url(&repo.spec.url);
    // The cheap part, and all of a poll when nothing changed: one ref listing.
    // Shared with every GitRepository listing the same URL, ref and credentials at this moment.
    let fingerprint = credentials.fingerprint();
    let spec_key = content_spec(repo);
    let listing = ListingKey { spec: spec_key.clone(), credentials: fingerprint };
    let (url, creds, spec) = (repo.spec.url.clone(), credentials.clone(), ref_spec.clone());
    let span = tracing::info_span!("git_resolve", url = %redacted_url);
    let resolved = gctx
        .listings
        .run(listing, || async move {
            tokio::task::spawn_blocking(move || span.in_scope(|| git::resolve_remote(&url, &creds, &spec, timeout)))
                .await
                .map_err(|e| fetch_failed(reason::GIT_OPERATION_FAILED, e.to_string()))?
                .map_err(git_failed)
        })
        .await?;
    let revision = resolved.revision();
    let key =
        ObjectKey::git_repository(&ns, &name).map_err(|e| (reason::STORAGE_OPERATION_FAILED, Failure::new(reason::STORAGE_OPERATION_FAILED, e.to_string())))?;
    let unchanged_config = status.observed_ignore == repo.spec.ignore;
    if let Some(current) = &status.artifact {
        if current.revision == revision && unchanged_config && gctx.storage.exists(&key, &resolved.commit) {
            // The advertised address may have changed since the artifact was stored.
            let url = format!("{}/{}", gctx.advertised_base, current.path);
            if current.url != url && !keep_url(gctx, &current.url).await {
                if let Some(a) = status.artifact.as_mut() {
                    a.url = url;
                }
            }
            return Ok(false);
        }
    }

    // Something changed: fetch the commit, pack it, store it; or copy the artifact another
    // GitRepository with the same URL, credentials, commit and ignore rules stored just now.
    let fetch = FetchKey { spec: spec_key, credentials: fingerprint, commit: resolved.commit.clone() };
    let shared = gctx.fetches.run(fetch, || fetch_and_store(repo, gctx, &key, credentials.clone(), resolved.clone(), timeout)).await?;
    let StoredCommit { mut stored, fetched } = shared;
    let commit = fetched.commit.clone();
    if stored.path != gctx.storage.artifact_path(&key, &commit).unwrap_or_default() {
        let (storage, store_key, from) = (gctx.storage.clone(), key.clone(), stored.path.clone());
        let copied = tokio::task::spawn_blocking(move || storage.store_copy(&store_key, &commit, &from)).await.ok().and_then(Result::ok);
        stored = match copied {
            Some(copy) => copy,
            // The other's artifact went meanwhile (its GitRepository deleted): our own fetch.
            None => fetch_and_store(repo, gctx, &key, credentials, resolved.clone(), timeout).await?.stored,
        };
    }

    if let Some(current) = &status.artifact {
        // Artifacts are deterministic: another instance (no leader election) stored the same
        // bytes and wrote them into the status. Ours now serves them too; the status stays as
        // it is and nothing new is announced, unless its URL no longer answers.
        if current.revision == fetched.revision && current.digest == stored.digest && current.path == stored.relative_path {
            let url = format!("{}/{}", gctx.advertised_base, stored.relative_path);
            if current.url != url && !keep_url(gctx, &current.url).await {
                if let Some(a) = status.artifact.as_mut() {
                    a.url = url;
                }
            }
            return Ok(false);
        }
    }
    status.artifact = Some(Artifact {
        url: format!("{}/{}", gctx.advertised_base, stored.relative_path),
        path: stored.relative_path,
        revision: fetched.revision,
        digest: stored.digest,
        last_update_time: now(),
        size: i64::try_from(stored.size).ok(),
        metadata: None,
    });
    if let Err(e) = gctx.storage.garbage_collect(&key, &fetched.commit, KEEP_PREVIOUS) {
        warn!(error = %e, "garbage collection of old artifacts failed");
    }
    Ok(true)
}

/// Fetches the resolved commit shallowly into a temporary checkout, packs it with the
/// GitRepository's ignore rules and stores it as `key`'s artifact.
async fn fetch_and_store(
    repo: &GitRepository,
    gctx: &GitContext,
    key: &ObjectKey,
    credentials: Credentials,
    resolved: git::ResolvedRef,
    timeout: Duration,
) -> Result<StoredCommit, FetchFailure> {
    let fetch_failed = |reason: &'static str, message: String| (reason::FETCH_FAILED, Failure::new(reason, message));
    let storage_failed = |r: &'static str, e: String| (reason::STORAGE_OPERATION_FAILED, Failure::new(r, e));
    let work = tempfile::Builder::new()
        .prefix(".checkout-")
        .tempdir_in(gctx.storage.root())
        .map_err(|e| storage_failed(reason::STORAGE_OPERATION_FAILED, format!("failed to create temporary working directory: {e}")))?;
    let checkout = work.path().join("checkout");
    let redacted_url = git::redact_url(&repo.spec.url);
    let revision = resolved.revision();
    let (url, dir) = (repo.spec.url.clone(), checkout.clone());
    let span = tracing::info_span!("git_fetch", url = %redacted_url, revision = %revision);
    let fetched = tokio::task::spawn_blocking(move || span.in_scope(|| git::fetch(&url, &credentials, &resolved, timeout, &dir)))
        .await
        .map_err(|e| fetch_failed(reason::GIT_OPERATION_FAILED, e.to_string()))?
        .map_err(|e| fetch_failed(e.reason().as_str(), git_message(e)))?;

    let storage = gctx.storage.clone();
    let ignore = repo.spec.ignore.clone();
    let (store_key, commit) = (key.clone(), fetched.commit.clone());
    let span = tracing::info_span!("store_artifact", revision = %fetched.revision);
    let stored = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let rules = IgnoreRules::load(&checkout, ignore.as_deref()).map_err(|e| e.to_string())?;
        storage.store_tree(&store_key, &commit, &checkout, &rules).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| storage_failed(reason::ARCHIVE_OPERATION_FAILED, e.to_string()))?
    .map_err(|e| storage_failed(reason::ARCHIVE_OPERATION_FAILED, format!("unable to archive artifact to storage: {e}")))?;
    drop(work);
    Ok(StoredCommit { stored, fetched })
}

/// A Git error as the condition's message: Flux's prefix for operation failures.
fn git_message(e: git::GitError) -> String {
    match e.reason() {
        git::FailureReason::GitOperationFailed => format!("failed to checkout and determine revision: {e}"),
        _ => e.to_string(),
    }
}

/// Whether `status.artifact.url`, written with another address than ours, still serves the
/// artifact: then another instance (no leader election) wrote it and rewriting it to our address
/// would make the two flip it forever. A URL that does not answer (the advertised address
/// changed) is rewritten.
async fn keep_url(gctx: &GitContext, url: &str) -> bool {
    match gctx.http.head(url).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

fn kube_message(e: kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// Deleting a GitRepository deletes its artifacts.
async fn cleanup(repo: Arc<GitRepository>, gctx: Arc<GitContext>) -> Result<Action, ReconcileError> {
    let ns = repo.namespace().unwrap_or_default();
    let key = ObjectKey::git_repository(&ns, &repo.name_any())?;
    gctx.storage.delete_all(&key)?;
    gctx.ctx.metrics.record_status("GitRepository", &ns, &repo.name_any(), "Deleted", false);
    Ok(Action::await_change())
}
