//! `ferroflux diff ks NAME --path DIR`: build DIR as the Kustomization would, server-side dry-run
//! each object as the controller applies it, and print what would change, as `flux diff
//! kustomization` does: `► Deployment/default/app created`, `► ... drifted` with the changed
//! fields, and (with `prune: true`) `► ... deleted` for inventory objects the build no longer has.
//! Exit code 0: no differences; 1: differences; 2: error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::build::LocalBuild;
use super::{CliError, ClusterArgs};
use crate::apply::{Applier, DryRun, ObjectId, comparable};
use crate::controller::variables::MASK;

#[derive(Subcommand, Debug)]
pub enum DiffTarget {
    /// Compare DIR, built as the Kustomization NAME, with the cluster.
    #[command(alias = "ks", alias = "kustomizations")]
    Kustomization(LocalBuild),
}

/// One changed field: where, and its value before (live) and after (applied); `None` where it
/// does not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    pub path: String,
    pub live: Option<Value>,
    pub applied: Option<Value>,
}

/// What applying would do to one object.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectDiff {
    Created,
    Drifted(Vec<FieldChange>),
    Unchanged,
    Deleted,
    Failed(String),
}

pub async fn run(cluster: &ClusterArgs, target: DiffTarget) -> anyhow::Result<ExitCode> {
    let DiffTarget::Kustomization(local) = target;
    let client = super::client(cluster).await?;
    let (ks, objects, vars) = super::build::build(&client, &cluster.namespace, &local).await?;
    let built: BTreeSet<ObjectId> = objects.iter().enumerate().filter_map(|(i, o)| ObjectId::of(o, i).ok().map(|(id, _)| id)).collect();
    let new_namespaces: Vec<String> = objects
        .iter()
        .filter(|o| o["kind"] == "Namespace" && o["apiVersion"] == "v1")
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str).map(str::to_owned))
        .collect();

    let applier = Applier::new(client.clone());
    let dry_runs = applier.dry_run_all(objects).await?;
    let mut diffs: Vec<(ObjectId, ObjectDiff)> = Vec::new();
    let mut created_namespaces = BTreeSet::new();
    for dry_run in &dry_runs {
        let diff = classify(dry_run);
        if dry_run.id.kind == "Namespace" && diff == ObjectDiff::Created {
            created_namespaces.insert(dry_run.id.name.clone());
        }
        diffs.push((dry_run.id.clone(), diff));
    }
    // An object in a Namespace the same build creates cannot be dry-run yet; it will be created.
    for (_, diff) in &mut diffs {
        if let ObjectDiff::Failed(message) = diff {
            if missing_namespace(message).is_some_and(|ns| created_namespaces.contains(ns) && new_namespaces.iter().any(|n| n == ns)) {
                *diff = ObjectDiff::Created;
            }
        }
    }
    if ks.spec.prune {
        let inventory = crate::controller::kustomization::inventory_entries(ks.status.as_ref().and_then(|s| s.inventory.as_ref()));
        for (id, version) in inventory.into_iter().filter(|(id, _)| !built.contains(id)) {
            // Only what still exists would be deleted; a kind that is gone took its objects along.
            if let Ok(Some(_)) = applier.get(&id, &version).await {
                diffs.push((id, ObjectDiff::Deleted));
            }
        }
    }
    let (text, changed, failures) = report(&diffs);
    print!("{text}");
    if !failures.is_empty() {
        // The API server's messages may quote substituted values: those from Secrets are masked.
        return Err(CliError::Usage(vars.mask(&format!("the dry-run failed for {} object(s):\n{}", failures.len(), failures.join("\n")))).into());
    }
    Ok(if changed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The namespace a dry-run could not find, from the API server's message
/// (`namespaces "apps" not found`).
fn missing_namespace(message: &str) -> Option<&str> {
    let rest = message.split("namespaces \"").nth(1)?;
    let (name, after) = rest.split_once('"')?;
    after.trim_start().starts_with("not found").then_some(name)
}

/// Compares one dry-run with the live object.
pub fn classify(dry_run: &DryRun) -> ObjectDiff {
    match (&dry_run.live, &dry_run.result) {
        (_, Err(message)) => ObjectDiff::Failed(message.clone()),
        (None, Ok(_)) => ObjectDiff::Created,
        (Some(live), Ok(applied)) => {
            let (mut live, mut applied) = (comparable(live.clone()), comparable(applied.clone()));
            if dry_run.id.kind == "Secret" && dry_run.id.group.is_empty() {
                mask_secret_data(&mut live, &mut applied);
            }
            let changes = field_diff(&live, &applied);
            if changes.is_empty() { ObjectDiff::Unchanged } else { ObjectDiff::Drifted(changes) }
        }
    }
}

/// A Secret's values replaced as Flux's diff does: `***` where both sides agree or only one has
/// the key, `*** (before)` / `*** (after)` where they differ, so a change shows without its
/// content.
pub fn mask_secret_data(live: &mut Value, applied: &mut Value) {
    for field in ["data", "stringData"] {
        let before = live.get(field).and_then(Value::as_object).cloned().unwrap_or_default();
        let after = applied.get(field).and_then(Value::as_object).cloned().unwrap_or_default();
        for (side, own, other, changed) in [(&mut *live, &before, &after, "*** (before)"), (&mut *applied, &after, &before, "*** (after)")] {
            let Some(map) = side.get_mut(field).and_then(Value::as_object_mut) else { continue };
            for (key, value) in map.iter_mut() {
                let differs = other.get(key).is_some_and(|o| Some(o) != own.get(key));
                *value = Value::String(if differs { changed } else { MASK }.to_owned());
            }
        }
    }
}

/// The leaf fields that differ between two objects, in document order. Lists of objects with
/// unique `name`s (containers, ports, env) are matched by name, other lists by position when
/// their lengths agree, else compared whole.
pub fn field_diff(live: &Value, applied: &Value) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    walk("", Some(live), Some(applied), &mut changes);
    changes
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn named(items: &[Value]) -> Option<BTreeMap<&str, &Value>> {
    let mut by_name = BTreeMap::new();
    for item in items {
        let name = item.get("name")?.as_str()?;
        if by_name.insert(name, item).is_some() {
            return None;
        }
    }
    Some(by_name)
}

fn walk(path: &str, live: Option<&Value>, applied: Option<&Value>, out: &mut Vec<FieldChange>) {
    if live == applied {
        return;
    }
    match (live, applied) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let keys: Vec<&String> = a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))).collect();
            for key in keys {
                walk(&join(path, key), a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            if let (Some(by_name_a), Some(by_name_b)) = (named(a), named(b)) {
                let mut names: Vec<&str> = a.iter().filter_map(|i| i["name"].as_str()).collect();
                names.extend(b.iter().filter_map(|i| i["name"].as_str()).filter(|n| !by_name_a.contains_key(n)));
                for name in names {
                    walk(&format!("{path}[name={name}]"), by_name_a.get(name).copied(), by_name_b.get(name).copied(), out);
                }
            } else if a.len() == b.len() {
                for (i, (x, y)) in a.iter().zip(b).enumerate() {
                    walk(&format!("{path}[{i}]"), Some(x), Some(y), out);
                }
            } else {
                out.push(FieldChange { path: path.to_owned(), live: live.cloned(), applied: applied.cloned() });
            }
        }
        _ => out.push(FieldChange { path: path.to_owned(), live: live.cloned(), applied: applied.cloned() }),
    }
}

