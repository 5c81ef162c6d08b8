//! Identity and ordering of the objects a Kustomization applies (pure; no I/O).

use std::fmt;

use serde_json::Value;

/// What identifies an object across versions: Flux's inventory id is
/// `<namespace>_<name>_<group>_<kind>` (empty namespace for cluster-scoped objects, empty group for
/// the core API), with the API version kept next to it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub namespace: String,
    pub name: String,
    pub group: String,
    pub kind: String,
}

/// An object without apiVersion, kind or metadata.name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("object {index} has no {missing}")]
pub struct IncompleteObject {
    pub index: usize,
    pub missing: &'static str,
}

/// An inventory id that is not `<namespace>_<name>_<group>_<kind>`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid inventory id {0:?}")]
pub struct InvalidInventoryId(pub String);

impl ObjectId {
    /// The identity of a manifest, and its API version.
    pub fn of(object: &Value, index: usize) -> Result<(ObjectId, String), IncompleteObject> {
        fn field<'a>(value: Option<&'a Value>, index: usize, missing: &'static str) -> Result<&'a str, IncompleteObject> {
            value.and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or(IncompleteObject { index, missing })
        }
        let api_version = field(object.get("apiVersion"), index, "apiVersion")?;
        let kind = field(object.get("kind"), index, "kind")?;
        let name = field(object.pointer("/metadata/name"), index, "metadata.name")?;
        let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        Ok((ObjectId { namespace: namespace.to_owned(), name: name.to_owned(), group: group.to_owned(), kind: kind.to_owned() }, api_version.to_owned()))
    }

    /// Flux's inventory id.
    pub fn inventory_id(&self) -> String {
        format!("{}_{}_{}_{}", self.namespace, self.name, self.group, self.kind)
    }

    /// Parses an inventory id. Names, namespaces, groups and kinds cannot contain `_`, so the
    /// split is unambiguous.
    pub fn from_inventory_id(id: &str) -> Result<ObjectId, InvalidInventoryId> {
        let parts: Vec<&str> = id.split('_').collect();
        match parts.as_slice() {
            [namespace, name, group, kind] if !name.is_empty() && !kind.is_empty() => {
                Ok(ObjectId { namespace: (*namespace).to_owned(), name: (*name).to_owned(), group: (*group).to_owned(), kind: (*kind).to_owned() })
            }
            _ => Err(InvalidInventoryId(id.to_owned())),
        }
    }

    /// CRDs and Namespaces (and ClusterRoles, which other objects' RBAC may need) are applied in a
    /// first stage, and waited for, so the second stage can use them.
    pub fn is_cluster_definition(&self) -> bool {
        matches!(
            (self.group.as_str(), self.kind.as_str()),
            ("apiextensions.k8s.io", "CustomResourceDefinition") | ("", "Namespace") | ("rbac.authorization.k8s.io", "ClusterRole")
        )
    }
}

/// As Flux writes an object in messages and events: `Kind/namespace/name`, or `Kind/name` when
/// cluster-scoped.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() { write!(f, "{}/{}", self.kind, self.name) } else { write!(f, "{}/{}/{}", self.kind, self.namespace, self.name) }
    }
}

/// Apply order by kind, as Flux (and Helm) install: what others depend on comes first. Unknown
/// kinds (custom resources) come last. Pruning uses the reverse.
pub fn apply_rank(kind: &str) -> usize {
    const ORDER: &[&str] = &[
        "CustomResourceDefinition",
        "Namespace",
        "ResourceQuota",
        "StorageClass",
        "LimitRange",
        "PodSecurityPolicy",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Secret",
        "SecretList",
        "ConfigMap",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "ClusterRole",
        "ClusterRoleList",
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "Role",
        "RoleList",
        "RoleBinding",
        "RoleBindingList",
        "Service",
        "DaemonSet",
        "Pod",
        "ReplicationController",
        "ReplicaSet",
        "Deployment",
        "HorizontalPodAutoscaler",
        "StatefulSet",
        "Job",
        "CronJob",
        "IngressClass",
        "Ingress",
        "APIService",
        "NetworkPolicy",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
    ];
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// Sorts for applying: by kind rank, then namespace and name, so the order is stable.
pub fn sort_for_apply(ids: &mut [ObjectId]) {
    ids.sort_by(|a, b| {
        apply_rank(&a.kind)
            .cmp(&apply_rank(&b.kind))
            .then_with(|| a.kind.cmp(&b.kind))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inventory_ids_round_trip() {
        let (id, version) =
            ObjectId::of(&json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello-world-flask", "namespace": "default"}}), 0)
                .expect("complete object");
        assert_eq!(id.inventory_id(), "default_hello-world-flask_apps_Deployment");
        assert_eq!(version, "apps/v1");
        assert_eq!(id.to_string(), "Deployment/default/hello-world-flask");
        assert_eq!(ObjectId::from_inventory_id(&id.inventory_id()), Ok(id));

        let (ns, _) = ObjectId::of(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}), 0).expect("complete object");
        assert_eq!(ns.inventory_id(), "_apps__Namespace");
        assert_eq!(ns.to_string(), "Namespace/apps");
        assert!(ns.is_cluster_definition());
        assert_eq!(ObjectId::from_inventory_id("_apps__Namespace"), Ok(ns));
    }

    #[test]
    fn incomplete_objects_and_bad_ids_are_errors() {
        assert_eq!(
            ObjectId::of(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}), 3),
            Err(IncompleteObject { index: 3, missing: "metadata.name" })
        );
        assert!(ObjectId::from_inventory_id("a_b_c").is_err());
        assert!(ObjectId::from_inventory_id("ns__apps_Deployment").is_err());
    }

    #[test]
    fn apply_order_puts_definitions_first_and_custom_resources_last() {
        let id = |kind: &str, name: &str| ObjectId { namespace: "ns".into(), name: name.into(), group: "".into(), kind: kind.into() };
        let mut ids = vec![id("Widget", "w"), id("Deployment", "b"), id("Deployment", "a"), id("Namespace", "ns"), id("ConfigMap", "c")];
        sort_for_apply(&mut ids);
        let order: Vec<String> = ids.iter().map(|i| format!("{}/{}", i.kind, i.name)).collect();
        assert_eq!(order, ["Namespace/ns", "ConfigMap/c", "Deployment/a", "Deployment/b", "Widget/w"]);
    }
}
