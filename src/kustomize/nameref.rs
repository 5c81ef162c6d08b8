//! Name references: once prefixes, suffixes and hashes changed names, every field that named an
//! object by an earlier name is pointed at its current one (kustomize's `nameReference`).

use std::collections::HashMap;

use serde_json::Value;

use super::fieldspec::{self, NAME_REFERENCES, NameReference};
use super::object::{Id, Resource, group_version, is_cluster_scoped, kind, name, namespace};

/// A possible target of a reference: where it is now.
#[derive(Clone)]
struct Referent {
    current_name: String,
    current_namespace: String,
    /// The namespace it had before the build changed it (a subject names that one).
    original_namespace: String,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
    cluster_scoped: bool,
    id: String,
}

/// Whether one list of prefixes (or suffixes) ends with the other (kustomize's
/// `SameEndingSubSlice`): an empty list only equals an empty one.
fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}

fn prefixes_suffixes_equal(c: &Referent, prefixes: &[String], suffixes: &[String], allow_empty: bool) -> bool {
    let prefixes_match = (allow_empty && (c.prefixes.is_empty() || prefixes.is_empty())) || same_ending(&c.prefixes, prefixes);
    let suffixes_match = (allow_empty && (c.suffixes.is_empty() || suffixes.is_empty())) || same_ending(&c.suffixes, suffixes);
    prefixes_match && suffixes_match
}

/// The one referent among `matching` (already of the right name, kind and namespace) that a
/// referrer with `prefixes` and `suffixes` means, as kustomize picks it: several become one by
/// their prefixes and suffixes ending like the referrer's; several that are still different
/// objects (by `identical`) are an error, as in kustomize.
fn pick<'a>(
    matching: Vec<&'a Referent>,
    prefixes: &[String],
    suffixes: &[String],
    identical: fn(&Referent, &Referent) -> bool,
) -> Result<Option<&'a Referent>, String> {
    if matching.len() <= 1 {
        return Ok(matching.first().copied());
    }
    let mut narrowed: Vec<&Referent> = matching.into_iter().filter(|c| prefixes_suffixes_equal(c, prefixes, suffixes, true)).collect();
    if narrowed.len() > 1 {
        narrowed.retain(|c| prefixes_suffixes_equal(c, prefixes, suffixes, false));
    }
    let Some(first) = narrowed.first().copied() else { return Ok(None) };
    if narrowed.iter().all(|c| identical(first, c)) {
        return Ok(Some(first));
    }
    let ids: Vec<&str> = narrowed.iter().map(|c| c.id.as_str()).collect();
    Err(format!("found multiple possible referrals: [{}]", ids.join(" ")))
}

fn same_name(a: &Referent, b: &Referent) -> bool {
    a.current_name == b.current_name
}

fn same_name_and_namespace(a: &Referent, b: &Referent) -> bool {
    a.current_name == b.current_name && a.current_namespace == b.current_namespace
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
        // kustomize matches a reference against the names an object had, not its current one.
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
                id: resource.id().to_string(),
            });
        }
    }
    // kustomize reads the ServiceAccount subjects' namespaces of every RoleBinding when it
    // resolves references, and refuses one that is not a string (`namespace:` left blank).
    for resource in resources.iter() {
        if kind(&resource.object) != "RoleBinding" {
            continue;
        }
        let subjects = resource.object.get("subjects").and_then(Value::as_array).into_iter().flatten();
        for subject in subjects {
            let is_account = subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount");
            if is_account && subject.get("namespace").is_some_and(|ns| !ns.is_string()) {
                return Err(format!("Invalid Input: namespace is blank for resource \"{}\"", resource.id()));
            }
        }
    }
    if by_kind.is_empty() {
        return Ok(());
    }
    // A `configurations` reference without a group means its kind in any group, as kustomize
    // selects referents by the parts of the kind it was given.
    let mut any_group: HashMap<String, HashMap<String, Vec<Referent>>> = HashMap::new();
    if custom.iter().any(|r| r.referent_group.is_empty()) {
        for ((_, kind), names) in &by_kind {
            let merged = any_group.entry(kind.clone()).or_default();
            for (old, referents) in names {
                merged.entry(old.clone()).or_default().extend(referents.iter().cloned());
            }
        }
    }
    let mut failure: Option<String> = None;
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
            let (prefixes, suffixes) = (&resource.prefixes, &resource.suffixes);
            fieldspec::visit(&mut resource.object, parent_path, false, &mut |parent: &mut Value| {
                let parents: Vec<&mut Value> = match parent {
                    Value::Array(items) => items.iter_mut().collect(),
                    single => vec![single],
                };
                for parent in parents {
                    let referrer = Referrer { namespace: referrer_namespace.as_deref(), prefixes, suffixes };
                    if let Err(e) = fix_one(parent, field, &reference.referent_kind, names, &referrer) {
                        failure.get_or_insert(e);
                    }
                }
            });
            if let Some(e) = failure.take() {
                return Err(format!("{e} (referred to by {})", resource.id()));
            }
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
            let referrer_id = Id::of(&resource.object);
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
                        // The namespace the subject names is the one the account had before the
                        // build or, when none had it, the one it has now (kustomize groups the
                        // candidates by original namespace first, then by current one).
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
                let identical = if *path == "subjects" { same_name_and_namespace } else { same_name };
                let Some(first) =
                    pick(matching, &resource.prefixes, &resource.suffixes, identical).map_err(|e| format!("{e} (referred to by {referrer_id})"))?
                else {
                    continue;
                };
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

/// What of the referrer decides which referent a reference means.
struct Referrer<'a> {
    /// `None` for a cluster-scoped referrer, which may name objects in any namespace.
    namespace: Option<&'a str>,
    prefixes: &'a [String],
    suffixes: &'a [String],
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
fn fix_one(parent: &mut Value, field: &str, referent_kind: &str, names: &HashMap<String, Vec<Referent>>, referrer: &Referrer) -> Result<(), String> {
    let referrer_namespace = referrer.namespace;
    let Some(map) = parent.as_object_mut() else { return Ok(()) };
    // A reference that says which kind it means (roleRef, scaleTargetRef) only means objects of
    // that kind.
    if map.get("kind").and_then(Value::as_str).is_some_and(|k| k != referent_kind) {
        return Ok(());
    }
    let current_name = |old: &str| -> Result<Option<String>, String> {
        let Some(candidates) = names.get(old) else { return Ok(None) };
        // Cluster-scoped referents can be named from any namespace. A `namespace` beside the
        // name field does not count: kustomize matches a name field by name only.
        let matching: Vec<&Referent> =
            candidates.iter().filter(|c| c.cluster_scoped || referrer_namespace.is_none_or(|ns| same_namespace(ns, &c.current_namespace))).collect();
        Ok(pick(matching, referrer.prefixes, referrer.suffixes, same_name)?.map(|c| c.current_name.clone()))
    };
    match map.get_mut(field) {
        Some(Value::String(old)) => {
            if let Some(new) = current_name(old)? {
                *old = new;
            }
        }
        // A list of names (custom references may point at one).
        Some(Value::Array(items)) => {
            for item in items {
                if let Some(old) = item.as_str()
                    && let Some(new) = current_name(old)?
                {
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
        fix_references(&mut resources, &[]).expect("resolves");
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
        fix_references(&mut resources, &[]).expect("resolves");
        assert_eq!(resources[1].object["spec"]["volumes"][0]["configMap"]["name"], "cfg");
    }
}
