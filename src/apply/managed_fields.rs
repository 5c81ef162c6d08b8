//! Taking over fields that kubectl or Flux's kustomize-controller own, so that moving an object
//! from `kubectl apply` or from Flux to ferroflux leaves no orphaned fields: a field owned by
//! another manager would survive its removal from Git.

use json_patch::{Patch, PatchOperation, ReplaceOperation, TestOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use kube::api::DynamicObject;
use serde_json::Value;

/// Managers whose fields ferroflux takes over: client-side `kubectl apply` (and the pseudo-manager
/// the API server records for objects created before managed fields existed), and Flux.
pub const TAKEOVER_MANAGERS: &[&str] = &["kubectl-client-side-apply", "before-first-apply", "kustomize-controller"];

/// A JSON patch that hands the fields of [`TAKEOVER_MANAGERS`] to `manager` (as an Apply entry),
/// guarded by the object's resourceVersion; `None` when there is nothing to take over.
pub fn takeover_patch(live: &DynamicObject, manager: &str) -> Option<Patch> {
    let entries = live.metadata.managed_fields.as_ref()?;
    let rewritten = takeover(entries, manager)?;
    let resource_version = live.metadata.resource_version.clone()?;
    let managed = serde_json::to_value(rewritten).ok()?;
    Some(Patch(vec![
        PatchOperation::Test(TestOperation { path: "/metadata/resourceVersion".parse().ok()?, value: Value::String(resource_version) }),
        PatchOperation::Replace(ReplaceOperation { path: "/metadata/managedFields".parse().ok()?, value: managed }),
    ]))
}

/// The managed fields with every main-resource entry of a takeover manager merged into
/// `manager`'s Apply entry of the same API version; `None` when no entry is taken over.
pub fn takeover(entries: &[ManagedFieldsEntry], manager: &str) -> Option<Vec<ManagedFieldsEntry>> {
    let is_taken =
        |e: &ManagedFieldsEntry| e.manager.as_deref().is_some_and(|m| TAKEOVER_MANAGERS.contains(&m)) && e.subresource.as_deref().unwrap_or("").is_empty();
    if !entries.iter().any(is_taken) {
        return None;
    }
    let mut result: Vec<ManagedFieldsEntry> = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut entry = entry.clone();
        if is_taken(&entry) {
            entry.manager = Some(manager.to_owned());
            entry.operation = Some("Apply".to_owned());
        }
        let mergeable = entry.manager.as_deref() == Some(manager) && entry.operation.as_deref() == Some("Apply");
        let existing = result.iter_mut().find(|e| {
            mergeable
                && e.manager == entry.manager
                && e.operation == entry.operation
                && e.api_version == entry.api_version
                && e.subresource == entry.subresource
        });
        match existing {
            Some(existing) => {
                let mut fields = existing.fields_v1.take().map(|f| f.0).unwrap_or(Value::Object(Default::default()));
                if let Some(FieldsV1(more)) = entry.fields_v1 {
                    union(&mut fields, more);
                }
                existing.fields_v1 = Some(FieldsV1(fields));
            }
            None => result.push(entry),
        }
    }
    Some(result)
}

/// Set union of two fieldsV1 tries (JSON objects whose leaves are `{}`).
fn union(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                match into.get_mut(&key) {
                    Some(existing) => union(existing, value),
                    None => {
                        into.insert(key, value);
                    }
                }
            }
        }
        (into, from) => *into = from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            api_version: Some("apps/v1".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        }
    }

    #[test]
    fn kubectl_fields_merge_into_ours() {
        let entries = vec![
            entry("kubectl-client-side-apply", "Update", json!({"f:spec": {"f:replicas": {}, "f:paused": {}}})),
            entry("ferroflux", "Apply", json!({"f:spec": {"f:replicas": {}}, "f:metadata": {"f:labels": {}}})),
            entry("kube-controller-manager", "Update", json!({"f:status": {}})),
        ];
        let result = takeover(&entries, "ferroflux").expect("something taken over");
        assert_eq!(result.len(), 2);
        assert_eq!(result[0].manager.as_deref(), Some("ferroflux"));
        assert_eq!(
            result[0].fields_v1.as_ref().map(|f| f.0.clone()),
            Some(json!({"f:spec": {"f:replicas": {}, "f:paused": {}}, "f:metadata": {"f:labels": {}}}))
        );
        assert_eq!(result[1].manager.as_deref(), Some("kube-controller-manager"));
    }

    #[test]
    fn nothing_to_take_over_is_none() {
        let entries = vec![entry("ferroflux", "Apply", json!({})), entry("kubectl-edit", "Update", json!({}))];
        assert!(takeover(&entries, "ferroflux").is_none());
    }
}
