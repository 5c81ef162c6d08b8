//! kustomize's builtin transformers: namespace, name prefix/suffix with name-reference updates,
//! labels (with selectors and templates), annotations, images and replicas.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::file::{Image, Replica};

/// Kinds that are not namespaced, among those kustomize knows without a schema.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "Node",
    "CSIDriver",
    "CSINode",
    "IngressClass",
    "RuntimeClass",
    "VolumeAttachment",
    "PodSecurityPolicy",
    "ComponentStatus",
    "CertificateSigningRequest",
    "TokenReview",
    "SelfSubjectAccessReview",
];

pub fn kind(object: &Value) -> &str {
    object.get("kind").and_then(Value::as_str).unwrap_or("")
}

pub fn name(object: &Value) -> &str {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

pub fn is_cluster_scoped(object: &Value) -> bool {
    CLUSTER_SCOPED.contains(&kind(object))
}

/// Sets `metadata.<key>`, making `metadata` a map when it is not one.
fn set_metadata(object: &mut Value, key: &str, value: &str) {
    if let Some(map) = object.as_object_mut() {
        let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        if let Some(metadata) = metadata.as_object_mut() {
            metadata.insert(key.to_owned(), Value::String(value.to_owned()));
        }
    }
}

/// The object at `path` (created when `create`), when every step is an object.
fn map_at<'a>(object: &'a mut Value, path: &[&str], create: bool) -> Option<&'a mut Map<String, Value>> {
    let mut current = object;
    for key in path {
        let map = current.as_object_mut()?;
        if !map.contains_key(*key) {
            if !create {
                return None;
            }
            map.insert((*key).to_owned(), Value::Object(Map::new()));
        }
        current = map.get_mut(*key)?;
        if current.is_null() && create {
            *current = Value::Object(Map::new());
        }
    }
    current.as_object_mut()
}

fn add_pairs(map: &mut Map<String, Value>, pairs: &BTreeMap<String, String>) {
    for (k, v) in pairs {
        map.insert(k.clone(), Value::String(v.clone()));
    }
}

/// The pod template paths of workload kinds.
fn template_paths(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" | "Job" => &[&["spec", "template"]],
        "CronJob" => &[&["spec", "jobTemplate", "spec", "template"]],
        _ => &[],
    }
}

/// Where the pod specs of an object are.
fn pod_spec_paths(kind: &str) -> &'static [&'static [&'static str]] {
    match kind {
        "Pod" => &[&["spec"]],
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "ReplicationController" | "Job" => &[&["spec", "template", "spec"]],
        "CronJob" => &[&["spec", "jobTemplate", "spec", "template", "spec"]],
        _ => &[],
    }
}

pub fn set_namespace(objects: &mut [Value], namespace: &str) {
    for object in objects.iter_mut() {
        if is_cluster_scoped(object) {
            continue;
        }
        set_metadata(object, "namespace", namespace);
        // ServiceAccount subjects in the default namespace follow, as kustomize does.
        if matches!(kind(object), "RoleBinding" | "ClusterRoleBinding") {
            if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
                for subject in subjects {
                    if subject["kind"] == "ServiceAccount" && subject.get("namespace").and_then(Value::as_str) == Some("default") {
                        subject["namespace"] = Value::String(namespace.to_owned());
                    }
                }
            }
        }
    }
}

/// Renames objects with a prefix/suffix and returns (kind, old name) → new name, for
/// [`update_name_references`].
pub fn add_prefix_suffix(objects: &mut [Value], prefix: &str, suffix: &str) -> BTreeMap<(String, String), String> {
    let mut renamed = BTreeMap::new();
    for object in objects.iter_mut() {
        // kustomize leaves the names of Namespaces and CRDs alone: they are fixed by convention.
        if matches!(kind(object), "Namespace" | "CustomResourceDefinition") {
            continue;
        }
        let old = name(object).to_owned();
        let new = format!("{prefix}{old}{suffix}");
        renamed.insert((kind(object).to_owned(), old), new.clone());
        set_metadata(object, "name", &new);
    }
    renamed
}

