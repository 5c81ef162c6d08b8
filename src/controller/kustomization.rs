//! The Kustomization reconciler: source artifact → kustomize build → postBuild substitution →
//! staged dry-run and server-side apply → prune → health → Flux's status, conditions and events.
//!
//! Every failure a user can cause ends as `Ready=False` with Flux's reason and a message, and an
//! Event; nothing of a failed stage is written and the inventory (the last good revision) stays.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use tracing::{info, instrument, warn};

use super::conditions::{self, Status};
use super::health::{Health, health};
use super::reconciler::{self, Done, write_status};
use super::render::{self, RenderOptions, owner_labels};
use super::variables::{self, Variables};
use super::{Context, Failure, ReconcileError, Retry, now, with_jitter};
use k8s_openapi::api::core::v1::Secret;

use crate::api::kustomize::v1::{DeletionPolicy, Kustomization, KustomizationStatus, SourceKind};
use crate::api::kustomize::{ResourceInventory, ResourceRef, condition as ks_reason};
use crate::api::meta::{RECONCILE_REQUEST_ANNOTATION, condition as meta, parse_duration};
use crate::api::source::v1::GitRepository;
use crate::apply::{Action as Change, Applier, ApplyError, ApplyOptions, ObjectId};

#[instrument(skip_all, fields(kustomization = %format!("{}/{}", ks.namespace().unwrap_or_default(), ks.name_any())))]
pub async fn reconcile(ks: Arc<Kustomization>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    reconciler::reconcile_with_finalizer(&ctx, ks, |ks| apply(ks, ctx.clone()), |ks| cleanup(ks, ctx.clone())).await
}

pub fn error_policy(ks: Arc<Kustomization>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    reconciler::error_policy(ks.as_ref(), error, &ctx)
}

/// One reconcile of a Kustomization that is not being deleted: [`run`], then its outcome into
/// status, events and the next reconcile ([`conclude`]).
async fn apply(ks: Arc<Kustomization>, ctx: Arc<Context>) -> Result<Done, ReconcileError> {
    let mut status = ks.status.clone().unwrap_or_default();
    let requested = ks.annotations().get(RECONCILE_REQUEST_ANNOTATION).cloned();
    if requested.is_some() {
        status.last_handled_reconcile_at = requested;
    }
    if ks.spec.suspend == Some(true) {
        info!("suspended, skipping");
        write_status(&ctx, ks.as_ref(), &status).await?;
        return Ok(Done { action: Action::await_change(), ready: true });
    }
    let outcome = Box::pin(run(&ks, &ctx, &mut status)).await;
    let conclusion = conclude(&ks, status, outcome, &now());
    // Sent together (each is stamped, in order, when it starts), and before the status says
    // the reconcile is done, so that whoever sees the status finds its Events.
    futures::future::join_all(conclusion.events.into_iter().map(|note| ctx.event(ks.as_ref(), note.warning, note.reason, note.message))).await;
    Box::pin(write_status(&ctx, ks.as_ref(), &conclusion.status)).await?;
    let action = match conclusion.requeue {
        Requeue::Interval(interval) => Action::requeue(with_jitter(interval)),
        Requeue::After(after) => Action::requeue(after),
    };
    Ok(Done { action, ready: conclusion.ready })
}

/// An Event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// When to reconcile again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    /// After the interval, with a little jitter.
    Interval(Duration),
    /// After exactly this long.
    After(Duration),
}

/// What a reconcile's outcome means for the Kustomization.
#[derive(Debug, Clone, PartialEq)]
pub struct Conclusion {
    pub status: KustomizationStatus,
    pub events: Vec<Note>,
    pub requeue: Requeue,
    /// `Ready=True`: counted as a success in the metrics.
    pub ready: bool,
}

