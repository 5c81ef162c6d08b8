//! Applying a set of manifests the way Flux's kustomize-controller does, with server-side apply:
//! validate a whole stage with a server-side dry-run before writing anything in it, then apply
//! only what differs, report each object as created / configured / unchanged, and prune what left
//! the inventory.

pub mod managed_fields;
pub mod object;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PropagationPolicy};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope, pinned_kind};
use serde_json::Value;
use tokio::sync::RwLock;

pub use object::ObjectId;

/// How many requests of one stage are in flight at once: the API server handles them in
/// parallel, and a 1,000-object apply is bound by round trips, not by the server.
const CONCURRENCY: usize = 16;

/// One object's dry-run outcome.
struct Plan {
    live: Option<DynamicObject>,
    dry: Option<DynamicObject>,
    /// The API server's rejection of the dry-run.
    failure: Option<String>,
}

/// The field manager ferroflux applies with.
pub const FIELD_MANAGER: &str = "ferroflux";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Incomplete(#[from] object::IncompleteObject),
    #[error("{id} is not known to the API server: {message}")]
    UnknownKind { id: ObjectId, message: String },
    #[error("{id} cannot be namespaced: its kind is cluster-scoped")]
    NamespaceOnClusterScoped { id: ObjectId },
    #[error("{id} has no namespace and its kind is namespaced (set metadata.namespace or targetNamespace)")]
    MissingNamespace { id: ObjectId },
    #[error("{id} appears more than once")]
    Duplicate { id: ObjectId },
    /// The dry-run rejected objects; nothing of their stage was written.
    #[error("{}", dry_run_message(.0))]
    DryRunFailed(Vec<(ObjectId, String)>),
    #[error("{id} apply failed: {message}")]
    ApplyFailed { id: ObjectId, message: String },
    #[error("timeout waiting for {what}")]
    WaitTimeout { what: String },
    #[error("{context}: {source}")]
    Api { context: String, source: kube::Error },
}

fn dry_run_message(failures: &[(ObjectId, String)]) -> String {
    failures.iter().map(|(id, message)| format!("{id} dry-run failed: {message}")).collect::<Vec<_>>().join("\n")
}

/// What applying did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    /// Left in place on prune: not ours, or annotated `kustomize.toolkit.fluxcd.io/prune: disabled`.
    Skipped,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        })
    }
}

/// One line of a change set, printed as Flux prints it: `Deployment/default/app configured`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub id: ObjectId,
    pub version: String,
    pub action: Action,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.action)
    }
}

/// What ferroflux last applied, per object: the digest of the manifest and the resourceVersion
/// the object had afterwards. An object whose manifest digest and live resourceVersion both
/// match needs no dry-run and no apply: neither Git nor anyone in the cluster changed it. The
/// live resourceVersions come from one metadata LIST per kind and namespace, so a no-op
/// reconcile costs a handful of requests, not one per object, while `kubectl edit` (which
/// changes the resourceVersion) is still corrected.
#[derive(Clone, Debug, Default)]
pub struct AppliedState {
    entries: HashMap<ObjectId, (String, String)>,
}

impl AppliedState {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The resourceVersion `id` had right after ferroflux last applied (or checked) it: a watch
    /// event carrying it is our own write.
    pub fn resource_version(&self, id: &ObjectId) -> Option<&str> {
        self.entries.get(id).map(|(_, version)| version.as_str())
    }
}

fn manifest_digest(object: &Value) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(serde_json::to_vec(object).unwrap_or_default()))
}

/// One object's server-side dry-run next to the live object.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub id: ObjectId,
    /// The live object; `None` when it does not exist yet.
    pub live: Option<Value>,
    /// The object as applying would leave it, or why the API server refused.
    pub result: Result<Value, String>,
}

/// Settings of one apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Recreate objects whose immutable fields changed (`spec.force`).
    pub force: bool,
    /// Labels that mark objects as owned (Flux's `kustomize.toolkit.fluxcd.io/name|namespace`):
    /// prune deletes only objects carrying all of them.
    pub owner_labels: BTreeMap<String, String>,
    /// How long to wait for CRDs and Namespaces of the first stage.
    pub wait_timeout: Duration,
}

