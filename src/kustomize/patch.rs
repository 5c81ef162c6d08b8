//! Strategic merge patches, with Kubernetes' merge keys for the builtin kinds (JSON 6902 is in
//! json6902.rs, which objects a patch applies to in select.rs).

use serde_json::{Map, Value};

use super::limits;
use super::object::ExplicitNulls;
use super::openapi::OpenApi;

/// API groups of the builtin kinds whose lists merge by key; lists of other kinds (custom
/// resources, without a schema) are replaced, as kustomize does.
fn is_builtin(object: &Value) -> bool {
    let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    match group {
        "" | "apps" | "batch" | "extensions" | "policy" | "networking.k8s.io" | "rbac.authorization.k8s.io" | "autoscaling" | "storage.k8s.io" => true,
        // Only the webhook configurations of this group are in kustomize's schema (the admission
        // policies are newer than Kubernetes v1.21.2, their lists are replaced).
        "admissionregistration.k8s.io" => {
            matches!(api_version, "admissionregistration.k8s.io/v1" | "admissionregistration.k8s.io/v1beta1")
                && matches!(object.get("kind").and_then(Value::as_str), Some("ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration"))
        }
        _ => false,
    }
}

/// The merge key of a list field in the builtin kinds, by field name (and parent, for ports).
fn merge_key(field: &str, parent: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" | "webhooks" => Some("name"),
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

/// The second key of the builtin lists whose schema has two (`x-kubernetes-list-map-keys`):
/// elements are the same only when both keys agree (a port's TCP and UDP entries stay apart).
fn second_merge_key(field: &str) -> Option<&'static str> {
    match field {
        "ports" => Some("protocol"),
        "topologySpreadConstraints" => Some("whenUnsatisfiable"),
        _ => None,
    }
}

/// How a strategic merge patch is applied.
#[derive(Debug, Clone, Copy)]
struct Mode {
    /// Whether `$retainKeys`, `$setElementOrder/…` and `$deleteFromPrimitiveList/…` act as in
    /// Kubernetes. kustomize v5.5 keeps them as plain fields (and so does [`strategic_merge`],
    /// to print what `kubectl kustomize` prints).
    kubernetes_directives: bool,
    /// Whether the nulls the merge walks over are dropped, as kustomize drops empty ones
    /// (`key:`); written ones are kept by [`strategic_merge_keeping_nulls`].
    drop_walked_nulls: bool,
}

impl Mode {
    const KUSTOMIZE: Mode = Mode { kubernetes_directives: false, drop_walked_nulls: true };
    #[cfg(test)]
    const KUBERNETES: Mode = Mode { kubernetes_directives: true, drop_walked_nulls: false };
}

/// What the schema says about the part of an object being merged.
#[derive(Debug, Clone, Copy)]
enum Node<'a> {
    /// A builtin kind under kustomize's builtin schema: lists merge by Kubernetes' merge keys,
    /// known here by field name.
    Builtin,
    /// Nothing known: lists are replaced.
    Unknown,
    /// A node of a custom OpenAPI schema (`openapi: {path: …}`).
    Custom(&'a OpenApi, &'a Value),
}

/// How a list merges.
enum ListMerge<'a> {
    Replace,
    /// Elements with the same value of the key merge; the patch's come first.
    /// With a second key, both must agree (a missing one agrees only with a missing one).
    ByKey(&'a str, Option<&'a str>),
    /// A list of scalars merged as a set: the patch's elements, then the others.
    Set,
}

impl<'a> Node<'a> {
    fn for_object(object: &Value, schema: Option<&'a OpenApi>) -> Node<'a> {
        match schema {
            None if is_builtin(object) => Node::Builtin,
            None => Node::Unknown,
            Some(schema) => schema.for_object(object).map_or(Node::Unknown, |node| Node::Custom(schema, node)),
        }
    }

    fn field(self, key: &str) -> Node<'a> {
        match self {
            Node::Custom(schema, node) => {
                schema.resolve(node).get("properties").and_then(|p| p.get(key)).map_or(Node::Unknown, |child| Node::Custom(schema, child))
            }
            other => other,
        }
    }