/// The outcome of [`run`] as Flux writes it: conditions, `lastAppliedRevision`, the Events and
/// the next reconcile. Pure: `status` is what `run` left (the inventory, the attempted revision).
pub fn conclude(ks: &Kustomization, mut status: KustomizationStatus, outcome: Result<Outcome, Failure>, time: &Time) -> Conclusion {
    let interval = parse_duration(&ks.spec.interval).unwrap_or(Duration::from_secs(600));
    let retry = ks.spec.retry_interval.as_deref().and_then(|r| parse_duration(r).ok()).unwrap_or(interval);
    let generation = ks.meta().generation;
    status.observed_generation = generation;
    let mut events = Vec::new();
    match outcome {
        Ok(Outcome { revision, changes }) => {
            status.last_applied_revision = Some(revision.clone());
            let message = format!("Applied revision: {revision}");
            conditions::set(&mut status.conditions, meta::READY, Status::True, ks_reason::RECONCILIATION_SUCCEEDED, &message, generation, time);
            conditions::remove(&mut status.conditions, meta::RECONCILING);
            conditions::remove(&mut status.conditions, meta::STALLED);
            if ks.spec.wait == Some(true) || ks.spec.health_checks.as_ref().is_some_and(|h| !h.is_empty()) {
                conditions::set(&mut status.conditions, meta::HEALTHY, Status::True, meta::SUCCEEDED, "Health check passed", generation, time);
            }
            if !changes.is_empty() {
                events.push(Note { warning: false, reason: meta::PROGRESSING, message: changes.join("\n") });
                events.push(Note {
                    warning: false,
                    reason: ks_reason::RECONCILIATION_SUCCEEDED,
                    message: format!("Reconciliation finished, next run in {}", ks.spec.interval),
                });
            }
            Conclusion { status, events, requeue: Requeue::Interval(interval), ready: true }
        }
        Err(failure) => {
            conditions::set(&mut status.conditions, meta::READY, Status::False, failure.reason, &failure.message, generation, time);
            if failure.reason == ks_reason::HEALTH_CHECK_FAILED {
                conditions::set(&mut status.conditions, meta::HEALTHY, Status::False, failure.reason, &failure.message, generation, time);
            }
            conditions::remove(&mut status.conditions, meta::RECONCILING);
            if failure.event {
                events.push(Note { warning: true, reason: failure.reason, message: failure.message });
            } else {
                info!(reason = failure.reason, "{}", failure.message);
            }
            let requeue = Requeue::After(match failure.retry {
                Retry::RetryInterval => retry,
                Retry::After(after) => after,
            });
            Conclusion { status, events, requeue, ready: false }
        }
    }
}

/// What a reconcile that got through did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub revision: String,
    /// Flux's change lines, e.g. `Deployment/default/app configured`.
    pub changes: Vec<String>,
}

/// One reconcile: revision → objects ([`render`]) → cluster (apply, prune, health). Failure
/// messages never carry values read from Secrets.
async fn run(ks: &Kustomization, ctx: &Context, status: &mut KustomizationStatus) -> Result<Outcome, Failure> {
    let mut vars = Variables::default();
    run_masked(ks, ctx, status, &mut vars).await.map_err(|mut failure| {
        failure.message = vars.mask(&failure.message);
        failure
    })
}

