//! Prometheus metrics under Flux's names, so that existing dashboards work:
//! `gotk_reconcile_duration_seconds{kind,name,namespace}` and controller-runtime's
//! `controller_runtime_reconcile_total{controller,result}`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    name: String,
    namespace: String,
}

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
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let durations = Family::<ObjectLabels, Histogram, fn() -> Histogram>::new_with_constructor(duration_histogram);
        let results = Family::<ResultLabels, Counter>::default();
        registry.register("gotk_reconcile_duration_seconds", "The duration in seconds of a reconcile", durations.clone());
        registry.register("controller_runtime_reconcile", "Total number of reconciliations per controller and result", results.clone());
        Metrics { registry, durations, results }
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

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
