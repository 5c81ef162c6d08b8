//! kustomize's builtin transformers: namespace, name prefix/suffix, labels (with selectors and
//! templates), annotations, images and replicas.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::fieldspec::{self, FieldSpec};
use super::file::{Image, Replica};
use super::object::{Resource, api_version, is_cluster_scoped, kind};

fn each(value: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    value.and_then(Value::as_array_mut).into_iter().flatten()
}

/// Sets the namespace of namespaced objects, and of the references that follow it: the role
/// binding subjects named `default`, the service an API service calls and the namespace a CRD's
/// conversion webhook names (only where it has one). Webhook configurations' services follow
/// their Service as a name reference (kustomize does not set them here).
pub fn set_namespace(resources: &mut [Resource], namespace: &str) {
    for resource in resources.iter_mut() {
        let object_kind = kind(&resource.object).to_owned();
        // kustomize records every object's id before it sets namespaces (cluster-scoped ones
        // too): each becomes a candidate when references are fixed.
        resource.remember();
        if !is_cluster_scoped(&resource.object) {
            resource.set_namespace(namespace);
        }
        // kustomize renames (core) Namespace objects to the namespace everything moves to.
        if object_kind == "Namespace" && api_version(&resource.object) == "v1" {
            resource.rename(namespace);
        }
        match object_kind.as_str() {
            "RoleBinding" | "ClusterRoleBinding" => {
                // kustomize's rule: a subject named `default` (of any kind, in any namespace)
                // follows the namespace; others keep theirs.
                for subject in each(resource.object.get_mut("subjects")) {
                    if subject.get("name").and_then(Value::as_str) == Some("default")
                        && let Some(map) = subject.as_object_mut()
                    {
                        map.insert("namespace".into(), Value::String(namespace.to_owned()));
                    }
                }
            }
            "APIService" => {
                if let Some(service) = resource.object.pointer_mut("/spec/service").and_then(Value::as_object_mut) {
                    service.insert("namespace".into(), Value::String(namespace.to_owned()));
                }
            }
            "CustomResourceDefinition" => {
                // kustomize's field spec for it does not create the field.
                if let Some(service) = resource.object.pointer_mut("/spec/conversion/webhook/clientConfig/service/namespace") {
                    *service = Value::String(namespace.to_owned());
                }
            }
            _ => {}
        }
    }
}

/// Which role binding subjects a `NamespaceTransformer` configured in `transformers:` sets
/// (its `setRoleBindingSubjects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectMode {
    /// Subjects named `default` (kustomize's default, as for a kustomization's `namespace`).
    DefaultOnly,
    AllServiceAccounts,
    None,
}

/// A `NamespaceTransformer` with its own field specs and options, as kustomize's namespace
/// filter runs it: the object's own namespace (unless cluster-scoped), its role binding
/// subjects by `mode`, then its field specs, which must name scalars (`metadata/name` renames a
/// core Namespace). With `unset_only`, only empty or missing namespaces are set.
pub fn set_namespace_at(resources: &mut [Resource], namespace: &str, specs: &[FieldSpec], unset_only: bool, mode: SubjectMode) -> Result<(), String> {
    let set = |value: &mut Value| {
        let empty = value.is_null() || value.as_str().is_some_and(str::is_empty);
        if !unset_only || empty {
            *value = Value::String(namespace.to_owned());
        }
    };
    for resource in resources.iter_mut() {
        resource.remember();
        if !is_cluster_scoped(&resource.object) && (!unset_only || super::object::namespace(&resource.object).is_empty()) {
            resource.set_namespace(namespace);
        }
        let binding = matches!(kind(&resource.object), "RoleBinding" | "ClusterRoleBinding");
        if binding && mode != SubjectMode::None {
            for subject in each(resource.object.get_mut("subjects")).filter_map(Value::as_object_mut) {
                let wanted = match mode {
                    SubjectMode::DefaultOnly => subject.get("name").and_then(Value::as_str) == Some("default"),
                    _ => subject.get("kind").and_then(Value::as_str) == Some("ServiceAccount"),
                };
                if wanted {
                    set(subject.entry("namespace").or_insert(Value::Null));
                }
            }
        }
        let core = api_version(&resource.object) == "v1";
        let mut not_scalar = None;
        let selected: Vec<&FieldSpec> = specs.iter().filter(|s| s.selects(&resource.object)).collect();
        for spec in selected {
            let segments = spec.segments();
            let path = segments.join("/");
            // kustomize handles these itself (above), whatever the field specs say.
            let binding_subjects = binding && path == "subjects/namespace" && matches!(spec.kind.as_deref(), Some("RoleBinding" | "ClusterRoleBinding"));
            if path == "metadata/namespace" || (path == "metadata/name" && !core) || binding_subjects {
                continue;
            }
            if path == "metadata/name" {
                if !unset_only {
                    resource.rename(namespace);
                }
                continue;
            }
            fieldspec::visit(&mut resource.object, &segments, spec.create, &mut |value: &mut Value| {
                if value.is_array() || value.is_object() {
                    not_scalar.get_or_insert_with(|| path.clone());
                } else {
                    set(value);
                }
            });
        }
        if let Some(path) = not_scalar {
            return Err(format!("namespace field specs must target scalar nodes: considering field '{path}' of object {}", resource.id()));
        }
    }
    Ok(())
}

