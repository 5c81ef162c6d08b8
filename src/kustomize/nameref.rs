//! Name references: once prefixes, suffixes and hashes changed names, every field that named an
//! object by an earlier name is pointed at its current one (kustomize's `nameReference`).

use std::collections::HashMap;

use serde_json::Value;

use super::fieldspec::{self, NAME_REFERENCES, NameReference};
use super::object::{Resource, group_version, is_cluster_scoped, kind, name, namespace};

/// A possible target of a reference: where it is now.
struct Referent {
    current_name: String,
    current_namespace: String,
    /// The namespace it had before the build changed it (a subject names that one).
    original_namespace: String,
}

fn same_namespace(a: &str, b: &str) -> bool {
    fn normal(n: &str) -> &str {
        if n.is_empty() { "default" } else { n }
    }
    normal(a) == normal(b)
}

/// Points every known reference (kustomize's builtin ones and `custom`, from `configurations`)
/// at the current name of the object it meant.
pub fn fix_references(resources: &mut [Resource], custom: &[NameReference]) {
    // Referents by (group, kind) and by every name they had; only renamed ones matter.
    let mut by_kind: HashMap<(String, String), HashMap<String, Vec<Referent>>> = HashMap::new();
    for resource in resources.iter() {
        if resource.previous.is_empty() {
            continue;
        }
        let (group, _) = group_version(&resource.object);
        let names = by_kind.entry((group.to_owned(), kind(&resource.object).to_owned())).or_default();
        let mut seen = Vec::new();
        for old in resource.names() {
            if seen.contains(&old) {
                continue;
            }
            seen.push(old);
            names.entry(old.to_owned()).or_default().push(Referent {
                current_name: name(&resource.object).to_owned(),
                current_namespace: namespace(&resource.object).to_owned(),
                original_namespace: resource.previous.first().map_or_else(|| namespace(&resource.object).to_owned(), |(_, ns)| ns.clone()),
            });
        }
    }
    if by_kind.is_empty() {
        return;
    }
    for reference in NAME_REFERENCES.iter().chain(custom) {
        let Some(names) = by_kind.get(&(reference.referent_group.clone(), reference.referent_kind.clone())) else { continue };
        let path = reference.referrer.segments();
        let Some((field, parent_path)) = path.split_last() else { continue };
        for resource in resources.iter_mut() {
            if !reference.referrer.selects(&resource.object) {
                continue;
            }
            let referrer_namespace = (!is_cluster_scoped(&resource.object)).then(|| namespace(&resource.object).to_owned());
            fieldspec::visit(&mut resource.object, parent_path, false, &mut |parent: &mut Value| {
                let parents: Vec<&mut Value> = match parent {
                    Value::Array(items) => items.iter_mut().collect(),
                    single => vec![single],
                };
                for parent in parents {
                    fix_one(parent, field, &reference.referent_kind, names, referrer_namespace.as_deref());
                }
            });
        }
    }

    if let Some(services) = by_kind.get(&(String::new(), "Service".to_owned())) {
        fix_webhook_services(resources, services);
    }

    // Role bindings name their role and subjects with a kind beside the name.
    let role_references =
        [("rbac.authorization.k8s.io", "Role", "roleRef"), ("rbac.authorization.k8s.io", "ClusterRole", "roleRef"), ("", "ServiceAccount", "subjects")];
    for (group, referent_kind, path) in &role_references {
        let Some(names) = by_kind.get(&((*group).to_owned(), (*referent_kind).to_owned())) else { continue };
        for resource in resources.iter_mut() {
            if !matches!(kind(&resource.object), "RoleBinding" | "ClusterRoleBinding") {
                continue;
            }
            let referrer_namespace = namespace(&resource.object).to_owned();
            let cluster_scoped = kind(&resource.object) == "ClusterRoleBinding";
            // The service accounts a binding may name (kustomize's referral candidates): any for
            // a ClusterRoleBinding; for a RoleBinding, those in its namespace or in a namespace
            // one of its ServiceAccount subjects names.
            let subject_namespaces: Vec<String> = if cluster_scoped {
                Vec::new()
            } else {
                resource
                    .object
                    .get("subjects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
                    .filter_map(|s| s.get("namespace").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            };
            let may_name =
                |c: &Referent| cluster_scoped || same_namespace(&referrer_namespace, &c.current_namespace) || subject_namespaces.contains(&c.current_namespace);
            let entries: Vec<&mut Value> = match resource.object.get_mut(*path) {
                Some(Value::Array(items)) => items.iter_mut().collect(),
                Some(single) => vec![single],
                None => Vec::new(),
            };
            for entry in entries {
                let Some(map) = entry.as_object_mut() else { continue };
                // kustomize matches subjects by name whatever their kind (so a User named like a
                // renamed ServiceAccount follows it); roleRef must name the kind.
                if *path == "roleRef" && map.get("kind").and_then(Value::as_str) != Some(referent_kind) {
                    continue;
                }
                let Some(old) = map.get("name").and_then(Value::as_str) else { continue };
                let Some(candidates) = names.get(old) else { continue };
                let matching: Vec<&Referent> = if *referent_kind == "ServiceAccount" {
                    let could_be_named = candidates.iter().filter(|c| may_name(c));
                    match map.get("namespace").and_then(Value::as_str) {
                        // The namespace the subject names is the one it had before the build.
                        Some(ns) => could_be_named.filter(|c| same_namespace(ns, &c.original_namespace)).collect(),
                        None => could_be_named.collect(),
                    }
                } else if *referent_kind == "Role" && !cluster_scoped {
                    candidates.iter().filter(|c| same_namespace(&referrer_namespace, &c.current_namespace)).collect()
                } else {
                    candidates.iter().collect()
                };
                let Some(first) = matching.first() else { continue };
                if matching.iter().any(|c| c.current_name != first.current_name) {
                    continue;
                }
                map.insert("name".into(), Value::String(first.current_name.clone()));
                // A subject gets the account's namespace, unless it has none (no empty field).
                if *path == "subjects" && !first.current_namespace.is_empty() {
                    map.insert("namespace".into(), Value::String(first.current_namespace.clone()));
                }
            }
        }
    }
}

/// Webhook configurations name the Service they call by name and namespace
/// (`webhooks[].clientConfig.service`). As kustomize does, the candidates are the Services that
/// had that name and, when the reference names a namespace, had that namespace before the build
/// (else have it now); the one meant gives the reference its current name, and its namespace
/// when it has one. A Service outside the build leaves the reference as it is.
fn fix_webhook_services(resources: &mut [Resource], services: &HashMap<String, Vec<Referent>>) {
    for resource in resources.iter_mut() {
        let is_webhook_configuration = matches!(kind(&resource.object), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
            && group_version(&resource.object).0 == "admissionregistration.k8s.io";
        if !is_webhook_configuration {
            continue;
        }
        let webhooks = resource.object.get_mut("webhooks").and_then(Value::as_array_mut).into_iter().flatten();
        for service in webhooks.filter_map(|w| w.pointer_mut("/clientConfig/service")).filter_map(Value::as_object_mut) {
            let Some(candidates) = service.get("name").and_then(Value::as_str).and_then(|old| services.get(old)) else { continue };
            let matching: Vec<&Referent> = match service.get("namespace").and_then(Value::as_str) {
                None => candidates.iter().collect(),
                Some(ns) => {
                    // kustomize groups the Services by effective namespace (none is `default`).
                    let effective = |n: &str| if n.is_empty() { "default".to_owned() } else { n.to_owned() };
                    let by_original: Vec<&Referent> = candidates.iter().filter(|c| effective(&c.original_namespace) == ns).collect();
                    if by_original.is_empty() { candidates.iter().filter(|c| effective(&c.current_namespace) == ns).collect() } else { by_original }
                }
            };
            let Some(first) = matching.first() else { continue };
            // Several different Services could be meant: the reference is left as it is.
            if matching.iter().any(|c| c.current_name != first.current_name || c.current_namespace != first.current_namespace) {
                continue;
            }
            service.insert("name".into(), Value::String(first.current_name.clone()));
            if !first.current_namespace.is_empty() {
                service.insert("namespace".into(), Value::String(first.current_namespace.clone()));
            }
        }
    }
}

/// Points one reference (`parent[field]`) at its referent's current name.
fn fix_one(parent: &mut Value, field: &str, referent_kind: &str, names: &HashMap<String, Vec<Referent>>, referrer_namespace: Option<&str>) {
    let Some(map) = parent.as_object_mut() else { return };
    // A reference that says which kind it means (roleRef, scaleTargetRef) only means objects of
    // that kind.
    if map.get("kind").and_then(Value::as_str).is_some_and(|k| k != referent_kind) {
        return;
    }
    let explicit_namespace = map.get("namespace").and_then(Value::as_str).map(str::to_owned);
    let wanted_namespace = explicit_namespace.or_else(|| referrer_namespace.map(str::to_owned));
    let current_name = |old: &str| -> Option<String> {
        let candidates = names.get(old)?;
        let matching: Vec<&Referent> =
            candidates.iter().filter(|c| wanted_namespace.as_deref().is_none_or(|ns| same_namespace(ns, &c.current_namespace))).collect();
        let first = matching.first()?;
        // Several different objects could be meant: kustomize leaves such a reference.
        if matching.iter().any(|c| c.current_name != first.current_name) {
            return None;
        }
        Some(first.current_name.clone())
    };
    match map.get_mut(field) {
        Some(Value::String(old)) => {
            if let Some(new) = current_name(old) {
                *old = new;
            }
        }
        // A list of names (custom references may point at one).
        Some(Value::Array(items)) => {
            for item in items {
                if let Some(new) = item.as_str().and_then(current_name) {
                    *item = Value::String(new);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renamed_config_maps_are_followed_in_pod_templates() {
        let mut cm = Resource::new(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}}));
        cm.rename("p-cfg");
        let deployment = Resource::new(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "cfg"}}, {"name": "w", "configMap": {"name": "other"}}],
                "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}}}));
        let mut resources = vec![cm, deployment];
        fix_references(&mut resources, &[]);
        let spec = &resources[1].object["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["configMap"]["name"], "p-cfg");
        assert_eq!(spec["volumes"][1]["configMap"]["name"], "other");
        assert_eq!(spec["containers"][0]["envFrom"][0]["configMapRef"]["name"], "p-cfg");
    }

    #[test]
    fn references_stay_in_their_namespace() {
        let mut cm = Resource::new(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "a"}}));
        cm.rename("x-cfg");
        let pod = Resource::new(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "b"},
            "spec": {"volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}}));
        let mut resources = vec![cm, pod];
        fix_references(&mut resources, &[]);
        assert_eq!(resources[1].object["spec"]["volumes"][0]["configMap"]["name"], "cfg");
    }
}
