//! Name references: once prefixes, suffixes and hashes changed names, every field that named an
//! object by an earlier name is pointed at its current one (kustomize's `nameReference`).

use std::collections::HashMap;

use serde_json::Value;

use super::fieldspec::{self, NAME_REFERENCES, NameReference};
use super::object::{Resource, group_version, is_cluster_scoped, kind, name, namespace};

/// A possible target of a reference: where it is now.
#[derive(Clone)]
struct Referent {
    current_name: String,
    current_namespace: String,
    /// The namespace it had before the build changed it (a subject names that one).
    original_namespace: String,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    /// A cluster-scoped object may be named from any namespace.
    cluster_scoped: bool,
}

/// Where a reference is, for telling candidates apart as kustomize does.
struct Referrer<'a> {
    id: String,
    prefixes: &'a [String],
    suffixes: &'a [String],
}

/// kustomize's comparison of two lists of prefixes (or suffixes): the shorter one ends the
/// longer one; with `allow_empty`, an empty list matches anything.
fn same_ending(a: &[String], b: &[String], allow_empty: bool) -> bool {
    if allow_empty && (a.is_empty() || b.is_empty()) {
        return true;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long[long.len() - short.len()..] == *short
}

/// kustomize's choice among the objects a reference may mean (after its name, kind and
/// namespace sieves): one left wins; several are told apart by the prefixes and suffixes they
/// share with the referrer; still several (and not the same object for the reference) is an
/// error, as in kustomize, never a silent guess.
fn choose<'a>(candidates: Vec<&'a Referent>, referrer: &Referrer, old: &str, with_namespace: bool) -> Result<Option<&'a Referent>, String> {
    if candidates.len() <= 1 {
        return Ok(candidates.into_iter().next());
    }
    let mut left: Vec<&Referent> =
        candidates.into_iter().filter(|c| same_ending(&c.prefixes, referrer.prefixes, true) && same_ending(&c.suffixes, referrer.suffixes, true)).collect();
    if left.len() > 1 {
        left.retain(|c| same_ending(&c.prefixes, referrer.prefixes, false) && same_ending(&c.suffixes, referrer.suffixes, false));
    }
    let Some(first) = left.first().copied() else { return Ok(None) };
    let identical = left.iter().all(|c| c.current_name == first.current_name && (!with_namespace || c.current_namespace == first.current_namespace));
    if identical {
        return Ok(Some(first));
    }
    let ids: Vec<String> =
        left.iter().map(|c| format!("{}.{}", c.current_name, if c.current_namespace.is_empty() { "[noNs]" } else { &c.current_namespace })).collect();
    Err(format!("updating the reference to '{old}' in {}: found multiple possible referrals: {}", referrer.id, ids.join(", ")))
}

fn same_namespace(a: &str, b: &str) -> bool {
    fn normal(n: &str) -> &str {
        if n.is_empty() { "default" } else { n }
    }
    normal(a) == normal(b)
}

/// Points every known reference (kustomize's builtin ones and `custom`, from `configurations`)
/// at the current name of the object it meant.
pub fn fix_references(resources: &mut [Resource], custom: &[NameReference]) -> Result<(), String> {
    // Referents by (group, kind) and by every name they had; only renamed ones matter.
    let mut by_kind: HashMap<(String, String), HashMap<String, Vec<Referent>>> = HashMap::new();
    for resource in resources.iter() {
        if resource.previous.is_empty() {
            continue;
        }
        let (group, _) = group_version(&resource.object);
        let names = by_kind.entry((group.to_owned(), kind(&resource.object).to_owned())).or_default();
        let mut seen = Vec::new();
        for old in resource.previous.iter().map(|(n, _)| n.as_str()) {
            if seen.contains(&old) {
                continue;
            }
            seen.push(old);
            names.entry(old.to_owned()).or_default().push(Referent {
                current_name: name(&resource.object).to_owned(),
                current_namespace: namespace(&resource.object).to_owned(),
                original_namespace: resource.previous.first().map_or_else(|| namespace(&resource.object).to_owned(), |(_, ns)| ns.clone()),
                prefixes: resource.prefixes.clone(),
                suffixes: resource.suffixes.clone(),
                cluster_scoped: is_cluster_scoped(&resource.object),
            });
        }
    }
    if by_kind.is_empty() {
        return Ok(());
    }
    // A `configurations` reference without a group means its kind in any group, as kustomize
    // selects referents by the parts of the kind it was given.
    let mut any_group: HashMap<String, HashMap<String, Vec<Referent>>> = HashMap::new();
    for ((_, kind), names) in &by_kind {
        let merged = any_group.entry(kind.clone()).or_default();
        for (old, referents) in names {
            merged.entry(old.clone()).or_default().extend(referents.iter().cloned());
        }
    }
    let builtin = NAME_REFERENCES.len();
    for (index, reference) in NAME_REFERENCES.iter().chain(custom).enumerate() {
        let names = if index >= builtin && reference.referent_group.is_empty() {
            any_group.get(&reference.referent_kind)
        } else {
            by_kind.get(&(reference.referent_group.clone(), reference.referent_kind.clone()))
        };
        let Some(names) = names else { continue };
        let path = reference.referrer.segments();
        let Some((field, parent_path)) = path.split_last() else { continue };
        for resource in resources.iter_mut() {
            if !reference.referrer.selects(&resource.object) {
                continue;
            }
            let referrer_namespace = (!is_cluster_scoped(&resource.object)).then(|| namespace(&resource.object).to_owned());
            let service_reference = matches!(kind(&resource.object), "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration")
                && reference.referrer.path.ends_with("clientConfig/service/name");
            let referrer = Referrer { id: super::Id::of(&resource.object).to_string(), prefixes: &resource.prefixes, suffixes: &resource.suffixes };
            let mut failure = None;
            fieldspec::visit(&mut resource.object, parent_path, false, &mut |parent: &mut Value| {
                let parents: Vec<&mut Value> = match parent {
                    Value::Array(items) => items.iter_mut().collect(),
                    single => vec![single],
                };
                for parent in parents {
                    if let Err(e) = fix_one(parent, field, &reference.referent_kind, names, referrer_namespace.as_deref(), &referrer, service_reference) {
                        failure.get_or_insert(e);
                    }
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
        }
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
            let (prefixes, suffixes) = (resource.prefixes.clone(), resource.suffixes.clone());
            let referrer = Referrer { id: super::Id::of(&resource.object).to_string(), prefixes: &prefixes, suffixes: &suffixes };
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
                        // The namespace the subject names is the one it had before the build,
                        // or (none had it) the one it has now, as kustomize looks them up.
                        Some(ns) => {
                            let could_be_named: Vec<&Referent> = could_be_named.collect();
                            let by_original: Vec<&Referent> = could_be_named.iter().copied().filter(|c| same_namespace(ns, &c.original_namespace)).collect();
                            if by_original.is_empty() {
                                could_be_named.into_iter().filter(|c| same_namespace(ns, &c.current_namespace)).collect()
                            } else {
                                by_original
                            }
                        }
                        None => could_be_named.collect(),
                    }
                } else if *referent_kind == "Role" && !cluster_scoped {
                    candidates.iter().filter(|c| same_namespace(&referrer_namespace, &c.current_namespace)).collect()
                } else {
                    candidates.iter().collect()
                };
                let Some(first) = choose(matching, &referrer, old, *path == "subjects")? else { continue };
                map.insert("name".into(), Value::String(first.current_name.clone()));
                // A subject gets the account's namespace, unless it has none (no empty field).
                if *path == "subjects" && !first.current_namespace.is_empty() {
                    map.insert("namespace".into(), Value::String(first.current_namespace.clone()));
                }
            }
        }
    }
    Ok(())
}