fn rename(value: Option<&mut Value>, kind: &str, renamed: &BTreeMap<(String, String), String>) {
    if let Some(value) = value {
        if let Some(new) = value.as_str().and_then(|old| renamed.get(&(kind.to_owned(), old.to_owned()))) {
            *value = Value::String(new.clone());
        }
    }
}

fn each(value: Option<&mut Value>) -> impl Iterator<Item = &mut Value> {
    value.and_then(Value::as_array_mut).into_iter().flatten()
}

/// Points references (ConfigMaps and Secrets in pod specs, ServiceAccounts, roles, Services in
/// Ingresses, claims, scale targets) at the new names.
pub fn update_name_references(objects: &mut [Value], renamed: &BTreeMap<(String, String), String>) {
    if renamed.is_empty() {
        return;
    }
    for object in objects.iter_mut() {
        let object_kind = kind(object).to_owned();
        for path in pod_spec_paths(&object_kind) {
            let Some(spec) = map_at(object, path, false) else { continue };
            rename(spec.get_mut("serviceAccountName"), "ServiceAccount", renamed);
            rename(spec.get_mut("serviceAccount"), "ServiceAccount", renamed);
            for secret in each(spec.get_mut("imagePullSecrets")) {
                rename(secret.get_mut("name"), "Secret", renamed);
            }
            for volume in each(spec.get_mut("volumes")) {
                rename(volume.pointer_mut("/configMap/name"), "ConfigMap", renamed);
                rename(volume.pointer_mut("/secret/secretName"), "Secret", renamed);
                rename(volume.pointer_mut("/persistentVolumeClaim/claimName"), "PersistentVolumeClaim", renamed);
                for source in each(volume.pointer_mut("/projected/sources")) {
                    rename(source.pointer_mut("/configMap/name"), "ConfigMap", renamed);
                    rename(source.pointer_mut("/secret/name"), "Secret", renamed);
                }
            }
            for list in ["containers", "initContainers", "ephemeralContainers"] {
                for container in each(spec.get_mut(list)) {
                    for env in each(container.get_mut("env")) {
                        rename(env.pointer_mut("/valueFrom/configMapKeyRef/name"), "ConfigMap", renamed);
                        rename(env.pointer_mut("/valueFrom/secretKeyRef/name"), "Secret", renamed);
                    }
                    for from in each(container.get_mut("envFrom")) {
                        rename(from.pointer_mut("/configMapRef/name"), "ConfigMap", renamed);
                        rename(from.pointer_mut("/secretRef/name"), "Secret", renamed);
                    }
                }
            }
        }
        match object_kind.as_str() {
            "RoleBinding" | "ClusterRoleBinding" => {
                let role_kind = object.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("").to_owned();
                rename(object.pointer_mut("/roleRef/name"), &role_kind, renamed);
                for subject in each(object.get_mut("subjects")) {
                    if subject["kind"] == "ServiceAccount" {
                        rename(subject.get_mut("name"), "ServiceAccount", renamed);
                    }
                }
            }
            "Ingress" => {
                rename(object.pointer_mut("/spec/defaultBackend/service/name"), "Service", renamed);
                rename(object.pointer_mut("/spec/backend/serviceName"), "Service", renamed);
                for rule in each(object.pointer_mut("/spec/rules")) {
                    for path in each(rule.pointer_mut("/http/paths")) {
                        rename(path.pointer_mut("/backend/service/name"), "Service", renamed);
                        rename(path.pointer_mut("/backend/serviceName"), "Service", renamed);
                    }
                }
                for tls in each(object.pointer_mut("/spec/tls")) {
                    rename(tls.get_mut("secretName"), "Secret", renamed);
                }
            }
            "StatefulSet" => rename(object.pointer_mut("/spec/serviceName"), "Service", renamed),
            "HorizontalPodAutoscaler" => {
                let target_kind = object.pointer("/spec/scaleTargetRef/kind").and_then(Value::as_str).unwrap_or("").to_owned();
                rename(object.pointer_mut("/spec/scaleTargetRef/name"), &target_kind, renamed);
            }
            _ => {}
        }
    }
}

