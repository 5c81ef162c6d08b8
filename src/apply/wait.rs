//! Waiting on the API server: for a recreated object to be gone, for new CRDs and Namespaces to
//! be usable before the objects that need them are applied.

use std::time::Duration;

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::{Applier, ApplyError, Change, ObjectId};

impl Applier {
    pub(super) async fn wait_gone(&self, api: &Api<DynamicObject>, id: &ObjectId, timeout: Duration) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match api.get_opt(&id.name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
                Ok(Some(_)) => return Err(ApplyError::WaitTimeout { what: format!("{id} to be deleted") }),
                Err(e) => return Err(ApplyError::Api { context: format!("waiting for {id} deletion"), source: e }),
            }
        }
    }

    /// Waits until applied CRDs are Established and Namespaces Active.
    pub(super) async fn wait_for_definitions(&self, changes: &[Change], timeout: Duration) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        for change in changes {
            let (resource, condition) = match change.id.kind.as_str() {
                "CustomResourceDefinition" => (
                    ApiResource::from_gvk_with_plural(
                        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                        "customresourcedefinitions",
                    ),
                    "Established",
                ),
                "Namespace" => (ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Namespace"), "namespaces"), ""),
                _ => continue,
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
            loop {
                let object = api.get_opt(&change.id.name).await.map_err(|e| ApplyError::Api { context: format!("waiting for {}", change.id), source: e })?;
                let ready = object.is_some_and(|o| {
                    let status = o.data.get("status");
                    if condition.is_empty() {
                        status.and_then(|s| s.get("phase")).and_then(Value::as_str) == Some("Active")
                    } else {
                        status
                            .and_then(|s| s.get("conditions"))
                            .and_then(Value::as_array)
                            .is_some_and(|cs| cs.iter().any(|c| c["type"] == condition && c["status"] == "True"))
                    }
                });
                if ready {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ApplyError::WaitTimeout { what: format!("{} to become ready", change.id) });
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }
}
