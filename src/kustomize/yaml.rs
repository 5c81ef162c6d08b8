//! YAML in and out, read the way kustomize reads it: `yes`/`on` stay strings and `0777` is an
//! octal number, as in YAML 1.1 parsers kustomize builds on.

use std::path::Path;

use serde_json::Value;

use super::Error;

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // The parser's budget guards against hostile input (alias bombs, separator storms); its
    // defaults are sized for config files, so raise the counts to what large manifest files
    // (thousands of objects in one file) need, keeping every limit finite.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 100_000;
    budget.max_nodes = 20_000_000;
    budget.max_events = 50_000_000;
    options.budget = Some(budget);
    options
}

/// The objects of a multi-document manifest file. Empty documents are skipped and `kind: List`
/// documents are expanded into their items, as kustomize does.
pub fn parse_objects(text: &str, file: &Path) -> Result<Vec<Value>, Error> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options())
        .map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })?;
    let mut objects = Vec::new();
    for document in documents {
        match document {
            Value::Null => {}
            Value::Object(ref map) if map.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List") && map.contains_key("items")) => {
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

/// One YAML value (a kustomization file, a patch).
pub fn parse_value(text: &str, file: &Path) -> Result<Value, Error> {
    serde_saphyr::from_str_with_options(text, options()).map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })
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
