//! kustomize's target selection: which objects a patch's `target` or a replacement's selector
//! picks, by group, version, kind, name and namespace (patterns or literals) and by label and
//! annotation selectors.

use serde_json::{Map, Value};

use super::file::Selector;
use super::object::{Resource, kind, name, namespace};
use super::regex::InvalidRegex;

/// Splits a label selector into its requirements at the commas outside parentheses.
fn requirements(selector: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in selector.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty()).collect()
}

/// A Kubernetes label selector (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`)
/// against a map of labels or annotations.
pub fn matches_selector(map: Option<&Value>, selector: &str) -> bool {
    let empty = Map::new();
    let map = map.and_then(Value::as_object).unwrap_or(&empty);
    let value_of = |key: &str| map.get(key.trim()).and_then(Value::as_str);
    let set = |inside: &str| -> Vec<String> { inside.trim().trim_start_matches('(').trim_end_matches(')').split(',').map(|v| v.trim().to_owned()).collect() };
    requirements(selector).into_iter().all(|term| {
        if let Some((key, values)) = term.split_once(" notin ") {
            return value_of(key).is_none_or(|v| !set(values).iter().any(|s| s == v));
        }
        if let Some((key, values)) = term.split_once(" in ") {
            return value_of(key).is_some_and(|v| set(values).iter().any(|s| s == v));
        }
        if let Some((key, value)) = term.split_once("!=") {
            return value_of(key) != Some(value.trim());
        }
        if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
            return value_of(key) == Some(value.trim());
        }
        if let Some(key) = term.strip_prefix('!') {
            return !map.contains_key(key.trim());
        }
        map.contains_key(term)
    })
}

/// How a selector's kind, name, namespace, group and version are compared with an object's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// As regular expressions matching the whole value (kustomize's patch targets).
    Pattern,
    /// As plain strings, a missing namespace being `default` (kustomize's `IsSelectedBy`, used by
    /// replacements).
    Literal,
}

thread_local! {
    /// Compiled target patterns: a patch is matched against every object, and the same few
    /// patterns recur. Bounded, since patterns come from Git.
    static PATTERNS: std::cell::RefCell<std::collections::HashMap<String, Result<regex::Regex, InvalidRegex>>> = Default::default();
}

/// Whether `value` matches `pattern` as a whole (Go regular expression syntax, anchored as
/// kustomize's `anchorRegex`).
fn matches_pattern(pattern: &str, value: &str) -> Result<bool, InvalidRegex> {
    // Most targets are plain names: no need to compile them.
    if !pattern.contains(|c: char| "\\.+*?()|[]{}^$".contains(c)) {
        return Ok(pattern == value);
    }
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= 1024 {
            cache.clear();
        }
        let compiled = cache.entry(pattern.to_owned()).or_insert_with(|| super::regex::whole(pattern));
        compiled.as_ref().map(|regex| regex.is_match(value)).map_err(Clone::clone)
    })
}

/// A target's patterns, checked before any object is matched: kustomize fails on an invalid one
/// even when nothing would be selected.
pub fn check_patterns(selector: &Selector) -> Result<(), InvalidRegex> {
    for pattern in [&selector.group, &selector.version, &selector.kind, &selector.name, &selector.namespace].into_iter().flatten() {
        if !pattern.is_empty() {
            matches_pattern(pattern, "")?;
        }
    }
    Ok(())
}

