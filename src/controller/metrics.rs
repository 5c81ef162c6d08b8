//! Prometheus metrics under Flux's names, so that existing dashboards work:
//! `gotk_reconcile_duration_seconds{kind,name,namespace}` and controller-runtime's
//! `controller_runtime_reconcile_total{controller,result}`, and the gauges Flux's dashboards
//! read: `gotk_reconcile_condition{kind,name,namespace,type,status}` (1 for the Ready condition's
//! current status, 0 for the others) and `gotk_suspend_status{kind,name,namespace}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    kind: String,
    name: String,
    namespace: String,
    r#type: String,
    status: String,
}

/// The statuses `gotk_reconcile_condition` has a series for, as in Flux.
const CONDITION_STATUSES: [&str; 4] = ["True", "False", "Unknown", "Deleted"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

pub struct Metrics {
    registry: Registry,
    durations: Family<ObjectLabels, Histogram, fn() -> Histogram>,
    results: Family<ResultLabels, Counter>,
    conditions: Family<ConditionLabels, Gauge>,
    suspended: Family<ObjectLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let durations = Family::<ObjectLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let results = Family::<ResultLabels, Counter>::default();
        registry.register("gotk_reconcile_duration_seconds", "The duration in seconds of a reconcile", durations.clone());
        registry.register("controller_runtime_reconcile", "Total number of reconciliations per controller and result", results.clone());
        let conditions = Family::<ConditionLabels, Gauge>::default();
        registry.register("gotk_reconcile_condition", "The current condition status of a GitOps Toolkit resource reconciliation", conditions.clone());
        let suspended = Family::<ObjectLabels, Gauge>::default();
        registry.register("gotk_suspend_status", "The current suspend status of a GitOps Toolkit resource", suspended.clone());
        Metrics { registry, durations, results, conditions, suspended }
    }
}

impl Metrics {
    /// Records one reconcile of `kind` `namespace/name`.
    pub fn reconciled(&self, kind: &str, namespace: &str, name: &str, took: Duration, ok: bool) {
        let labels = ObjectLabels { kind: kind.to_owned(), name: name.to_owned(), namespace: namespace.to_owned() };
        self.durations.get_or_create(&labels).observe(took.as_secs_f64());
        let result = ResultLabels { controller: kind.to_ascii_lowercase(), result: if ok { "success" } else { "error" }.to_owned() };
        self.results.get_or_create(&result).inc();
    }

    /// Records the Ready status (`True`/`False`/`Unknown`, or `Deleted` once the object is gone)
    /// and whether the object is suspended.
    pub fn record_status(&self, kind: &str, namespace: &str, name: &str, ready: &str, suspended: bool) {
        for status in CONDITION_STATUSES {
            let labels = ConditionLabels {
                kind: kind.to_owned(),
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                r#type: "Ready".to_owned(),
                status: status.to_owned(),
            };
            self.conditions.get_or_create(&labels).set(i64::from(status == ready));
        }
        let labels = ObjectLabels { kind: kind.to_owned(), name: name.to_owned(), namespace: namespace.to_owned() };
        self.suspended.get_or_create(&labels).set(i64::from(suspended));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_and_suspend_gauges_use_fluxs_names_and_labels() {
        let metrics = Metrics::default();
        metrics.record_status("Kustomization", "apps", "web", "False", true);
        let text = metrics.encode();
        assert!(text.contains(r#"gotk_reconcile_condition{kind="Kustomization",name="web",namespace="apps",type="Ready",status="False"} 1"#), "{text}");
        assert!(text.contains(r#"gotk_reconcile_condition{kind="Kustomization",name="web",namespace="apps",type="Ready",status="True"} 0"#), "{text}");
        assert!(text.contains(r#"gotk_suspend_status{kind="Kustomization",name="web",namespace="apps"} 1"#), "{text}");
    }
}