async fn run_masked(ks: &Kustomization, ctx: &Context, status: &mut KustomizationStatus, vars: &mut Variables) -> Result<Outcome, Failure> {
    // The steps that do work are boxed: this future lives through the health wait, and an
    // unboxed one is as large as the largest of them (see the test `a_waiting_reconcile_is_small`).
    Box::pin(check_dependencies(ks, ctx)).await?;
    let artifact = Box::pin(source_artifact(ks, ctx)).await?;
    status.last_attempted_revision = Some(artifact.revision.clone());

    // Held until the build is done: the cache does not evict a tree in use.
    let tree = Box::pin(ctx.artifacts.fetch(&artifact)).await.map_err(|e| Failure::new(ks_reason::ARTIFACT_FAILED, e.to_string()))?;
    let mut inputs = Box::pin(super::unchanged::check(ks, ctx, status, &artifact.revision, tree.path())).await;
    if inputs.unchanged {
        return Ok(Outcome { revision: artifact.revision, changes: Vec::new() });
    }
    let local = Box::pin(applier_for(ks, ctx)).await?;
    let applier = Box::pin(target_applier(ks, ctx, &local)).await?;
    let objects = Box::pin(render(ks, ctx, &local, tree.path(), &artifact.revision, vars)).await?;
    // While the tree is still held.
    Box::pin(inputs.digest()).await;
    drop(tree);

    let opts = ApplyOptions { force: ks.spec.force == Some(true), owner_labels: owner_labels(ks), wait_timeout: timeout(ks) };
    let mut new_inventory = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        let (id, version) = ObjectId::of(object, index).map_err(|e| Failure::new(ks_reason::BUILD_FAILED, e.to_string()))?;
        new_inventory.push((id, version));
    }
    // Objects this revision adds join the inventory before they are applied: when the process
    // dies mid-apply (SIGKILL, OOM), the next reconcile still knows them and prunes those the
    // next revision no longer has, instead of leaving them labelled as ours in no inventory.
    let previous = inventory_entries(status.inventory.as_ref());
    let known: BTreeSet<&ObjectId> = previous.iter().map(|(id, _)| id).collect();
    if new_inventory.iter().any(|(id, _)| !known.contains(id)) {
        status.inventory = Some(inventory(previous.iter().chain(new_inventory.iter())));
        Box::pin(write_status(ctx, ks, status))
            .await
            .map_err(|e| Failure::new(ks_reason::RECONCILIATION_FAILED, format!("failed to record the inventory before applying: {e}")))?;
    }
    let key = format!("{}/{}", ks.namespace().unwrap_or_default(), ks.name_any());
    let mut state = ctx.applied.lock().await.remove(&key).unwrap_or_default();
    let mut applied = Box::pin(applier.apply_all_with(objects, &opts, &mut state))
        .await
        .map_err(|e: ApplyError| Failure::new(ks_reason::RECONCILIATION_FAILED, e.to_string()))?;
    // Kept only after a successful apply: after a failure, the next reconcile checks everything.
    ctx.applied.lock().await.insert(key, state);
    // Skipped objects (Flux's `ssa: Ignore|IfNotPresent`, `reconcile: disabled`) are left out of
    // the change list, as unchanged ones are: reporting them would make every reconcile an event.
    let mut changes: Vec<String> = applied.iter().filter(|c| !matches!(c.action, Change::Unchanged | Change::Skipped)).map(ToString::to_string).collect();
    let skipped: BTreeSet<ObjectId> = applied.iter().filter(|c| c.action == Change::Skipped).map(|c| c.id.clone()).collect();
    // What the apply requests returned: the first health look reads these instead of asking
    // the API server again for every object.
    // Kept only with what health reads: a Kustomization waiting for its Deployment holds these
    // for the whole wait, and at a thousand waiting at once the managedFields and pod templates
    // were most of the controller's memory.
    let fresh: HashMap<ObjectId, Value> = applied.iter_mut().filter_map(|c| Some((c.id.clone(), super::health::relevant(c.live.take()?)))).collect();
    drop(applied);

    // Prune what the previous inventory had and this revision does not.
    let current: BTreeSet<&ObjectId> = new_inventory.iter().map(|(id, _)| id).collect();
    let stale: Vec<(ObjectId, String)> = previous.into_iter().filter(|(id, _)| !current.contains(id)).collect();
    let mut kept_for_retry = Vec::new();
    if ks.spec.prune && !stale.is_empty() {
        let (pruned, failed) = Box::pin(applier.prune(&stale, &opts)).await;
        changes.extend(pruned.iter().filter(|c| c.action == Change::Deleted).map(ToString::to_string));
        if !failed.is_empty() {
            kept_for_retry = failed.iter().map(|(entry, _)| entry.clone()).collect();
            status.inventory = Some(inventory(new_inventory.iter().chain(kept_for_retry.iter())));
            let message = failed.iter().map(|((id, _), e)| format!("{id} prune failed: {e}")).collect::<Vec<_>>().join("\n");
            return Err(Failure::new(ks_reason::PRUNE_FAILED, message));
        }
    }
    status.inventory = Some(inventory(new_inventory.iter().chain(kept_for_retry.iter())));

    let source = source_key("GitRepository", &source_namespace(ks), &ks.spec.source_ref.name);
    // `wait: true` waits for what was applied: a skipped object may not even exist.
    let applied_now: Vec<(ObjectId, String)> = new_inventory.iter().filter(|(id, _)| !skipped.contains(id)).cloned().collect();
    check_health(ks, ctx, status, &applier, &applied_now, fresh, (&source, &artifact.revision)).await?;
    Box::pin(inputs.remember(ctx, &artifact.revision)).await;
    Ok(Outcome { revision: artifact.revision, changes })
}

/// The applier acting as the Kustomization's ServiceAccount (`spec.serviceAccountName`, or the
/// controller's `--default-service-account`), or as the controller itself when neither is set.
async fn applier_for(ks: &Kustomization, ctx: &Context) -> Result<Arc<Applier>, Failure> {
    let ns = ks.namespace().unwrap_or_default();
    ctx.applier_as(&ns, ks.spec.service_account_name.as_deref()).await.map_err(|e| {
        Failure::new(
            ks_reason::RECONCILIATION_FAILED,
            format!("failed to impersonate ServiceAccount '{ns}/{}': {e}", ctx.service_account(ks.spec.service_account_name.as_deref()).unwrap_or_default()),
        )
    })
}

