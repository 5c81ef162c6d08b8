//! Applying a set of manifests the way Flux's kustomize-controller does, with server-side apply:
//! validate a whole stage with a server-side dry-run before writing anything in it, then apply
//! only what differs, report each object as created / configured / unchanged, and prune what left
//! the inventory.
//!
//! This file is the engine's face (errors, options, discovery, the two stages); the steps live
//! along the seams of fluxcd/pkg's `ssa` package: `plan` (dry-run and comparison), `stage`
//! (writing one stage), `state` (what was applied last), `wait`, `prune` and `changeset`.

mod changeset;
pub mod managed_fields;
pub mod object;
mod plan;
pub mod policy;
mod prune;
mod stage;
mod state;
mod wait;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope, pinned_kind};
use serde_json::Value;
use tokio::sync::RwLock;

pub use changeset::{Action, Change};
pub use object::ObjectId;
pub use plan::{DryRun, comparable};
pub use state::AppliedState;

/// How many requests of one stage are in flight at once: the API server handles them in
/// parallel, and a 1,000-object apply is bound by round trips, not by the server.
const CONCURRENCY: usize = 16;

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
    /// The watch a wait runs on failed (no `list`/`watch` permission, or the connection).
    #[error("{context}: {source}")]
    Wait { context: String, source: kube::runtime::wait::Error },
    #[error("{context}: {source}")]
    Api { context: String, source: kube::Error },
}

fn dry_run_message(failures: &[(ObjectId, String)]) -> String {
    failures.iter().map(|(id, message)| format!("{id} dry-run failed: {message}")).collect::<Vec<_>>().join("\n")
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

    async fn resolve_stage(&self, objects: Vec<(usize, Value)>) -> Result<Vec<Resolved>, ApplyError> {
        let mut resolved = Vec::with_capacity(objects.len());
        for (index, object) in objects {
            resolved.push(self.resolve(index, object).await?);
        }
        resolved.sort_by(|a, b| object::apply_rank(&a.id.kind).cmp(&object::apply_rank(&b.id.kind)).then_with(|| a.id.cmp(&b.id)));
        Ok(resolved)
    }
}
