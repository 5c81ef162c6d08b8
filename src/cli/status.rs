//! Our kinds as the CLI sees them, and what their status says (pure; no I/O): the Ready
//! condition, suspension, the revision, and whether a requested reconciliation has finished.

use kube::core::ApiResource;
use serde_json::Value;

use crate::api::meta::{RECONCILE_REQUEST_ANNOTATION, condition as meta};
use crate::api::notification::v1::Receiver;
use crate::api::{GitRepository, Kustomization};

/// The Flux kinds ferroflux serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FluxKind {
    GitRepository,
    Kustomization,
    Receiver,
}

impl FluxKind {
    pub fn resource(self) -> ApiResource {
        match self {
            FluxKind::GitRepository => ApiResource::erase::<GitRepository>(&()),
            FluxKind::Kustomization => ApiResource::erase::<Kustomization>(&()),
            FluxKind::Receiver => ApiResource::erase::<Receiver>(&()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FluxKind::GitRepository => "GitRepository",
            FluxKind::Kustomization => "Kustomization",
            FluxKind::Receiver => "Receiver",
        }
    }

    /// As the CLI's verbs spell it: `ferroflux get <this>`.
    pub fn verb_target(self) -> &'static str {
        match self {
            FluxKind::GitRepository => "sources git",
            FluxKind::Kustomization => "ks",
            FluxKind::Receiver => "receivers",
        }
    }

    /// As `suspend`/`resume`/`reconcile` spell it: `ferroflux suspend <this> NAME`.
    pub fn object_target(self) -> &'static str {
        match self {
            FluxKind::GitRepository => "source git",
            FluxKind::Kustomization => "ks",
            FluxKind::Receiver => "receiver",
        }
    }

    /// Flux's lower-case name in `suspend`/`resume` lines: `✔ kustomization suspended`.
    pub fn human(self) -> &'static str {
        match self {
            FluxKind::GitRepository => "source git",
            FluxKind::Kustomization => "kustomization",
            FluxKind::Receiver => "receiver",
        }
    }

    pub fn from_name(kind: &str) -> Option<FluxKind> {
        match kind.to_ascii_lowercase().as_str() {
            "gitrepository" | "gitrepositories" => Some(FluxKind::GitRepository),
            "kustomization" | "kustomizations" | "ks" => Some(FluxKind::Kustomization),
            "receiver" | "receivers" => Some(FluxKind::Receiver),
            _ => None,
        }
    }

    /// The revision `get` shows and a finished reconciliation reports.
    pub fn revision(self, object: &Value) -> String {
        let pointer = match self {
            FluxKind::GitRepository => "/status/artifact/revision",
            FluxKind::Kustomization => "/status/lastAppliedRevision",
            // A Receiver has no revision.
            FluxKind::Receiver => return String::new(),
        };
        str_at(object, pointer).to_owned()
    }

    /// Flux's line after a successful reconciliation.
    pub fn success_message(self, object: &Value) -> String {
        match self {
            FluxKind::GitRepository => format!("fetched revision {}", self.revision(object)),
            FluxKind::Kustomization => format!("applied revision {}", self.revision(object)),
            FluxKind::Receiver => "Receiver reconciliation completed".to_owned(),
        }
    }
}

fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

pub fn name_of(object: &Value) -> &str {
    str_at(object, "/metadata/name")
}

pub fn namespace_of(object: &Value) -> &str {
    str_at(object, "/metadata/namespace")
}

pub fn is_suspended(object: &Value) -> bool {
    object.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true)
}

fn ready_condition(object: &Value) -> Option<&Value> {
    object.pointer("/status/conditions").and_then(Value::as_array)?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(meta::READY))
}

/// The Ready status and message, as `flux get` shows them: `False`, "waiting to be reconciled"
/// when there is no Ready condition yet.
pub fn ready_status(object: &Value) -> (String, String) {
    match ready_condition(object) {
        Some(c) => (str_at(c, "/status").to_owned(), str_at(c, "/message").to_owned()),
        None => ("False".to_owned(), "waiting to be reconciled".to_owned()),
    }
}

/// Where a reconciliation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Not finished; the text says what is awaited.
    Waiting(String),
    /// Ready=True for the current generation.
    Ready,
    /// Ready=False for the current generation, with its message.
    Failed(String),
}

