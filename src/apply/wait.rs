//! Waiting on the API server: for a recreated object to be gone, for new CRDs and Namespaces to
//! be usable before the objects that need them are applied. Each wait is a watch on the one
//! object (`kube::runtime::wait::await_condition`), so it ends on the event, not on a poll tick.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::runtime::wait::{Condition, await_condition, conditions};
use tokio::time::Instant;

use super::{Applier, ApplyError, Change, ObjectId};

impl Applier {
    /// Waits until `live` is gone: not found, or found with another uid (deleted and already
    /// recreated by someone else, which is just as good for our re-create).
    pub(super) async fn wait_gone(&self, api: &Api<DynamicObject>, live: &DynamicObject, id: &ObjectId, timeout: Duration) -> Result<(), ApplyError> {
        let uid = live.metadata.uid.clone();
        // The server always sets a uid; without one, only "not found" counts as gone.
        let gone = move |o: Option<&DynamicObject>| o.is_none_or(|o| uid.is_some() && o.metadata.uid != uid);
        watch_until(api.clone(), id, gone, Instant::now() + timeout, "to be deleted").await
    }

    /// Waits until applied CRDs are Established and Namespaces Active, all within one `timeout`.
    pub(super) async fn wait_for_definitions(&self, changes: &[Change], timeout: Duration) -> Result<(), ApplyError> {
        let deadline = Instant::now() + timeout;
        for change in changes {
            match change.id.kind.as_str() {
                "CustomResourceDefinition" => {
                    let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
                    watch_until(api, &change.id, conditions::is_crd_established(), deadline, "to become ready").await?;
                }
                "Namespace" => {
                    let api: Api<Namespace> = Api::all(self.client.clone());
                    let active = |ns: Option<&Namespace>| ns.and_then(|ns| ns.status.as_ref()?.phase.as_deref()) == Some("Active");
                    watch_until(api, &change.id, active, deadline, "to become ready").await?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Watches the object `id` names until `condition` holds or `deadline` passes.
async fn watch_until<K>(api: Api<K>, id: &ObjectId, condition: impl Condition<K>, deadline: Instant, what: &str) -> Result<(), ApplyError>
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    match tokio::time::timeout_at(deadline, await_condition(api, &id.name, condition)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(ApplyError::Wait { context: format!("waiting for {id} {what}"), source }),
        Err(_) => Err(ApplyError::WaitTimeout { what: format!("{id} {what}") }),
    }
}
