//! `replacements`: copy a value from one object's field into fields of others.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::file::Selector;
use super::limits;
use super::object::Resource;
use super::select::selects_resource;

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Replacement {
    source: Option<Source>,
    #[serde(default)]
    targets: Vec<Target>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Source {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    field_path: Option<String>,
    options: Option<FieldOptions>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Target {
    select: Option<Selector>,
    #[serde(default)]
    reject: Vec<Selector>,
    #[serde(default)]
    field_paths: Vec<String>,
    options: Option<FieldOptions>,
}

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldOptions {
    delimiter: Option<String>,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    create: bool,
}

/// One step of a field path: a map key, a list element chosen by a field's value, a list
/// index, or every element (`*`).
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Matching(String, String),
    Index(usize),
    All,
}

/// `spec.template.spec.containers.[name=app].image`, split as kustomize's
/// `SmarterPathSplitter` does: at dots not escaped (`\.`); a bracketed part holding dots stays
/// one part, a list matcher (`[name=app]`) when it has a `=`, else a key with the brackets
/// removed (`metadata.annotations.[cert-manager.io/inject-ca-from]`). A bracketed part without
/// dots or `=` (`[x]`) is refused, as kustomize refuses it.
fn parse_field_path(path: &str) -> Result<Vec<Step>, String> {
    let mut split = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                current.push('.');
                chars.next();
            }
            '.' => split.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    split.push(current);
    let mut parts = Vec::new();
    let mut pieces = split.into_iter();
    while let Some(piece) = pieces.next() {
        if piece.starts_with('[') && !piece.ends_with(']') {
            let mut bracketed = vec![piece];
            for next in pieces.by_ref() {
                let closes = next.ends_with(']');
                bracketed.push(next);
                if closes {
                    break;
                }
            }
            let joined = bracketed.join(".");
            if joined.contains('=') {
                parts.push((joined, true));
            } else {
                parts.push((joined.trim_matches(|c| c == '[' || c == ']').to_owned(), false));
            }
        } else {
            parts.push((piece, true));
        }
    }
    let mut steps = Vec::new();
    for (part, as_written) in parts {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        if !as_written {
            steps.push(Step::Key(part.to_owned()));
            continue;
        }
        if part == "*" || part == "[*]" {
            steps.push(Step::All);
            continue;
        }
        if let Some(inner) = part.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            let (k, v) = inner.split_once('=').ok_or("list path element must contain fieldName=fieldValue for element to match")?;
            steps.push(Step::Matching(k.to_owned(), v.to_owned()));
            continue;
        }
        steps.push(match part.parse::<usize>() {
            Ok(i) => Step::Index(i),
            Err(_) => Step::Key(part.to_owned()),
        });
    }
    Ok(steps)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn get<'a>(value: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let Some((step, rest)) = steps.split_first() else { return Some(value) };
    let next = match (step, value) {
        (Step::Key(k), Value::Object(map)) => map.get(k)?,
        (Step::Index(i), Value::Array(items)) => items.get(*i)?,
        (Step::Matching(k, v), Value::Array(items)) => items.iter().find(|item| item.get(k).and_then(scalar_text).as_deref() == Some(v))?,
        (Step::All, Value::Array(items)) => items.first()?,
        _ => return None,
    };
    get(next, rest)
}

/// Calls `apply` on every value at `steps` (creating maps on the way with `create`).
fn visit(value: &mut Value, steps: &[Step], create: bool, apply: &mut dyn FnMut(&mut Value) -> Result<(), String>) -> Result<(), String> {
    let Some((step, rest)) = steps.split_first() else { return apply(value) };
    match (step, value) {
        (Step::Key(k), Value::Object(map)) => {
            if !map.contains_key(k) {
                if !create {
                    return Ok(());
                }
                // kustomize creates lists for some of these and refuses others: not guessed.
                if rest.first().is_some_and(|next| !matches!(next, Step::Key(_))) {
                    return Err(format!("cannot create the list '{k}' (ferroflux's engine creates only mappings)"));
                }
                map.insert(k.clone(), if rest.is_empty() { Value::Null } else { Value::Object(Map::new()) });
            }
            match map.get_mut(k) {
                Some(child) => visit(child, rest, create, apply),
                None => Ok(()),
            }
        }
        (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
            Some(child) => visit(child, rest, create, apply),
            None => Ok(()),
        },
        (Step::Matching(k, v), Value::Array(items)) => {
            for item in items.iter_mut().filter(|item| item.get(k).and_then(scalar_text).as_deref() == Some(v.as_str())) {
                visit(item, rest, create, apply)?;
            }
            Ok(())
        }
        (Step::All, Value::Array(items)) => {
            for item in items {
                visit(item, rest, create, apply)?;
            }
            Ok(())
        }
        (Step::Key(_), value @ Value::Null) if create => {
            *value = Value::Object(Map::new());
            visit(value, steps, create, apply)
        }
        // A path through a value of another kind: kustomize fails to create it.
        (_, other) if create => Err(format!("wrong node kind: the path goes through {}", kind_name(other))),
        _ => Ok(()),
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "a mapping",
        Value::Array(_) => "a list",
        Value::Null => "null",
        _ => "a scalar",
    }
}

fn source_selector(source: &Source) -> Selector {
    Selector {
        group: source.group.clone(),
        version: source.version.clone(),
        kind: source.kind.clone(),
        name: source.name.clone(),
        namespace: source.namespace.clone(),
        label_selector: None,
        annotation_selector: None,
    }
}

