//! Watch-driven drift correction: a managed object changed or deleted by someone else is put
//! back within a couple of seconds instead of at the Kustomization's next interval.
//!
//! One metadata-only watch per kind the inventories use, cluster-wide, selecting only objects
//! with Flux's owner label, so it costs no request per object and nothing per interval. An event
//! enqueues the owning Kustomization (named by the object's owner labels) when:
//! - the object is deleted, or its generation (its resourceVersion for kinds without one), labels
//!   or annotations changed: status-only writes (a Deployment's rollout progress) are ignored;
//! - the write is not ours: the resourceVersion ferroflux recorded after applying, or while a
//!   reconcile is in flight, the object's newest managedFields entry being ferroflux's;
//! - the object is not annotated `kustomize.toolkit.fluxcd.io/reconcile: disabled` or
//!   `kustomize.toolkit.fluxcd.io/ssa: Ignore`, and for `ssa: IfNotPresent` only on deletion.
//!
//! Events are debounced per Kustomization, so a burst (`kubectl delete -f`) is one reconcile.
//! The reconcile then re-checks only objects whose resourceVersion moved, as every reconcile does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::discovery::pinned_kind;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::Context;
use crate::api::kustomize::v1::Kustomization;
use crate::api::kustomize::{NAME_LABEL, NAMESPACE_LABEL};
use crate::apply::{FIELD_MANAGER, ObjectId};

use crate::apply::policy::Policy;
pub use crate::apply::policy::{RECONCILE_ANNOTATION, SSA_ANNOTATION};
/// Annotations other controllers keep current on objects we apply; they are not drift.
const SERVER_ANNOTATIONS: &[&str] = &["deployment.kubernetes.io/revision"];
/// How long events for one Kustomization are gathered before it is enqueued.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the set of watched kinds is brought in line with the inventories.
const RESYNC: Duration = Duration::from_secs(2);

/// What a watched object's event means for its owner (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not drift: unchanged content, unmanaged, or opted out.
    Ignore,
    /// Someone changed or deleted the object: reconcile the owner.
    Drifted,
    /// Changed; whether by us is decided when the owner's applied state is at hand.
    ChangedBy { resource_version: String, newest_manager_is_ours: bool },
}

/// The parts of an object's metadata a spec, label or annotation change moves.
pub fn fingerprint(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match meta.generation.filter(|g| *g > 0) {
        Some(generation) => generation.hash(&mut hasher),
        // Without a generation (ConfigMaps, Secrets, Services, ServiceAccounts): the fields we
        // own. Whoever changes or removes one of them takes it from our managedFields entry
        // (server-side apply's bookkeeping), while a controller that only adds fields of its own
        // (the token controller's `secrets` on a ServiceAccount, an IP on a Service) leaves it
        // as it was: that is not drift, and reconciling for it would be a dry-run per write.
        None => match our_fields(meta) {
            Some(fields) => fields.hash(&mut hasher),
            // Not applied by us server-side (yet): any write may be a change.
            None => meta.resource_version.hash(&mut hasher),
        },
    }
    meta.labels.hash(&mut hasher);
    let annotations: BTreeMap<&String, &String> = meta.annotations.iter().flatten().filter(|(k, _)| !SERVER_ANNOTATIONS.contains(&k.as_str())).collect();
    annotations.hash(&mut hasher);
    hasher.finish()
}