/// kustomize refuses a namespace that makes two objects one (same group, version, kind, name
/// and namespace, "" and "default" being one).
pub fn check_namespace_conflicts(resources: &[Resource]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for resource in resources.iter().filter(|r| !r.object.is_null()) {
        let id = resource.id();
        let namespace = if id.namespace.is_empty() { "default" } else { id.namespace.as_str() };
        if !seen.insert((id.group.clone(), id.version.clone(), id.kind.clone(), id.name.clone(), namespace.to_owned())) {
            return Err(format!("namespace transformation produces ID conflict: {id}"));
        }
    }
    Ok(())
}

/// A `ValueAddTransformer` target's field (`a/b/c`, `\/` escaping a slash): created as a
/// string when missing; with `position` > 0, `value` is inserted as a path part at that 1-based
/// position of the field's `/`-separated value (past the end: appended), else it replaces it.
/// What kustomize's path join would clean up (empty, `.` or `..` parts) is refused rather than
/// guessed.
pub fn add_value(object: &mut Value, field_path: &str, position: i64, value: &str) -> Result<(), String> {
    let segments = fieldspec::split_path(field_path);
    let mut current = object;
    for segment in &segments {
        // Missing (or null) maps on the way are created, as kustomize's LookupCreate does.
        if current.is_null() {
            *current = Value::Object(Map::new());
        }
        let Some(map) = current.as_object_mut() else {
            return Err(format!("ValueAddTransformer: the field {field_path:?} crosses a list or a scalar, which ferroflux does not handle"));
        };
        current = map.entry(segment.clone()).or_insert(Value::Null);
    }
    let old = match current {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Number(_) | Value::Bool(_) => current.to_string(),
        _ => return Err(format!("ValueAddTransformer: the field {field_path:?} is not a scalar")),
    };
    let new = if position <= 0 || value.is_empty() {
        if value.is_empty() { old } else { value.to_owned() }
    } else {
        let absolute = old.starts_with('/');
        let parts: Vec<&str> = if old.is_empty() { Vec::new() } else { old.trim_start_matches('/').split('/').collect() };
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
            return Err(format!("ValueAddTransformer: the path {old:?} of field {field_path:?} is not a plain path"));
        }
        let at = usize::try_from(position - 1).unwrap_or(usize::MAX).min(parts.len());
        let mut joined: Vec<&str> = parts[..at].to_vec();
        joined.push(value);
        joined.extend_from_slice(&parts[at..]);
        format!("{}{}", if absolute { "/" } else { "" }, joined.join("/"))
    };
    *current = Value::String(new);
    Ok(())
}

/// Sets the namespace at the extra places `configurations` names.
pub fn set_custom_namespace_fields(resources: &mut [Resource], namespace: &str, custom: &[FieldSpec]) {
    for resource in resources.iter_mut() {
        fieldspec::visit_specs(&mut resource.object, custom, &mut |value: &mut Value| *value = Value::String(namespace.to_owned()));
    }
}

/// Adds a prefix and suffix to names; Namespaces, CRDs and APIServices keep theirs, as in
/// kustomize (their names are fixed by convention).
/// `specs`: where the prefix and the suffix go (the builtin `metadata/name` and what
/// `configurations` add, merged as kustomize merges them).
pub fn add_prefix_suffix(resources: &mut [Resource], prefix: &str, suffix: &str, specs: &super::config::NameSpecs) {
    if specs.prefix == specs.suffix {
        add_prefix_suffix_at(resources, prefix, suffix, &specs.prefix, true)
    } else {
        // kustomize runs a prefix and then a suffix transformer, each with its specs.
        add_prefix_suffix_at(resources, prefix, "", &specs.prefix, true);
        add_prefix_suffix_at(resources, "", suffix, &specs.suffix, true);
    }
}