struct Resolved {
    id: ObjectId,
    version: String,
    resource: ApiResource,
    namespaced: bool,
    object: Value,
}

/// Applies manifests with server-side apply. Holds a discovery cache: kinds are looked up once.
pub struct Applier {
    client: Client,
    kinds: RwLock<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Applier { client, kinds: RwLock::new(HashMap::new()) }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn discover(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities), kube::Error> {
        if let Some(found) = self.kinds.read().await.get(gvk) {
            return Ok(found.clone());
        }
        let found = pinned_kind(&self.client, gvk).await?;
        self.kinds.write().await.insert(gvk.clone(), found.clone());
        Ok(found)
    }

    /// Forgets what discovery found, e.g. after CRDs changed.
    pub async fn forget_kinds(&self) {
        self.kinds.write().await.clear();
    }

    async fn resolve(&self, index: usize, object: Value) -> Result<Resolved, ApplyError> {
        let (id, version) = ObjectId::of(&object, index)?;
        let (group, ver) = version.rsplit_once('/').unwrap_or(("", version.as_str()));
        let gvk = GroupVersionKind::gvk(group, ver, &id.kind);
        let (resource, caps) = self.discover(&gvk).await.map_err(|e| ApplyError::UnknownKind {
            id: id.clone(),
            message: match e {
                kube::Error::Api(status) => status.message,
                other => other.to_string(),
            },
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        if namespaced && id.namespace.is_empty() {
            return Err(ApplyError::MissingNamespace { id });
        }
        if !namespaced && !id.namespace.is_empty() {
            return Err(ApplyError::NamespaceOnClusterScoped { id });
        }
        Ok(Resolved { id, version, resource, namespaced, object })
    }

    fn api(&self, r: &Resolved) -> Api<DynamicObject> {
        if r.namespaced { Api::namespaced_with(self.client.clone(), &r.id.namespace, &r.resource) } else { Api::all_with(self.client.clone(), &r.resource) }
    }

    /// Reads one live object, `None` when it does not exist.
    pub async fn get(&self, id: &ObjectId, version: &str) -> Result<Option<Value>, ApplyError> {
        let probe = serde_json::json!({
            "apiVersion": version, "kind": id.kind,
            "metadata": {"name": id.name, "namespace": id.namespace}
        });
        let resolved = self.resolve(0, probe).await?;
        let live = self.api(&resolved).get_opt(&id.name).await.map_err(|e| ApplyError::Api { context: format!("reading {id}"), source: e })?;
        Ok(live.and_then(|o| serde_json::to_value(o).ok()))
    }

    /// Server-side dry-runs of every object, applied as ferroflux applies them (field manager
    /// `ferroflux`, forced), with nothing written: what `ferroflux diff` compares with the live
    /// objects. A kind the server does not know, or a dry-run the server rejects, is reported for
    /// that object alone.
    pub async fn dry_run_all(&self, objects: Vec<Value>) -> Result<Vec<DryRun>, ApplyError> {
        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER).force() };
        // Without `force`, an immutable field change is reported, not planned as a re-creation.
        let opts = ApplyOptions::default();
        let mut results = Vec::with_capacity(objects.len());
        let mut resolved = Vec::with_capacity(objects.len());
        for (index, object) in objects.into_iter().enumerate() {
            let (id, _) = ObjectId::of(&object, index)?;
            match self.resolve(index, object).await {
                Ok(r) => resolved.push(r),
                Err(e) => results.push(DryRun { id, live: None, result: Err(e.to_string()) }),
            }
        }
        let planning: Vec<_> = resolved.iter().map(|r| self.plan(r, &opts, &dry_run)).collect();
        let planned: Vec<Result<Plan, ApplyError>> = stream::iter(planning).buffered(CONCURRENCY).collect().await;
        for (r, plan) in resolved.iter().zip(planned) {
            let Plan { live, dry, failure } = plan?;
            let to_value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
            let result = match (dry, failure) {
                (Some(dry), _) => Ok(to_value(dry)),
                (None, failure) => Err(failure.unwrap_or_else(|| "the dry-run returned nothing".to_owned())),
            };
            results.push(DryRun { id: r.id.clone(), live: live.map(to_value), result });
        }
        Ok(results)
    }

