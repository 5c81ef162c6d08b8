//! Field specs: where in which kinds a transformer writes (kustomize's `fieldSpecs`), and the
//! builtin tables kustomize ships for labels, annotations and name references.

use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::object::{group_version, kind};

/// A path in objects of some kinds: `spec/template/metadata/labels`, where a list met on the way
/// is walked element by element (written `name[]` or implicit, as kustomize allows both).
#[derive(Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(deserialize_with = "bounded_path")]
    pub path: String,
    #[serde(default)]
    pub create: bool,
}

/// A path from a user's file: walks recurse per segment (and `create` makes as many levels), so
/// it may have at most [`super::limits::MAX_DEPTH`] of them.
fn bounded_path<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let path = String::deserialize(deserializer)?;
    if split_path(&path).len() > super::limits::MAX_DEPTH {
        return Err(serde::de::Error::custom(format!("the path has more than {} segments", super::limits::MAX_DEPTH)));
    }
    Ok(path)
}

impl FieldSpec {
    /// Whether the spec applies to `object`'s group, version and kind.
    pub fn selects(&self, object: &Value) -> bool {
        let (group, version) = group_version(object);
        let matches = |wanted: &Option<String>, actual: &str| wanted.as_deref().is_none_or(|w| w.is_empty() || w == actual);
        matches(&self.group, group) && matches(&self.version, version) && matches(&self.kind, kind(object))
    }

    /// The path's segments; `/` inside a segment can be escaped as `\/` (annotation keys).
    pub fn segments(&self) -> Vec<String> {
        split_path(&self.path)
    }
}

pub fn split_path(path: &str) -> Vec<String> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'/') => {
                current.push('/');
                chars.next();
            }
            '/' => segments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(current);
    segments.into_iter().filter(|s| !s.is_empty()).collect()
}

/// Calls `apply` on every value at `path` in `value`. With `create`, missing maps on the way and
/// the final field (as null, for `apply` to fill) are created; lists are never created.
pub fn visit(value: &mut Value, path: &[String], create: bool, apply: &mut dyn FnMut(&mut Value)) {
    let Some((segment, rest)) = path.split_first() else {
        apply(value);
        return;
    };
    match value {
        Value::Array(items) => {
            // A list met on the way: the path continues in each element.
            for item in items {
                visit(item, path, create, apply);
            }
        }
        Value::Object(map) => {
            let (field, explicit_list) = match segment.strip_suffix("[]") {
                Some(field) => (field, true),
                None => (segment.as_str(), false),
            };
            if !map.contains_key(field) {
                if !create || explicit_list {
                    return;
                }
                let fresh = if rest.is_empty() { Value::Null } else { Value::Object(Map::new()) };
                map.insert(field.to_owned(), fresh);
            }
            let Some(child) = map.get_mut(field) else { return };
            if child.is_null() && create && !rest.is_empty() {
                *child = Value::Object(Map::new());
            }
            match child {
                Value::Array(items) if !rest.is_empty() => {
                    for item in items {
                        visit(item, rest, create, apply);
                    }
                }
                _ => visit(child, rest, create, apply),
            }
        }
        _ => {}
    }
}

/// Applies `apply` at every spec of `specs` that selects `object`.
pub fn visit_specs(object: &mut Value, specs: &[FieldSpec], apply: &mut dyn FnMut(&mut Value)) {
    for spec in specs {
        if spec.selects(object) {
            visit(object, &spec.segments(), spec.create, apply);
        }
    }
}

/// Parses a compact table, one spec a line: `path [create] [group=..] [version=..] [kind=..]`.
fn table(text: &str) -> Vec<FieldSpec> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut spec = FieldSpec { path: words.next().unwrap_or_default().to_owned(), ..FieldSpec::default() };
            for word in words {
                match word.split_once('=') {
                    Some(("group", g)) => spec.group = Some(g.to_owned()),
                    Some(("version", v)) => spec.version = Some(v.to_owned()),
                    Some(("kind", k)) => spec.kind = Some(k.to_owned()),
                    _ if word == "create" => spec.create = true,
                    _ => {}
                }
            }
            spec
        })
        .collect()
}

const TEMPLATE_LABELS: &str = "
spec/template/metadata/labels create version=v1 kind=ReplicationController
spec/template/metadata/labels create kind=Deployment
spec/template/metadata/labels create kind=ReplicaSet
spec/template/metadata/labels create kind=DaemonSet
spec/template/metadata/labels create group=apps kind=StatefulSet
spec/volumeClaimTemplates[]/metadata/labels create group=apps kind=StatefulSet
spec/template/metadata/labels create group=batch kind=Job
spec/jobTemplate/metadata/labels create group=batch kind=CronJob
spec/jobTemplate/spec/template/metadata/labels create group=batch kind=CronJob
";