/// [`add_prefix_suffix`] as a `transformers:` entry configures it: with `specs`, only the fields
/// they name (`metadata/name` renames the object, any other path gets the prefix and suffix on
/// its string); `records` when kustomize notes the prefix and suffix on the object (the
/// kustomization fields and the Prefix/SuffixTransformer plugins, not the legacy
/// PrefixSuffixTransformer), which reference resolution uses.
pub fn add_prefix_suffix_at(resources: &mut [Resource], prefix: &str, suffix: &str, specs: &[FieldSpec], records: bool) {
    if prefix.is_empty() && suffix.is_empty() {
        return;
    }
    for resource in resources.iter_mut() {
        if matches!(kind(&resource.object), "Namespace" | "CustomResourceDefinition") {
            continue;
        }
        if kind(&resource.object) == "APIService" && super::object::group_version(&resource.object).0 == "apiregistration.k8s.io" {
            continue;
        }
        let renames = specs.iter().any(|s| s.path == "metadata/name" && s.selects(&resource.object));
        if renames {
            let new = format!("{prefix}{}{suffix}", super::object::name(&resource.object));
            resource.rename(&new);
            if records {
                if !prefix.is_empty() {
                    resource.prefixes.push(prefix.to_owned());
                }
                if !suffix.is_empty() {
                    resource.suffixes.push(suffix.to_owned());
                }
            }
        }
        let others: Vec<FieldSpec> = specs.iter().filter(|s| s.path != "metadata/name").cloned().collect();
        fieldspec::visit_specs(&mut resource.object, &others, &mut |value: &mut Value| match value {
            Value::String(text) => *text = format!("{prefix}{text}{suffix}"),
            // A field the spec creates (or an empty one) gets the prefix and suffix alone.
            Value::Null => *value = Value::String(format!("{prefix}{suffix}")),
            _ => {}
        });
    }
}

/// Writes `pairs` into the string map at every field spec.
pub fn add_pairs(resources: &mut [Resource], pairs: &BTreeMap<String, String>, specs: &[FieldSpec]) {
    if pairs.is_empty() {
        return;
    }
    let mut write = |value: &mut Value| {
        if value.is_null() {
            *value = Value::Object(Map::new());
        }
        if let Some(map) = value.as_object_mut() {
            for (k, v) in pairs {
                map.insert(k.clone(), Value::String(v.clone()));
            }
        }
    };
    for resource in resources.iter_mut() {
        fieldspec::visit_specs(&mut resource.object, specs, &mut write);
    }
}

/// The field specs of one `labels` entry.
pub fn label_specs(include_selectors: bool, include_templates: bool, custom: &[FieldSpec]) -> Vec<FieldSpec> {
    let mut specs = if include_selectors {
        fieldspec::COMMON_LABEL_SPECS.clone()
    } else if include_templates {
        fieldspec::TEMPLATE_LABEL_SPECS.clone()
    } else {
        fieldspec::METADATA_LABELS.clone()
    };
    specs.extend(custom.iter().cloned());
    specs
}

/// Splits `registry/name:tag@digest` into the name and the rest.
fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' separates the tag; one before it is a registry port.
    match without_digest.rfind(':') {
        Some(i) if !without_digest[i..].contains('/') => &without_digest[..i],
        _ => without_digest,
    }
}

/// The image with kustomize's override applied: a new tag or digest replaces both the old tag
/// and digest; both together give `name:tag@digest`.
fn apply_image(current: &str, override_: &Image) -> String {
    let name = image_name(current);
    let rest = &current[name.len()..];
    let (mut tag, mut digest) = match rest.split_once('@') {
        Some((tag, digest)) => (tag.trim_start_matches(':').to_owned(), digest.to_owned()),
        None => (rest.trim_start_matches(':').to_owned(), String::new()),
    };
    let new_name = override_.new_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| name.to_owned());
    let new_tag = override_.new_tag.as_deref().filter(|t| !t.is_empty());
    let new_digest = override_.digest.as_deref().filter(|d| !d.is_empty());
    match (new_tag, new_digest) {
        (Some(t), Some(d)) => (tag, digest) = (t.to_owned(), d.to_owned()),
        (Some(t), None) => (tag, digest) = (t.to_owned(), String::new()),
        (None, Some(d)) => (tag, digest) = (String::new(), d.to_owned()),
        (None, None) => {}
    }
    if let Some(suffix) = override_.tag_suffix.as_deref().filter(|s| !s.is_empty()) {
        tag.push_str(suffix);
    }
    let mut image = new_name;
    if !tag.is_empty() {
        image = format!("{image}:{tag}");
    }
    if !digest.is_empty() {
        image = format!("{image}@{digest}");
    }
    image
}

