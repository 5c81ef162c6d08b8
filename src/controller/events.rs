//! Kubernetes Events for our objects (`events.k8s.io/v1`), as `kubectl describe` shows them.
//!
//! kube-runtime's recorder folds every event with the same reason into one series and keeps the
//! first note, which would hide "Deployment/default/app configured" behind an older change
//! list. Here, repeats of the same reason *and* note within a few minutes become a series; a new
//! note is a new Event.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::sync::Mutex;

/// How long a published event is remembered for folding repeats into a series.
const SERIES_WINDOW: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    warning: bool,
    reason: String,
    note: String,
}

pub struct EventRecorder {
    client: Client,
    controller: String,
    instance: String,
    /// Events published within the series window: when, the Event's name, its series so far.
    /// Only what a repeat needs, not the Event the server returned (its managedFields and all).
    recent: Mutex<HashMap<Key, Published>>,
}

struct Published {
    at: std::time::Instant,
    name: String,
    series: Option<EventSeries>,
}

impl EventRecorder {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        EventRecorder { client, controller: controller.into(), instance: instance.into(), recent: Mutex::new(HashMap::new()) }
    }

    /// Publishes one Event, or counts a repeat into its series. The table is locked only to
    /// look up and record, never across a request: reconciles publishing at once do not queue
    /// behind one another's API calls. (Two identical events published in the same instant may
    /// both be created; the next repeat joins one of them.)
    pub async fn publish(&self, regarding: ObjectReference, warning: bool, reason: &str, note: &str) -> Result<(), kube::Error> {
        let key = Key {
            uid: regarding.uid.clone(),
            namespace: regarding.namespace.clone(),
            name: regarding.name.clone(),
            warning,
            reason: reason.to_owned(),
            note: note.to_owned(),
        };
        let now = jiff::Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = {
            let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            recent.retain(|_, published| published.at.elapsed() < SERIES_WINDOW);
            recent.get_mut(&key).map(|published| {
                let count = published.series.as_ref().map_or(2, |s| s.count + 1);
                let series = EventSeries { count, last_observed_time: MicroTime(now) };
                published.series = Some(series.clone());
                published.at = std::time::Instant::now();
                (published.name.clone(), series)
            })
        };
        if let Some((name, series)) = repeat {
            let patch = serde_json::json!({ "series": series });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            return Ok(());
        }
        let name = format!("{}.{:x}", regarding.name.clone().unwrap_or_default(), now.as_nanosecond());
        let event = Event {
            action: Some(reason.to_owned()),
            reason: Some(reason.to_owned()),
            note: Some(note.to_owned()),
            event_time: Some(MicroTime(now)),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            metadata: ObjectMeta { namespace: Some(namespace), name: Some(name.clone()), ..ObjectMeta::default() },
            regarding: Some(regarding),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.insert(key, Published { at: std::time::Instant::now(), name, series: None });
        Ok(())
    }
}
