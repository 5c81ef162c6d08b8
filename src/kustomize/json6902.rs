//! JSON 6902 patches as kustomize v5.5 applies them: RFC 6902 operations run by the `json-patch`
//! crate, with the leniencies of the Go library kustomize uses (evanphx/json-patch v5) put in
//! front, and its error wording:
//!
//! - array indices may be negative (counted from the end) or carry leading zeros;
//! - `replace` of a missing key in an existing mapping adds it;
//! - `copy` from a missing key of an existing mapping copies `null`;
//! - `test` of a missing path against `null` passes.
//!
//! Every value an operation writes is charged to the build's node budget, and the result may
//! not nest deeper than [`limits::MAX_DEPTH`]: a `copy` into its own subtree doubles the object
//! each time, and must stop cleanly rather than exhaust memory.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation, ReplaceOperation, TestOperation};
use serde_json::Value;

use super::limits;

/// The reference tokens of a JSON pointer (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| format!("invalid JSON pointer {pointer:?}: it must start with '/'"))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// Go's `strconv.Atoi` of an array index: an optional sign, decimal digits.
fn go_index(token: &str) -> Option<i64> {
    let digits = token.strip_prefix(['+', '-']).unwrap_or(token);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// `pointer` with its array indices as the crate reads them: a negative index counted from the
/// end (for `add`'s last token, from one past the end), leading zeros dropped. Tokens the Go
/// library would refuse are left for the crate to refuse.
fn normalize(document: &Value, pointer: &str, add: bool) -> Result<String, String> {
    let tokens = tokens(pointer)?;
    let mut current = Some(document);
    let mut normal = Vec::with_capacity(tokens.len());
    for (i, token) in tokens.iter().enumerate() {
        let mut token = token.clone();
        if let Some(Value::Array(items)) = current
            && let Some(index) = go_index(&token)
        {
            let last = i + 1 == tokens.len();
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let index = if index < 0 { index + len + i64::from(add && last) } else { index };
            if index >= 0 {
                token = index.to_string();
            }
        }
        current = current.and_then(|value| match value {
            Value::Object(map) => map.get(&token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        });
        normal.push(token);
    }
    Ok(PointerBuf::from_tokens(normal.iter().map(String::as_str)).to_string())
}

fn pointer(text: &str) -> Result<PointerBuf, String> {
    PointerBuf::parse(text).map_err(|e| format!("invalid JSON pointer {text:?}: {e}"))
}

/// The parent of `pointer` and its last token, when the parent exists.
fn parent<'a>(document: &'a Value, pointer: &str) -> Option<(&'a Value, String)> {
    let mut tokens = tokens(pointer).ok()?;
    let last = tokens.pop()?;
    let parent = PointerBuf::from_tokens(tokens.iter().map(String::as_str));
    document.pointer(parent.as_str()).map(|p| (p, last))
}

/// Whether `pointer` names a missing key of an existing mapping.
fn missing_key_of_mapping(document: &Value, pointer: &str) -> bool {
    parent(document, pointer).is_some_and(|(parent, last)| parent.as_object().is_some_and(|m| !m.contains_key(&last)))
}

/// The Go library's message for a failed operation.
fn wording(document: &Value, op: &str, path: &str, from: &str) -> String {
    let parent_exists = parent(document, path).is_some();
    let index = || tokens(path).ok().and_then(|t| t.last().cloned()).unwrap_or_default();
    match op {
        "add" if parent_exists => format!("error in add for path: '{path}': Unable to access invalid index: {}: invalid index referenced", index()),
        "add" => format!("add operation does not apply: doc is missing path: {path:?}: missing value"),
        "remove" if parent(document, path).is_some_and(|(p, _)| p.is_array()) => {
            format!("error in remove for path: '{path}': Unable to access invalid index: {}: invalid index referenced", index())
        }
        "remove" => format!("error in remove for path: '{path}': Unable to remove nonexistent key: {}: missing value", index()),
        "replace" if parent_exists => format!("replace operation does not apply: doc is missing key: {path}: missing value"),
        "replace" => format!("replace operation does not apply: doc is missing path: {path}: missing value"),
        "move" if document.pointer(from).is_none() => {
            let key = tokens(from).ok().and_then(|t| t.last().cloned()).unwrap_or_default();
            format!("error in move for path: '{key}': Unable to remove nonexistent key: {key}: missing value")
        }
        "move" => format!("move operation does not apply: doc is missing destination path: {path}: missing value"),
        "copy" => format!("copy operation does not apply: doc is missing from path: {from}: missing value"),
        _ => format!("{op} operation does not apply at {path}"),
    }
}

/// Applies the RFC 6902 operations of `operations` (a list) to `object`, as kustomize does.
pub fn apply(object: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations.as_array().ok_or("a JSON 6902 patch must be a list of operations")?;
    for operation in operations {
        let field = |name: &str| operation.get(name).and_then(Value::as_str);
        let op = field("op").ok_or("a JSON 6902 operation needs 'op'")?;
        let path_text = field("path").ok_or_else(|| format!("the {op} operation needs 'path'"))?;
        let value = || operation.get("value").cloned().ok_or_else(|| format!("the {op} operation at {path_text:?} needs 'value'"));
        let from_text = field("from").unwrap_or("");
        let from = || -> Result<PointerBuf, String> {
            let from = field("from").ok_or_else(|| format!("the {op} operation at {path_text:?} needs 'from'"))?;
            pointer(&normalize(object, from, false)?)
        };
        let (operation, written): (PatchOperation, usize) = match op {
            "add" => {
                let value = value()?;
                let nodes = limits::nodes(&value);
                (PatchOperation::Add(AddOperation { path: pointer(&normalize(object, path_text, true)?)?, value }), nodes)
            }
            "remove" => (PatchOperation::Remove(RemoveOperation { path: pointer(&normalize(object, path_text, false)?)? }), 0),
            "replace" => {
                let value = value()?;
                let nodes = limits::nodes(&value);
                let path = normalize(object, path_text, false)?;
                if missing_key_of_mapping(object, &path) {
                    (PatchOperation::Add(AddOperation { path: pointer(&path)?, value }), nodes)
                } else {
                    (PatchOperation::Replace(ReplaceOperation { path: pointer(&path)?, value }), nodes)
                }
            }
            "move" => (PatchOperation::Move(MoveOperation { from: from()?, path: pointer(&normalize(object, path_text, true)?)? }), 0),
            "copy" => {
                let from = from()?;
                let path = pointer(&normalize(object, path_text, true)?)?;
                match object.pointer(from.as_str()) {
                    Some(source) => (PatchOperation::Copy(CopyOperation { from, path }), limits::nodes(source)),
                    None if missing_key_of_mapping(object, from.as_str()) => (PatchOperation::Add(AddOperation { path, value: Value::Null }), 1),
                    None => return Err(wording(object, op, path_text, from_text)),
                }
            }
            "test" => {
                let value = value()?;
                let path = normalize(object, path_text, false)?;
                if object.pointer(&path).is_none() && value.is_null() {
                    continue;
                }
                (PatchOperation::Test(TestOperation { path: pointer(&path)?, value }), 0)
            }
            other => return Err(format!("Unexpected kind: {other}")),
        };
        limits::charge(written)?;
        json_patch::patch(object, std::slice::from_ref(&operation)).map_err(|e| match e.kind {
            json_patch::PatchErrorKind::TestFailed => format!("testing value {path_text} failed: test failed"),
            _ => wording(object, op, path_text, from_text),
        })?;
        if !matches!(op, "remove" | "test") {
            limits::check_depth(object, "the patched object")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(mut document: Value, operations: Value) -> Result<Value, String> {
        apply(&mut document, &operations).map(|()| document)
    }

    #[test]
    fn operations_escapes_moves_copies_and_tests() {
        let o = json!({"metadata": {"annotations": {"a/b": "1"}}, "list": [1, 2]});
        let o = patched(
            o,
            json!([
                {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
                {"op": "copy", "from": "/list/0", "path": "/list/-"},
                {"op": "move", "from": "/list/1", "path": "/moved"},
                {"op": "test", "path": "/moved", "value": 2}
            ]),
        )
        .expect("valid operations");
        assert_eq!(o, json!({"metadata": {"annotations": {"a/b": "2"}}, "list": [1, 1], "moved": 2}));
        assert_eq!(patched(o.clone(), json!([{"op": "test", "path": "/moved", "value": 3}])).unwrap_err(), "testing value /moved failed: test failed");
        assert_eq!(
            patched(o.clone(), json!([{"op": "add", "path": "/no/such", "value": 1}])).unwrap_err(),
            "add operation does not apply: doc is missing path: \"/no/such\": missing value"
        );
        assert_eq!(patched(o, json!([{"op": "frobnicate", "path": "/x"}])).unwrap_err(), "Unexpected kind: frobnicate");
    }

    #[test]
    fn the_go_librarys_leniencies() {
        let o = json!({"data": {"x": "1"}, "list": ["a", "b"]});
        let p = |ops| patched(o.clone(), ops);
        assert_eq!(p(json!([{"op": "replace", "path": "/data/new", "value": 1}])).unwrap()["data"], json!({"x": "1", "new": 1}));
        assert_eq!(p(json!([{"op": "copy", "from": "/data/none", "path": "/data/z"}])).unwrap()["data"], json!({"x": "1", "z": null}));
        assert_eq!(p(json!([{"op": "add", "path": "/list/-1", "value": "z"}])).unwrap()["list"], json!(["a", "b", "z"]));
        assert_eq!(p(json!([{"op": "remove", "path": "/list/-1"}])).unwrap()["list"], json!(["a"]));
        assert_eq!(p(json!([{"op": "add", "path": "/list/01", "value": "z"}])).unwrap()["list"], json!(["a", "z", "b"]));
        assert!(p(json!([{"op": "test", "path": "/data/q", "value": null}])).is_ok());
        assert_eq!(
            p(json!([{"op": "replace", "path": "/list/5", "value": 1}])).unwrap_err(),
            "replace operation does not apply: doc is missing key: /list/5: missing value"
        );
        assert_eq!(
            p(json!([{"op": "remove", "path": "/no"}])).unwrap_err(),
            "error in remove for path: '/no': Unable to remove nonexistent key: no: missing value"
        );
        assert_eq!(
            p(json!([{"op": "add", "path": "/list/3", "value": "z"}])).unwrap_err(),
            "error in add for path: '/list/3': Unable to access invalid index: 3: invalid index referenced"
        );
        assert_eq!(
            p(json!([{"op": "copy", "from": "/no/deeper", "path": "/x"}])).unwrap_err(),
            "copy operation does not apply: doc is missing from path: /no/deeper: missing value"
        );
    }

    #[test]
    fn self_copies_stop_within_the_budget_and_depth() {
        {
            let _budget = limits::Budget::install();
            // Each copy doubles the object: 2^64 nodes after 64 operations, unless stopped.
            let operations: Vec<Value> = (0..64).map(|i| json!({"op": "copy", "from": "/a", "path": format!("/a/k{i}")})).collect();
            let error = patched(json!({"a": {"x": 1}}), Value::Array(operations)).unwrap_err();
            assert!(error.contains("budget"), "{error}");
        }
        // Copied into itself, the object nests a level deeper each time.
        let operations: Vec<Value> = (0..300).map(|_| json!({"op": "copy", "from": "/a", "path": "/a/b"})).collect();
        let error = patched(json!({"a": {"x": 1}}), Value::Array(operations)).unwrap_err();
        assert!(error.contains("levels deep"), "{error}");
    }
}