/// An image override with its name pattern. kustomize uses the override's `name` as a regular
/// expression for the image without tag and digest (so a name may carry a tag: `busybox:1.0`
/// matches only that tag).
struct ImageMatcher<'a> {
    image: &'a Image,
    pattern: regex::Regex,
}

impl ImageMatcher<'_> {
    fn matches(&self, image: &str) -> bool {
        self.pattern.is_match(image)
    }
}

fn find_image<'a>(matchers: &'a [ImageMatcher<'a>], image: &str) -> Option<&'a Image> {
    matchers.iter().find(|m| m.matches(image)).map(|m| m.image)
}

/// Image overrides in every container and init container, as kustomize matches them.
/// An image name that is no valid pattern is an error (kustomize v5.5 crashes on it).
pub fn set_images(resources: &mut [Resource], images: &[Image], custom: &[FieldSpec]) -> Result<(), String> {
    if images.is_empty() {
        return Ok(());
    }
    let matchers: Vec<ImageMatcher> = images
        .iter()
        .map(|image| {
            let pattern = super::regex::image(&image.name).map_err(|e| format!("image name {:?} is no valid pattern: {e}", image.name))?;
            Ok(ImageMatcher { image, pattern })
        })
        .collect::<Result<_, String>>()?;
    let images = matchers.as_slice();
    fn visit(value: &mut Value, images: &[ImageMatcher]) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == "containers" || key == "initContainers" {
                        // kustomize's image filter writes an empty container list it meets as [].
                        if child.is_null() {
                            *child = Value::Array(Vec::new());
                        }
                        for container in each(Some(child)) {
                            if let Some(image) = container.get("image").and_then(Value::as_str).map(str::to_owned)
                                && let Some(found) = find_image(images, &image)
                            {
                                container["image"] = Value::String(apply_image(&image, found));
                            }
                        }
                    } else {
                        visit(child, images);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| visit(i, images)),
            _ => {}
        }
    }
    for resource in resources.iter_mut() {
        visit(&mut resource.object, images);
        // Image fields `configurations` names, in kinds without `containers`.
        fieldspec::visit_specs(&mut resource.object, custom, &mut |value: &mut Value| {
            if let Some(image) = value.as_str().map(str::to_owned)
                && let Some(found) = find_image(images, &image)
            {
                *value = Value::String(apply_image(&image, found));
            }
        });
    }
    Ok(())
}

/// Replica counts by name: the name as written, or as renamed by this kustomization's
/// prefix/suffix (`renamed`), as kustomize matches original names too.
/// `replicas`: the count of the workloads named (by their current or an earlier name), at the
/// builtin places and `custom` ones.
pub fn set_replicas(resources: &mut [Resource], replicas: &[Replica], custom: &[FieldSpec]) -> Result<(), String> {
    for replica in replicas {
        let mut found = false;
        for resource in resources.iter_mut() {
            let named = resource.names().any(|n| n == replica.name);
            if !named || !fieldspec::REPLICA_SPECS.iter().chain(custom).any(|spec| spec.selects(&resource.object)) {
                continue;
            }
            found = true;
            let count = Value::from(replica.count);
            fieldspec::visit_specs(&mut resource.object, &fieldspec::REPLICA_SPECS, &mut |v: &mut Value| *v = count.clone());
            fieldspec::visit_specs(&mut resource.object, custom, &mut |v: &mut Value| *v = count.clone());
        }
        // As kustomize: a count for no workload is a mistake worth stopping for.
        if !found {
            let kinds: Vec<String> = fieldspec::REPLICA_SPECS
                .iter()
                .chain(custom)
                .map(|spec| {
                    let part = |value: &Option<String>, missing: &str| value.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| missing.to_owned());
                    format!("{}.{}.{}", part(&spec.kind, ""), part(&spec.version, "[noVer]"), part(&spec.group, "[noGrp]"))
                })
                .collect();
            return Err(format!("resource with name {} does not match a config with the following GVK [{}]", replica.name, kinds.join(" ")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_ignore_tags_digests_and_registry_ports() {
        assert_eq!(image_name("nginx"), "nginx");
        assert_eq!(image_name("nginx:1.2"), "nginx");
        assert_eq!(image_name("registry:5000/team/app:v1"), "registry:5000/team/app");
        assert_eq!(image_name("app@sha256:abc"), "app");
        let o = Image { name: "app".into(), new_tag: Some("v2".into()), ..Image::default() };
        assert_eq!(apply_image("app:v1", &o), "app:v2");
        let o = Image { name: "app".into(), new_name: Some("reg/app".into()), ..Image::default() };
        assert_eq!(apply_image("app:v1", &o), "reg/app:v1");
    }
}