/// Labels on every object; with `selectors`, also in the selectors and pod templates of the
/// kinds kustomize knows; with only `templates`, in pod templates.
pub fn add_labels(objects: &mut [Value], pairs: &BTreeMap<String, String>, selectors: bool, templates: bool) {
    if pairs.is_empty() {
        return;
    }
    for object in objects.iter_mut() {
        let object_kind = kind(object).to_owned();
        if let Some(map) = map_at(object, &["metadata", "labels"], true) {
            add_pairs(map, pairs);
        }
        if selectors || templates {
            for path in template_paths(&object_kind) {
                let mut labels_path = path.to_vec();
                labels_path.extend(["metadata", "labels"]);
                if let Some(map) = map_at(object, &labels_path, true) {
                    add_pairs(map, pairs);
                }
            }
            if object_kind == "CronJob" {
                if let Some(map) = map_at(object, &["spec", "jobTemplate", "metadata", "labels"], true) {
                    add_pairs(map, pairs);
                }
            }
        }
        if selectors {
            let selector: &[&str] = match object_kind.as_str() {
                "Service" | "ReplicationController" => &["spec", "selector"],
                "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "PodDisruptionBudget" => &["spec", "selector", "matchLabels"],
                "NetworkPolicy" => &["spec", "podSelector", "matchLabels"],
                _ => &[],
            };
            if !selector.is_empty() {
                if let Some(map) = map_at(object, selector, true) {
                    add_pairs(map, pairs);
                }
            }
        }
    }
}

/// Annotations on every object and its pod templates.
pub fn add_annotations(objects: &mut [Value], pairs: &BTreeMap<String, String>) {
    if pairs.is_empty() {
        return;
    }
    for object in objects.iter_mut() {
        let object_kind = kind(object).to_owned();
        if let Some(map) = map_at(object, &["metadata", "annotations"], true) {
            add_pairs(map, pairs);
        }
        for path in template_paths(&object_kind) {
            let mut annotations_path = path.to_vec();
            annotations_path.extend(["metadata", "annotations"]);
            if let Some(map) = map_at(object, &annotations_path, true) {
                add_pairs(map, pairs);
            }
        }
        if object_kind == "CronJob" {
            if let Some(map) = map_at(object, &["spec", "jobTemplate", "metadata", "annotations"], true) {
                add_pairs(map, pairs);
            }
        }
    }
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

fn apply_image(current: &str, override_: &Image) -> String {
    let name = image_name(current);
    let rest = &current[name.len()..];
    let new_name = override_.new_name.clone().unwrap_or_else(|| name.to_owned());
    if let Some(digest) = &override_.digest {
        return format!("{new_name}@{digest}");
    }
    if let Some(tag) = &override_.new_tag {
        return format!("{new_name}:{tag}");
    }
    format!("{new_name}{rest}")
}

/// Image overrides in every container and init container, as kustomize matches them: by the
/// image name without tag or digest.
pub fn set_images(objects: &mut [Value], images: &[Image]) {
    if images.is_empty() {
        return;
    }
    fn visit(value: &mut Value, images: &[Image]) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if key == "containers" || key == "initContainers" {
                        for container in each(Some(child)) {
                            if let Some(image) = container.get("image").and_then(Value::as_str).map(str::to_owned) {
                                if let Some(found) = images.iter().find(|i| i.name == image_name(&image)) {
                                    container["image"] = Value::String(apply_image(&image, found));
                                }
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
    for object in objects.iter_mut() {
        visit(object, images);
    }
}

/// Replica counts by name: the name as written, or as renamed by this kustomization's
/// prefix/suffix (`renamed`), as kustomize matches original names too.
pub fn set_replicas(objects: &mut [Value], replicas: &[Replica], renamed: &BTreeMap<(String, String), String>) {
    for replica in replicas {
        for object in objects.iter_mut() {
            let current = name(object);
            let was_renamed = renamed.get(&(kind(object).to_owned(), replica.name.clone())).is_some_and(|n| n == current);
            if (current == replica.name || was_renamed) && matches!(kind(object), "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController") {
                if let Some(spec) = map_at(object, &["spec"], true) {
                    spec.insert("replicas".into(), Value::from(replica.count));
                }
            }
        }
    }
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
