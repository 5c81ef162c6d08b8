//! Legacy `vars`: `$(NAME)` in some fields of some kinds becomes a field of another object
//! (by default its name), read once the whole build is done.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;
use serde_json::Value;

use super::fieldspec::{self, FieldSpec};
use super::limits;
use super::object::{Resource, group_version};

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Var {
    pub name: String,
    pub objref: ObjectReference,
    pub fieldref: Option<FieldReference>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub api_version: Option<String>,
    /// kustomize's objref embeds a group/version/kind: `group` and `version` may be given apart.
    #[serde(default)]
    pub group: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl ObjectReference {
    /// The group and version a var selects, as kustomize's `Target.GVK()` reads them: an
    /// `apiVersion` of `group/version` sets both, one of a single part sets the version, and
    /// otherwise `group` and `version` stand. They must equal the object's exactly: an objref
    /// without a version matches nothing, as in kustomize.
    fn group_version(&self) -> (String, String) {
        let mut group = self.group.clone().unwrap_or_default();
        let mut version = self.version.clone().unwrap_or_default();
        if let Some(api_version) = self.api_version.as_deref().filter(|a| !a.is_empty()) {
            let parts: Vec<&str> = api_version.split('/').collect();
            match parts.as_slice() {
                [g, v] => {
                    group = (*g).to_owned();
                    version = (*v).to_owned();
                }
                [v] => version = (*v).to_owned(),
                _ => {}
            }
        }
        (group, version)
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldReference {
    /// kustomize reads its files with Go's case-insensitive field matching: `fieldPath` too.
    #[serde(alias = "fieldPath", alias = "FieldPath")]
    pub fieldpath: Option<String>,
}

/// Where kustomize substitutes vars (its builtin `varReference`, as v5.5 applies it).
static VAR_REFERENCES: LazyLock<Vec<FieldSpec>> = LazyLock::new(|| {
    let mut specs = Vec::new();
    let mut add = |path: String, kind: Option<&str>| specs.push(FieldSpec { path, kind: kind.map(str::to_owned), ..FieldSpec::default() });
    add("metadata/labels".into(), None);
    add("metadata/annotations".into(), None);
    add("spec/nfs/server".into(), Some("PersistentVolume"));
    add("spec/ports/port".into(), Some("Service"));
    add("spec/ports/targetPort".into(), Some("Service"));
    add("spec/volumeClaimTemplates/spec/nfs/server".into(), Some("StatefulSet"));
    // kustomize's varReference covers these workload kinds' containers (not PodTemplates' or
    // ReplicationControllers'), the pod template annotations of Deployments only, and NFS
    // servers of pod volumes except in StatefulSets; CronJob's NFS path misses a `spec` (it
    // never matches a real object), kept as kustomize has it.
    for &(kind, spec) in super::fieldspec::POD_SPECS.iter().filter(|(kind, _)| !matches!(*kind, "PodTemplate" | "ReplicationController")) {
        for list in ["containers", "initContainers"] {
            for field in ["args", "command", "env/value", "volumeMounts/mountPath"] {
                add(format!("{spec}/{list}/{field}"), Some(kind));
            }
        }
        match kind {
            "StatefulSet" => {}
            "CronJob" => add("spec/jobTemplate/spec/template/volumes/nfs/server".into(), Some(kind)),
            _ => add(format!("{spec}/volumes/nfs/server"), Some(kind)),
        }
    }
    add("spec/template/metadata/annotations".into(), Some("Deployment"));
    for path in ["spec/rules/host", "spec/tls/hosts", "spec/tls/secretName"] {
        add(path.into(), Some("Ingress"));
    }
    specs
});

/// Parses one kustomization's `vars`.
pub fn parse(entries: &[Value]) -> Result<Vec<Var>, String> {
    entries.iter().map(|v| serde_json::from_value(v.clone()).map_err(|e| format!("invalid var: {e}"))).collect()
}

/// `spec.ports[0].port` into keys and indexes.
fn field_value<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    let mut current = object;
    for segment in path.split('.') {
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        if !key.is_empty() {
            current = current.get(key)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let index: usize = index.trim_end_matches(']').parse().ok()?;
            current = current.get(index)?;
        }
    }
    Some(current)
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown vars stay as written.
/// What a substitution adds is charged to the build's node budget: a var may be used many
/// times, and each use copies its value.
fn expand(text: &str, values: &BTreeMap<String, Value>, used: &mut Vec<String>) -> Result<Value, String> {
    // A field that is exactly one var takes the var's value as it is (a number stays one).
    if let Some(name) = text.strip_prefix("$(").and_then(|t| t.strip_suffix(')'))
        && let Some(value) = values.get(name)
    {
        used.push(name.to_owned());
        limits::charge(limits::nodes(value))?;
        return Ok(value.clone());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some((name, tail)) = after.strip_prefix('(').and_then(|t| t.split_once(')')) {
            match values.get(name) {
                Some(value) => {
                    used.push(name.to_owned());
                    limits::charge(limits::nodes(value))?;
                    match value {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = tail;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

/// Substitutes the vars in every string of `value`; the first error stays in `failed`.
fn substitute(value: &mut Value, values: &BTreeMap<String, Value>, used: &mut Vec<String>, failed: &mut Option<String>) {
    if failed.is_some() {
        return;
    }
    match value {
        Value::String(text) if text.contains('$') => match expand(text, values, used) {
            Ok(expanded) => *value = expanded,
            Err(e) => *failed = Some(e),
        },
        Value::Array(items) => items.iter_mut().for_each(|item| substitute(item, values, used, failed)),
        Value::Object(map) => map.values_mut().for_each(|item| substitute(item, values, used, failed)),
        _ => {}
    }
}

/// Binds `var` to the one object among the declaring kustomization's `resources` it names (by
/// its current or an earlier name), as kustomize does when it reads a kustomization's `vars`:
/// several are an error, none leaves it unbound (an error when it is resolved).
pub fn bind(var: &Var, resources: &mut [Resource]) -> Result<(), String> {
    let (group, version) = var.objref.group_version();
    let matching: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let (resource_group, resource_version) = group_version(&r.object);
            resource_group == group
                && resource_version == version
                && super::object::kind(&r.object) == var.objref.kind
                && r.names().any(|n| n == var.objref.name)
                && var
                    .objref
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| r.previous.iter().map(|(_, n)| n.as_str()).chain([super::object::namespace(&r.object)]).any(|n| n == ns))
        })
        .map(|(i, _)| i)
        .collect();
    match matching.as_slice() {
        [one] => resources[*one].ref_vars.push(var.name.clone()),
        [] => {}
        several => return Err(format!("found {} resId matches for var '{}' (unable to disambiguate)", several.len(), var.name)),
    }
    Ok(())
}

/// Resolves every var against the built objects and substitutes it; returns the vars no field
/// used (kustomize only logs those).
pub fn resolve(vars: &[Var], resources: &mut [Resource], custom: &[FieldSpec]) -> Result<Vec<String>, String> {
    if vars.is_empty() {
        return Ok(Vec::new());
    }
    let mut values = BTreeMap::new();
    for var in vars {
        // kustomize reads a var from the object it was bound to where it was declared.
        let Some(resource) = resources.iter().find(|r| r.ref_vars.contains(&var.name)) else {
            return Err(format!(
                "var '{}' cannot be mapped to a field in the set of known resources: no {} named {}",
                var.name, var.objref.kind, var.objref.name
            ));
        };
        let path = var.fieldref.as_ref().and_then(|f| f.fieldpath.as_deref()).unwrap_or("metadata.name");
        let value = field_value(&resource.object, path).ok_or_else(|| format!("var '{}': field {path} not found in {}", var.name, resource.id()))?;
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(format!("var '{}': field {path} of {} is not a scalar", var.name, resource.id()));
        }
        values.insert(var.name.clone(), value.clone());
    }
    let mut used = Vec::new();
    let mut failed = None;
    for resource in resources.iter_mut() {
        fieldspec::visit_specs(&mut resource.object, &VAR_REFERENCES, &mut |value: &mut Value| substitute(value, &values, &mut used, &mut failed));
        fieldspec::visit_specs(&mut resource.object, custom, &mut |value: &mut Value| substitute(value, &values, &mut used, &mut failed));
    }
    if let Some(error) = failed {
        return Err(error);
    }
    Ok(vars.iter().map(|v| v.name.clone()).filter(|name| !used.contains(name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let values = BTreeMap::from([("A".to_owned(), json!("x")), ("N".to_owned(), json!(80))]);
        let mut used = Vec::new();
        assert_eq!(expand("--a=$(A)", &values, &mut used).unwrap(), json!("--a=x"));
        assert_eq!(expand("$(N)", &values, &mut used).unwrap(), json!(80));
        assert_eq!(expand("$$(A) $(B) $", &values, &mut used).unwrap(), json!("$(A) $(B) $"));
        assert_eq!(expand("$(N):$(A)", &values, &mut used).unwrap(), json!("80:x"));
    }

    #[test]
    fn field_paths_with_indexes() {
        let object = json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}});
        assert_eq!(field_value(&object, "spec.ports[1].port"), Some(&json!(443)));
        assert_eq!(field_value(&object, "spec.ports[2].port"), None);
    }
}
