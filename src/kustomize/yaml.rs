//! YAML in and out, read the way kustomize reads it: `yes`/`on` stay strings and `0777` is an
//! octal number, as in YAML 1.1 parsers kustomize builds on.

use std::borrow::Cow;
use std::path::Path;

use serde_json::Value;

use super::Error;
use super::limits;

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.legacy_octal_numbers = true;
    // Comments are not read (as go-yaml, which drops them from kustomize's output). With them
    // emitted, the parser buffers those it meets while looking ahead and refuses more than a
    // few dozen in a row (`too many buffered comments`), as in a kustomization whose last
    // entries are long commented-out blocks.
    options.emit_comments = false;
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

/// The text as go-yaml (kustomize's parser) reads it. Where the input ends on the last line of a
/// block scalar, without a line break, go-yaml (like libyaml) adds no final line feed to the
/// scalar (`key: |\n  text` is `"text"`), while our parser reads it as if the line ended with one
/// (as the YAML test suite has it). Giving that one scalar strip chomping (`|-`) reads the same
/// as go-yaml, lines and columns of everything else unchanged. Files from Git often lack the
/// final line break (a ConfigMap's embedded config as the last thing in its file).
fn as_go_yaml_reads_it(text: &str) -> Cow<'_, str> {
    use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
    if text.is_empty() || text.ends_with('\n') || text.ends_with('\r') {
        return Cow::Borrowed(text);
    }
    let mut options = serde_saphyr::granit_parser::Options::default();
    options.emit_comments = false;
    let mut last_scalar = None;
    for event in Parser::new_from_str_with_options(text, options) {
        match event {
            Ok((Event::Scalar(_, style, ..), span)) => last_scalar = Some((style, span)),
            Ok(_) => {}
            // The real parse reports it.
            Err(_) => return Cow::Borrowed(text),
        }
    }
    let Some((ScalarStyle::Literal | ScalarStyle::Folded, span)) = last_scalar else { return Cow::Borrowed(text) };
    // The span covers the content; the header (`|`, `>`, with indicators and maybe a comment)
    // ends the last non-blank line before it.
    let (Some(start), Some(end)) = (span.start.byte_offset(), span.end.byte_offset()) else { return Cow::Borrowed(text) };
    if !text.get(end..).is_some_and(|rest| rest.trim().is_empty()) {
        return Cow::Borrowed(text);
    }
    let Some(before) = text.get(..start) else { return Cow::Borrowed(text) };
    let before = before.trim_end();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = &before[line_start..];
    let without_comment = line.find(" #").map_or(line, |i| &line[..i]).trim_end();
    // The indicators after `|`/`>`: an indentation digit and a chomping sign, in either order.
    let indicators_len = without_comment.chars().rev().take_while(|c| c.is_ascii_digit() || *c == '+' || *c == '-').take(2).count();
    let indicator_at = without_comment.len() - indicators_len;
    if indicator_at == 0 || !matches!(without_comment.as_bytes()[indicator_at - 1], b'|' | b'>') {
        return Cow::Borrowed(text);
    }
    let indicators = &without_comment[indicator_at..];
    if indicators.contains('-') {
        return Cow::Borrowed(text);
    }
    let digit: String = indicators.chars().filter(char::is_ascii_digit).collect();
    let at = line_start + indicator_at;
    Cow::Owned(format!("{}-{digit}{}", &text[..at], &text[at + indicators.len()..]))
}

/// Charges what a file parsed into to the build's node budget.
fn charged<T>(parsed: T, nodes: usize, file: &Path) -> Result<T, Error> {
    limits::charge(nodes).map_err(|message| Error::Yaml { file: file.to_owned(), message })?;
    Ok(parsed)
}

/// The objects of a multi-document manifest file. Empty documents are skipped and `kind: List`
/// documents are expanded into their items, as kustomize does.
pub fn parse_objects(text: &str, file: &Path) -> Result<Vec<Value>, Error> {
    Ok(parse_documents(text, file, false)?.into_iter().map(|(object, _)| object).collect())
}

/// [`parse_objects`] for strategic-merge patches: an annotation's null is the patch's "delete
/// this key", not a value whose text is kept.
pub fn parse_patch_objects(text: &str, file: &Path) -> Result<Vec<Value>, Error> {
    Ok(parse_documents(text, file, true)?.into_iter().map(|(object, _)| object).collect())
}

/// A field's path from an object's root: map keys and list indices, as text.
pub type FieldPath = Vec<String>;