/// The applier for the cluster the objects go to: `local` (this cluster, as the Kustomization's
/// ServiceAccount), or the cluster of `spec.kubeConfig.secretRef`'s kubeconfig, as Flux does
/// (with `serviceAccountName` impersonated there too when set).
async fn target_applier(ks: &Kustomization, ctx: &Context, local: &Arc<Applier>) -> Result<Arc<Applier>, Failure> {
    let Some(reference) = &ks.spec.kube_config else {
        return Ok(local.clone());
    };
    let ns = ks.namespace().unwrap_or_default();
    let failed = |message: String| Failure::new(ks_reason::RECONCILIATION_FAILED, message);
    let Some(secret_ref) = &reference.secret_ref else {
        return Err(failed("spec.kubeConfig.configMapRef (workload identity) is not supported by ferroflux: use spec.kubeConfig.secretRef".into()));
    };
    // The Secret is the Kustomization's own configuration: read with the controller's rights, as
    // Flux does.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| failed(format!("failed to get kubeconfig secret '{ns}/{}': {e}", secret_ref.name)))?
        .ok_or_else(|| failed(format!("kubeconfig secret '{ns}/{}' not found", secret_ref.name)))?;
    let data = secret.data.clone().unwrap_or_default();
    let keys: Vec<&str> = match secret_ref.key.as_deref() {
        Some(key) => vec![key],
        None => vec!["value", "value.yaml"],
    };
    let Some((key, bytes)) = keys.iter().find_map(|k| data.get(*k).map(|v| (*k, v))) else {
        return Err(failed(format!("kubeconfig secret '{ns}/{}' has no key {}", secret_ref.name, keys.join(" or "))));
    };
    // Errors name the Secret and the key, never the value: it may be any credential.
    let text = std::str::from_utf8(&bytes.0).map_err(|_| failed(format!("kubeconfig secret '{ns}/{}' key '{key}' is not UTF-8 text", secret_ref.name)))?;
    let version = format!("{}@{}", secret.metadata.uid.unwrap_or_default(), secret.metadata.resource_version.unwrap_or_default());
    // As Flux's impersonator: the Kustomization's account, else the default one, on the remote
    // cluster too.
    let impersonate = ctx.service_account(ks.spec.service_account_name.as_deref()).map(|sa| format!("system:serviceaccount:{ns}:{sa}"));
    ctx.applier_for_kubeconfig(&version, text, impersonate).await.map_err(|e| failed(format!("kubeconfig secret '{ns}/{}' key '{key}': {e}", secret_ref.name)))
}

/// With `--no-cross-namespace-refs`, a reference to another namespace is refused (Flux's
/// `AccessDenied`).
fn check_namespace_access(ks: &Kustomization, ctx: &Context, kind: &str, namespace: &str, name: &str) -> Result<(), Failure> {
    if ctx.options.no_cross_namespace_refs && namespace != ks.namespace().unwrap_or_default() {
        return Err(Failure::new(meta::ACCESS_DENIED, format!("can't access '{kind}/{namespace}/{name}', cross-namespace references have been blocked")));
    }
    Ok(())
}

/// Flux's inventory: the id, and the version alone (`v1`, not `apps/v1`).
fn inventory<'a>(entries: impl Iterator<Item = &'a (ObjectId, String)>) -> ResourceInventory {
    let mut entries: Vec<ResourceRef> = entries
        .map(|(id, api_version)| ResourceRef { id: id.inventory_id(), v: api_version.rsplit_once('/').map_or(api_version.as_str(), |(_, v)| v).to_owned() })
        .collect();
    entries.sort();
    entries.dedup();
    ResourceInventory { entries }
}