    /// Applies all objects: first the cluster definitions (CRDs, Namespaces, ClusterRoles), waited
    /// for, then the rest. Each stage is validated with a server-side dry-run of every object in
    /// it before any of them is written; one failure and nothing of the stage is written.
    pub async fn apply_all(&self, objects: Vec<Value>, opts: &ApplyOptions) -> Result<Vec<Change>, ApplyError> {
        self.apply_all_with(objects, opts, &mut AppliedState::default()).await
    }

    /// [`Applier::apply_all`], skipping the objects `state` shows unchanged, and updating it.
    pub async fn apply_all_with(&self, objects: Vec<Value>, opts: &ApplyOptions, state: &mut AppliedState) -> Result<Vec<Change>, ApplyError> {
        let previous = std::mem::take(state);
        let mut seen = std::collections::HashSet::new();
        let mut first = Vec::new();
        let mut rest = Vec::new();
        for (index, object) in objects.into_iter().enumerate() {
            let (id, _) = ObjectId::of(&object, index)?;
            if !seen.insert(id.clone()) {
                return Err(ApplyError::Duplicate { id });
            }
            if id.is_cluster_definition() { first.push((index, object)) } else { rest.push((index, object)) }
        }
        let mut changes = Vec::new();
        if !first.is_empty() {
            let stage = self.resolve_stage(first).await?;
            let applied = self.apply_stage(stage, opts, &previous, state).await?;
            let created_definitions = applied.iter().any(|c| c.action != Action::Unchanged);
            changes.extend(applied);
            if created_definitions {
                self.wait_for_definitions(&changes, opts.wait_timeout).await?;
                // New CRDs bring new kinds for the second stage.
                self.forget_kinds().await;
            }
        }
        let stage = self.resolve_stage(rest).await?;
        changes.extend(self.apply_stage(stage, opts, &previous, state).await?);
        Ok(changes)
    }

    /// The objects of `stage` that neither Git nor the cluster changed since `previous` was
    /// recorded, found with one metadata LIST per kind and namespace.
    async fn unchanged_since(
        &self,
        stage: &[Resolved],
        digests: &[String],
        previous: &AppliedState,
        opts: &ApplyOptions,
    ) -> Result<HashMap<ObjectId, String>, ApplyError> {
        let mut groups: BTreeMap<(String, String), (&Resolved, Vec<usize>)> = BTreeMap::new();
        for (i, r) in stage.iter().enumerate() {
            if previous.entries.get(&r.id).is_some_and(|(digest, _)| *digest == digests[i]) {
                let key = (format!("{}/{}/{}", r.resource.group, r.resource.version, r.resource.plural), r.id.namespace.clone());
                groups.entry(key).or_insert((r, Vec::new())).1.push(i);
            }
        }
        let selector = opts.owner_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let mut unchanged = HashMap::new();
        for ((_, _), (sample, members)) in groups {
            let params = kube::api::ListParams { label_selector: (!selector.is_empty()).then(|| selector.clone()), ..Default::default() };
            let listed = self
                .api(sample)
                .list_metadata(&params)
                .await
                .map_err(|e| ApplyError::Api { context: format!("listing {} in {}", sample.resource.plural, sample.id.namespace), source: e })?;
            let live: HashMap<String, String> = listed.items.into_iter().filter_map(|o| Some((o.metadata.name?, o.metadata.resource_version?))).collect();
            for i in members {
                let r = &stage[i];
                if let (Some((_, recorded)), Some(current)) = (previous.entries.get(&r.id), live.get(&r.id.name)) {
                    if recorded == current {
                        unchanged.insert(r.id.clone(), current.clone());
                    }
                }
            }
        }
        Ok(unchanged)
    }

