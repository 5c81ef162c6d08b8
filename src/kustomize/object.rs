//! Kubernetes objects as JSON values, with the accessors and the identity kustomize uses.

use serde_json::{Map, Value};

/// A Kubernetes object: a JSON map with `apiVersion`, `kind` and `metadata`.
pub type Object = Value;

pub fn kind(object: &Value) -> &str {
    object.get("kind").and_then(Value::as_str).unwrap_or("")
}

pub fn api_version(object: &Value) -> &str {
    object.get("apiVersion").and_then(Value::as_str).unwrap_or("")
}

// Direct lookups rather than `Value::pointer`, which allocates for each step; these run for
// every object many times in a build.
pub fn name(object: &Value) -> &str {
    object.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("")
}

pub fn namespace(object: &Value) -> &str {
    object.get("metadata").and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or("")
}

/// `apiVersion` split into group (empty for the core group) and version.
pub fn group_version(object: &Value) -> (&str, &str) {
    let api_version = api_version(object);
    api_version.rsplit_once('/').unwrap_or(("", api_version))
}

/// The types that are not namespaced, by exact `apiVersion` and kind: those kustomize v5.5's
/// builtin schema (Kubernetes v1.21.2) knows as cluster-scoped. A type it does not know, a newer
/// version of a kind included (`flowcontrol.apiserver.k8s.io/v1` FlowSchema), is namespaced.
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1beta1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1beta1", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiextensions.k8s.io/v1beta1", "CustomResourceDefinition"),
    ("apiregistration.k8s.io/v1", "APIService"),
    ("apiregistration.k8s.io/v1beta1", "APIService"),
    ("certificates.k8s.io/v1", "CertificateSigningRequest"),
    ("certificates.k8s.io/v1beta1", "CertificateSigningRequest"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "FlowSchema"),
    ("flowcontrol.apiserver.k8s.io/v1beta1", "PriorityLevelConfiguration"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1beta1", "IngressClass"),
    ("node.k8s.io/v1", "RuntimeClass"),
    ("node.k8s.io/v1beta1", "RuntimeClass"),
    ("policy/v1beta1", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1beta1", "ClusterRoleBinding"),
    ("scheduling.k8s.io/v1", "PriorityClass"),
    ("scheduling.k8s.io/v1beta1", "PriorityClass"),
    ("storage.k8s.io/v1", "CSIDriver"),
    ("storage.k8s.io/v1", "CSINode"),
    ("storage.k8s.io/v1", "StorageClass"),
    ("storage.k8s.io/v1", "VolumeAttachment"),
    ("storage.k8s.io/v1beta1", "CSIDriver"),
    ("storage.k8s.io/v1beta1", "CSINode"),
    ("storage.k8s.io/v1beta1", "StorageClass"),
    ("storage.k8s.io/v1beta1", "VolumeAttachment"),
    ("v1", "ComponentStatus"),
    ("v1", "Namespace"),
    ("v1", "Node"),
    ("v1", "NodeProxyOptions"),
    ("v1", "PersistentVolume"),
];

pub fn is_cluster_scoped(object: &Value) -> bool {
    let (api_version, kind) = (api_version(object), kind(object));
    CLUSTER_SCOPED.iter().any(|&(v, k)| v == api_version && k == kind)
}

/// Sets `metadata.<key>` to a string, making `metadata` a map when it is not one.
pub fn set_metadata(object: &mut Value, key: &str, value: &str) {
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

/// An object's identity as kustomize prints it: `Kind.version.group/name.namespace`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Id {
    pub fn of(object: &Value) -> Id {
        let (group, version) = group_version(object);
        Id {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind(object).to_owned(),
            name: name(object).to_owned(),
            namespace: namespace(object).to_owned(),
        }
    }

    /// What makes two ids one for kustomize: group, version, kind, name and namespace, where
    /// namespace "" and "default" are one (two versions of a kind are two resources).
    pub fn object_key(&self) -> (&str, &str, &str, &str, &str) {
        let namespace = if self.namespace.is_empty() { "default" } else { &self.namespace };
        (&self.group, &self.version, &self.kind, &self.name, namespace)
    }
}

/// What [`Id::object_key`] compares, owned: the key of a set of ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String, String, String, String, String);

impl ObjectKey {
    pub fn of(id: &Id) -> ObjectKey {
        let (group, version, kind, name, namespace) = id.object_key();
        ObjectKey(group.to_owned(), version.to_owned(), kind.to_owned(), name.to_owned(), namespace.to_owned())
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let namespace = if self.namespace.is_empty() { "[noNs]" } else { &self.namespace };
        let group = if self.group.is_empty() { "[noGrp]" } else { &self.group };
        write!(f, "{}.{}.{}/{}.{}", self.kind, self.version, group, self.name, namespace)
    }
}

/// An object during a build, with what kustomize remembers about it: the names and namespaces
/// it had before (to fix references to it), and whether it gets a content-hash suffix.
#[derive(Debug, Clone)]
pub struct Resource {
    pub object: Value,
    /// Earlier (name, namespace) pairs, oldest first.
    pub previous: Vec<(String, String)>,
    /// Generated ConfigMaps and Secrets get `-<hash>` appended at the end of the build.
    pub needs_hash: bool,
    /// How a generated object combines with one of the same id from a base.
    pub behavior: Option<String>,
    /// Where it came from, when the build tracks origins (`buildMetadata`).
    pub origin: Option<super::metadata::Origin>,
    /// The transformers that ran over it, in order, when the build tracks origins.
    pub transformations: Vec<super::metadata::Origin>,
    /// The `namePrefix`es and `nameSuffix`es given to it, innermost first: kustomize picks
    /// among several objects a reference could mean the one whose prefixes and suffixes end
    /// like the referrer's.
    pub prefixes: Vec<String>,
    pub suffixes: Vec<String>,
    /// The kind it had at each of `previous` (a patch with `allowKindChange` changes it, and
    /// later patches may name the old kind with the old name).
    pub previous_kinds: Vec<String>,
    /// The `vars` bound to it where they were declared.
    pub ref_vars: Vec<String>,
    /// Which of its nulls a strategic merge keeps.
    pub explicit_nulls: ExplicitNulls,
}

/// Which nulls of an object kustomize keeps when a strategic merge walks over them: go-yaml
/// tells an empty value (`key:`, dropped) from a written null (`key: null`, kept).
#[derive(Debug, Clone, PartialEq)]
pub enum ExplicitNulls {
    /// The mapping values at these paths are written nulls; every other null is empty.
    Paths(Vec<super::yaml::FieldPath>),
    /// Every null is a written one: the object went through JSON (a JSON 6902 patch), whose
    /// nulls kustomize writes back as `null`.
    All,
}

impl Default for ExplicitNulls {
    fn default() -> Self {
        ExplicitNulls::Paths(Vec::new())
    }
}

impl Resource {
    /// A resource read from a file. `metadata.annotations: null` or `{}` is dropped, as kustomize
    /// does when it reads a resource (it keeps `labels: null` and `labels: {}`).
    pub fn new(object: Value) -> Resource {
        Resource::read(object, Vec::new())
    }

    /// [`Resource::new`] for an object read with the paths of its written nulls.
    pub fn read(mut object: Value, explicit_nulls: Vec<super::yaml::FieldPath>) -> Resource {
        drop_empty_annotations(&mut object);
        Resource {
            object,
            previous: Vec::new(),
            needs_hash: false,
            behavior: None,
            origin: None,
            transformations: Vec::new(),
            explicit_nulls: ExplicitNulls::Paths(explicit_nulls),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            previous_kinds: Vec::new(),
            ref_vars: Vec::new(),
        }
    }

    pub fn id(&self) -> Id {
        Id::of(&self.object)
    }

    /// Every name the object has had, the current one first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        std::iter::once(name(&self.object)).chain(self.previous.iter().map(|(n, _)| n.as_str()))
    }

    /// Renames the object, remembering the old name and namespace.
    pub fn rename(&mut self, new_name: &str) {
        self.remember();
        set_metadata(&mut self.object, "name", new_name);
    }

    /// Changes the name and/or kind at once (a patch with `allowNameChange`/`allowKindChange`),
    /// remembering the old identity once.
    pub fn change_identity(&mut self, new_name: Option<&str>, new_kind: Option<&str>) {
        let name_changes = new_name.is_some_and(|n| n != name(&self.object));
        let kind_changes = new_kind.is_some_and(|k| k != kind(&self.object));
        if !name_changes && !kind_changes {
            return;
        }
        self.remember();
        if let Some(new_name) = new_name.filter(|_| name_changes) {
            set_metadata(&mut self.object, "name", new_name);
        }
        if let (Some(new_kind), Some(map)) = (new_kind.filter(|_| kind_changes), self.object.as_object_mut()) {
            map.insert("kind".into(), Value::String(new_kind.to_owned()));
        }
    }

    pub fn set_namespace(&mut self, new_namespace: &str) {
        self.remember();
        set_metadata(&mut self.object, "namespace", new_namespace);
    }

    /// Records the current identity as a previous one without changing it, as kustomize's
    /// namespace transformer and JSON patches do for every object they visit (which makes the
    /// object a candidate when references are fixed).
    pub fn remember(&mut self) {
        let current = (name(&self.object).to_owned(), namespace(&self.object).to_owned());
        let current_kind = kind(&self.object).to_owned();
        if self.previous.last() != Some(&current) || self.previous_kinds.last() != Some(&current_kind) {
            self.previous.push(current);
            self.previous_kinds.push(current_kind);
        }
    }

    /// Whether `wanted` names this object now or did before (patches and replicas may use either),
    /// in its group and version (a `wanted` without a version: in any).
    pub fn matches_any_id(&self, wanted: &Id) -> bool {
        let (group, version) = group_version(&self.object);
        if group != wanted.group || (!wanted.version.is_empty() && version != wanted.version) {
            return false;
        }
        let ns = |n: &str| if n.is_empty() { "default".to_owned() } else { n.to_owned() };
        let current = (kind(&self.object), name(&self.object), namespace(&self.object));
        std::iter::once(current)
            .chain(self.previous.iter().zip(&self.previous_kinds).map(|((n, s), k)| (k.as_str(), n.as_str(), s.as_str())))
            .any(|(k, n, s)| k == wanted.kind && n == wanted.name && ns(s) == ns(&wanted.namespace))
    }
}

/// Drops `metadata.annotations` when it is null or empty. kustomize keeps its own annotations on
/// every object during a build and clears the field when it removes the last of them, so an
/// empty (or null) annotations map never reaches its output, whatever emptied it.
pub fn drop_empty_annotations(object: &mut Value) {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut)
        && metadata.get("annotations").is_some_and(|a| a.is_null() || a.as_object().is_some_and(serde_json::Map::is_empty))
    {
        metadata.remove("annotations");
    }
}