/// Whether the object's controller has finished with its current generation and, when
/// `requested_at` is given, with that `reconcile.fluxcd.io/requestedAt` request (echoed in
/// `status.lastHandledReconcileAt`).
pub fn progress(object: &Value, requested_at: Option<&str>) -> Progress {
    if let Some(requested) = requested_at {
        let handled = str_at(object, "/status/lastHandledReconcileAt");
        if handled != requested {
            return Progress::Waiting(format!("the controller has not handled the request of {requested} yet"));
        }
    }
    let generation = object.pointer("/metadata/generation").and_then(Value::as_i64);
    let observed = object.pointer("/status/observedGeneration").and_then(Value::as_i64);
    if generation.is_some() && observed != generation {
        return Progress::Waiting(format!(
            "generation {} not observed yet (observed: {})",
            generation.unwrap_or_default(),
            observed.map_or("none".to_owned(), |o| o.to_string())
        ));
    }
    let Some(ready) = ready_condition(object) else {
        return Progress::Waiting("no Ready condition yet".to_owned());
    };
    // A condition written for an older generation says nothing about this one.
    let condition_generation = ready.get("observedGeneration").and_then(Value::as_i64);
    if generation.is_some() && condition_generation.is_some() && condition_generation != generation {
        return Progress::Waiting("the Ready condition is from an older generation".to_owned());
    }
    let message = str_at(ready, "/message").to_owned();
    match str_at(ready, "/status") {
        "True" => Progress::Ready,
        "False" => Progress::Failed(message),
        _ => Progress::Waiting(if message.is_empty() { "Ready is Unknown".to_owned() } else { message }),
    }
}

/// The merge patch that requests a reconciliation at `at` (RFC 3339).
pub fn request_patch(at: &str) -> Value {
    serde_json::json!({ "metadata": { "annotations": { RECONCILE_REQUEST_ANNOTATION: at } } })
}

/// The merge patch that suspends or resumes. Resuming removes the field, as Flux does.
pub fn suspend_patch(suspend: bool) -> Value {
    serde_json::json!({ "spec": { "suspend": if suspend { Value::Bool(true) } else { Value::Null } } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(generation: i64, observed: i64, handled: &str, ready: Option<(&str, &str, i64)>) -> Value {
        let conditions: Vec<Value> = ready
            .into_iter()
            .map(|(status, message, g)| json!({"type": "Ready", "status": status, "message": message, "observedGeneration": g, "reason": "x", "lastTransitionTime": "2024-01-01T00:00:00Z"}))
            .collect();
        json!({
            "metadata": {"name": "apps", "namespace": "flux-system", "generation": generation},
            "spec": {"suspend": false},
            "status": {"observedGeneration": observed, "lastHandledReconcileAt": handled, "conditions": conditions, "lastAppliedRevision": "main@sha1:abc"}
        })
    }

    #[test]
    fn a_request_is_finished_once_handled_and_ready_for_the_current_generation() {
        let at = "2026-01-01T00:00:00Z";
        assert!(matches!(progress(&object(2, 2, "older", Some(("True", "ok", 2))), Some(at)), Progress::Waiting(_)));
        assert!(matches!(progress(&object(3, 2, at, Some(("True", "ok", 2))), Some(at)), Progress::Waiting(_)));
        assert!(matches!(progress(&object(2, 2, at, Some(("True", "ok", 1))), Some(at)), Progress::Waiting(_)));
        assert!(matches!(progress(&object(2, 2, at, Some(("Unknown", "reconciling", 2))), Some(at)), Progress::Waiting(_)));
        assert!(matches!(progress(&object(2, 2, at, None), Some(at)), Progress::Waiting(_)));
        assert_eq!(progress(&object(2, 2, at, Some(("True", "ok", 2))), Some(at)), Progress::Ready);
        assert_eq!(progress(&object(2, 2, at, Some(("False", "build failed", 2))), Some(at)), Progress::Failed("build failed".into()));
        // Without a request (resume): the generation and Ready decide.
        assert_eq!(progress(&object(2, 2, "", Some(("True", "ok", 2))), None), Progress::Ready);
    }

    #[test]
    fn status_fields_read_like_flux_get() {
        let o = object(1, 1, "", None);
        assert_eq!(ready_status(&o), ("False".to_owned(), "waiting to be reconciled".to_owned()));
        assert!(!is_suspended(&o));
        assert_eq!(FluxKind::Kustomization.revision(&o), "main@sha1:abc");
        assert_eq!(FluxKind::Kustomization.success_message(&o), "applied revision main@sha1:abc");
        let o = object(1, 1, "", Some(("True", "Applied revision: main@sha1:abc", 1)));
        assert_eq!(ready_status(&o), ("True".to_owned(), "Applied revision: main@sha1:abc".to_owned()));
        assert_eq!(FluxKind::from_name("ks"), Some(FluxKind::Kustomization));
        assert_eq!(FluxKind::from_name("GitRepository"), Some(FluxKind::GitRepository));
        assert_eq!(FluxKind::from_name("HelmRelease"), None);
        assert_eq!(suspend_patch(false), json!({"spec": {"suspend": null}}));
    }
}