    fn items(self) -> Node<'a> {
        match self {
            Node::Custom(schema, node) => schema.resolve(node).get("items").map_or(Node::Unknown, |items| Node::Custom(schema, items)),
            other => other,
        }
    }

    /// How the list `field` (this node) in `parent` merges.
    fn list_merge(self, field: &str, parent: &str) -> ListMerge<'a> {
        match self {
            Node::Unknown => ListMerge::Replace,
            // `metadata.finalizers` is a list of strings Kubernetes merges as a set.
            Node::Builtin if field == "finalizers" && parent == "metadata" => ListMerge::Set,
            Node::Builtin => merge_key(field, parent).map_or(ListMerge::Replace, |key| ListMerge::ByKey(key, second_merge_key(field))),
            Node::Custom(schema, node) => {
                let node = schema.resolve(node);
                let strategy = node.get("x-kubernetes-patch-strategy").and_then(Value::as_str).unwrap_or("");
                if !strategy.split(',').any(|s| s.trim() == "merge") {
                    return ListMerge::Replace;
                }
                match node.get("x-kubernetes-patch-merge-key").and_then(Value::as_str) {
                    Some(key) => ListMerge::ByKey(key, None),
                    None => ListMerge::Set,
                }
            }
        }
    }
}

/// Applies a strategic merge patch to `base` as kustomize v5.5 does: merge keys for the builtin
/// kinds, `$patch: replace|delete|merge`, null deletes a key; the list-order and retain
/// directives are left in place as fields, like kustomize.
#[cfg(test)]
pub fn strategic_merge(base: &mut Value, patch: &Value) {
    let node = Node::for_object(base, None);
    merge_value(base, patch, Mode::KUSTOMIZE, node, "");
}

/// [`strategic_merge`] under a custom OpenAPI schema (`None`: kustomize's builtin one).
///
/// The merge recurses along the patch, so both are checked against [`limits::MAX_DEPTH`] first;
/// what the patch adds is charged to the build's node budget (a patch applied to many objects
/// is copied into each).
pub fn strategic_merge_with_schema(base: &mut Value, patch: &Value, schema: Option<&OpenApi>) -> Result<(), String> {
    strategic_merge_keeping_nulls(base, patch, schema, &mut ExplicitNulls::default())
}

/// A null no document holds, standing in for a written null of the object during a merge.
const WRITTEN_NULL: &str = "\u{0}ferroflux: a written null\u{0}";

/// [`strategic_merge_with_schema`], keeping the object's written nulls (`explicit`) where
/// kustomize keeps them and dropping the empty ones it walks over; `explicit` is updated to
/// where those nulls are after the merge (it may reorder lists).
pub fn strategic_merge_keeping_nulls(base: &mut Value, patch: &Value, schema: Option<&OpenApi>, explicit: &mut ExplicitNulls) -> Result<(), String> {
    limits::check_depth(patch, "the strategic merge patch")?;
    limits::check_depth(base, "the patched object")?;
    limits::charge(limits::nodes(patch))?;
    let node = Node::for_object(base, schema);
    let mode = Mode { drop_walked_nulls: *explicit != ExplicitNulls::All, ..Mode::KUSTOMIZE };
    let ExplicitNulls::Paths(paths) = explicit else {
        merge_value(base, patch, mode, node, "");
        return Ok(());
    };
    if paths.is_empty() {
        merge_value(base, patch, mode, node, "");
        return Ok(());
    }
    // Written nulls become a string no merge drops, and null again afterwards, wherever the
    // merge moved them.
    for path in paths.iter() {
        if let Some(value) = at_path(base, path).filter(|v| v.is_null()) {
            *value = Value::String(WRITTEN_NULL.into());
        }
    }
    merge_value(base, patch, mode, node, "");
    paths.clear();
    restore_written_nulls(base, &mut Vec::new(), paths);
    Ok(())
}

fn at_path<'v>(value: &'v mut Value, path: &[String]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |value, segment| match value {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    })
}

