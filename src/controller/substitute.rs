//! `spec.postBuild` variable substitution, with Flux's rules: `${var}`, `${var:=default}` and
//! `${var:-default}` are replaced; `$var` and `$${var}` (which becomes `${var}`) are left alone so
//! that shell scripts in manifests survive; an undefined variable without a default becomes
//! empty; objects annotated `kustomize.toolkit.fluxcd.io/substitute: disabled` are skipped.
//! The substitution runs on each object's YAML text, as Flux's does, so `replicas: ${n}` becomes
//! a number.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::api::kustomize::SUBSTITUTE_ANNOTATION;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubstituteError {
    #[error("'{0}' var name is invalid, must match '^[_[:alpha:]][_[:alpha:][:digit:]]*$'")]
    InvalidName(String),
    #[error("variable substitution failed in {object}: unclosed '${{' at byte {at}")]
    Unclosed { object: String, at: usize },
    #[error("variable substitution failed in {object}: invalid variable expression '${{{expr}}}'")]
    InvalidExpression { object: String, expr: String },
    #[error("variable substitution failed in {object}: the result is not valid YAML: {message}")]
    InvalidResult { object: String, message: String },
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic()) && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Checks variable names as Flux does before substituting.
pub fn validate_names(vars: &BTreeMap<String, String>) -> Result<(), SubstituteError> {
    match vars.keys().find(|k| !valid_name(k)) {
        Some(bad) => Err(SubstituteError::InvalidName(bad.clone())),
        None => Ok(()),
    }
}

/// Replaces the variables in one text. `object` names it in errors.
pub fn substitute_text(text: &str, vars: &BTreeMap<String, String>, object: &str) -> Result<String, SubstituteError> {
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'$') && bytes.get(i + 2) == Some(&b'{') {
            // `$${var}` escapes the variable: it becomes `${var}`.
            out.push('$');
            i += 2;
            continue;
        }
        if bytes[i] == b'$' && bytes.get(i + 1) == Some(&b'{') {
            let start = i + 2;
            let end = text[start..].find('}').map(|p| start + p).ok_or(SubstituteError::Unclosed { object: object.to_owned(), at: i })?;
            let expr = &text[start..end];
            let (name, default) = match expr.find([':', '=', '-']) {
                None => (expr, None),
                Some(p) => {
                    let (name, op) = expr.split_at(p);
                    let default = op.strip_prefix(":=").or_else(|| op.strip_prefix(":-")).or_else(|| op.strip_prefix('=')).or_else(|| op.strip_prefix('-'));
                    match default {
                        Some(d) => (name, Some(d)),
                        None => return Err(SubstituteError::InvalidExpression { object: object.to_owned(), expr: expr.to_owned() }),
                    }
                }
            };
            if !valid_name(name) {
                return Err(SubstituteError::InvalidExpression { object: object.to_owned(), expr: expr.to_owned() });
            }
            match vars.get(name).filter(|v| !v.is_empty()) {
                Some(value) => out.push_str(value),
                None => out.push_str(default.unwrap_or("")),
            }
            i = end + 1;
            continue;
        }
        // Copy one UTF-8 character.
        let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&text[i..i + ch_len]);
        i += ch_len;
    }
    Ok(out)
}

/// Substitutes variables in every object not opted out.
pub fn substitute_objects(objects: Vec<Value>, vars: &BTreeMap<String, String>) -> Result<Vec<Value>, SubstituteError> {
    validate_names(vars)?;
    objects
        .into_iter()
        .map(|object| {
            let disabled =
                object.pointer("/metadata/annotations").and_then(|a| a.get(SUBSTITUTE_ANNOTATION)).and_then(Value::as_str).is_some_and(|v| v == "disabled");
            if disabled {
                return Ok(object);
            }
            let name = describe(&object);
            let yaml = serde_saphyr::to_string(&object).map_err(|e| SubstituteError::InvalidResult { object: name.clone(), message: e.to_string() })?;
            if !yaml.contains("${") {
                return Ok(object);
            }
            let replaced = substitute_text(&yaml, vars, &name)?;
            serde_saphyr::from_str(&replaced).map_err(|e| SubstituteError::InvalidResult { object: name, message: e.to_string() })
        })
        .collect()
}

fn describe(object: &Value) -> String {
    let field = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
    let ns = field("/metadata/namespace");
    if ns.is_empty() { format!("{}/{}", field("/kind"), field("/metadata/name")) } else { format!("{}/{}/{}", field("/kind"), ns, field("/metadata/name")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn replaces_braced_variables_with_defaults_and_escapes() {
        let v = vars(&[("cluster", "prod"), ("empty", "")]);
        assert_eq!(substitute_text("a-${cluster}-b", &v, "x").as_deref(), Ok("a-prod-b"));
        assert_eq!(substitute_text("${region:=eu-1}", &v, "x").as_deref(), Ok("eu-1"));
        assert_eq!(substitute_text("${region:-eu-2}", &v, "x").as_deref(), Ok("eu-2"));
        assert_eq!(substitute_text("${empty:=fallback}", &v, "x").as_deref(), Ok("fallback"));
        assert_eq!(substitute_text("${missing}", &v, "x").as_deref(), Ok(""));
        assert_eq!(substitute_text("echo $HOME $${cluster} ü", &v, "x").as_deref(), Ok("echo $HOME ${cluster} ü"));
    }

    #[test]
    fn bad_expressions_and_names_are_errors() {
        let v = vars(&[]);
        assert!(matches!(substitute_text("${open", &v, "x"), Err(SubstituteError::Unclosed { .. })));
        assert!(matches!(substitute_text("${a b}", &v, "x"), Err(SubstituteError::InvalidExpression { .. })));
        assert_eq!(validate_names(&vars(&[("1abc", "x")])), Err(SubstituteError::InvalidName("1abc".into())));
    }

    #[test]
    fn numbers_become_numbers_and_opted_out_objects_are_kept() {
        let objects = vec![
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"}, "spec": {"replicas": "${replicas:=1}"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "script", "annotations": {SUBSTITUTE_ANNOTATION: "disabled"}}, "data": {"run": "${replicas}"}}),
        ];
        let result = substitute_objects(objects, &vars(&[("replicas", "3")])).expect("substituted");
        assert_eq!(result[0]["spec"]["replicas"], json!(3));
        assert_eq!(result[1]["data"]["run"], json!("${replicas}"));
    }
}