/// The inventory's objects with their full API version.
pub fn inventory_entries(inventory: Option<&ResourceInventory>) -> Vec<(ObjectId, String)> {
    inventory
        .map(|inv| {
            inv.entries
                .iter()
                .filter_map(|e| {
                    let id = ObjectId::from_inventory_id(&e.id).ok()?;
                    let api_version = if id.group.is_empty() { e.v.clone() } else { format!("{}/{}", id.group, e.v) };
                    Some((id, api_version))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn timeout(ks: &Kustomization) -> Duration {
    ks.spec.timeout.as_deref().or(Some(ks.spec.interval.as_str())).and_then(|t| parse_duration(t).ok()).unwrap_or(Duration::from_secs(300))
}

async fn check_dependencies(ks: &Kustomization, ctx: &Context) -> Result<(), Failure> {
    for dep in ks.spec.depends_on.iter().flatten() {
        let ns = dep.namespace.clone().unwrap_or_else(|| ks.namespace().unwrap_or_default());
        check_namespace_access(ks, ctx, "Kustomization", &ns, &dep.name)?;
        let api: Api<Kustomization> = Api::namespaced(ctx.client.clone(), &ns);
        let not_ready = |why: &str| {
            Failure::new(meta::DEPENDENCY_NOT_READY, format!("dependency '{ns}/{}' is not ready{why}", dep.name)).retry_after(ctx.options.dependency_requeue())
        };
        let found = api.get_opt(&dep.name).await.map_err(|e| not_ready(&format!(": {e}")))?.ok_or_else(|| not_ready(": not found"))?;
        let status = found.status.unwrap_or_default();
        let ready = conditions::is_true(&status.conditions, meta::READY)
            && status.observed_generation == found.metadata.generation
            && status.last_applied_revision.is_some();
        if !ready {
            return Err(not_ready(""));
        }
    }
    Ok(())
}

async fn source_artifact(ks: &Kustomization, ctx: &Context) -> Result<crate::api::meta::Artifact, Failure> {
    let source = &ks.spec.source_ref;
    if source.kind != SourceKind::GitRepository {
        return Err(Failure::new(
            ks_reason::ARTIFACT_FAILED,
            format!("source kind {:?} is not supported by ferroflux yet: only GitRepository is", source.kind),
        ));
    }
    let ns = source_namespace(ks);
    check_namespace_access(ks, ctx, "GitRepository", &ns, &source.name)?;
    let key = source_key("GitRepository", &ns, &source.name);
    let requeue = ctx.options.dependency_requeue();
    // A wait, logged but not an Event (as in Flux): the source's watch event starts this
    // reconcile again the moment the artifact is there.
    let no_artifact_yet = || {
        Failure::new(ks_reason::ARTIFACT_FAILED, format!("Source artifact not found, retrying in {}s", requeue.as_secs())).retry_after(requeue).without_event()
    };
    // What the manager's watch last saw; a source it does not watch (another shard's, or before
    // the watch has listed) is read.
    if let Some(seen) = ctx.source_artifact(&key) {
        return seen.ok_or_else(no_artifact_yet);
    }
    let api: Api<GitRepository> = Api::namespaced(ctx.client.clone(), &ns);
    let repo = api
        .get_opt(&source.name)
        .await
        .map_err(|e| Failure::new(ks_reason::ARTIFACT_FAILED, format!("failed to get source '{key}': {e}")).retry_after(requeue))?
        .ok_or_else(|| Failure::new(ks_reason::ARTIFACT_FAILED, format!("Source '{key}' not found")).retry_after(requeue))?;
    repo.status.and_then(|s| s.artifact).ok_or_else(no_artifact_yet)
}

/// The revision's objects ([`render::render`]): the build runs on a blocking thread, inside this
/// reconcile's span with the revision as a field; `postBuild`'s variables are read with the
/// Kustomization's (impersonated) client, so a ServiceAccount only sees what it may read. Values
/// from Secrets are recorded in `vars`, to be masked in every message.
async fn render(ks: &Kustomization, ctx: &Context, applier: &Applier, root: &Path, revision: &str, vars: &mut Variables) -> Result<Vec<Value>, Failure> {
    let dir = render::resolve_path(root, ks.spec.path.as_deref()).map_err(|e| Failure::new(e.reason(), e.to_string()))?;
    if let Some(post_build) = &ks.spec.post_build {
        *vars = variables::substitution_vars(applier.client(), &ks.namespace().unwrap_or_default(), post_build)
            .await
            .map_err(|e| Failure::new(ks_reason::BUILD_FAILED, e.to_string()))?;
    }
    // SOPS keys: the Kustomization's Secret read as the Kustomization (its ServiceAccount), the
    // global age Secret as the controller.
    let decryptor = crate::sops::cluster::decryptor_for(ks, applier.client(), &ctx.client, ctx.options.sops_age_secret.as_ref())
        .await
        .map_err(|e| Failure::new(ks_reason::DECRYPTION_FAILED, e.to_string()))?;
    let options = RenderOptions { enable_remote_bases: ctx.options.enable_remote_bases };
    // A build that runs past the timeout ends as BuildFailed and frees its worker; its thread
    // (a build cannot be interrupted) finishes in the background and its result is dropped.
    let limit = timeout(ks);
    let (ks, root, inputs) = (ks.clone(), root.to_owned(), vars.clone());
    let span = tracing::info_span!("render", revision);
    let without_keys = decryptor.is_none();
    let build = tokio::task::spawn_blocking(move || span.in_scope(|| render::render_decrypting(&ks, &root, &dir, &inputs, options, decryptor.as_ref())));
    let objects = tokio::time::timeout(limit, build)
        .await
        .map_err(|_| Failure::new(ks_reason::BUILD_FAILED, format!("kustomize build failed: timeout after {limit:?}")))?
        .map_err(|e| Failure::new(ks_reason::BUILD_FAILED, e.to_string()))?
        .map_err(|e| Failure::new(e.reason(), e.to_string()))?;
    if without_keys {
        crate::sops::hook::refuse_encrypted(&objects).map_err(|e| Failure::new(ks_reason::DECRYPTION_FAILED, e.to_string()))?;
    }
    Ok(objects)
}

/// The namespace of the Kustomization's source: its own unless `sourceRef.namespace` says.
pub fn source_namespace(ks: &Kustomization) -> String {
    ks.spec.source_ref.namespace.clone().unwrap_or_else(|| ks.namespace().unwrap_or_default())
}

/// The key of a source in [`Context::source_revision`], and its name in messages.
pub fn source_key(kind: &str, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// Waits for the health of the applied objects (`wait: true`) or of `healthChecks`. Gives way
/// when the source (`source`: key and the revision being applied) gets a newer revision, so a
/// fix pushed for a broken rollout is applied at once instead of after the timeout. Once the
/// first look finds something not ready, `status` says so (`Reconciling`, as Flux does); when all
/// is healthy at once, as in a reconcile where nothing changed, nothing is written. The first
/// look takes each object from `fresh` (what its apply request returned a moment ago) when it is
/// there; later looks read the live objects.
async fn check_health(
    ks: &Kustomization,
    ctx: &Context,
    status: &mut KustomizationStatus,
    applier: &Applier,
    applied: &[(ObjectId, String)],
    mut fresh: HashMap<ObjectId, Value>,
    source: (&str, &str),
) -> Result<(), Failure> {
    let mut targets: Vec<(ObjectId, String)> = if ks.spec.wait == Some(true) {
        applied.to_vec()
    } else {
        ks.spec
            .health_checks
            .iter()
            .flatten()
            .map(|h| {
                let api_version = h.api_version.clone().unwrap_or_default();
                let group = api_version.rsplit_once('/').map(|(g, _)| g.to_owned()).unwrap_or_default();
                let id = ObjectId { namespace: h.namespace.clone().unwrap_or_default(), name: h.name.clone(), group, kind: h.kind.clone() };
                (id, api_version)
            })
            .collect()
    };
    if targets.is_empty() {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + timeout(ks);
    let (source_key, applying) = source;
    let mut announced = false;
    // Objects found healthy are not asked about again: a wait costs a GET per round only for
    // what is still rolling out (a Deployment, typically), not for every object applied.
    let mut round = 0u32;
    loop {
        let mut pending = Vec::new();
        let mut still = Vec::new();
        for (id, version) in targets {
            let live = match fresh.remove(&id) {
                Some(object) => Ok(Some(object)),
                None => Box::pin(applier.get(&id, &version)).await,
            };
            match live {
                Ok(Some(object)) => match health(&object) {
                    Health::Current => continue,
                    Health::InProgress(why) => pending.push(format!("{id} status: 'InProgress': {why}")),
                    Health::Failed(why) => {
                        return Err(Failure::new(ks_reason::HEALTH_CHECK_FAILED, format!("health check failed: {id} status: 'Failed': {why}")));
                    }
                },
                Ok(None) => pending.push(format!("{id} status: 'NotFound'")),
                Err(e) => pending.push(format!("{id}: {e}")),
            }
            still.push((id, version));
        }
        targets = still;
        if pending.is_empty() {
            return Ok(());
        }
        // Announced once the wait outlasts the first quick look again: most waits end before it
        // (a Deployment scaled to 0, a rollout already done), and a status write per reconcile
        // that nobody could read in time is a thousand writes at a thousand Kustomizations.
        if !announced && round >= 1 {
            announced = true;
            let message = format!("Running health checks for revision {applying} with a timeout of {:?}", timeout(ks));
            conditions::set(&mut status.conditions, meta::RECONCILING, Status::True, meta::PROGRESSING, &message, ks.meta().generation, &now());
            if let Err(e) = Box::pin(write_status(ctx, ks, status)).await {
                warn!(error = %e, "writing the progress status");
            }
        }
        if let Some(newer) = ctx.source_revision(source_key).filter(|r| r != applying) {
            return Err(Failure::new(
                ks_reason::HEALTH_CHECK_CANCELED,
                format!("health check canceled: new revision {newer} of {source_key} detected while waiting for [{}]", pending.join(", ")),
            )
            .retry_after(Duration::from_millis(1)));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(
                ks_reason::HEALTH_CHECK_FAILED,
                format!("health check failed after {:?}: timeout waiting for: [{}]", timeout(ks), pending.join(", ")),
            ));
        }
        // Only the first look may use what the apply returned.
        fresh.clear();
        // Waiting is not work: the worker goes to another Kustomization meanwhile. The first
        // look again comes soon (a Deployment scaled to 0, or already rolled out, is reported
        // within moments); then once a second.
        round += 1;
        super::workers::idle_for(if round == 1 { Duration::from_millis(500) } else { Duration::from_secs(1) }).await;
    }
}

/// Deleting a Kustomization prunes its objects (`prune: true`), unless `deletionPolicy` says
/// otherwise.
async fn cleanup(ks: Arc<Kustomization>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let delete = match ks.spec.deletion_policy {
        Some(DeletionPolicy::Orphan) => false,
        Some(DeletionPolicy::Delete) | Some(DeletionPolicy::WaitForTermination) => true,
        Some(DeletionPolicy::MirrorPrune) | None => ks.spec.prune,
    };
    let entries = inventory_entries(ks.status.as_ref().and_then(|s| s.inventory.as_ref()));
    if delete && ks.spec.suspend != Some(true) && !entries.is_empty() {
        if let Some(gone) = impersonated_account_gone(&ks, &ctx).await {
            // As Flux: with the account gone (its namespace being deleted, typically) pruning
            // can only fail; the objects are listed and the finalizer goes.
            let objects = entries.iter().map(|(id, _)| id.to_string()).collect::<Vec<_>>().join("\n");
            warn!(service_account = %gone, "skipping pruning: the ServiceAccount to impersonate is gone");
            ctx.event(
                ks.as_ref(),
                true,
                ks_reason::PRUNE_FAILED,
                format!("unable to prune objects, ServiceAccount '{gone}' to impersonate not found:\n{objects}"),
            )
            .await;
            ctx.metrics.record_status("Kustomization", &ks.namespace().unwrap_or_default(), &ks.name_any(), "Deleted", false);
            return Ok(Action::await_change());
        }
        let opts = ApplyOptions { force: false, owner_labels: owner_labels(&ks), wait_timeout: timeout(&ks) };
        let local = applier_for(&ks, &ctx).await.map_err(ReconcileError::Cleanup)?;
        let applier = target_applier(&ks, &ctx, &local).await.map_err(ReconcileError::Cleanup)?;
        let (pruned, failed) = applier.prune(&entries, &opts).await;
        let lines: Vec<String> = pruned.iter().filter(|c| c.action == Change::Deleted).map(ToString::to_string).collect();
        if !lines.is_empty() {
            ctx.event(ks.as_ref(), false, "Progressing", lines.join("\n")).await;
        }
        if !failed.is_empty() {
            let message = failed.iter().map(|((id, _), e)| format!("{id} prune failed: {e}")).collect::<Vec<_>>().join("\n");
            ctx.event(ks.as_ref(), true, ks_reason::PRUNE_FAILED, message.clone()).await;
            return Err(ReconcileError::Cleanup(Failure::new(ks_reason::PRUNE_FAILED, message)));
        }
    }
    ctx.metrics.record_status("Kustomization", &ks.namespace().unwrap_or_default(), &ks.name_any(), "Deleted", false);
    Ok(Action::await_change())
}

/// The ServiceAccount the Kustomization's cleanup would impersonate (`namespace/name`), when it
/// no longer exists. `None` when none is impersonated, when it exists, or when that cannot be
/// told (the prune then runs and reports its own error).
async fn impersonated_account_gone(ks: &Kustomization, ctx: &Context) -> Option<String> {
    if ks.spec.kube_config.is_some() {
        return None;
    }
    let ns = ks.namespace().unwrap_or_default();
    let account = ctx.service_account(ks.spec.service_account_name.as_deref())?;
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    match accounts.get_opt(account).await {
        Ok(None) => Some(format!("{ns}/{account}")),
        Ok(Some(_)) | Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kustomization(spec: Value) -> Kustomization {
        let mut fields = json!({"interval": "5m", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "repo"}});
        if let (Some(fields), Some(extra)) = (fields.as_object_mut(), spec.as_object()) {
            fields.extend(extra.clone());
        }
        serde_json::from_value(json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "apps", "namespace": "flux-system", "generation": 3}, "spec": fields}))
        .expect("a Kustomization")
    }

    fn ready(conclusion: &Conclusion) -> (String, String, String) {
        let c = conclusion.status.conditions.iter().find(|c| c.type_ == meta::READY).expect("Ready");
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn success_records_the_revision_and_tells_only_about_changes() {
        let ks = kustomization(json!({"wait": true}));
        let mut status = KustomizationStatus::default();
        conditions::set(&mut status.conditions, meta::RECONCILING, Status::True, meta::PROGRESSING, "running health checks", Some(3), &now());
        let outcome = Outcome { revision: "main@sha1:abc".into(), changes: vec!["ConfigMap/default/a created".into()] };
        let done = conclude(&ks, status.clone(), Ok(outcome), &now());
        assert_eq!(ready(&done), ("True".into(), ks_reason::RECONCILIATION_SUCCEEDED.into(), "Applied revision: main@sha1:abc".into()));
        assert_eq!(done.status.last_applied_revision.as_deref(), Some("main@sha1:abc"));
        assert_eq!(done.status.observed_generation, Some(3));
        assert!(conditions::is_true(&done.status.conditions, meta::HEALTHY));
        assert!(!done.status.conditions.iter().any(|c| c.type_ == meta::RECONCILING));
        assert_eq!(done.events.len(), 2);
        assert_eq!(done.events[0], Note { warning: false, reason: meta::PROGRESSING, message: "ConfigMap/default/a created".into() });
        assert_eq!(done.requeue, Requeue::Interval(Duration::from_secs(300)));
        assert!(done.ready);

        let quiet = conclude(&ks, status, Ok(Outcome { revision: "main@sha1:abc".into(), changes: Vec::new() }), &now());
        assert!(quiet.events.is_empty(), "a reconcile that changed nothing records no event");
    }

    #[test]
    fn failure_keeps_the_last_good_revision_and_inventory_and_retries_as_asked() {
        let ks = kustomization(json!({"retryInterval": "1m"}));
        let status = KustomizationStatus {
            last_applied_revision: Some("main@sha1:good".into()),
            inventory: Some(ResourceInventory { entries: vec![ResourceRef { id: "default_a__ConfigMap".into(), v: "v1".into() }] }),
            ..KustomizationStatus::default()
        };
        let failure = Failure::new(ks_reason::BUILD_FAILED, "kustomization.yaml: bad");
        let done = conclude(&ks, status.clone(), Err(failure), &now());
        assert_eq!(ready(&done), ("False".into(), ks_reason::BUILD_FAILED.into(), "kustomization.yaml: bad".into()));
        assert_eq!(done.status.last_applied_revision.as_deref(), Some("main@sha1:good"));
        assert_eq!(done.status.inventory, status.inventory);
        assert_eq!(done.events, vec![Note { warning: true, reason: ks_reason::BUILD_FAILED, message: "kustomization.yaml: bad".into() }]);
        assert_eq!(done.requeue, Requeue::After(Duration::from_secs(60)));
        assert!(!done.ready, "Ready=False counts as an error");

        let waiting = Failure::new(meta::DEPENDENCY_NOT_READY, "dependency 'flux-system/infra' is not ready").retry_after(Duration::from_secs(30));
        assert_eq!(conclude(&ks, status.clone(), Err(waiting), &now()).requeue, Requeue::After(Duration::from_secs(30)));
        let unhealthy = conclude(&ks, status, Err(Failure::new(ks_reason::HEALTH_CHECK_FAILED, "timeout")), &now());
        assert!(unhealthy.status.conditions.iter().any(|c| c.type_ == meta::HEALTHY && c.status == "False"));
    }

    /// A reconcile's future is as large as its largest await point, and it keeps that size for
    /// its whole life: a thousand Kustomizations waiting for health hold a thousand of them. The
    /// build, apply and prune steps are boxed so that the waiting future stays small.
    #[tokio::test]
    async fn a_waiting_reconcile_is_small() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = kube::Client::try_from(config.clone()).expect("client");
        let ctx = Arc::new(Context::new(
            client,
            Some(config),
            Default::default(),
            super::super::artifact::ArtifactCache::new(std::env::temp_dir()),
            Default::default(),
        ));
        let ks = Arc::new(kustomization(json!({"wait": true})));
        let reconcile = reconcile(ks, ctx);
        let size = std::mem::size_of_val(&reconcile);
        // 8,752 bytes (debug build) before the steps were boxed, 4,552 after.
        assert!(size <= 6 * 1024, "a Kustomization reconcile's future is {size} bytes");
    }
}