fn restore_written_nulls(value: &mut Value, path: &mut Vec<String>, found: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                if child.as_str() == Some(WRITTEN_NULL) {
                    *child = Value::Null;
                    found.push(path.clone());
                } else {
                    restore_written_nulls(child, path, found);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter_mut().enumerate() {
                path.push(i.to_string());
                restore_written_nulls(child, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Applies a strategic merge patch with Kubernetes' full semantics, including `$retainKeys`,
/// `$setElementOrder/<list>` and `$deleteFromPrimitiveList/<list>`.
#[cfg(test)]
pub fn strategic_merge_kubernetes(base: &mut Value, patch: &Value) {
    let node = Node::for_object(base, None);
    merge_value(base, patch, Mode::KUBERNETES, node, "");
}

fn directive(patch: &Map<String, Value>) -> Option<&str> {
    patch.get("$patch").and_then(Value::as_str)
}

fn merge_value(base: &mut Value, patch: &Value, mode: Mode, node: Node, parent: &str) {
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

            let retain: Option<Vec<&str>> = if mode.kubernetes_directives {
                patch_map.get("$retainKeys").and_then(Value::as_array).map(|keys| keys.iter().filter_map(Value::as_str).collect())
            } else {
                None
            };
            for (key, value) in patch_map {
                if key == "$patch" {
                    continue;
                }
                if key.starts_with('$') && !mode.kubernetes_directives {
                    // kustomize v5.5 keeps the other directives as plain fields.
                    base_map.insert(key.clone(), value.clone());
                    continue;
                }
                if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
                    if let (Some(list), Some(remove)) = (base_map.get_mut(field).and_then(Value::as_array_mut), value.as_array()) {
                        list.retain(|item| !remove.contains(item));
                    }
                    continue;
                }
                if key.starts_with('$') {
                    // `$retainKeys` applies after this loop, `$setElementOrder` too.
                    continue;
                }
                if value.is_null() {
                    base_map.remove(key);
                    continue;
                }
                let child_parent = if key == "containers" || key == "initContainers" { "container" } else { key.as_str() };
                match base_map.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_value(existing, value, mode, node.field(key), child_parent);
                        if existing.is_null() {
                            base_map.remove(key);
                        }
                    }
                    Some(existing) if existing.is_array() && value.is_array() => {
                        merge_list(existing, value, mode, node.field(key), key, parent);
                    }
                    _ => {
                        let mut fresh = value.clone();
                        strip_directives(&mut fresh, mode);
                        base_map.insert(key.clone(), fresh);
                    }
                }
            }
            if !mode.kubernetes_directives {
                walk_unpatched(base_map, mode, node, parent, Some(patch_map));
            }
            if let Some(keep) = retain {
                base_map.retain(|k, _| keep.contains(&k.as_str()));
            }
            if mode.kubernetes_directives {
                for (key, order) in patch_map {
                    if let (Some(field), Some(order)) = (key.strip_prefix("$setElementOrder/"), order.as_array()) {
                        set_element_order(base_map, field, order, node.field(field), parent);
                    }
                }
            }
        }
        _ => {
            let mut fresh = patch.clone();
            strip_directives(&mut fresh, mode);
            *base = fresh;
        }
    }
}

/// Merges the list `field` (whose schema is `node`) of an object in `parent`.
fn merge_list(base: &mut Value, patch: &Value, mode: Mode, node: Node, field: &str, parent: &str) {
    let (Some(base_items), Some(patch_items)) = (base.as_array_mut(), patch.as_array()) else { return };
    let key = match node.list_merge(field, parent) {
        ListMerge::Set => {
            let mut merged: Vec<Value> = patch_items.iter().filter(|i| !i.is_object()).cloned().collect();
            merged.extend(base_items.iter().filter(|i| !merged.contains(i)).cloned().collect::<Vec<_>>());
            *base_items = merged;
            return;
        }
        ListMerge::ByKey(key, second) => Some((key, second)),
        ListMerge::Replace => None,
    };
    let replace_all = patch_items.iter().any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let Some((key, second)) = key.filter(|_| !replace_all && patch_items.iter().all(Value::is_object)) else {
        let mut fresh = Value::Array(patch_items.iter().filter(|i| i.get("$patch").is_none()).cloned().collect());
        strip_directives(&mut fresh, mode);
        *base = fresh;
        return;
    };
    let item_parent = if field == "containers" || field == "initContainers" { "container" } else { field };
    let item_node = node.items();
    if let Some(second) = second {
        merge_two_key_list(base_items, patch_items, mode, item_node, item_parent, key, second);
        return;
    }
    // kustomize (kyaml) puts the patch's elements first, in the patch's order, then the base's
    // elements the patch does not mention.
    let last_duplicates = if mode.kubernetes_directives { Vec::new() } else { collapse_duplicates(base_items, key) };
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
                merge_value(&mut existing, item, mode, item_node, item_parent);
                merged.push(existing);
            }
            None => {
                let mut fresh = item.clone();
                strip_directives(&mut fresh, mode);
                merged.push(fresh);
            }
        }
    }
    merged.extend(remaining.into_iter().flatten().map(|mut item| {
        walk_unpatched_in(&mut item, mode, item_node, item_parent);
        item
    }));
    replace_by_last_duplicates(&mut merged, key, last_duplicates);
    *base_items = merged;
}

