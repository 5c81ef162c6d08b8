//! Patches: strategic merge (with Kubernetes' merge keys for the builtin kinds) and JSON 6902,
//! and kustomize's target selectors.

use serde_json::{Map, Value};

use super::file::Selector;
use super::transform::{kind, name};

/// API groups of the builtin kinds whose lists merge by key; lists of other kinds (custom
/// resources, without a schema) are replaced, as kustomize does.
fn is_builtin(object: &Value) -> bool {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    matches!(
        group,
        "" | "apps" | "batch" | "extensions" | "policy" | "networking.k8s.io" | "rbac.authorization.k8s.io" | "autoscaling" | "storage.k8s.io"
    )
}

/// The merge key of a list field in the builtin kinds, by field name (and parent, for ports).
fn merge_key(field: &str, parent: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => Some("name"),
        "hostAliases" => Some("ip"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "ports" if parent == "container" => Some("containerPort"),
        "ports" => Some("port"),
        "conditions" => Some("type"),
        "topologySpreadConstraints" => Some("topologyKey"),
        _ => None,
    }
}

/// Applies a strategic merge patch to `base`.
pub fn strategic_merge(base: &mut Value, patch: &Value) {
    let builtin = is_builtin(base);
    merge_value(base, patch, builtin, "");
}

fn directive(patch: &Map<String, Value>) -> Option<&str> {
    patch.get("$patch").and_then(Value::as_str)
}

fn merge_value(base: &mut Value, patch: &Value, builtin: bool, parent: &str) {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(base_map), Some(patch_map)) => {
            match directive(patch_map) {
                Some("replace") => {
                    let mut replacement = patch_map.clone();
                    replacement.remove("$patch");
                    *base = Value::Object(replacement);
                    return;
                }
                Some("delete") => {
                    *base = Value::Null;
                    return;
                }
                _ => {}
            }
            let retain: Option<Vec<String>> = patch_map
                .get("$retainKeys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect());
            for (key, value) in patch_map {
                if key.starts_with('$') {
                    continue;
                }
                if let Some(field) = key.strip_prefix("$setElementOrder/") {
                    let _ = field; // Order directives only reorder; kustomize's output keeps patch order.
                    continue;
                }
                if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(list), Some(remove)) = (base_map.get_mut(field).and_then(Value::as_array_mut), value.as_array()) {
                        list.retain(|item| !remove.contains(item));
                    }
                    continue;
                }
                if value.is_null() {
                    base_map.remove(key);
                    continue;
                }
                let child_parent = if key == "containers" || key == "initContainers" { "container" } else { key.as_str() };
                match base_map.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_value(existing, value, builtin, child_parent);
                        if existing.is_null() {
                            base_map.remove(key);
                        }
                    }
                    Some(existing) if existing.is_array() && value.is_array() => {
                        merge_list(existing, value, builtin, key, parent);
                    }
                    _ => {
                        let mut fresh = value.clone();
                        strip_directives(&mut fresh);
                        base_map.insert(key.clone(), fresh);
                    }
                }
            }
            if let Some(keep) = retain {
                base_map.retain(|k, _| keep.contains(k));
            }
        }
        _ => {
            let mut fresh = patch.clone();
            strip_directives(&mut fresh);
            *base = fresh;
        }
    }
}

fn merge_list(base: &mut Value, patch: &Value, builtin: bool, field: &str, parent: &str) {
    let (Some(base_items), Some(patch_items)) = (base.as_array_mut(), patch.as_array()) else { return };
    let key = if builtin { merge_key(field, parent) } else { None };
    let replace_all = patch_items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some(key) = key.filter(|_| !replace_all && patch_items.iter().all(Value::is_object)) else {
        let mut fresh = Value::Array(patch_items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect());
        strip_directives(&mut fresh);
        *base = fresh;
        return;
    };
    let item_parent = if field == "containers" || field == "initContainers" { "container" } else { field };
    // kustomize (kyaml) puts the patch's elements first, in the patch's order, then the base's
    // elements the patch does not mention.
    let mut merged = Vec::with_capacity(base_items.len() + patch_items.len());
    let mut remaining: Vec<Option<Value>> = base_items.drain(..).map(Some).collect();
    let mut deleted = Vec::new();
    for item in patch_items {
        let Some(id) = item.get(key) else { continue };
        let position = remaining.iter().position(|b| b.as_ref().and_then(|b| b.get(key)) == Some(id));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = position {
                remaining[i] = None;
            }
            deleted.push(id.clone());
            continue;
        }
        match position.and_then(|i| remaining[i].take()) {
            Some(mut existing) => {
                merge_value(&mut existing, item, builtin, item_parent);
                merged.push(existing);
            }
            None => {
                let mut fresh = item.clone();
                strip_directives(&mut fresh);
                merged.push(fresh);
            }
        }
    }
    merged.extend(remaining.into_iter().flatten());
    *base_items = merged;
}

fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

/// A `key=value,key!=value,key` selector, as kustomize's label and annotation selectors.
fn matches_selector(map: Option<&Value>, selector: &str) -> bool {
    let empty = Map::new();
    let map = map.and_then(Value::as_object).unwrap_or(&empty);
    selector.split(',').map(str::trim).filter(|s| !s.is_empty()).all(|term| {
        if let Some((k, v)) = term.split_once("!=") {
            map.get(k.trim()).and_then(Value::as_str) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            map.get(k.trim()).and_then(Value::as_str) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            !map.contains_key(k.trim())
        } else {
            map.contains_key(term)
        }
    })
}

