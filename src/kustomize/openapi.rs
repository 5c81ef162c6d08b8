//! OpenAPI schemas: the custom schema of `openapi: {path: …}` (which decides how strategic merge
//! patches merge lists) and the type definitions of `crds:` (which add name references and label
//! and annotation fields for custom kinds).
//!
//! kustomize v5.5 behaviour this follows, checked against `kubectl kustomize`:
//! - A custom schema *replaces* the builtin Kubernetes schema: a kind it does not define merges
//!   its lists by replacing them, builtin kinds included.
//! - A list merges by key when its schema says `x-kubernetes-patch-strategy: merge` (the key is
//!   `x-kubernetes-patch-merge-key`; without one, a list of scalars merges as a set).
//! - `crds:` definitions do not take part in strategic merges; only their
//!   `x-kubernetes-object-ref-*`, `x-kubernetes-annotation` and `x-kubernetes-label-selector`
//!   property extensions count, and only along `$ref`s (inline nested properties are not read).

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::Error;
use super::fieldspec::{FieldSpec, NameReference};
use super::object::{group_version, kind};

/// The builtin schema versions kustomize v5.5 accepts in `openapi: {version: …}` (its default).
pub const BUILTIN_VERSIONS: &[&str] = &["v1.21.2"];

/// A custom OpenAPI (swagger 2) schema: its definitions and which one describes each kind.
#[derive(Debug, Default)]
pub struct OpenApi {
    definitions: serde_json::Map<String, Value>,
    /// (group, version, kind) → definition name, from `x-kubernetes-group-version-kind`.
    by_type: HashMap<(String, String, String), String>,
}

/// `$ref`s are followed at most this many times in a row (a schema may be cyclic).
const MAX_REF_HOPS: usize = 32;

impl OpenApi {
    /// Reads a schema file, JSON or YAML, with its types under `definitions`.
    pub fn parse(text: &str, file: &Path) -> Result<OpenApi, Error> {
        let document = super::yaml::parse_value(text, file)?;
        let invalid = |message: &str| Error::Yaml { file: file.to_owned(), message: format!("invalid OpenAPI schema: {message}") };
        let definitions = match document.get("definitions") {
            Some(Value::Object(definitions)) => definitions.clone(),
            Some(_) => return Err(invalid("'definitions' must be a mapping")),
            None => serde_json::Map::new(),
        };
        let mut by_type = HashMap::new();
        for (name, definition) in &definitions {
            let Some(types) = definition.get("x-kubernetes-group-version-kind").and_then(Value::as_array) else { continue };
            for gvk in types {
                let field = |key: &str| gvk.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
                by_type.entry((field("group"), field("version"), field("kind"))).or_insert_with(|| name.clone());
            }
        }
        Ok(OpenApi { definitions, by_type })
    }

    /// The schema of an object's kind, if the schema defines it.
    pub fn for_object(&self, object: &Value) -> Option<&Value> {
        let (group, version) = group_version(object);
        let name = self.by_type.get(&(group.to_owned(), version.to_owned(), kind(object).to_owned()))?;
        self.definitions.get(name)
    }

    /// A schema node with its `$ref`s followed (`#/definitions/<name>`).
    pub fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = node.get("$ref").and_then(Value::as_str) else { break };
            match reference.strip_prefix("#/definitions/").and_then(|name| self.definitions.get(name)) {
                Some(target) => node = target,
                None => break,
            }
        }
        node
    }
}

/// What one `crds:` file adds to the transformer configuration.
#[derive(Debug, Default)]
pub struct CrdConfig {
    pub name_references: Vec<NameReference>,
    pub common_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
}

/// Reads a `crds:` file: a map from type names (`example.com/pkg/apis/v1.Bee`) to OpenAPI
/// definitions (`{Schema: {properties: …}}`), JSON or YAML.
pub fn crd_config(text: &str, file: &Path) -> Result<CrdConfig, Error> {
    let document = super::yaml::parse_value(text, file)?;
    let Value::Object(types) = document else {
        return Err(Error::Yaml { file: file.to_owned(), message: "a crds file must map type names to OpenAPI definitions".into() });
    };
    let mut config = CrdConfig::default();
    for (type_name, definition) in &types {
        let Some(properties) = definition_properties(definition) else { continue };
        // Only definitions of Kubernetes objects are kinds.
        if !["kind", "apiVersion", "metadata"].iter().all(|p| properties.contains_key(*p)) {
            continue;
        }
        // The kind is the type name after its last dot; group and version are not known.
        let kind = type_name.rsplit('.').next().unwrap_or(type_name).to_owned();
        collect(&types, type_name, &kind, &mut Vec::new(), &mut config, 0);
    }
    Ok(config)
}

