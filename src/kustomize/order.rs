//! kustomize's default ("legacy") output order: by kind priority, then group/version/kind,
//! namespace and name.

use serde_json::Value;

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

fn sort_key(object: &Value) -> (usize, String, String, String) {
    let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("").to_owned();
    let kind = text("/kind");
    let rank = match (ORDER_FIRST.iter().position(|k| *k == kind), ORDER_LAST.iter().position(|k| *k == kind)) {
        (Some(i), _) => i,
        (None, Some(i)) => ORDER_FIRST.len() + 1 + i,
        (None, None) => ORDER_FIRST.len(),
    };
    let api_version = text("/apiVersion");
    let (group, version) = api_version.rsplit_once('/').map(|(g, v)| (g.to_owned(), v.to_owned())).unwrap_or((String::new(), api_version.clone()));
    (rank, format!("{group}/{version}/{kind}"), text("/metadata/namespace"), text("/metadata/name"))
}

/// Sorts objects in kustomize's legacy order (stable for equal keys).
pub fn legacy_sort(objects: &mut [Value]) {
    objects.sort_by_cached_key(sort_key);
}