/// A list merged by one key may hold several elements with the same key (a JSON patch appends
/// one): kyaml merges the patch into the first of them, then sets each base element in turn by
/// key, so the last of them replaces the merged one, unmerged, where the first one was. This
/// keeps the first of each key in `items` and returns the last duplicates, for
/// [`replace_by_last_duplicates`] after the merge.
fn collapse_duplicates(items: &mut Vec<Value>, key: &str) -> Vec<(Value, Value)> {
    let mut last_duplicates: Vec<(Value, Value)> = Vec::new();
    let mut kept: Vec<Value> = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let Some(id) = item.get(key).cloned() else {
            kept.push(item);
            continue;
        };
        if !kept.iter().any(|k| k.get(key) == Some(&id)) {
            kept.push(item);
        } else if let Some(entry) = last_duplicates.iter_mut().find(|(i, _)| *i == id) {
            entry.1 = item;
        } else {
            last_duplicates.push((id, item));
        }
    }
    *items = kept;
    last_duplicates
}

/// The second half of [`collapse_duplicates`]: an element the merge deleted stays deleted.
fn replace_by_last_duplicates(items: &mut [Value], key: &str, last_duplicates: Vec<(Value, Value)>) {
    for (id, last) in last_duplicates {
        if let Some(slot) = items.iter_mut().find(|item| item.get(key) == Some(&id)) {
            *slot = last;
        }
    }
}

/// A builtin list with two merge keys, as kustomize v5.5 (kyaml) merges it: an element of the
/// patch that matches one of the base (both keys equal) merges into it where it is; the others
/// come first, in the patch's order. A patch element whose second key is set where the base
/// element with the same first key has none is dropped (kubectl does so).
fn merge_two_key_list(base_items: &mut Vec<Value>, patch_items: &[Value], mode: Mode, item_node: Node, item_parent: &str, key: &str, second: &str) {
    let mut added = Vec::new();
    let mut touched = Vec::new();
    let mut remaining: Vec<Option<Value>> = base_items.drain(..).map(Some).collect();
    for item in patch_items {
        let Some(id) = item.get(key) else { continue };
        // A patch element without a protocol means TCP, Kubernetes' default: it merges into the
        // object's TCP element, as in kustomize.
        let tcp = Value::String("TCP".into());
        let same = |b: &Value| {
            b.get(key) == Some(id) && (b.get(second) == item.get(second) || second == "protocol" && item.get(second).is_none() && b.get(second) == Some(&tcp))
        };
        let position = remaining.iter().position(|b| b.as_ref().is_some_and(same));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = position {
                remaining[i] = None;
            }
            continue;
        }
        match position {
            Some(i) => {
                if let Some(existing) = remaining[i].as_mut() {
                    merge_value(existing, item, mode, item_node, item_parent);
                    touched.push(i);
                }
            }
            None => {
                let shadowed = item.get(second).is_some() && remaining.iter().flatten().any(|b| b.get(key) == Some(id) && b.get(second).is_none());
                if !shadowed {
                    let mut fresh = item.clone();
                    strip_directives(&mut fresh, mode);
                    added.push(fresh);
                }
            }
        }
    }
    for (i, item) in remaining.iter_mut().enumerate() {
        if let Some(item) = item.as_mut().filter(|_| !touched.contains(&i)) {
            walk_unpatched_in(item, mode, item_node, item_parent);
        }
    }
    added.extend(remaining.into_iter().flatten());
    *base_items = added;
}

