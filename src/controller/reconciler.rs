//! What both reconcilers share: Flux's finalizer around every reconcile, the status write that
//! writes nothing when nothing changed, the error policy (per-object exponential backoff), and
//! the metrics of each reconcile (one ending `Ready=False` counts as an error, as in Flux).

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tracing::warn;

use super::{Context, ReconcileError, conditions};
use crate::api::kustomize::v1::{Kustomization, KustomizationStatus};
use crate::api::meta::condition as meta;
use crate::api::source::v1::{GitRepository, GitRepositoryStatus};

/// Flux's finalizer name, so objects created by Flux and adopted by ferroflux keep working.
pub const FINALIZER: &str = "finalizers.fluxcd.io";
/// The first retry after an error, doubled on each further one.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The retry after a write conflict.
const CONFLICT_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// One of the kinds our reconcilers own, with the status they write.
pub trait Reconciled:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned + Serialize + Send + Sync + 'static
{
    /// The kind, as metrics and logs name it.
    const KIND: &'static str;
    type Status: Serialize + PartialEq + Send + Sync;
    fn current_status(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn suspended(&self) -> bool;
    /// Whether a status is written only over the resourceVersion it was computed from (a 409
    /// otherwise, and the reconcile runs again on the newer object), so that two instances never
    /// overwrite each other's newer status. Off where one reconcile writes its status more than
    /// once (the Kustomization's progress and inventory).
    const STATUS_WRITE_PRECONDITION: bool = false;
}

impl Reconciled for Kustomization {
    const KIND: &'static str = "Kustomization";
    type Status = KustomizationStatus;
    fn current_status(&self) -> Option<&KustomizationStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &KustomizationStatus) -> &[Condition] {
        &status.conditions
    }
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
}

impl Reconciled for GitRepository {
    const KIND: &'static str = "GitRepository";
    const STATUS_WRITE_PRECONDITION: bool = true;
    type Status = GitRepositoryStatus;
    fn current_status(&self) -> Option<&GitRepositoryStatus> {
        self.status.as_ref()
    }
    fn conditions(status: &GitRepositoryStatus) -> &[Condition] {
        &status.conditions
    }
    fn suspended(&self) -> bool {
        self.spec.suspend == Some(true)
    }
}

/// How a reconcile that wrote its status ended.
#[derive(Debug)]
pub struct Done {
    pub action: Action,
    /// `Ready=True` (or suspended): the metrics count anything else as an error.
    pub ready: bool,
}

/// `namespace/name` of `object`, with its kind: the key of its failure count.
fn key<K: Reconciled>(object: &K) -> String {
    format!("{}/{}/{}", K::KIND, object.namespace().unwrap_or_default(), object.name_any())
}

/// Runs `apply` (or, once the object is being deleted, `cleanup`) inside Flux's finalizer, and
/// records the reconcile's duration and result.
pub async fn reconcile_with_finalizer<K, A, AFut, C, CFut>(ctx: &Context, object: Arc<K>, apply: A, cleanup: C) -> Result<Action, ReconcileError>
where
    K: Reconciled,
    A: FnOnce(Arc<K>) -> AFut,
    AFut: Future<Output = Result<Done, ReconcileError>>,
    C: FnOnce(Arc<K>) -> CFut,
    CFut: Future<Output = Result<Action, ReconcileError>>,
{
    let (ns, name, failures_key) = (object.namespace().unwrap_or_default(), object.name_any(), key(object.as_ref()));
    let started = Instant::now();
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(object) = Box::pin(current(ctx, &api, &failures_key, object)).await? else {
        ctx.versions.forget(&failures_key);
        return Ok(Action::await_change());
    };
    let object = Arc::new(object);
    let ready = AtomicBool::new(true);
    let result = finalizer(&api, FINALIZER, object, |event| async {
        match event {
            FinalizerEvent::Apply(object) => {
                let done = apply(object).await?;
                ready.store(done.ready, Ordering::Relaxed);
                Ok(done.action)
            }
            FinalizerEvent::Cleanup(object) => {
                // Its finalizer goes now, and with it the object: nothing to remember.
                ctx.versions.forget(&failures_key);
                cleanup(object).await
            }
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)));
    ctx.metrics.reconciled(K::KIND, &ns, &name, started.elapsed(), result.is_ok() && ready.load(Ordering::Relaxed));
    if result.is_ok() {
        ctx.failures.forget(&failures_key);
    }
    result
}