fn definition_properties(definition: &Value) -> Option<&serde_json::Map<String, Value>> {
    // Go's JSON decoding matches the `Schema` field name case-insensitively.
    let schema = definition.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case("schema")).map(|(_, v)| v)?;
    schema.get("properties")?.as_object()
}

fn collect(types: &serde_json::Map<String, Value>, type_name: &str, kind: &str, path: &mut Vec<String>, config: &mut CrdConfig, depth: usize) {
    if depth > MAX_REF_HOPS {
        return;
    }
    let Some(properties) = types.get(type_name).and_then(definition_properties) else { return };
    for (property, schema) in properties {
        path.push(property.clone());
        let spec = |extra: Option<&str>| FieldSpec {
            kind: Some(kind.to_owned()),
            path: path.iter().map(String::as_str).chain(extra).collect::<Vec<_>>().join("/"),
            ..FieldSpec::default()
        };
        let extension = |name: &str| schema.get(name).and_then(Value::as_str);
        if extension("x-kubernetes-annotation").is_some() {
            config.common_annotations.push(spec(None));
        }
        if extension("x-kubernetes-label-selector").is_some() {
            config.common_labels.push(spec(None));
        }
        if let (Some(api_version), Some(referent_kind)) = (extension("x-kubernetes-object-ref-api-version"), extension("x-kubernetes-object-ref-kind")) {
            // kustomize keeps the whole apiVersion as the referent's version and no group, so
            // a reference with a group (`apps/v1`) never matches anything: such a spec is dropped.
            if !api_version.contains('/') {
                let name_key = extension("x-kubernetes-object-ref-name-key").unwrap_or("name");
                config.name_references.push(NameReference {
                    referent_group: String::new(),
                    referent_kind: referent_kind.to_owned(),
                    referrer: spec(Some(name_key)),
                });
            }
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            collect(types, reference, kind, path, config, depth + 1);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_references_follow_refs_and_name_keys() {
        let text = json!({
            "x/v1.Bee": {"Schema": {"properties": {"apiVersion": {}, "kind": {}, "metadata": {}, "spec": {"$ref": "x/v1.BeeSpec"}}}},
            "x/v1.BeeSpec": {"Schema": {"properties": {
                "secretRef": {"x-kubernetes-object-ref-api-version": "v1", "x-kubernetes-object-ref-kind": "Secret"},
                "cm": {"x-kubernetes-object-ref-api-version": "v1", "x-kubernetes-object-ref-kind": "ConfigMap", "x-kubernetes-object-ref-name-key": "cmName"},
                "dep": {"x-kubernetes-object-ref-api-version": "apps/v1", "x-kubernetes-object-ref-kind": "Deployment"},
                "sel": {"x-kubernetes-label-selector": ""}}}},
            "x/v1.NotAKind": {"Schema": {"properties": {"spec": {"$ref": "x/v1.BeeSpec"}}}}
        })
        .to_string();
        let config = crd_config(&text, Path::new("crd.json")).expect("parses");
        let mut references: Vec<(String, String)> = config.name_references.iter().map(|r| (r.referent_kind.clone(), r.referrer.path.clone())).collect();
        references.sort();
        assert_eq!(references, vec![("ConfigMap".into(), "spec/cm/cmName".into()), ("Secret".into(), "spec/secretRef/name".into())]);
        assert!(config.name_references.iter().all(|r| r.referrer.kind.as_deref() == Some("Bee")));
        assert_eq!(config.common_labels.len(), 1);
        assert_eq!(config.common_labels[0].path, "spec/sel");
    }

    #[test]
    fn schema_types_are_found_by_group_version_kind() {
        let text = "definitions:\n  b:\n    x-kubernetes-group-version-kind: [{group: example.com, version: v1, kind: Bee}]\n    properties: {spec: {$ref: '#/definitions/s'}}\n  s: {type: object}\n";
        let schema = OpenApi::parse(text, Path::new("s.yaml")).expect("parses");
        let bee = schema.for_object(&json!({"apiVersion": "example.com/v1", "kind": "Bee"})).expect("defined");
        assert_eq!(schema.resolve(&bee["properties"]["spec"]), &json!({"type": "object"}));
        assert!(schema.for_object(&json!({"apiVersion": "example.com/v2", "kind": "Bee"})).is_none());
    }
}
