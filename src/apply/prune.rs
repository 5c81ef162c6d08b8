//! Deleting what left the inventory: only objects carrying the owner labels and not opted out.

use kube::api::{DeleteParams, PropagationPolicy};

use super::{Action, Applier, ApplyError, ApplyOptions, Change, ObjectId, object};

impl Applier {
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
                changes.push(Change { id: id.clone(), version: version.clone(), action: Action::Skipped, live: None });
                continue;
            }
            let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..DeleteParams::default() };
            match api.delete(&id.name, &params).await {
                Ok(_) => changes.push(Change { id: id.clone(), version: version.clone(), action: Action::Deleted, live: None }),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => failed.push((entry.clone(), e.to_string())),
            }
        }
        (changes, failed)
    }
}