/// kustomize's merge (kyaml's walker) visits the object's own fields as well as the patch's: in
/// all maps under a patched map, and in the elements of the lists it merges by key (not in lists
/// it replaces, which it does not enter). It drops every field it finds null there (unless
/// `mode` keeps them) and keeps one element per key in those lists ([`collapse_duplicates`]).
/// `patch`: the patch's fields at this map, already merged (and so skipped here).
fn walk_unpatched(map: &mut Map<String, Value>, mode: Mode, node: Node, parent: &str, patch: Option<&Map<String, Value>>) {
    let from_patch = |key: &str| patch.is_some_and(|p| p.contains_key(key));
    if mode.drop_walked_nulls {
        map.retain(|k, v| !v.is_null() || from_patch(k));
    }
    for (key, value) in map.iter_mut() {
        if from_patch(key) {
            continue;
        }
        let child_parent = if key == "containers" || key == "initContainers" { "container" } else { key.as_str() };
        match value {
            Value::Object(inner) => walk_unpatched(inner, mode, node.field(key), child_parent, None),
            Value::Array(items) => {
                if let ListMerge::ByKey(list_key, second) = node.field(key).list_merge(key, parent) {
                    let last_duplicates = if second.is_none() { collapse_duplicates(items, list_key) } else { Vec::new() };
                    let item_node = node.field(key).items();
                    for inner in items.iter_mut().filter_map(Value::as_object_mut) {
                        walk_unpatched(inner, mode, item_node, child_parent, None);
                    }
                    replace_by_last_duplicates(items, list_key, last_duplicates);
                }
            }
            _ => {}
        }
    }
}

/// [`walk_unpatched`] for an element of a list merged by key that the patch does not name.
fn walk_unpatched_in(item: &mut Value, mode: Mode, node: Node, parent: &str) {
    if let (false, Some(map)) = (mode.kubernetes_directives, item.as_object_mut()) {
        walk_unpatched(map, mode, node, parent, None);
    }
}

/// `$setElementOrder/<field>`: the listed elements in the given order, then the others.
fn set_element_order(base_map: &mut Map<String, Value>, field: &str, order: &[Value], node: Node, parent: &str) {
    let Some(items) = base_map.get_mut(field).and_then(Value::as_array_mut) else { return };
    let key = match node.list_merge(field, parent) {
        ListMerge::ByKey(key, _) => Some(key),
        _ => None,
    };
    let identity = |item: &Value, wanted: &Value| match key {
        Some(key) => item.get(key).is_some() && item.get(key) == wanted.get(key),
        None => item == wanted,
    };
    let mut remaining: Vec<Option<Value>> = items.drain(..).map(Some).collect();
    let mut ordered = Vec::with_capacity(remaining.len());
    for wanted in order {
        if let Some(slot) = remaining.iter_mut().find(|slot| slot.as_ref().is_some_and(|item| identity(item, wanted))) {
            ordered.extend(slot.take());
        }
    }
    ordered.extend(remaining.into_iter().flatten());
    *items = ordered;
}