/// The object to reconcile, as it is now, with Flux's finalizer on it, for at most one request.
///
/// The watch cache may lag behind what this or another instance wrote last (the inventory a
/// prune works from, a newer status), so the object is not taken from it blindly:
/// - the cached copy is used as it is when its resourceVersion is the one this process last
///   wrote or read itself ([`KnownVersions`]): nothing we could learn by asking is newer than
///   what we already know (a later write by anyone arrives as a new watch event and reconcile);
/// - a copy without the finalizer gets it by a JSON patch that tests the list it extends, and
///   the patch's answer is the object as it is now: the GET is saved (at a thousand new objects,
///   one request of the few each costs). A test that fails (the cache was behind) falls back;
/// - otherwise a GET. `None`: the object is gone.
async fn current<K: Reconciled>(ctx: &Context, api: &Api<K>, key: &str, cached: Arc<K>) -> Result<Option<K>, ReconcileError> {
    if has_finalizer_or_deleting(cached.as_ref()) {
        if ctx.versions.is_known(key, cached.resource_version().as_deref()) {
            return Ok(Some(K::clone(&cached)));
        }
    } else {
        match add_finalizer(api, cached.as_ref()).await {
            Ok(object) => {
                ctx.versions.record(key, object.resource_version());
                return Ok(Some(object));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(None),
            // The cache was behind (the test failed, 422; a conflict, 409) or the object is being
            // deleted (no finalizer may be added then): decide on a fresh read below.
            Err(kube::Error::Api(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let Some(mut object) = api.get_opt(&cached.name_any()).await? else {
        return Ok(None);
    };
    // Flux's finalizer goes on in this reconcile, which then goes on with the work: not a
    // reconcile that only adds it and another (one more GET) triggered by that write.
    if !has_finalizer_or_deleting(&object) {
        object = add_finalizer(api, &object).await?;
    }
    ctx.versions.record(key, object.resource_version());
    Ok(Some(object))
}

fn has_finalizer_or_deleting<K: Resource>(object: &K) -> bool {
    object.meta().deletion_timestamp.is_some() || object.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds Flux's finalizer to `object` as it was read. The JSON patch tests the list it extends,
/// so a concurrent writer (or a stale read) makes it fail instead of overwriting the list.
async fn add_finalizer<K: Reconciled>(api: &Api<K>, object: &K) -> Result<K, kube::Error> {
    let patch = if object.finalizers().is_empty() {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": object.finalizers()}, {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    let patch: json_patch::Patch = serde_json::from_value(patch).map_err(kube::Error::SerdeError)?;
    api.patch(&object.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await
}

/// The resourceVersion of each of our objects (by [`key`]) as this process last wrote or read
/// it. Only equality is used (versions are opaque): a cached copy at exactly that version is as
/// new as anything this process could know without asking.
#[derive(Debug, Default)]
pub struct KnownVersions(std::sync::Mutex<HashMap<String, String>>);

impl KnownVersions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn record(&self, key: &str, version: Option<String>) {
        match version {
            Some(version) => self.lock().insert(key.to_owned(), version),
            None => self.lock().remove(key),
        };
    }

    pub fn is_known(&self, key: &str, version: Option<&str>) -> bool {
        version.is_some_and(|version| self.lock().get(key).is_some_and(|known| known == version))
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// After a reconcile that could not write its status (the API server unreachable, a
/// conflict): retry with a backoff that doubles per consecutive failure of this object.
pub fn error_policy<K: Reconciled>(object: &K, error: &ReconcileError, ctx: &Context) -> Action {
    // A conflict: someone (another instance, a user) wrote the object since it was read; look
    // again at once instead of backing off.
    if let ReconcileError::Kube(kube::Error::Api(status)) = error
        && status.code == 409
    {
        return Action::requeue(CONFLICT_RETRY);
    }
    let failures = ctx.failures.record(&key(object));
    let delay = backoff(failures);
    warn!(%error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The wait before the next try after `failures` consecutive failures (1 or more).
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Consecutive failures per object, for [`backoff`]; an object's entry goes at its next
/// success, so the map holds only objects that are failing now.
#[derive(Debug, Default)]
pub struct FailureCounts(std::sync::Mutex<HashMap<String, u32>>);

impl FailureCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        // Plain counters: a panic elsewhere while holding the lock leaves them usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more failure; returns how many in a row.
    pub fn record(&self, key: &str) -> u32 {
        let mut counts = self.lock();
        let count = counts.entry(key.to_owned()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// How many failures in a row `key` has had.
    pub fn get(&self, key: &str) -> u32 {
        self.lock().get(key).copied().unwrap_or(0)
    }
}

/// Writes `status` when it differs from the object's: a no-op reconcile writes nothing. Records
/// the Ready and suspend gauges either way.
pub async fn write_status<K: Reconciled>(ctx: &Context, object: &K, status: &K::Status) -> Result<(), kube::Error> {
    let (ns, name) = (object.namespace().unwrap_or_default(), object.name_any());
    let ready = conditions::status_of(K::conditions(status), meta::READY);
    ctx.metrics.record_status(K::KIND, &ns, &name, ready, object.suspended());
    if object.current_status() == Some(status) {
        return Ok(());
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = if K::STATUS_WRITE_PRECONDITION {
        json!({ "metadata": { "resourceVersion": object.resource_version() }, "status": status })
    } else {
        json!({ "status": status })
    };
    let written = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    ctx.versions.record(&key(object), written.resource_version());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_failure_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn only_the_exact_version_last_seen_is_known() {
        let versions = KnownVersions::default();
        assert!(!versions.is_known("Kustomization/ns/a", Some("7")), "nothing seen yet");
        versions.record("Kustomization/ns/a", Some("7".into()));
        assert!(versions.is_known("Kustomization/ns/a", Some("7")));
        assert!(!versions.is_known("Kustomization/ns/a", Some("8")), "a newer copy than ours");
        assert!(!versions.is_known("Kustomization/ns/a", Some("6")), "an older copy than ours");
        assert!(!versions.is_known("Kustomization/ns/a", None));
        assert!(!versions.is_known("Kustomization/ns/b", Some("7")), "another object");
        versions.record("Kustomization/ns/a", None);
        assert!(!versions.is_known("Kustomization/ns/a", Some("7")), "a write without a version forgets");
        versions.record("Kustomization/ns/a", Some("9".into()));
        versions.forget("Kustomization/ns/a");
        assert!(!versions.is_known("Kustomization/ns/a", Some("9")));
    }

    #[test]
    fn failures_count_in_a_row_and_a_success_forgets_them() {
        let counts = FailureCounts::default();
        assert_eq!(counts.record("Kustomization/ns/a"), 1);
        assert_eq!(counts.record("Kustomization/ns/a"), 2);
        assert_eq!(counts.record("Kustomization/ns/b"), 1);
        counts.forget("Kustomization/ns/a");
        assert_eq!(counts.get("Kustomization/ns/a"), 0);
        assert_eq!(counts.get("Kustomization/ns/b"), 1);
    }
}