/// Whether an object, were it named `name` in `namespace`, is selected by a target.
fn selects_as(selector: &Selector, object: &Value, name: &str, namespace: &str, compare: Compare) -> Result<bool, InvalidRegex> {
    let (group, version) = super::object::group_version(object);
    fn given(field: &Option<String>) -> Option<&str> {
        field.as_deref().filter(|f| !f.is_empty())
    }
    let matches = |wanted: &Option<String>, value: &str, is_namespace: bool| -> Result<bool, InvalidRegex> {
        let Some(wanted) = given(wanted) else { return Ok(true) };
        match compare {
            Compare::Pattern => matches_pattern(wanted, value),
            Compare::Literal if is_namespace => {
                let effective = |ns: &str| if ns.is_empty() { "default".to_owned() } else { ns.to_owned() };
                Ok(effective(wanted) == effective(value))
            }
            Compare::Literal => Ok(wanted == value),
        }
    };
    Ok(matches(&selector.kind, kind(object), false)?
        && matches(&selector.name, name, false)?
        && matches(&selector.group, group, false)?
        && matches(&selector.version, version, false)?
        && matches(&selector.namespace, namespace, true)?
        && given(&selector.label_selector).is_none_or(|s| matches_selector(object.pointer("/metadata/labels"), s))
        && given(&selector.annotation_selector).is_none_or(|s| matches_selector(object.pointer("/metadata/annotations"), s)))
}

/// Whether a patch's target selects a resource: by its original or its current name and
/// namespace, not the names it had in between (kustomize's `ResMap.Select`; replacements, which
/// match every earlier name, use [`selects_resource`]).
pub fn selects_patch_target(selector: &Selector, resource: &Resource) -> Result<bool, InvalidRegex> {
    let object = &resource.object;
    let current = (name(object), namespace(object));
    let original = resource.previous.first().map_or(current, |(n, ns)| (n.as_str(), ns.as_str()));
    for n in [current.0, original.0] {
        for ns in [current.1, original.1] {
            if selects_as(selector, object, n, ns, Compare::Pattern)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Whether a replacement's selector matches a resource, literally, under its current name or any
/// name it had before.
pub fn selects_resource(selector: &Selector, resource: &Resource) -> bool {
    let object = &resource.object;
    let literally = |name: &str, namespace: &str| selects_as(selector, object, name, namespace, Compare::Literal).unwrap_or(false);
    literally(name(object), namespace(object))
        || (selector.name.is_some()
            && resource.previous.iter().any(|(old_name, old_namespace)| {
                let namespace = if selector.namespace.is_some() { old_namespace.as_str() } else { namespace(object) };
                literally(old_name, namespace)
            }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based_label_selectors() {
        let labels = json!({"tier": "back", "env": "prod"});
        assert!(matches_selector(Some(&labels), "tier in (back, front),env"));
        assert!(!matches_selector(Some(&labels), "tier notin (back)"));
        assert!(matches_selector(Some(&labels), "!missing,env==prod"));
        assert!(!matches_selector(Some(&labels), "env!=prod"));
    }

    #[test]
    fn selectors_and_name_patterns() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web-1", "labels": {"tier": "front"}}});
        let selects = |selector: &Selector, compare| selects_as(selector, &d, "web-1", "", compare).expect("valid patterns");
        let by_pattern = Selector { kind: Some("Deployment".into()), name: Some("web-.*".into()), ..Selector::default() };
        assert!(selects(&by_pattern, Compare::Pattern));
        assert!(!selects(&by_pattern, Compare::Literal), "replacements compare names literally");
        assert!(selects(&Selector { group: Some("apps".into()), label_selector: Some("tier=front".into()), ..Selector::default() }, Compare::Pattern));
        assert!(!selects(&Selector { label_selector: Some("tier!=front".into()), ..Selector::default() }, Compare::Pattern));
        assert!(!selects(&Selector { kind: Some("Service".into()), ..Selector::default() }, Compare::Pattern));
        assert!(selects(&Selector { namespace: Some("default".into()), ..Selector::default() }, Compare::Literal));
        assert!(check_patterns(&Selector { name: Some("(web".into()), ..Selector::default() }).is_err());
    }

    #[test]
    fn exponential_target_patterns_finish_at_once() {
        let name = "a".repeat(40);
        let d = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        let selector = Selector { name: Some("(a|a)*b".into()), ..Selector::default() };
        assert!(!selects_as(&selector, &d, &name, "", Compare::Pattern).expect("a valid pattern"));
    }
}