/// Whether `value` matches `pattern` as a whole, where the pattern is kustomize's regular
/// expression subset used in practice: literal text, `.*` and `.`.
fn matches_name(pattern: &str, value: &str) -> bool {
    fn go(p: &[char], v: &[char]) -> bool {
        match p {
            [] => v.is_empty(),
            ['.', '*', rest @ ..] => (0..=v.len()).any(|i| go(rest, &v[i..])),
            ['.', rest @ ..] => !v.is_empty() && go(rest, &v[1..]),
            ['\\', c, rest @ ..] => v.first() == Some(c) && go(rest, &v[1..]),
            [c, rest @ ..] => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    let p: Vec<char> = pattern.trim_start_matches('^').trim_end_matches('$').chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v)
}

/// Whether an object is selected by a patch target.
pub fn selects(selector: &Selector, object: &Value) -> bool {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let namespace = object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    selector.group.as_deref().is_none_or(|g| g == group)
        && selector.version.as_deref().is_none_or(|v| v == version)
        && selector.kind.as_deref().is_none_or(|k| matches_name(k, kind(object)))
        && selector.name.as_deref().is_none_or(|n| matches_name(n, name(object)))
        && selector.namespace.as_deref().is_none_or(|n| matches_name(n, namespace))
        && selector.label_selector.as_deref().is_none_or(|s| matches_selector(object.pointer("/metadata/labels"), s))
        && selector.annotation_selector.as_deref().is_none_or(|s| matches_selector(object.pointer("/metadata/annotations"), s))
}

/// Whether a strategic merge patch without a target applies to `object`: same kind and name
/// (and namespace, when the patch names one).
pub fn patch_targets(patch: &Value, object: &Value) -> bool {
    let patch_ns = patch.pointer("/metadata/namespace").and_then(Value::as_str);
    kind(patch) == kind(object)
        && name(patch) == name(object)
        && patch_ns.is_none_or(|ns| Some(ns) == object.pointer("/metadata/namespace").and_then(Value::as_str))
}

/// Applies RFC 6902 operations. Like kustomize (which sets `EnsurePathExistsOnAdd`), an `add`
/// creates missing parent objects first.
pub fn json6902(object: &mut Value, operations: &Value) -> Result<(), String> {
    let patch: json_patch::Patch = serde_json::from_value(operations.clone()).map_err(|e| format!("invalid JSON 6902 patch: {e}"))?;
    for operation in &patch.0 {
        if let json_patch::PatchOperation::Add(add) = operation {
            ensure_parents(object, &add.path.to_string());
        }
        json_patch::patch(object, std::slice::from_ref(operation)).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Creates the missing objects on the way to a JSON pointer's parent.
fn ensure_parents(object: &mut Value, pointer: &str) {
    let tokens: Vec<String> = pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
    let mut current = object;
    for token in tokens.iter().take(tokens.len().saturating_sub(1)) {
        current = match current {
            Value::Object(map) => map.entry(token.clone()).or_insert_with(|| Value::Object(Map::new())),
            Value::Array(items) => match token.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            _ => return,
        };
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:v1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "proxy"}
            ]}}}})
    }

    #[test]
    fn containers_merge_by_name_and_null_deletes() {
        let mut d = deployment();
        strategic_merge(&mut d, &json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
            {"name": "app", "image": "app:v2", "env": [{"name": "B", "value": "2"}]},
            {"name": "new", "image": "x"}
        ]}}}}));
        assert!(d["spec"].get("replicas").is_none());
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "app:v2");
        // As kustomize orders them: the patch's elements first, then the base's others.
        assert_eq!(containers[0]["env"], json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]));
        assert_eq!(containers[0]["ports"], json!([{"containerPort": 80}]));
        assert_eq!(containers[1]["name"], "new");
        assert_eq!(containers[2]["name"], "sidecar");
    }

    #[test]
    fn patch_directives_delete_and_replace() {
        let mut d = deployment();
        strategic_merge(&mut d, &json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}));
        assert_eq!(d["spec"]["template"]["spec"]["containers"].as_array().map(Vec::len), Some(1));
        strategic_merge(&mut d, &json!({"spec": {"template": {"$patch": "replace", "spec": {"containers": [{"name": "only"}]}}}}));
        assert_eq!(d["spec"]["template"], json!({"spec": {"containers": [{"name": "only"}]}}));
    }

    #[test]
    fn custom_resource_lists_are_replaced() {
        let mut cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        strategic_merge(&mut cr, &json!({"spec": {"containers": [{"name": "a", "x": 1}]}}));
        assert_eq!(cr["spec"]["containers"], json!([{"name": "a", "x": 1}]));
    }

    #[test]
    fn selectors_and_name_patterns() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-1", "labels": {"tier": "front"}}});
        assert!(selects(&Selector { kind: Some("Deployment".into()), name: Some("web-.*".into()), ..Selector::default() }, &d));
        assert!(selects(&Selector { group: Some("apps".into()), label_selector: Some("tier=front".into()), ..Selector::default() }, &d));
        assert!(!selects(&Selector { label_selector: Some("tier!=front".into()), ..Selector::default() }, &d));
        assert!(!selects(&Selector { kind: Some("Service".into()), ..Selector::default() }, &d));
    }

    #[test]
    fn json6902_operations() {
        let mut d = deployment();
        json6902(&mut d, &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}, {"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}]))
            .expect("valid patch");
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["metadata"]["labels"]["a"], "b");
        assert!(json6902(&mut d, &json!([{"op": "remove", "path": "/nope"}])).is_err());
    }
}