/// Applies the kustomization's `replacements` (inline, or `path:` entries read with `read`).
pub fn apply(entries: &[Value], resources: &mut [Resource], read: &mut dyn FnMut(&str) -> Result<String, String>) -> Result<(), String> {
    let mut replacements = Vec::new();
    for entry in entries {
        if let Some(path) = entry.get("path").and_then(Value::as_str) {
            let text = read(path)?;
            let values: Vec<Value> = super::yaml::parse_any(&text).map_err(|e| format!("{path}: {e}"))?;
            for value in values {
                match value {
                    Value::Array(items) => replacements.extend(items),
                    Value::Null => {}
                    other => replacements.push(other),
                }
            }
        } else {
            replacements.push(entry.clone());
        }
    }
    for entry in replacements {
        let replacement: Replacement = serde_json::from_value(entry).map_err(|e| format!("invalid replacement: {e}"))?;
        let source = replacement.source.ok_or("a replacement needs a source")?;
        let selector = source_selector(&source);
        let found: Vec<&Resource> = resources.iter().filter(|r| selects_resource(&selector, r)).collect();
        let source_resource = match found.as_slice() {
            [one] => *one,
            [] => return Err(format!("nothing selected by the replacement source {}", describe(&selector))),
            _ => return Err(format!("multiple matches for the replacement source {}", describe(&selector))),
        };
        let field_path = source.field_path.as_deref().unwrap_or("metadata.name");
        let source_steps = parse_field_path(field_path).map_err(|e| format!("error looking up replacement source: {e}"))?;
        let mut value = get(&source_resource.object, &source_steps)
            .cloned()
            .ok_or_else(|| format!("fieldPath `{field_path}` is missing for the replacement source {}", describe(&selector)))?;
        if let Some(options) = &source.options
            && let Some(delimiter) = options.delimiter.as_deref().filter(|d| !d.is_empty())
        {
            let text = scalar_text(&value).unwrap_or_default();
            let parts: Vec<&str> = text.split(delimiter).collect();
            let index = usize::try_from(options.index)
                .ok()
                .filter(|i| *i < parts.len())
                .ok_or_else(|| format!("options.index {} is out of bounds for value {text}", options.index))?;
            value = Value::String(parts[index].to_owned());
        }
        for target in &replacement.targets {
            let Some(select) = &target.select else { return Err("a replacement target needs 'select'".into()) };
            let rejects: Vec<Selector> = target.reject.to_vec();
            let options = target.options.clone().unwrap_or_default();
            for resource in resources.iter_mut() {
                if !selects_resource(select, resource) || rejects.iter().any(|r| selects_resource(r, resource)) {
                    continue;
                }
                for path in &target.field_paths {
                    let steps = parse_field_path(path).map_err(|e| format!("unable to find or create field \"{path}\" in replacement target: {e}"))?;
                    // The walk recurses per step, and `create` makes as many levels.
                    if steps.len() > limits::MAX_DEPTH {
                        return Err(format!("fieldPath \"{path}\" has more than {} parts", limits::MAX_DEPTH));
                    }
                    let mut found = false;
                    visit(&mut resource.object, &steps, options.create, &mut |field: &mut Value| {
                        found = true;
                        let new = with_delimiter(field, &value, &options)?;
                        // Each target gets its own copy of the value.
                        limits::charge(limits::nodes(&new))?;
                        *field = new;
                        Ok(())
                    })
                    .map_err(|e| format!("unable to find or create field \"{path}\" in replacement target {}: {e}", resource.id()))?;
                    if options.create {
                        limits::check_depth(&resource.object, "the replacement's target")?;
                    }
                    if !found && !options.create {
                        return Err(format!("unable to find field \"{path}\" in replacement target {}", resource.id()));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The target's new value: the whole source value, or one delimited part replaced.
fn with_delimiter(current: &Value, value: &Value, options: &FieldOptions) -> Result<Value, String> {
    let Some(delimiter) = options.delimiter.as_deref().filter(|d| !d.is_empty()) else { return Ok(value.clone()) };
    let text = scalar_text(current).unwrap_or_default();
    let mut parts: Vec<String> = text.split(delimiter).map(str::to_owned).collect();
    let new = scalar_text(value).unwrap_or_default();
    match usize::try_from(options.index) {
        Ok(i) if i < parts.len() => parts[i] = new,
        Ok(_) => parts.push(new),
        Err(_) => parts.insert(0, new),
    }
    Ok(Value::String(parts.join(delimiter)))
}

fn describe(selector: &Selector) -> String {
    format!("{}/{}", selector.kind.as_deref().unwrap_or("*"), selector.name.as_deref().unwrap_or("*"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_with_selectors_and_escapes() {
        assert_eq!(
            parse_field_path("spec.containers.[name=a.b].image"),
            Ok(vec![Step::Key("spec".into()), Step::Key("containers".into()), Step::Matching("name".into(), "a.b".into()), Step::Key("image".into())])
        );
        assert_eq!(
            parse_field_path("metadata.annotations.a\\.io/x"),
            Ok(vec![Step::Key("metadata".into()), Step::Key("annotations".into()), Step::Key("a.io/x".into())])
        );
        // kubebuilder's CA injection: a bracketed key holding dots is the key, brackets removed.
        assert_eq!(
            parse_field_path("metadata.annotations.[cert-manager.io/inject-ca-from]"),
            Ok(vec![Step::Key("metadata".into()), Step::Key("annotations".into()), Step::Key("cert-manager.io/inject-ca-from".into())])
        );
        assert!(parse_field_path("data.[x]").is_err(), "kustomize refuses a bracketed part without '=' or dots");
    }

    #[test]
    fn delimited_parts_are_replaced() {
        let options = FieldOptions { delimiter: Some(":".into()), index: 1, create: false };
        assert_eq!(with_delimiter(&json!("app:v1"), &json!("v2"), &options).ok(), Some(json!("app:v2")));
    }
}