/// A value on diff lines: scalars inline, structures as indented YAML.
fn render_value(value: &Value, sign: char, indent: &str) -> String {
    let text = match value {
        Value::String(s) if !s.contains('\n') => s.clone(),
        Value::Null | Value::Bool(_) | Value::Number(_) => value.to_string(),
        Value::String(s) => s.trim_end().to_owned(),
        other => serde_saphyr::to_string(other).unwrap_or_else(|_| other.to_string()).trim_end().to_owned(),
    };
    text.lines().map(|line| format!("{indent}{sign} {line}\n")).collect()
}

/// The text Flux prints, whether anything differs, and the failures.
pub fn report(diffs: &[(ObjectId, ObjectDiff)]) -> (String, bool, Vec<String>) {
    let mut out = String::new();
    let mut changed = false;
    let mut failures = Vec::new();
    for (id, diff) in diffs {
        match diff {
            ObjectDiff::Unchanged => {}
            ObjectDiff::Created => {
                let _ = writeln!(out, "► {id} created");
                changed = true;
            }
            ObjectDiff::Deleted => {
                let _ = writeln!(out, "► {id} deleted");
                changed = true;
            }
            ObjectDiff::Drifted(fields) => {
                let _ = writeln!(out, "► {id} drifted");
                for field in fields {
                    let _ = writeln!(out, "  {}", field.path);
                    if let Some(v) = &field.live {
                        out.push_str(&render_value(v, '-', "    "));
                    }
                    if let Some(v) = &field.applied {
                        out.push_str(&render_value(v, '+', "    "));
                    }
                }
                changed = true;
            }
            ObjectDiff::Failed(message) => failures.push(format!("{id}: {message}")),
        }
    }
    (out, changed, failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(kind: &str, name: &str) -> ObjectId {
        ObjectId { namespace: "default".into(), name: name.into(), group: "apps".into(), kind: kind.into() }
    }

    #[test]
    fn changed_fields_are_found_by_path_and_containers_by_name() {
        let live = json!({"metadata": {"name": "app", "labels": {"a": "1"}, "resourceVersion": "7"},
                          "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app", "image": "app:v1"}, {"name": "sidecar", "image": "s:1"}]}}},
                          "status": {"replicas": 1}});
        let applied = json!({"metadata": {"name": "app", "labels": {"a": "1", "b": "2"}, "resourceVersion": "8"},
                             "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}, {"name": "sidecar", "image": "s:1"}]}}},
                             "status": {"replicas": 2}});
        let changes = field_diff(&comparable(live), &comparable(applied));
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["metadata.labels.b", "spec.replicas", "spec.template.spec.containers[name=app].image"]);
        assert_eq!(changes[0], FieldChange { path: "metadata.labels.b".into(), live: None, applied: Some(json!("2")) });
    }

    #[test]
    fn lists_of_other_lengths_are_compared_whole() {
        let changes = field_diff(&json!({"args": ["a"]}), &json!({"args": ["a", "b"]}));
        assert_eq!(changes, [FieldChange { path: "args".into(), live: Some(json!(["a"])), applied: Some(json!(["a", "b"])) }]);
        assert!(field_diff(&json!({"x": [1, 2]}), &json!({"x": [1, 2]})).is_empty());
    }

    #[test]
    fn dry_runs_classify_as_created_drifted_unchanged_or_failed() {
        let object = json!({"metadata": {"name": "app", "uid": "1", "managedFields": []}, "data": {"a": "1"}});
        let dry_run = |live: Option<Value>, result: Result<Value, String>| DryRun { id: id("ConfigMap", "app"), live, result };
        assert_eq!(classify(&dry_run(None, Ok(object.clone()))), ObjectDiff::Created);
        let mut same = object.clone();
        same["metadata"]["uid"] = json!("2");
        assert_eq!(classify(&dry_run(Some(object.clone()), Ok(same))), ObjectDiff::Unchanged);
        let mut drifted = object.clone();
        drifted["data"]["a"] = json!("2");
        assert!(matches!(classify(&dry_run(Some(object.clone()), Ok(drifted))), ObjectDiff::Drifted(f) if f.len() == 1));
        assert_eq!(classify(&dry_run(None, Err("denied".into()))), ObjectDiff::Failed("denied".into()));
    }

    #[test]
    fn the_report_reads_like_flux_diff() {
        let diffs = vec![
            (id("Deployment", "app"), ObjectDiff::Drifted(vec![FieldChange { path: "spec.replicas".into(), live: Some(json!(1)), applied: Some(json!(2)) }])),
            (id("Deployment", "same"), ObjectDiff::Unchanged),
            (id("Deployment", "new"), ObjectDiff::Created),
            (ObjectId { namespace: "default".into(), name: "x".into(), group: "".into(), kind: "Service".into() }, ObjectDiff::Deleted),
        ];
        let (text, changed, failures) = report(&diffs);
        assert_eq!(
            text,
            "► Deployment/default/app drifted\n  spec.replicas\n    - 1\n    + 2\n► Deployment/default/new created\n► Service/default/x deleted\n"
        );
        assert!(changed);
        assert!(failures.is_empty());
        let (text, changed, _) = report(&[(id("Deployment", "same"), ObjectDiff::Unchanged)]);
        assert!(text.is_empty() && !changed);
    }

    #[test]
    fn secret_values_are_masked_and_changes_still_shown() {
        let live = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"same": "c2FtZQ==", "old": "b2xk", "gone": "eA=="}});
        let applied = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"same": "c2FtZQ==", "old": "bmV3", "added": "eQ=="}});
        let secret = ObjectId { namespace: "default".into(), name: "s".into(), group: "".into(), kind: "Secret".into() };
        let ObjectDiff::Drifted(changes) = classify(&DryRun { id: secret.clone(), live: Some(live), result: Ok(applied) }) else { panic!("drifted") };
        let (text, _, _) = report(&[(secret, ObjectDiff::Drifted(changes))]);
        assert_eq!(text, "► Secret/default/s drifted\n  data.gone\n    - ***\n  data.old\n    - *** (before)\n    + *** (after)\n  data.added\n    + ***\n");
        for content in ["c2FtZQ", "b2xk", "bmV3", "eA==", "eQ=="] {
            assert!(!text.contains(content), "{text}");
        }
    }

    #[test]
    fn a_missing_namespace_is_recognised() {
        assert_eq!(missing_namespace("namespaces \"apps\" not found"), Some("apps"));
        assert_eq!(missing_namespace("something else"), None);
    }
}
