//! Readiness of applied objects, in the spirit of kstatus (what Flux's health checks use): an
//! object is `Current` when its controller has observed its latest generation and reports it
//! ready, `InProgress` while it converges, `Failed` when it reports it never will.

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Current,
    InProgress(String),
    Failed(String),
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_)
}

fn condition_is(object: &Value, type_: &str, status: &str) -> bool {
    condition(object, type_).is_some_and(|c| c["status"] == status)
}

/// `object` without what [`health`] never reads (managedFields, annotations, pod templates).
pub fn relevant(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
        metadata.remove("annotations");
        metadata.remove("labels");
    }
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("template");
    }
    object
}

/// The health of one live object.
pub fn health(object: &Value) -> Health {
    let kind = object["kind"].as_str().unwrap_or("");
    let generation = int(object, "/metadata/generation");
    let observed = int(object, "/status/observedGeneration");
    if let (Some(generation), Some(observed)) = (generation, observed) {
        if observed < generation {
            return Health::InProgress(format!("{kind} generation is {generation}, but latest observed generation is {observed}"));
        }
    }
    match kind {
        "Deployment" => deployment(object),
        "StatefulSet" => statefulset(object),
        "DaemonSet" => daemonset(object),
        "ReplicaSet" => replicas_ready(object, "ReplicaSet"),
        "Job" => job(object),
        "Pod" => pod(object),
        "PersistentVolumeClaim" => phase(object, "Bound"),
        "Namespace" => phase(object, "Active"),
        "CustomResourceDefinition" => {
            if condition_is(object, "Established", "True") {
                Health::Current
            } else {
                Health::InProgress("CRD is not established yet".into())
            }
        }
        _ => generic(object),
    }
}

fn deployment(d: &Value) -> Health {
    let want = int(d, "/spec/replicas").unwrap_or(1);
    if let Some(progressing) = condition(d, "Progressing") {
        if progressing["reason"] == "ProgressDeadlineExceeded" {
            return Health::Failed(format!("Progress deadline exceeded: {}", progressing["message"].as_str().unwrap_or("")));
        }
    }
    let updated = int(d, "/status/updatedReplicas").unwrap_or(0);
    let available = int(d, "/status/availableReplicas").unwrap_or(0);
    let total = int(d, "/status/replicas").unwrap_or(0);
    if updated < want {
        return Health::InProgress(format!("Deployment: {updated} of {want} updated replicas"));
    }
    if total > updated {
        return Health::InProgress(format!("Deployment: {} old replicas are pending termination", total - updated));
    }
    if available < want {
        return Health::InProgress(format!("Deployment: {available} of {want} available replicas"));
    }
    if !condition_is(d, "Available", "True") && want > 0 {
        return Health::InProgress("Deployment does not have minimum availability".into());
    }
    Health::Current
}

fn statefulset(s: &Value) -> Health {
    let want = int(s, "/spec/replicas").unwrap_or(1);
    let ready = int(s, "/status/readyReplicas").unwrap_or(0);
    if ready < want {
        return Health::InProgress(format!("StatefulSet: {ready} of {want} ready replicas"));
    }
    let current = s.pointer("/status/currentRevision");
    let update = s.pointer("/status/updateRevision");
    if update.is_some() && current != update {
        return Health::InProgress("StatefulSet: rolling update in progress".into());
    }
    Health::Current
}

fn daemonset(d: &Value) -> Health {
    let desired = int(d, "/status/desiredNumberScheduled").unwrap_or(0);
    let ready = int(d, "/status/numberReady").unwrap_or(0);
    let updated = int(d, "/status/updatedNumberScheduled").unwrap_or(0);
    if updated < desired {
        return Health::InProgress(format!("DaemonSet: {updated} of {desired} updated"));
    }
    if ready < desired {
        return Health::InProgress(format!("DaemonSet: {ready} of {desired} ready"));
    }
    Health::Current
}

fn replicas_ready(r: &Value, kind: &str) -> Health {
    let want = int(r, "/spec/replicas").unwrap_or(1);
    let ready = int(r, "/status/readyReplicas").unwrap_or(0);
    if ready < want { Health::InProgress(format!("{kind}: {ready} of {want} ready replicas")) } else { Health::Current }
}

fn job(j: &Value) -> Health {
    if condition_is(j, "Failed", "True") {
        let message = condition(j, "Failed").and_then(|c| c["message"].as_str()).unwrap_or("");
        return Health::Failed(format!("Job failed: {message}"));
    }
    if condition_is(j, "Complete", "True") {
        return Health::Current;
    }
    Health::InProgress("Job in progress".into())
}

fn pod(p: &Value) -> Health {
    match p.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => Health::Current,
        Some("Failed") => Health::Failed("Pod failed".into()),
        _ if condition_is(p, "Ready", "True") => Health::Current,
        _ => Health::InProgress("Pod is not ready".into()),
    }
}

fn phase(o: &Value, wanted: &str) -> Health {
    match o.pointer("/status/phase").and_then(Value::as_str) {
        Some(p) if p == wanted => Health::Current,
        other => Health::InProgress(format!("phase is {}, waiting for {wanted}", other.unwrap_or("unknown"))),
    }
}

/// Objects with a `Ready` condition (Flux's own kinds, many operators' kinds) are ready when it
/// is true and failed when `Stalled` is; objects without conditions are ready once they exist.
fn generic(o: &Value) -> Health {
    if condition_is(o, "Stalled", "True") {
        let message = condition(o, "Stalled").and_then(|c| c["message"].as_str()).unwrap_or("");
        return Health::Failed(message.to_owned());
    }
    match condition(o, "Ready") {
        Some(c) if c["status"] == "True" => Health::Current,
        Some(c) => Health::InProgress(c["message"].as_str().unwrap_or("not ready").to_owned()),
        None => Health::Current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployment_is_current_only_when_available() {
        let mut d = json!({"kind": "Deployment", "metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1}});
        assert!(matches!(health(&d), Health::InProgress(_)));
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1});
        assert_eq!(health(&d), Health::InProgress("Deployment: 1 of 2 available replicas".into()));
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2,
            "conditions": [{"type": "Available", "status": "True"}]});
        assert_eq!(health(&d), Health::Current);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "too slow"}]);
        assert!(matches!(health(&d), Health::Failed(_)));
    }

    #[test]
    fn jobs_crds_and_generic_objects() {
        assert_eq!(health(&json!({"kind": "Job", "status": {"conditions": [{"type": "Complete", "status": "True"}]}})), Health::Current);
        assert!(matches!(health(&json!({"kind": "Job", "status": {"conditions": [{"type": "Failed", "status": "True"}]}})), Health::Failed(_)));
        assert!(matches!(health(&json!({"kind": "CustomResourceDefinition", "status": {}})), Health::InProgress(_)));
        assert_eq!(health(&json!({"kind": "ConfigMap"})), Health::Current);
        assert!(matches!(
            health(&json!({"kind": "Widget", "status": {"conditions": [{"type": "Ready", "status": "False", "message": "x"}]}})),
            Health::InProgress(_)
        ));
    }

    #[test]
    fn what_health_keeps_judges_as_the_whole_object() {
        let d = json!({"kind": "Deployment",
            "metadata": {"name": "app", "generation": 3, "managedFields": [{"manager": "x"}], "annotations": {"a": "b"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c"}]}}},
            "status": {"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}});
        let kept = relevant(d.clone());
        assert_eq!(health(&kept), health(&d));
        assert!(kept.pointer("/metadata/managedFields").is_none() && kept.pointer("/spec/template").is_none());
        assert_eq!(kept["spec"]["replicas"], 2);
    }
}