/// [`parse_objects`], each object with the paths of its mapping values written as an explicit
/// null (`key: null`, `key: ~`). kustomize's strategic merge drops the fields it walks over
/// whose value is an empty null (`key:`) and keeps explicit ones (go-yaml tells them apart by
/// the text; a parsed value cannot), so the build carries this along ([`Resource`]).
///
/// [`Resource`]: super::object::Resource
pub fn parse_resources(text: &str, file: &Path) -> Result<Vec<(Value, Vec<FieldPath>)>, Error> {
    parse_documents(text, file, false)
}

fn parse_documents(text: &str, file: &Path, patch: bool) -> Result<Vec<(Value, Vec<FieldPath>)>, Error> {
    let text = as_go_yaml_reads_it(text);
    let documents: Vec<Value> =
        serde_saphyr::from_multiple_with_options(&text, options()).map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })?;
    let nodes = documents.iter().map(limits::nodes).sum();
    let mut documents = charged(documents, nodes, file)?;
    if documents.iter().any(has_non_string_annotation) {
        annotations_as_written(&text, &mut documents, file, patch)?;
    }
    let mut nulls = if may_have_explicit_nulls(&text) { explicit_nulls(&text) } else { Vec::new() };
    if nulls.len() != documents.len() {
        // The deserializer skips empty documents; so does this count then.
        nulls.retain(|n| n.first().is_none_or(|p| !p.is_empty()));
    }
    let nulls: Vec<Vec<FieldPath>> = nulls.into_iter().map(|n| n.into_iter().filter(|p| !p.is_empty()).collect()).collect();
    let mut nulls = nulls;
    if nulls.iter().any(|n| !n.is_empty()) && nulls.len() != documents.len() {
        // Never guess which object a null belongs to: merging would then drop the wrong field.
        return Err(Error::Yaml { file: file.to_owned(), message: "cannot tell which documents hold the explicit nulls of this file".into() });
    }
    nulls.resize_with(documents.len(), Vec::new);
    let mut objects = Vec::new();
    for (document, nulls) in documents.into_iter().zip(nulls) {
        match document {
            Value::Null => {}
            Value::Object(ref map)
                if map.get("kind").and_then(Value::as_str).is_some_and(|k| k == "List" || k.ends_with("List") && map.contains_key("items")) =>
            {
                for (i, item) in map.get("items").and_then(Value::as_array).cloned().unwrap_or_default().into_iter().enumerate() {
                    let index = i.to_string();
                    let of_item = nulls.iter().filter(|p| p.len() > 2 && p[0] == "items" && p[1] == index).map(|p| p[2..].to_vec()).collect();
                    objects.push((item, of_item));
                }
            }
            Value::Object(_) => objects.push((document, nulls)),
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
fn annotations_as_written(text: &str, documents: &mut [Value], file: &Path, patch: bool) -> Result<(), Error> {
    let options = options();
    let skeletons: Vec<AnnotationsOnly> = serde_saphyr::from_multiple_with_options(text, options)
        .map_err(|e| Error::Yaml { file: file.to_owned(), message: format!("annotation values must be strings: {e}") })?;
    let documents: Vec<&mut Value> = documents.iter_mut().filter(|d| !d.is_null()).collect();
    if skeletons.len() != documents.len() {
        return Err(Error::Yaml { file: file.to_owned(), message: "annotation values must be strings (quote them)".into() });
    }
    fn apply(document: &mut Value, skeleton: &AnnotationsOnly, text: &str, patch: bool) {
        if let Some(annotations) = document.get_mut("metadata").and_then(|m| m.get_mut("annotations")).and_then(Value::as_object_mut)
            && let Some(written) = skeleton.metadata.as_ref().and_then(|m| m.annotations.as_ref())
        {
            for (key, value) in annotations.iter_mut() {
                let delete_in_patch = patch && value.is_null();
                if !value.is_string() && !delete_in_patch {
                    *value = Value::String(written.get(key).cloned().flatten().unwrap_or_else(|| null_as_written(text, key)));
                }
            }
        }
        if let (Some(items), Some(skeletons)) = (document.get_mut("items").and_then(Value::as_array_mut), skeleton.items.as_ref()) {
            for (item, skeleton) in items.iter_mut().zip(skeletons) {
                apply(item, skeleton, text, patch);
            }
        }
    }
    for (document, skeleton) in documents.into_iter().zip(&skeletons) {
        apply(document, skeleton, text, patch);
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

/// The ways to write a null that go-yaml keeps through a merge (any but the empty one).
const NULLS: [&str; 4] = ["null", "Null", "NULL", "~"];

/// Whether the text could hold an explicit null as a mapping value (a quick look, so that files
/// without any, nearly all of them, are not scanned twice).
fn may_have_explicit_nulls(text: &str) -> bool {
    if text.contains("!!null") {
        return true;
    }
    NULLS.iter().any(|null| {
        text.match_indices(null).any(|(at, _)| {
            let line = text[..at].rsplit('\n').next().unwrap_or_default().trim_end_matches([' ', '\t']);
            let after = text[at + null.len()..].chars().next();
            let separated_after = after.is_none_or(|c| c.is_whitespace() || matches!(c, ',' | '}' | ']' | '#'));
            // After a key, in a flow collection, as a list item, on a line of its own (a value
            // below its key), or after an anchor or tag.
            let separated_before = line.is_empty()
                || line.ends_with([':', ',', '{', '[', '-'])
                || line.rsplit([' ', '\t']).next().is_some_and(|word| word.starts_with(['&', '!']));
            separated_after && separated_before
        })
    })
}

/// Per document of the stream: the paths of mapping values written as explicit nulls (an alias
/// of one counts too). An empty document (a scalar root) holds one empty path.
fn explicit_nulls(text: &str) -> Vec<Vec<FieldPath>> {
    use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};
    enum Frame {
        /// A mapping: the key of the value being read, once read.
        Map(Option<String>),
        Seq(usize),
        /// A collection used as a mapping key: nothing below it is a field.
        Key,
    }
    let mut options = serde_saphyr::granit_parser::Options::default();
    options.emit_comments = false;
    let mut documents: Vec<Vec<FieldPath>> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut path: FieldPath = Vec::new();
    let mut null_anchors = std::collections::HashSet::new();
    for event in Parser::new_from_str_with_options(text, options) {
        // The real parse reports errors.
        let Ok((event, span)) = event else { break };
        let is_null = match &event {
            Event::Scalar(value, style, anchor, tag) => {
                // An empty node comes as `~` with an empty span: only a written one has text.
                let written = span.end.index() > span.start.index() && !value.is_empty();
                let null = written
                    && match tag {
                        Some(tag) => tag.is_yaml_core_schema_tag("null"),
                        None => *style == ScalarStyle::Plain && NULLS.contains(&value.as_ref()),
                    };
                if null && *anchor != 0 {
                    null_anchors.insert(*anchor);
                }
                null
            }
            Event::Alias(anchor) => null_anchors.contains(anchor),
            _ => false,
        };
        match event {
            Event::DocumentStart(..) => {
                documents.push(Vec::new());
                frames.clear();
                path.clear();
            }
            // A scalar or an alias ends a value (or, in a mapping, is its key; an alias key has no
            // usable name).
            Event::Scalar(..) | Event::Alias(_) => match frames.last_mut() {
                None => {
                    if let (Event::Scalar(..), Some(document)) = (&event, documents.last_mut()) {
                        document.push(Vec::new());
                    }
                }
                Some(Frame::Map(key @ None)) => {
                    *key = Some(match &event {
                        Event::Scalar(value, ..) => value.to_string(),
                        _ => String::new(),
                    })
                }
                Some(Frame::Map(key @ Some(_))) => {
                    if is_null && let (Some(document), Some(key)) = (documents.last_mut(), key.as_ref()) {
                        let mut at = path.clone();
                        at.push(key.clone());
                        document.push(at);
                    }
                    *key = None;
                }
                Some(Frame::Seq(index)) => *index += 1,
                _ => {}
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let map = matches!(event, Event::MappingStart(..));
                let segment = match frames.last() {
                    Some(Frame::Map(Some(key))) => Some(key.clone()),
                    Some(Frame::Seq(index)) => Some(index.to_string()),
                    Some(Frame::Map(None) | Frame::Key) => {
                        frames.push(Frame::Key);
                        continue;
                    }
                    None => None,
                };
                if let Some(segment) = segment {
                    path.push(segment);
                }
                frames.push(if map { Frame::Map(None) } else { Frame::Seq(0) });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(Frame::Key) = frames.pop() {
                    if let Some(Frame::Map(key @ None)) = frames.last_mut() {
                        // The complex key is read: its value comes next, under no usable name.
                        *key = Some(String::new());
                    }
                    continue;
                }
                if !frames.is_empty() {
                    path.pop();
                }
                match frames.last_mut() {
                    Some(Frame::Map(key)) => *key = None,
                    Some(Frame::Seq(index)) => *index += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    documents
}

/// Every document of a YAML text, whatever its shape.
pub fn parse_any(text: &str) -> Result<Vec<Value>, String> {
    let documents: Vec<Value> = serde_saphyr::from_multiple_with_options(&as_go_yaml_reads_it(text), options()).map_err(|e| e.to_string())?;
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
    // kustomize reads a kustomization file as YAML 1.1 turned into JSON and then into typed
    // fields: an unquoted number or boolean (`1.5`, `yes`, `on`, `true`) where a string belongs
    // (`namePrefix: 1`, `resources: [y]`, a label value `yes`) fails the build ("cannot unmarshal
    // bool into ... of type string"). Taking it as text would build what kustomize refuses.
    options.no_schema = true;
    options.strict_booleans = false;
    let parsed: Option<super::Kustomization> = serde_saphyr::from_str_with_options(&as_go_yaml_reads_it(text), options)
        .map_err(|e| Error::InvalidKustomization { file: file.to_owned(), message: e.to_string() })?;
    Ok(parsed.unwrap_or_default())
}

/// One YAML value (a kustomization file, a patch).
pub fn parse_value(text: &str, file: &Path) -> Result<Value, Error> {
    let value: Value = serde_saphyr::from_str_with_options(&as_go_yaml_reads_it(text), options())
        .map_err(|e| Error::Yaml { file: file.to_owned(), message: e.to_string() })?;
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

    /// Our output is read by YAML 1.1 readers too (PyYAML, older tools), where more plain scalars
    /// are not strings than in YAML 1.2: `=` (value), `<<` (merge), `yes`/`on`/`y`, base-60
    /// numbers (`1:20`), `0b…`, `1_000`, dates. Each such string must be written quoted.
    #[test]
    fn strings_special_in_yaml_1_1_are_written_quoted() {
        let special = [
            "=",
            "<<",
            "~",
            "y",
            "Y",
            "yes",
            "No",
            "on",
            "OFF",
            "1:20",
            "-1:20:30",
            "190:20:30.15",
            "0b101",
            "0o17",
            "017",
            "1_000",
            "+1",
            ".inf",
            ".NaN",
            "2001-12-14",
            "1e3",
        ];
        for text in special {
            let written = to_yaml(&[serde_json::json!({ "k": text })]);
            let value = written.strip_prefix("k: ").map(str::trim_end).unwrap_or_default();
            assert!(value.starts_with('"') || value.starts_with('\''), "{text:?} is written plain: {written:?}");
            assert_eq!(parse_value(&written, Path::new("t.yaml")).expect("parses"), serde_json::json!({ "k": text }));
        }
    }

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

    #[test]
    fn a_block_scalar_ending_the_input_without_a_line_break_has_no_final_line_feed_as_in_go_yaml() {
        let read = |text: &str| parse_value(text, Path::new("t.yaml")).expect("parses");
        assert_eq!(read("a: |\n  x\n  y"), serde_json::json!({"a": "x\ny"}));
        assert_eq!(read("a: |+\n  x"), serde_json::json!({"a": "x"}));
        assert_eq!(read("a: >2\n   x\n  y"), serde_json::json!({"a": " x\ny"}));
        assert_eq!(read("a: |\n  x\n"), serde_json::json!({"a": "x\n"}));
        assert_eq!(read("a: |\n  x\nb: c"), serde_json::json!({"a": "x\n", "b": "c"}));
        assert_eq!(read("a: |-\n  x"), serde_json::json!({"a": "x"}));
        let objects = parse_objects("kind: A\nd: |\n  x\n---\nkind: B\nd: >\n  y\n  z", Path::new("t.yaml")).expect("parses");
        assert_eq!(objects, vec![serde_json::json!({"kind": "A", "d": "x\n"}), serde_json::json!({"kind": "B", "d": "y z"})]);
    }

    #[test]
    fn explicit_nulls_are_told_from_empty_values_with_their_paths() {
        let text = "kind: A\na:\nb: null\nc: [x, {d: ~, e: }]\nf:\n  g: !!null\n  h: !!null null\n  \"i\": &n Null\n  j: *n\n---\n\n---\nkind: List\nitems:\n- kind: B\n  k: NULL\n- kind: C\n  l: ''\n";
        let parsed = parse_resources(text, Path::new("t.yaml")).expect("parses");
        let paths = |p: &[&str]| p.iter().map(|s| s.split('.').map(str::to_owned).collect::<Vec<_>>()).collect::<Vec<_>>();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].1, paths(&["b", "c.1.d", "f.h", "f.i", "f.j"]));
        assert_eq!(parsed[1].1, paths(&["k"]));
        assert!(parsed[2].1.is_empty());
        assert!(!may_have_explicit_nulls("a:\nnullable: true\nb: nullish\nc: \"null\"x"));
        assert!(may_have_explicit_nulls("a: null\n"));
        assert!(may_have_explicit_nulls("a:\n  ~\n"));
    }
}