/// Removes patch directives from a value the patch adds whole (`$patch` only, in kustomize's
/// mode, which keeps the others), and its null fields: a null says "delete", so nothing is left
/// of it in a new value (nulls in lists of scalars stay, as in kustomize).
fn strip_directives(value: &mut Value, mode: Mode) {
    match value {
        Value::Object(map) => {
            map.retain(|k, v| !v.is_null() && if mode.kubernetes_directives { !k.starts_with('$') } else { k != "$patch" });
            map.values_mut().for_each(|v| strip_directives(v, mode));
        }
        Value::Array(items) => {
            // Deleting an element of a list the object does not have leaves the list, without it.
            items.retain(|item| item.get("$patch").and_then(Value::as_str) != Some("delete"));
            items.iter_mut().for_each(|v| strip_directives(v, mode));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;
    use proptest::sample::subsequence;
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
        strategic_merge(
            &mut d,
            &json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
                {"name": "app", "image": "app:v2", "env": [{"name": "B", "value": "2"}]},
                {"name": "new", "image": "x"}
            ]}}}}),
        );
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
    fn kubernetes_directives_reorder_retain_and_delete_from_lists() {
        let mut d = deployment();
        strategic_merge_kubernetes(
            &mut d,
            &json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
                "containers": [{"name": "app", "$deleteFromPrimitiveList/args": ["--drop"]}]
            }}}}),
        );
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["name"], "sidecar");
        assert_eq!(containers[1]["name"], "app");
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        strategic_merge_kubernetes(&mut d, &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        let mut c = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "args": ["--keep", "--drop"]}]}});
        strategic_merge_kubernetes(&mut c, &json!({"spec": {"containers": [{"name": "a", "$deleteFromPrimitiveList/args": ["--drop"]}]}}));
        assert_eq!(c["spec"]["containers"][0]["args"], json!(["--keep"]));
    }

    #[test]
    fn kustomize_mode_keeps_order_and_retain_directives_as_fields() {
        // What kustomize v5.5 prints: the directives stay, nothing is dropped or reordered.
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}});
        strategic_merge(&mut d, &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
        assert_eq!(d["spec"]["strategy"], json!({"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": {"maxSurge": 1}}));
    }

    #[test]
    fn merge_keys_of_ports_volumes_mounts_and_finalizers() {
        let mut svc = json!({"apiVersion": "v1", "kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        strategic_merge(&mut svc, &json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443}]}}));
        // Ports have two merge keys (port, protocol): new ones first, merged ones where they were.
        assert_eq!(svc["spec"]["ports"], json!([{"port": 443}, {"port": 80, "targetPort": 8080, "name": "http"}]));
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"finalizers": ["a"]}, "spec": {
            "volumes": [{"name": "v", "emptyDir": {}}],
            "tolerations": [{"key": "old"}],
            "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/x", "name": "v"}], "ports": [{"containerPort": 80}]}]}});
        strategic_merge(
            &mut pod,
            &json!({"metadata": {"finalizers": ["b"]}, "spec": {
            "volumes": [{"name": "w", "emptyDir": {}}],
            "tolerations": [{"key": "new"}],
            "containers": [{"name": "c", "volumeMounts": [{"mountPath": "/x", "readOnly": true}], "ports": [{"containerPort": 80, "name": "p"}]}]}}),
        );
        assert_eq!(pod["metadata"]["finalizers"], json!(["b", "a"]));
        assert_eq!(pod["spec"]["volumes"].as_array().map(Vec::len), Some(2));
        // Tolerations have no merge key: the patch's list replaces the base's.
        assert_eq!(pod["spec"]["tolerations"], json!([{"key": "new"}]));
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], json!([{"mountPath": "/x", "name": "v", "readOnly": true}]));
        assert_eq!(pod["spec"]["containers"][0]["ports"], json!([{"containerPort": 80, "name": "p"}]));
    }

    /// Arbitrary JSON values up to `depth` levels of lists and maps, from small sets of keys and
    /// strings so that patches and bases share some.
    fn value(depth: u32) -> impl Strategy<Value = Value> + Clone {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0..1000u64).prop_map(Value::from),
            (0..50u32).prop_map(|n| Value::String(format!("s{n}"))),
        ];
        leaf.prop_recursive(depth, 64, 5, |inner| {
            prop_oneof![
                vec(inner.clone(), 0..4).prop_map(Value::Array),
                btree_map((0..8u32).prop_map(|k| format!("k{k}")), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A list whose elements carry `key`, each from `choices` at most once, in any order.
    fn keyed(key: &'static str, choices: Vec<Value>, element: impl Strategy<Value = Value> + Clone) -> impl Strategy<Value = Value> + Clone {
        let count = choices.len();
        subsequence(choices, 0..=count)
            .prop_shuffle()
            .prop_flat_map(move |ids| {
                let n = ids.len();
                (Just(ids), vec(element.clone(), n))
            })
            .prop_map(move |(ids, elements)| {
                let items = ids
                    .into_iter()
                    .zip(elements)
                    .map(|(id, mut item)| {
                        if let Some(map) = item.as_object_mut() {
                            map.insert(key.to_owned(), id);
                        }
                        item
                    })
                    .collect();
                Value::Array(items)
            })
    }

    /// A pod template with keyed lists (containers, their ports and env, volumes), names and
    /// keys from small sets so that patches and bases share some; no key twice in one list.
    fn pod_template() -> impl Strategy<Value = Value> {
        let names: Vec<Value> = ["a", "b", "c"].into_iter().map(Value::from).collect();
        let ports: Vec<Value> = [80, 443, 8080].into_iter().map(Value::from).collect();
        let port = prop_oneof![Just(json!({"protocol": "UDP"})), value(0).prop_map(|name| json!({"name": name}))];
        let env = value(0).prop_map(|v| json!({"value": v}));
        let container = (value(0), keyed("containerPort", ports, port), keyed("name", names.clone(), env), value(2))
            .prop_map(|(image, ports, env, extra)| json!({"image": image, "ports": ports, "env": env, "extra": extra}));
        let volumes = keyed("name", names.clone(), value(1).prop_map(|v| json!({"emptyDir": v})));
        (keyed("name", names, container), volumes)
            .prop_map(|(containers, volumes)| json!({"spec": {"template": {"spec": {"containers": containers, "volumes": volumes}}}}))
    }

    /// Merging a patch without lists or nulls, then reading each patched leaf, gives the
    /// patch's value.
    fn leaves(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) if !map.is_empty() => map.iter().for_each(|(k, v)| leaves(v, format!("{path}/{k}"), out)),
            other => out.push((path, other.clone())),
        }
    }

    fn without_lists_and_nulls(value: &mut Value) {
        if let Value::Object(map) = value {
            map.retain(|_, v| !v.is_null() && !v.is_array());
            map.values_mut().for_each(without_lists_and_nulls);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn property_a_strategic_merge_patch_applied_twice_is_applied_once(mut object in pod_template(), patch in pod_template()) {
            object["apiVersion"] = json!("apps/v1");
            object["kind"] = json!("Deployment");
            strategic_merge(&mut object, &patch);
            let once = object.clone();
            strategic_merge(&mut object, &patch);
            prop_assert_eq!(object, once, "patch {}", patch);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn property_an_empty_patch_changes_nothing_but_empty_nulls(spec in value(4)) {
            let mut object = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": spec});
            let mut before = object.clone();
            strategic_merge(&mut object, &json!({}));
            // kustomize drops the (empty) nulls of maps the merge walks over; lists merged by key
            // are walked too, others are not.
            fn drop_map_nulls(value: &mut Value) {
                if let Some(map) = value.as_object_mut() {
                    map.retain(|_, v| !v.is_null());
                    map.values_mut().for_each(drop_map_nulls);
                }
            }
            drop_map_nulls(&mut before);
            prop_assert_eq!(object, before);
        }

        #[test]
        fn property_a_patch_of_scalars_and_maps_is_applied_whole(
            spec in value(4),
            patch_spec in btree_map((0..8u32).prop_map(|k| format!("k{k}")), value(3), 0..5),
        ) {
            let mut object = json!({"apiVersion": "example.com/v1", "kind": "Thing", "spec": spec});
            let mut patch = json!({"spec": Value::Object(patch_spec.into_iter().collect())});
            without_lists_and_nulls(&mut patch);
            strategic_merge(&mut object, &patch);
            let mut expected = Vec::new();
            leaves(&patch, String::new(), &mut expected);
            for (path, value) in expected {
                if value.as_object().is_some_and(Map::is_empty) {
                    continue;
                }
                prop_assert_eq!(object.pointer(&path), Some(&value), "at {}", path);
            }
        }
    }

    #[test]
    fn custom_resource_lists_are_replaced() {
        let mut cr = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        strategic_merge(&mut cr, &json!({"spec": {"containers": [{"name": "a", "x": 1}]}}));
        assert_eq!(cr["spec"]["containers"], json!([{"name": "a", "x": 1}]));
    }
}