const SELECTOR_LABELS: &str = "
spec/selector create version=v1 kind=Service
spec/selector create version=v1 kind=ReplicationController
spec/selector/matchLabels create kind=Deployment
spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels group=apps kind=Deployment
spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels group=apps kind=Deployment
spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels group=apps kind=Deployment
spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels group=apps kind=Deployment
spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels group=apps kind=Deployment
spec/selector/matchLabels create kind=ReplicaSet
spec/selector/matchLabels create kind=DaemonSet
spec/selector/matchLabels create group=apps kind=StatefulSet
spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels group=apps kind=StatefulSet
spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels group=apps kind=StatefulSet
spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels group=apps kind=StatefulSet
spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels group=apps kind=StatefulSet
spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels group=apps kind=StatefulSet
spec/selector/matchLabels group=batch kind=Job
spec/jobTemplate/spec/selector/matchLabels group=batch kind=CronJob
spec/selector/matchLabels group=policy kind=PodDisruptionBudget
spec/podSelector/matchLabels group=networking.k8s.io kind=NetworkPolicy
spec/ingress/from/podSelector/matchLabels group=networking.k8s.io kind=NetworkPolicy
spec/egress/to/podSelector/matchLabels group=networking.k8s.io kind=NetworkPolicy
";

const TEMPLATE_ANNOTATIONS: &str = "
spec/template/metadata/annotations create version=v1 kind=ReplicationController
spec/template/metadata/annotations create kind=Deployment
spec/template/metadata/annotations create kind=ReplicaSet
spec/template/metadata/annotations create kind=DaemonSet
spec/template/metadata/annotations create group=apps kind=StatefulSet
spec/template/metadata/annotations create group=batch kind=Job
spec/jobTemplate/metadata/annotations create group=batch kind=CronJob
spec/jobTemplate/spec/template/metadata/annotations create group=batch kind=CronJob
";

/// `metadata/labels` alone: the `labels` entries without selectors or templates.
pub static METADATA_LABELS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| table("metadata/labels create"));

/// `labels` with `includeTemplates`: metadata and pod (and claim) templates.
pub static TEMPLATE_LABEL_SPECS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = table("metadata/labels create");
    specs.extend(table(TEMPLATE_LABELS));
    specs
});

/// `commonLabels` (and `labels` with `includeSelectors`): metadata, templates and selectors.
pub static COMMON_LABEL_SPECS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = table("metadata/labels create");
    specs.extend(table(SELECTOR_LABELS));
    specs.extend(table(TEMPLATE_LABELS));
    specs
});

/// `commonAnnotations`: metadata and pod templates.
pub static COMMON_ANNOTATION_SPECS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = table("metadata/annotations create");
    specs.extend(table(TEMPLATE_ANNOTATIONS));
    specs
});

/// Where `replicas` writes.
pub static REPLICA_SPECS: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    table(
        "
spec/replicas create kind=Deployment
spec/replicas create kind=ReplicationController
spec/replicas create kind=ReplicaSet
spec/replicas create group=apps kind=StatefulSet
",
    )
});

/// The pod specs of the workload kinds, where most name references live (and vars).
pub(super) const POD_SPECS: &[(&str, &str)] = &[
    ("Pod", "spec"),
    ("Deployment", "spec/template/spec"),
    ("ReplicaSet", "spec/template/spec"),
    ("DaemonSet", "spec/template/spec"),
    ("StatefulSet", "spec/template/spec"),
    ("Job", "spec/template/spec"),
    ("ReplicationController", "spec/template/spec"),
    ("CronJob", "spec/jobTemplate/spec/template/spec"),
    ("PodTemplate", "template/spec"),
];

/// A field that names an object of another kind: kustomize's `nameReference` config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameReference {
    /// The kind referred to (and its group, empty for the core group).
    pub referent_group: String,
    pub referent_kind: String,
    /// Where the name is, in the objects the spec selects.
    pub referrer: FieldSpec,
}

fn references<S: AsRef<str>>(group: &str, kind: &str, referrer: Option<&str>, paths: &[S], out: &mut Vec<NameReference>) {
    for path in paths {
        out.push(NameReference {
            referent_group: group.to_owned(),
            referent_kind: kind.to_owned(),
            referrer: FieldSpec { kind: referrer.map(str::to_owned), path: path.as_ref().to_owned(), ..FieldSpec::default() },
        });
    }
}