/// Points one reference (`parent[field]`) at its referent's current name.
fn fix_one(
    parent: &mut Value,
    field: &str,
    referent_kind: &str,
    names: &HashMap<String, Vec<Referent>>,
    referrer_namespace: Option<&str>,
    referrer: &Referrer,
    with_namespace: bool,
) -> Result<(), String> {
    let Some(map) = parent.as_object_mut() else { return Ok(()) };
    // A reference that says which kind it means (roleRef, scaleTargetRef) only means objects of
    // that kind.
    if map.get("kind").and_then(Value::as_str).is_some_and(|k| k != referent_kind) {
        return Ok(());
    }
    let explicit_namespace = map.get("namespace").and_then(Value::as_str).map(str::to_owned);
    let current = |old: &str| -> Result<Option<(String, String)>, String> {
        let Some(candidates) = names.get(old) else { return Ok(None) };
        let matching: Vec<&Referent> = match explicit_namespace.as_deref() {
            // A reference with its own namespace names the one the object had before the build,
            // or (none had it) the one it has now, as kustomize looks them up.
            Some(ns) => {
                let by_original: Vec<&Referent> = candidates.iter().filter(|c| same_namespace(ns, &c.original_namespace)).collect();
                if by_original.is_empty() { candidates.iter().filter(|c| same_namespace(ns, &c.current_namespace)).collect() } else { by_original }
            }
            None => candidates.iter().filter(|c| c.cluster_scoped || referrer_namespace.is_none_or(|ns| same_namespace(ns, &c.current_namespace))).collect(),
        };
        Ok(choose(matching, referrer, old, with_namespace)?.map(|c| (c.current_name.clone(), c.current_namespace.clone())))
    };
    let current_name = |old: &str| -> Result<Option<String>, String> { Ok(current(old)?.map(|(name, _)| name)) };
    if with_namespace {
        // A service reference (webhooks): name and namespace follow the Service, as kustomize
        // sets both from the object it chose; one outside the build is left as written.
        if let Some(old) = map.get(field).and_then(Value::as_str).map(str::to_owned)
            && let Some((name, namespace)) = current(&old)?
        {
            map.insert(field.to_owned(), Value::String(name));
            if !namespace.is_empty() {
                map.insert("namespace".into(), Value::String(namespace));
            }
        }
        return Ok(());
    }
    match map.get_mut(field) {
        Some(Value::String(old)) => {
            if let Some(new) = current_name(old)? {
                *old = new;
            }
        }
        // A list of names (custom references may point at one).
        Some(Value::Array(items)) => {
            for item in items {
                if let Some(new) = item.as_str().map(current_name).transpose()?.flatten() {
                    *item = Value::String(new);
                }
            }
        }
        _ => {}
    }
    Ok(())
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
        fix_references(&mut resources, &[]).expect("references fixed");
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
        fix_references(&mut resources, &[]).expect("references fixed");
        assert_eq!(resources[1].object["spec"]["volumes"][0]["configMap"]["name"], "cfg");
    }
}