/// Our managedFields entries (what ferroflux applied owns), without their times; `None` when
/// there is none.
fn our_fields(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Option<Vec<String>> {
    let ours: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
        .map(|e| {
            let fields = e.fields_v1.as_ref().map(|f| f.0.to_string()).unwrap_or_default();
            format!("{}|{}|{}|{fields}", e.operation.as_deref().unwrap_or(""), e.api_version.as_deref().unwrap_or(""), e.subresource.as_deref().unwrap_or(""))
        })
        .collect();
    (!ours.is_empty()).then_some(ours)
}

/// Whether every managedFields entry with the newest time is ferroflux's.
fn newest_manager_is_ours(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    let entries = meta.managed_fields.iter().flatten();
    let Some(newest) = entries.clone().filter_map(|e| e.time.as_ref().map(|t| t.0)).max() else {
        return false;
    };
    entries.filter(|e| e.time.as_ref().map(|t| t.0) == Some(newest)).all(|e| e.manager.as_deref() == Some(FIELD_MANAGER))
}

/// Judges one event: `previous` is the fingerprint last seen for the object (None: first sight).
pub fn judge(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, deleted: bool, previous: Option<u64>) -> Verdict {
    let policy = Policy::of_annotations(meta.annotations.as_ref());
    if policy == Policy::Exclude {
        return Verdict::Ignore;
    }
    if deleted {
        return Verdict::Drifted;
    }
    if policy == Policy::IfNotPresent {
        return Verdict::Ignore;
    }
    if previous.is_none_or(|p| p == fingerprint(meta)) {
        return Verdict::Ignore;
    }
    Verdict::ChangedBy { resource_version: meta.resource_version.clone().unwrap_or_default(), newest_manager_is_ours: newest_manager_is_ours(meta) }
}

/// A change to look at once the debounce time has passed.
struct Pending {
    due: Instant,
    /// Changed objects with their verdicts; a deletion is final.
    changes: HashMap<ObjectId, Verdict>,
}

/// The drift watch of one controller process.
pub struct DriftWatch {
    client: kube::Client,
    ctx: Arc<Context>,
    kustomizations: Store<Kustomization>,
    trigger: UnboundedSender<ObjectRef<Kustomization>>,
}

type Report = (ObjectRef<Kustomization>, ObjectId, Verdict);

impl DriftWatch {
    pub fn new(ctx: Arc<Context>, kustomizations: Store<Kustomization>, trigger: UnboundedSender<ObjectRef<Kustomization>>) -> Self {
        DriftWatch { client: ctx.client.clone(), ctx, kustomizations, trigger }
    }

    /// Runs until the process stops.
    pub async fn run(self) {
        let (report_tx, mut reports) = futures::channel::mpsc::unbounded::<Report>();
        let mut watches: HashMap<(String, String, String), tokio::task::JoinHandle<()>> = HashMap::new();
        let mut pending: HashMap<ObjectRef<Kustomization>, Pending> = HashMap::new();
        let mut resync = tokio::time::interval(RESYNC);
        let mut flush = tokio::time::interval(DEBOUNCE / 2);
        loop {
            tokio::select! {
                _ = resync.tick() => self.resync(&mut watches, &report_tx).await,
                Some((owner, id, verdict)) = reports.next() => {
                    let entry = pending.entry(owner).or_insert_with(|| Pending { due: Instant::now() + DEBOUNCE, changes: HashMap::new() });
                    let current = entry.changes.entry(id).or_insert(Verdict::Ignore);
                    if *current != Verdict::Drifted {
                        *current = verdict;
                    }
                }
                _ = flush.tick() => {
                    let now = Instant::now();
                    let due: Vec<ObjectRef<Kustomization>> = pending.iter().filter(|(_, p)| p.due <= now).map(|(k, _)| k.clone()).collect();
                    for owner in due {
                        if let Some(p) = pending.remove(&owner) {
                            self.decide(owner, p).await;
                        }
                    }
                }
            }
        }
    }

    /// Enqueues the owner when one of its changes is not our own write.
    async fn decide(&self, owner: ObjectRef<Kustomization>, pending: Pending) {
        let key = format!("{}/{}", owner.namespace.clone().unwrap_or_default(), owner.name);
        let applied = self.ctx.applied.lock().await;
        let state = applied.get(&key);
        let foreign = pending.changes.iter().find(|(id, verdict)| match verdict {
            Verdict::Ignore => false,
            Verdict::Drifted => true,
            Verdict::ChangedBy { resource_version, newest_manager_is_ours } => match state {
                Some(state) => state.resource_version(id) != Some(resource_version.as_str()),
                // A reconcile is in flight (its state is taken out meanwhile): its own writes
                // carry ferroflux's managedFields entry as the newest.
                None => !newest_manager_is_ours,
            },
        });
        if let Some((id, _)) = foreign {
            info!(kustomization = %key, object = %id, "drift detected, reconciling");
            let _ = self.trigger.unbounded_send(owner);
        }
    }

    /// Starts a watch for each kind some inventory uses, and stops those no inventory uses.
    async fn resync(&self, watches: &mut HashMap<(String, String, String), tokio::task::JoinHandle<()>>, reports: &UnboundedSender<Report>) {
        let mut wanted = BTreeSet::new();
        for ks in self.kustomizations.state() {
            if ks.spec.kube_config.is_some() {
                // Applied to another cluster: this cluster's watch would not see it.
                continue;
            }
            for (id, api_version) in super::kustomization::inventory_entries(ks.status.as_ref().and_then(|s| s.inventory.as_ref())) {
                let version = api_version.rsplit_once('/').map_or(api_version.as_str(), |(_, v)| v).to_owned();
                wanted.insert((id.group, version, id.kind));
            }
        }
        watches.retain(|kind, task| {
            let keep = wanted.contains(kind) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for kind in wanted {
            if watches.contains_key(&kind) {
                continue;
            }
            let gvk = GroupVersionKind::gvk(&kind.0, &kind.1, &kind.2);
            let resource = match pinned_kind(&self.client, &gvk).await {
                Ok((resource, _)) => resource,
                Err(e) => {
                    debug!(kind = ?gvk, error = %e, "cannot watch a kind the inventory names (yet)");
                    continue;
                }
            };
            debug!(kind = ?gvk, "watching for drift");
            watches.insert(kind, tokio::spawn(watch_kind(self.client.clone(), resource, self.kustomizations.clone(), reports.clone())));
        }
    }
}

/// Watches one kind's managed objects and reports their changes.
async fn watch_kind(client: kube::Client, resource: ApiResource, kustomizations: Store<Kustomization>, reports: UnboundedSender<Report>) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    // From the watch cache, as the manager's watches (see there).
    let config = watcher::Config::default().any_semantic().labels(NAME_LABEL);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    let mut listed: Option<BTreeSet<(String, String)>> = None;
    let mut warned = false;
    while let Some(event) = stream.next().await {
        let (object, deleted) = match event {
            Ok(Event::Init) => {
                listed = Some(BTreeSet::new());
                continue;
            }
            Ok(Event::InitApply(object)) => {
                if let Some(l) = listed.as_mut() {
                    l.insert((object.namespace().unwrap_or_default(), object.name_any()));
                }
                (object, false)
            }
            Ok(Event::InitDone) => {
                // Objects deleted while the watch was re-listing.
                if let Some(l) = listed.take() {
                    let gone: Vec<(String, String)> = seen.keys().filter(|k| !l.contains(*k)).cloned().collect();
                    for key in gone {
                        seen.remove(&key);
                        debug!(namespace = %key.0, name = %key.1, "gone while re-listing");
                    }
                }
                continue;
            }
            Ok(Event::Apply(object)) => (object, false),
            Ok(Event::Delete(object)) => (object, true),
            Err(e) => {
                if !warned {
                    warn!(kind = %resource.kind, error = %e, "drift watch failed (retrying with backoff); drift of this kind is corrected at the interval meanwhile");
                    warned = true;
                }
                continue;
            }
        };
        warned = false;
        let key = (object.namespace().unwrap_or_default(), object.name_any());
        let previous = if deleted { seen.remove(&key) } else { seen.insert(key.clone(), fingerprint(&object.metadata)) };
        let verdict = judge(&object.metadata, deleted, previous);
        if verdict == Verdict::Ignore {
            continue;
        }
        let labels = object.labels();
        let (Some(owner_name), Some(owner_ns)) = (labels.get(NAME_LABEL), labels.get(NAMESPACE_LABEL)) else { continue };
        let owner = ObjectRef::<Kustomization>::new(owner_name).within(owner_ns);
        // Only Kustomizations this process reconciles, listing the object, not being deleted.
        let Some(ks) = kustomizations.get(&owner) else { continue };
        let id = ObjectId { namespace: key.0.clone(), name: key.1.clone(), group: resource.group.clone(), kind: resource.kind.clone() };
        let listed = ks.status.as_ref().and_then(|s| s.inventory.as_ref()).is_some_and(|inv| inv.entries.iter().any(|e| e.id == id.inventory_id()));
        if !listed || ks.meta().deletion_timestamp.is_some() || ks.spec.suspend == Some(true) {
            continue;
        }
        if reports.unbounded_send((owner, id, verdict)).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta, Time};

    fn meta(generation: Option<i64>, rv: &str, annotations: &[(&str, &str)], managers: &[(&str, i64)]) -> ObjectMeta {
        ObjectMeta {
            generation,
            resource_version: Some(rv.into()),
            annotations: (!annotations.is_empty()).then(|| annotations.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            managed_fields: Some(
                managers
                    .iter()
                    .map(|(m, t)| ManagedFieldsEntry {
                        manager: Some((*m).into()),
                        time: Some(Time(jiff::Timestamp::from_second(*t).expect("time"))),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn status_only_writes_are_not_drift() {
        let before = meta(Some(2), "10", &[], &[(FIELD_MANAGER, 100)]);
        // The deployment controller wrote status and its revision annotation: generation stays.
        let after = meta(Some(2), "11", &[("deployment.kubernetes.io/revision", "2")], &[(FIELD_MANAGER, 100), ("kube-controller-manager", 101)]);
        assert_eq!(judge(&after, false, Some(fingerprint(&before))), Verdict::Ignore);
        // First sight (the initial list) is never drift.
        assert_eq!(judge(&after, false, None), Verdict::Ignore);
    }

    #[test]
    fn spec_changes_by_others_and_deletions_are_drift() {
        let before = meta(Some(2), "10", &[], &[(FIELD_MANAGER, 100)]);
        let scaled = meta(Some(3), "12", &[], &[(FIELD_MANAGER, 100), ("kubectl", 105)]);
        assert_eq!(judge(&scaled, false, Some(fingerprint(&before))), Verdict::ChangedBy { resource_version: "12".into(), newest_manager_is_ours: false });
        let ours = meta(Some(4), "13", &[], &[(FIELD_MANAGER, 106), ("kubectl", 105)]);
        assert_eq!(judge(&ours, false, Some(fingerprint(&scaled))), Verdict::ChangedBy { resource_version: "13".into(), newest_manager_is_ours: true });
        assert_eq!(judge(&before, true, Some(fingerprint(&before))), Verdict::Drifted);
        // Kinds without a generation, not applied by us server-side: any write.
        let map = meta(None, "20", &[], &[]);
        let edited = meta(None, "21", &[], &[("kubectl-edit", 1)]);
        assert!(matches!(judge(&edited, false, Some(fingerprint(&map))), Verdict::ChangedBy { .. }));
    }

    fn owning(mut meta: ObjectMeta, manager: &str, fields: serde_json::Value) -> ObjectMeta {
        let entry = meta.managed_fields.iter_mut().flatten().find(|e| e.manager.as_deref() == Some(manager)).expect("entry");
        entry.operation = Some("Apply".into());
        entry.fields_v1 = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(fields));
        meta
    }

    #[test]
    fn without_a_generation_only_a_change_to_fields_we_own_is_drift() {
        let ours = serde_json::json!({"f:data": {"f:a": {}, "f:b": {}}});
        let before = owning(meta(None, "30", &[], &[(FIELD_MANAGER, 100)]), FIELD_MANAGER, ours.clone());
        // Another controller added a field of its own (our entry, but for its time, is as it was).
        let added = owning(
            owning(meta(None, "31", &[], &[(FIELD_MANAGER, 100), ("kube-controller-manager", 101)]), FIELD_MANAGER, ours.clone()),
            "kube-controller-manager",
            serde_json::json!({"f:secrets": {}}),
        );
        assert_eq!(judge(&added, false, Some(fingerprint(&before))), Verdict::Ignore);
        // `kubectl edit` changed `b`: it is kubectl's now, no longer ours.
        let edited = owning(meta(None, "32", &[], &[(FIELD_MANAGER, 100), ("kubectl-edit", 102)]), FIELD_MANAGER, serde_json::json!({"f:data": {"f:a": {}}}));
        assert_eq!(judge(&edited, false, Some(fingerprint(&before))), Verdict::ChangedBy { resource_version: "32".into(), newest_manager_is_ours: false });
    }

    #[test]
    fn flux_s_opt_out_annotations_are_honoured() {
        let before = meta(Some(1), "1", &[], &[]);
        for (key, value) in [(RECONCILE_ANNOTATION, "disabled"), (SSA_ANNOTATION, "Ignore")] {
            let object = meta(Some(2), "2", &[(key, value)], &[("kubectl", 1)]);
            assert_eq!(judge(&object, false, Some(fingerprint(&before))), Verdict::Ignore);
            assert_eq!(judge(&object, true, Some(fingerprint(&before))), Verdict::Ignore);
        }
        let if_not_present = meta(Some(2), "2", &[(SSA_ANNOTATION, "IfNotPresent")], &[("kubectl", 1)]);
        assert_eq!(judge(&if_not_present, false, Some(fingerprint(&before))), Verdict::Ignore);
        assert_eq!(judge(&if_not_present, true, Some(fingerprint(&before))), Verdict::Drifted);
    }

    #[test]
    fn a_tie_with_another_manager_is_not_ours() {
        let tie = meta(Some(3), "5", &[], &[(FIELD_MANAGER, 100), ("kubectl", 100)]);
        assert!(!newest_manager_is_ours(&tie));
        assert!(!newest_manager_is_ours(&meta(Some(1), "1", &[], &[])));
    }
}