pub static NAME_REFERENCES: LazyLock<Vec<NameReference>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for (referrer, spec) in POD_SPECS {
        let at = |tail: &str| format!("{spec}/{tail}");
        let config_map = [
            at("volumes/configMap/name"),
            at("volumes/projected/sources/configMap/name"),
            at("containers/env/valueFrom/configMapKeyRef/name"),
            at("initContainers/env/valueFrom/configMapKeyRef/name"),
            at("ephemeralContainers/env/valueFrom/configMapKeyRef/name"),
            at("containers/envFrom/configMapRef/name"),
            at("initContainers/envFrom/configMapRef/name"),
            at("ephemeralContainers/envFrom/configMapRef/name"),
        ];
        let secret = [
            at("volumes/secret/secretName"),
            at("volumes/projected/sources/secret/name"),
            at("containers/env/valueFrom/secretKeyRef/name"),
            at("initContainers/env/valueFrom/secretKeyRef/name"),
            at("ephemeralContainers/env/valueFrom/secretKeyRef/name"),
            at("containers/envFrom/secretRef/name"),
            at("initContainers/envFrom/secretRef/name"),
            at("ephemeralContainers/envFrom/secretRef/name"),
            at("imagePullSecrets/name"),
            // kustomize v5.5 follows no volume plugin's secret reference (cephfs, cinder, csi,
            // flexVolume, iscsi, rbd, azureFile, …): `kubectl kustomize` leaves them as written.
        ];
        references("", "ConfigMap", Some(referrer), &config_map, &mut out);
        references("", "Secret", Some(referrer), &secret, &mut out);
        references("", "ServiceAccount", Some(referrer), &[at("serviceAccountName"), at("serviceAccount")], &mut out);
        references("", "PersistentVolumeClaim", Some(referrer), &[at("volumes/persistentVolumeClaim/claimName")], &mut out);
        references("scheduling.k8s.io", "PriorityClass", Some(referrer), &[at("priorityClassName")], &mut out);
    }
    references("", "Secret", Some("Ingress"), &["spec/tls/secretName"], &mut out);
    // Roles may name the objects they grant access to.
    for role in ["Role", "ClusterRole"] {
        references("", "ConfigMap", Some(role), &["rules/resourceNames"], &mut out);
        references("", "Secret", Some(role), &["rules/resourceNames"], &mut out);
    }
    references("", "PersistentVolume", Some("ClusterRole"), &["rules/resourceNames"], &mut out);
    out.push(NameReference {
        referent_group: "admissionregistration.k8s.io".into(),
        referent_kind: "ValidatingAdmissionPolicy".into(),
        referrer: FieldSpec {
            group: Some("admissionregistration.k8s.io".into()),
            kind: Some("ValidatingAdmissionPolicyBinding".into()),
            path: "spec/policyName".into(),
            ..FieldSpec::default()
        },
    });
    references("", "Secret", Some("ServiceAccount"), &["imagePullSecrets/name", "secrets/name"], &mut out);
    {
        let kind = "Ingress";
        references(
            "",
            "Service",
            Some(kind),
            &[
                "spec/rules/http/paths/backend/serviceName",
                "spec/rules/http/paths/backend/service/name",
                "spec/backend/serviceName",
                "spec/defaultBackend/service/name",
            ],
            &mut out,
        );
    }
    references("", "Service", Some("StatefulSet"), &["spec/serviceName"], &mut out);
    references("", "Service", Some("APIService"), &["spec/service/name"], &mut out);
    // Webhook configurations name their Service with a namespace beside the name: see
    // `nameref::fix_webhook_services`.
    references("", "PersistentVolume", Some("PersistentVolumeClaim"), &["spec/volumeName"], &mut out);
    for kind in ["PersistentVolumeClaim", "PersistentVolume"] {
        references("storage.k8s.io", "StorageClass", Some(kind), &["spec/storageClassName"], &mut out);
    }
    references("storage.k8s.io", "StorageClass", Some("StatefulSet"), &["spec/volumeClaimTemplates/spec/storageClassName"], &mut out);
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"] {
        references(if kind == "ReplicationController" { "" } else { "apps" }, kind, Some("HorizontalPodAutoscaler"), &["spec/scaleTargetRef/name"], &mut out);
    }
    out
});

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_walk_lists_and_create_maps() {
        let mut sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"volumeClaimTemplates": [{"metadata": {"name": "a"}}, {}]}});
        let mut set = |v: &mut Value| *v = json!({"x": "y"});
        visit_specs(&mut sts, &TEMPLATE_LABEL_SPECS, &mut set);
        assert_eq!(sts["metadata"]["labels"], json!({"x": "y"}));
        assert_eq!(sts["spec"]["template"]["metadata"]["labels"], json!({"x": "y"}));
        assert_eq!(sts["spec"]["volumeClaimTemplates"][1]["metadata"]["labels"], json!({"x": "y"}));
    }

    #[test]
    fn selectors_without_create_are_only_updated() {
        let mut job = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {}});
        visit_specs(&mut job, &COMMON_LABEL_SPECS, &mut |v: &mut Value| *v = json!({"x": "y"}));
        assert!(job["spec"].get("selector").is_none());
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], json!({"x": "y"}));
        let mut svc = json!({"apiVersion": "v1", "kind": "Service"});
        visit_specs(&mut svc, &COMMON_LABEL_SPECS, &mut |v: &mut Value| *v = json!({"x": "y"}));
        assert_eq!(svc["spec"]["selector"], json!({"x": "y"}));
    }

    #[test]
    fn escaped_slashes_stay_in_a_segment() {
        assert_eq!(split_path("metadata/annotations/a.io\\/b"), vec!["metadata", "annotations", "a.io/b"]);
    }
}
