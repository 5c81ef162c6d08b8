//! The reconcilers and what they share: the context, events, and failures that end as
//! `Ready=False` with a reason and a message.

pub mod artifact;
pub mod build;
pub mod conditions;
pub mod events;
pub mod health;
pub mod gitrepository;
pub mod kustomization;
pub mod manager;
pub mod metrics;
pub mod substitute;

use std::time::Duration;

use kube::{Client, Resource};
use tracing::warn;

use crate::apply::Applier;

/// Everything a reconcile needs, shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub recorder: events::EventRecorder,
    pub applier: Applier,
    pub artifacts: artifact::ArtifactCache,
    pub metrics: std::sync::Arc<metrics::Metrics>,
    /// Per Kustomization (`namespace/name`): what was last applied, so that a reconcile where
    /// nothing changed costs a few LIST requests instead of a dry-run per object.
    pub applied: tokio::sync::Mutex<std::collections::HashMap<String, crate::apply::AppliedState>>,
}

impl Context {
    pub fn new(client: Client, artifacts: artifact::ArtifactCache, metrics: std::sync::Arc<metrics::Metrics>) -> Self {
        let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "ferroflux".into());
        Context {
            recorder: events::EventRecorder::new(client.clone(), "ferroflux", &instance),
            applier: Applier::new(client.clone()),
            client,
            artifacts,
            metrics,
            applied: tokio::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Records a Kubernetes Event on `object`. Failing to record is logged, never fatal: the
    /// status carries the same information.
    pub async fn event<K: Resource<DynamicType = ()>>(&self, object: &K, warning: bool, reason: &str, note: String) {
        // Notes are limited to 1 KiB; long change lists are cut.
        let note = truncate(note, 1000);
        if let Err(e) = self.recorder.publish(object.object_ref(&()), warning, reason, &note).await {
            warn!(error = %e, reason, "failed to record an event");
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A reconcile that could not finish: ends as `Ready=False` with this reason and message, an
/// Event, and a retry after `retry`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
    pub retry: Duration,
}

impl Failure {
    pub fn new(reason: &'static str, message: impl Into<String>, retry: Duration) -> Self {
        Failure { reason, message: message.into(), retry }
    }
}

/// The error of a reconcile loop iteration that failed before it could write a status (the API
/// server unreachable, a conflict): kube-runtime retries it with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// `metav1.Time` now.
pub fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now())
}

/// The interval plus up to 5% jitter, so that many objects created at once spread out.
pub fn with_jitter(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = f64::from(nanos % 1000) / 1000.0 * 0.05;
    interval + interval.mul_f64(fraction)
}