    async fn resolve_stage(&self, objects: Vec<(usize, Value)>) -> Result<Vec<Resolved>, ApplyError> {
        let mut resolved = Vec::with_capacity(objects.len());
        for (index, object) in objects {
            resolved.push(self.resolve(index, object).await?);
        }
        resolved.sort_by(|a, b| object::apply_rank(&a.id.kind).cmp(&object::apply_rank(&b.id.kind)).then_with(|| a.id.cmp(&b.id)));
        Ok(resolved)
    }

    async fn apply_stage(
        &self,
        stage: Vec<Resolved>,
        opts: &ApplyOptions,
        previous: &AppliedState,
        state: &mut AppliedState,
    ) -> Result<Vec<Change>, ApplyError> {
        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER).force() };
        let params = PatchParams::apply(FIELD_MANAGER).force();

        let digests: Vec<String> = stage.iter().map(|r| manifest_digest(&r.object)).collect();
        let unchanged = if previous.is_empty() { HashMap::new() } else { self.unchanged_since(&stage, &digests, previous, opts).await? };
        let mut changes = Vec::with_capacity(stage.len());
        let mut todo = Vec::with_capacity(stage.len());
        for (r, digest) in stage.into_iter().zip(digests) {
            match unchanged.get(&r.id) {
                Some(version) => {
                    state.entries.insert(r.id.clone(), (digest, version.clone()));
                    changes.push(Change { id: r.id, version: r.version, action: Action::Unchanged });
                }
                None => todo.push((r, digest)),
            }
        }
        let (stage, digests): (Vec<Resolved>, Vec<String>) = todo.into_iter().unzip();

        // Dry-run everything first (requests in parallel, results in order), and only then write.
        // (Collected first: a stream over a borrowing closure trips the compiler's Send check.)
        let planning: Vec<_> = stage.iter().map(|r| self.plan(r, opts, &dry_run)).collect();
        let planned: Vec<Result<Plan, ApplyError>> = stream::iter(planning).buffered(CONCURRENCY).collect().await;
        let mut plans = Vec::with_capacity(planned.len());
        let mut failures = Vec::new();
        for (r, plan) in stage.iter().zip(planned) {
            let plan = plan?;
            if let Some(message) = &plan.failure {
                failures.push((r.id.clone(), message.clone()));
            }
            plans.push(plan);
        }
        if !failures.is_empty() {
            return Err(ApplyError::DryRunFailed(failures));
        }

        let writing: Vec<_> = stage.iter().zip(plans).map(|(r, plan)| self.write(r, plan, opts, &params)).collect();
        let outcomes: Vec<Result<(Action, Option<String>), ApplyError>> = stream::iter(writing).buffered(CONCURRENCY).collect().await;
        for ((r, outcome), digest) in stage.iter().zip(outcomes).zip(digests) {
            let (action, version) = outcome?;
            if let Some(version) = version {
                state.entries.insert(r.id.clone(), (digest, version));
            }
            changes.push(Change { id: r.id.clone(), version: r.version.clone(), action });
        }
        Ok(changes)
    }

    /// The dry-run of one object and the live object it was computed on. The live object is read
    /// after the dry-run: when both carry the same resourceVersion, the dry-run was computed on
    /// exactly that object, so comparing them is exact even while other controllers write (a
    /// Deployment's status, its revision annotation).
    async fn plan(&self, r: &Resolved, opts: &ApplyOptions, dry_run: &PatchParams) -> Result<Plan, ApplyError> {
        let api = self.api(r);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let dry = api.patch(&r.id.name, dry_run, &Patch::Apply(&r.object)).await;
            if let Ok(result) = &dry {
                // A dry-run create carries no resourceVersion: the object does not exist yet,
                // and there is nothing to read.
                if result.metadata.resource_version.as_deref().unwrap_or("").is_empty() {
                    return Ok(Plan { live: None, dry: dry.ok(), failure: None });
                }
            }
            let live = api.get_opt(&r.id.name).await.map_err(|e| ApplyError::Api { context: format!("reading {}", r.id), source: e })?;
            match dry {
                Ok(result) => {
                    let consistent = live.as_ref().is_none_or(|l| l.metadata.resource_version == result.metadata.resource_version);
                    if consistent || attempts >= 3 {
                        return Ok(Plan { live, dry: Some(result), failure: None });
                    }
                }
                // With force, an object whose immutable fields changed is recreated.
                Err(kube::Error::Api(status)) if opts.force && is_immutable_field_error(&status.message) && live.is_some() => {
                    return Ok(Plan { live, dry: None, failure: None });
                }
                Err(kube::Error::Api(status)) => return Ok(Plan { live, dry: None, failure: Some(status.message) }),
                Err(e) => return Err(ApplyError::Api { context: format!("dry-run of {}", r.id), source: e }),
            }
        }
    }

    /// Writes one planned object when it differs; returns what happened and its resourceVersion.
    async fn write(&self, r: &Resolved, plan: Plan, opts: &ApplyOptions, params: &PatchParams) -> Result<(Action, Option<String>), ApplyError> {
        let Plan { live, dry, .. } = plan;
        let api = self.api(r);
        let mut took_over = false;
        if let Some(live) = &live {
            // Fields set by kubectl or by Flux belong to us from now on, so that removing them
            // from Git removes them from the cluster.
            if let Some(patch) = managed_fields::takeover_patch(live, FIELD_MANAGER) {
                api.patch(&r.id.name, &PatchParams::default(), &Patch::<Value>::Json(patch))
                    .await
                    .map_err(|e| ApplyError::Api { context: format!("taking over fields of {}", r.id), source: e })?;
                took_over = true;
            }
        }
        let recreate = dry.is_none() && live.is_some();
        if let (Some(live), Some(dry)) = (&live, &dry) {
            if !took_over && same_content(live, dry) {
                return Ok((Action::Unchanged, live.metadata.resource_version.clone()));
            }
        }
        if recreate {
            // An immutable field changed and force is set: delete, then create again. Its
            // dependents (a Deployment's ReplicaSets) are collected in the background.
            api.delete(&r.id.name, &DeleteParams::background()).await.map_err(|e| ApplyError::Api { context: format!("recreating {}", r.id), source: e })?;
            self.wait_gone(&api, &r.id, opts.wait_timeout).await?;
        }
        let applied = api.patch(&r.id.name, params, &Patch::Apply(&r.object)).await.map_err(|e| match e {
            kube::Error::Api(status) => ApplyError::ApplyFailed { id: r.id.clone(), message: status.message },
            other => ApplyError::Api { context: format!("applying {}", r.id), source: other },
        })?;
        let action = match (&live, &dry) {
            (None, _) => Action::Created,
            (Some(_), None) => Action::Configured,
            // The dry-run predicted a change.
            (Some(live), Some(dry)) if !same_content(live, dry) => Action::Configured,
            // Only the takeover: the apply may still have removed fields another manager held,
            // which the dry-run (made before the takeover) kept.
            (Some(_), Some(dry)) if same_content(dry, &applied) => Action::Unchanged,
            (Some(_), Some(_)) => Action::Configured,
        };
        Ok((action, applied.metadata.resource_version.clone()))
    }

    async fn wait_gone(&self, api: &Api<DynamicObject>, id: &ObjectId, timeout: Duration) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match api.get_opt(&id.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(Some(_)) => return Err(ApplyError::WaitTimeout { what: format!("{id} to be deleted") }),
                Err(e) => return Err(ApplyError::Api { context: format!("waiting for {id} deletion"), source: e }),
            }
        }
    }

    /// Waits until applied CRDs are Established and Namespaces Active.
    async fn wait_for_definitions(&self, changes: &[Change], timeout: Duration) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for change in changes {
            let (resource, condition) = match change.id.kind.as_str() {
                "CustomResourceDefinition" => (
                    ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                        "customresourcedefinitions",
                    ),
                    "Established",
                ),
                "Namespace" => (ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces"), ""),
                _ => continue,
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            loop {
                let object = api.get_opt(&change.id.name).await.map_err(|e| ApplyError::Api { context: format!("waiting for {}", change.id), source: e })?;
                let ready = object.is_some_and(|o| {
                    let status = o.data.get("status");
                    if condition.is_empty() {
                        status.and_then(|s| s.get("phase")).and_then(Value::as_str) == Some("Active")
                    } else {
                        status
                            .and_then(|s| s.get("conditions"))
                            .and_then(Value::as_array)
                            .is_some_and(|cs| cs.iter().any(|c| c["type"] == condition && c["status"] == "True"))
                    }
                });
                if ready {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApplyError::WaitTimeout { what: format!("{} to become ready", change.id) });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Deletes objects that left the inventory, in reverse apply order. Objects already gone are
    /// skipped silently; objects without all the owner labels, or annotated
    /// `kustomize.toolkit.fluxcd.io/prune: disabled`, are left in place. Returns what was done and
    /// the objects whose deletion failed (they stay in the inventory, to retry).
    pub async fn prune(&self, stale: &[(ObjectId, String)], opts: &ApplyOptions) -> (Vec<Change>, Vec<((ObjectId, String), String)>) {
        let mut ordered: Vec<&(ObjectId, String)> = stale.iter().collect();
        ordered.sort_by(|a, b| object::apply_rank(&b.0.kind).cmp(&object::apply_rank(&a.0.kind)).then_with(|| b.0.cmp(&a.0)));
        let mut changes = Vec::new();
        let mut failed = Vec::new();
        for entry in ordered {
            let (id, version) = entry;
            let object = serde_json::json!({
                "apiVersion": version, "kind": id.kind,
                "metadata": {"name": id.name, "namespace": id.namespace}
            });
            let resolved = match self.resolve(0, object).await {
                Ok(r) => r,
                // The kind is gone (its CRD was deleted): so is the object.
                Err(ApplyError::UnknownKind { .. }) => continue,
                Err(e) => {
                    failed.push((entry.clone(), e.to_string()));
                    continue;
                }
            };
            let api = self.api(&resolved);
            let live = match api.get_opt(&id.name).await {
                Ok(Some(live)) => live,
                Ok(None) => continue,
                Err(e) => {
                    failed.push((entry.clone(), e.to_string()));
                    continue;
                }
            };
            let labels = live.metadata.labels.clone().unwrap_or_default();
            let annotations = live.metadata.annotations.clone().unwrap_or_default();
            let owned = opts.owner_labels.iter().all(|(k, v)| labels.get(k) == Some(v));
            let disabled = annotations.get(crate::api::kustomize::PRUNE_ANNOTATION).is_some_and(|v| v == "disabled");
            if !owned || disabled || live.metadata.deletion_timestamp.is_some() {
                changes.push(Change { id: id.clone(), version: version.clone(), action: Action::Skipped });
                continue;
            }
            let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
            match api.delete(&id.name, &params).await {
                Ok(_) => changes.push(Change { id: id.clone(), version: version.clone(), action: Action::Deleted }),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => failed.push((entry.clone(), e.to_string())),
            }
        }
        (changes, failed)
    }
}

fn is_immutable_field_error(message: &str) -> bool {
    message.contains("field is immutable") || message.contains("may not change once set")
}

/// Whether a dry-run (or apply) result equals the live object, ignoring bookkeeping the server
/// changes on every write and `status`, which controllers write concurrently and we never apply.
fn same_content(live: &DynamicObject, dry_run: &DynamicObject) -> bool {
    let value = |o: &DynamicObject| comparable(serde_json::to_value(o).unwrap_or(Value::Null));
    value(live) == value(dry_run)
}

/// An object without what the server manages on every write (`managedFields`,
/// `resourceVersion`, `generation`, `creationTimestamp`, `uid`, `selfLink`) and without `status`:
/// what is left is what applying can change.
pub fn comparable(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"] {
            meta.remove(key);
        }
    }
    value
}
