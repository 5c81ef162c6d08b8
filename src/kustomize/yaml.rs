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
    let mut documents = charged(documents, nodes, file)?;
    if documents.iter().any(has_non_string_annotation) {
        annotations_as_written(text, &mut documents, file)?;
    }
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

fn non_string_annotations(object: &Value) -> bool {
    object.get("metadata").and_then(|m| m.get("annotations")).and_then(Value::as_object).is_some_and(|a| a.values().any(|v| !v.is_string()))
}

fn has_non_string_annotation(document: &Value) -> bool {
    non_string_annotations(document) || document.get("items").and_then(Value::as_array).is_some_and(|items| items.iter().any(non_string_annotations))
}

/// What of a document [`annotations_as_written`] reads: annotation values as their text.
#[derive(serde::Deserialize, Default)]
struct AnnotationsOnly {
    #[serde(default)]
    metadata: Option<MetadataAnnotations>,
    #[serde(default)]
    items: Option<Vec<AnnotationsOnly>>,
}

#[derive(serde::Deserialize, Default)]
struct MetadataAnnotations {
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, Option<String>>>,
}

/// kustomize reads annotation values as the text they are written with (`1.50`, `0777`, `~`,
/// `true` stay strings, as written); a value parsed as a number, boolean or null is replaced by
/// its text, read a second time as strings.
fn annotations_as_written(text: &str, documents: &mut [Value], file: &Path) -> Result<(), Error> {
    let options = options();
    let skeletons: Vec<AnnotationsOnly> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| Error::Yaml { file: file.to_owned(), message: format!("annotation values must be strings: {e}") })?;
    let documents: Vec<&mut Value> = documents.iter_mut().filter(|d| !d.is_null()).collect();
    if skeletons.len() != documents.len() {
        return Err(Error::Yaml { file: file.to_owned(), message: "annotation values must be strings (quote them)".into() });
    }
    fn apply(document: &mut Value, skeleton: &AnnotationsOnly, text: &str) {
        if let Some(annotations) = document.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut)
            && let Some(written) = skeleton.metadata.as_ref().and_then(|m| m.annotations.as_ref())
        {
            for (key, value) in annotations.iter_mut() {
                if !value.is_string() {
                    *value = Value::String(written.get(key).cloned().flatten().unwrap_or_else(|| null_as_written(text, key)));
                }
            }
        }
        if let (Some(items), Some(skeletons)) = (document.get_mut("items").and_then(Value::as_array_mut), skeleton.items.as_ref()) {
            for (item, skeleton) in items.iter_mut().zip(skeletons) {
                apply(item, skeleton, text);
            }
        }
    }
    for (document, skeleton) in documents.into_iter().zip(&skeletons) {
        apply(document, skeleton, text);
    }
    Ok(())
}

/// The text of a null annotation value (`key: null`, `key: ~`, or nothing, which kustomize
/// reads as ""), found after the key in the file.
fn null_as_written(text: &str, key: &str) -> String {
    let pattern = format!("{key}:");
    for (at, _) in text.match_indices(&pattern) {
        let rest = text[at + pattern.len()..].trim_start_matches([' ', '\t']);
        for written in ["null", "Null", "NULL", "~"] {
            if let Some(after) = rest.strip_prefix(written)
                && after.chars().next().is_none_or(|c| matches!(c, ',' | '}' | '\n' | '\r' | ' ' | '\t' | '#'))
            {
                return written.to_owned();
            }
        }
    }
    String::new()
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
    // kustomize reads kustomization files with a YAML library where a repeated key's last value
    // wins (resources, read with another, refuse repeated keys).
    let mut options = options();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    let parsed: Option<super::Kustomization> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| Error::InvalidKustomization { file: file.to_owned(), message: e.to_string() })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_values_keep_the_text_they_are_written_with() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  annotations: {a: 1.50, b: null, c: 1e3, d: 0777, f: false, h: 12, t: ~}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\n  annotations:\n    e:\n";
        let objects = parse_objects(text, Path::new("a.yaml")).expect("parses");
        let annotations = &objects[0]["metadata"]["annotations"];
        for (key, written) in [("a", "1.50"), ("b", "null"), ("c", "1e3"), ("d", "0777"), ("f", "false"), ("h", "12"), ("t", "~")] {
            assert_eq!(annotations[key], written, "{key}");
        }
        assert_eq!(objects[1]["metadata"]["annotations"]["e"], "");
    }
}
