//! YAML in and out, read the way kustomize reads it: `yes`/`on` stay strings and `0777` is an
//! octal number, as in YAML 1.1 parsers kustomize builds on.

use std::path::Path;

use serde_json::Value;

use super::Error;
use super::limits;

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // The default budget (1,024 documents, 250,000 nodes) is for configuration files; manifests
    // of thousands of objects (CRD bundles, generated apps) are normal here. A file may use what
    // is left of its build's node budget (`limits`), which bounds the build as a whole. Alias
    // limits, which guard against expansion bombs, stay as they are.
    let nodes = limits::remaining().unwrap_or(limits::MAX_BUILD_NODES).min(limits::MAX_BUILD_NODES);
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = nodes;
    budget.max_events = nodes.saturating_mul(4);
    budget.max_depth = limits::MAX_DEPTH;
    budget.max_total_scalar_bytes = 256 << 20;
    budget.max_reader_input_bytes = Some(256 << 20);
    options.budget = Some(budget);
    options
}

/// Charges what a file parsed into to the build's node budget.
fn charged<T>(parsed: T, nodes: usize, file: &Path) -> Result<T, Error> {
    limits::charge(nodes).map_err(|message| Error::Yaml { file: file.to_owned(), message })?;
    Ok(parsed)
}

/// The objects of a multi-document manifest file. Empty documents are skipped and `kind: List`
/// documents are expanded into their items, as kustomize does.
pub fn parse_objects(text: &str, file: &Path) -> Result<Vec<Value>, Error> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })?;
    let nodes = documents.iter().map(limits::nodes).sum();
    let documents = charged(documents, nodes, file)?;
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List") && map.contains_key("items")) =>
            {
                for item in map.get("items").and_then(Value::as_array).cloned().unwrap_or_default() {
                    objects.push(item);
                }
            }
            Value::Object(_) => objects.push(document),
            other => {
                return Err(Error::Yaml { file: file.to_owned(), message: format!("expected a mapping (a Kubernetes object), found {}", kind_of(&other)) });
            }
        }
    }
    Ok(objects)
}

/// Every document of a YAML text, whatever its shape.
pub fn parse_any(text: &str) -> Result<Vec<Value>, String> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options()).map_err(|e| e.to_string())?;
    limits::charge(documents.iter().map(limits::nodes).sum())?;
    Ok(documents)
}

/// A kustomization file, read straight from YAML so that an error (an unknown field, a wrong
/// type) names its line.
pub fn parse_kustomization(text: &str, file: &Path) -> Result<super::Kustomization, Error> {
    let parsed: Option<super::Kustomization> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| Error::InvalidKustomization { file: file.to_owned(), message: e.to_string() })?;
    Ok(parsed.unwrap_or_default())
}

/// One YAML value (a kustomization file, a patch).
pub fn parse_value(text: &str, file: &Path) -> Result<Value, Error> {
    let value: Value = serde_saphyr::from_str_with_options(text, options()).map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })?;
    let nodes = limits::nodes(&value);
    charged(value, nodes, file)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Multi-document YAML, as `kubectl kustomize` prints it.
pub fn to_yaml(objects: &[Value]) -> String {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        // Serializing a JSON value cannot fail; an empty document is the safe fallback.
        out.push_str(&serde_saphyr::to_string(object).unwrap_or_default());
    }
    out
}
