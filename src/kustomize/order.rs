//! kustomize's default ("legacy") output order: by kind priority, then group/version/kind,
//! namespace and name.

use serde_json::Value;

use super::file::SortOptions;

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];
const ORDER_LAST: &[&str] = &["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"];

/// The legacy key: kind rank, then `group_version_kind` (kustomize writes `~G` for the core
/// group, so it sorts after named groups), then `namespace|name` compared as one string, as
/// kustomize does (so `kubeflow-system|…` sorts before `kubeflow|…`; no namespace is `~X`, last).
fn sort_key(object: &Value, first: &[&str], last: &[&str]) -> (i64, String, String) {
    let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_owned();
    let kind = text("/kind");
    let rank = match (first.iter().position(|k| *k == kind), last.iter().position(|k| *k == kind)) {
        (Some(i), _) => i as i64 - first.len() as i64,
        (None, Some(i)) => 1 + i as i64,
        (None, None) => 0,
    };
    let api_version = text("/apiVersion");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
    let or = |value: &str, placeholder: &str| if value.is_empty() { placeholder.to_owned() } else { value.to_owned() };
    let gvk = format!("{}_{}_{}", or(group, "~G"), or(version, "~V"), or(&kind, "~K"));
    (rank, gvk, format!("{}|{}", or(&text("/metadata/namespace"), "~X"), or(&text("/metadata/name"), "~N")))
}

/// A kind's rank in kustomize's type order (negative for the kinds it puts first, positive for
/// the last, 0 for the rest), which also orders field specs.
pub fn kind_rank(kind: &str) -> i64 {
    match (ORDER_FIRST.iter().position(|k| *k == kind), ORDER_LAST.iter().position(|k| *k == kind)) {
        (Some(i), _) => i as i64 - ORDER_FIRST.len() as i64,
        (None, Some(i)) => 1 + i as i64,
        (None, None) => 0,
    }
}

/// Sorts objects in kustomize's legacy order.
pub fn legacy_sort(objects: &mut [Value]) {
    objects.sort_by_cached_key(|o| sort_key(o, ORDER_FIRST, ORDER_LAST));
}

/// Sorts with a kustomization's `sortOptions`: `fifo` keeps the order of accumulation;
/// `legacy` may bring its own first and last kinds.
pub fn sort(objects: &mut [Value], options: Option<&SortOptions>) -> Result<(), String> {
    let Some(options) = options else {
        legacy_sort(objects);
        return Ok(());
    };
    match options.order.as_deref() {
        Some("fifo") => {
            if options.legacy_sort_options.is_some() {
                return Err("the field 'sortOptions.legacySortOptions' is set but the selected sort order is 'fifo', not 'legacy'".into());
            }
            Ok(())
        }
        Some("legacy") => {
            match &options.legacy_sort_options {
                Some(custom) => {
                    let first: Vec<&str> = custom.order_first.iter().map(String::as_str).collect();
                    let last: Vec<&str> = custom.order_last.iter().map(String::as_str).collect();
                    objects.sort_by_cached_key(|o| sort_key(o, &first, &last));
                }
                None => legacy_sort(objects),
            }
            Ok(())
        }
        // kustomize needs the order once `sortOptions` is there.
        _ => Err("the field 'sortOptions.order' must be one of [fifo, legacy]".into()),
    }
}
