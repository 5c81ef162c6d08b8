//! Installing the manifests into a cluster: a server-side dry-run, the apply (through
//! [`crate::apply`], so with the same staging and field manager as the controller), and waiting
//! for the controller's Deployment to become Available.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use serde_json::Value;

use crate::apply::{Applier, ApplyError, ApplyOptions, Change, FIELD_MANAGER, ObjectId};
use crate::controller::health::{Health, health};

use super::{APP_NAME, InstallOptions, cluster_admin_binding_name};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("{context}: {source}")]
    Api { context: String, source: kube::Error },
    #[error(
        "Deployment {namespace}/{APP_NAME} did not become Available within {timeout:?}: {last}{pods}\n\
         next: `kubectl -n {namespace} describe deployment {APP_NAME}` and `kubectl -n {namespace} logs deployment/{APP_NAME}`; \
         there is no registry, so the image must already be on every node (build it with hack/image.sh and load it, e.g. `kind load docker-image`)"
    )]
    NotAvailable { namespace: String, timeout: Duration, last: String, pods: String },
    #[error("Deployment {namespace}/{APP_NAME} failed: {message}\nnext: `kubectl -n {namespace} describe deployment {APP_NAME}`")]
    Failed { namespace: String, message: String },
}

/// What a server-side dry-run of the install found.
#[derive(Debug, Default)]
pub struct DryRun {
    /// Objects the API server accepted.
    pub valid: Vec<ObjectId>,
    /// Objects in a namespace that does not exist yet: a dry-run does not create the namespace,
    /// so the API server cannot validate them.
    pub unchecked: Vec<ObjectId>,
}

/// Validates every object with a server-side apply dry-run; writes nothing. All rejections are
/// reported together.
pub async fn dry_run(client: &Client, objects: &[Value]) -> Result<DryRun, ClusterError> {
    let params = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER).force() };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut missing_namespaces = std::collections::HashSet::new();
    let mut outcome = DryRun::default();
    let mut failures = Vec::new();
    for (index, object) in objects.iter().enumerate() {
        let (id, version) = ObjectId::of(object, index).map_err(ApplyError::from)?;
        let (group, ver) = version.rsplit_once('/').unwrap_or(("", version.as_str()));
        let gvk = GroupVersionKind::gvk(group, ver, &id.kind);
        let (resource, caps) = match pinned_kind(client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Api(status)) => return Err(ApplyError::UnknownKind { id, message: status.message }.into()),
            Err(source) => return Err(ClusterError::Api { context: format!("looking up {} in the API server's discovery", id.kind), source }),
        };
        let api: Api<DynamicObject> = if caps.scope == Scope::Namespaced {
            if missing_namespaces.contains(&id.namespace) {
                outcome.unchecked.push(id);
                continue;
            }
            let exists = namespaces
                .get_opt(&id.namespace)
                .await
                .map_err(|source| ClusterError::Api { context: format!("reading namespace {}", id.namespace), source })?
                .is_some();
            if !exists {
                missing_namespaces.insert(id.namespace.clone());
                outcome.unchecked.push(id);
                continue;
            }
            Api::namespaced_with(client.clone(), &id.namespace, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        match api.patch(&id.name, &params, &Patch::Apply(object)).await {
            Ok(_) => outcome.valid.push(id),
            Err(kube::Error::Api(status)) => failures.push((id, status.message)),
            Err(source) => return Err(ClusterError::Api { context: format!("dry-run of {id}"), source }),
        }
    }
    if failures.is_empty() { Ok(outcome) } else { Err(ApplyError::DryRunFailed(failures).into()) }
}

/// Applies the install with server-side apply (field manager `ferroflux`): the Namespace, CRDs and
/// ClusterRoles first, waited for, then the rest, each stage dry-run before it is written.
pub async fn apply(client: &Client, objects: Vec<Value>, timeout: Duration) -> Result<Vec<Change>, ClusterError> {
    let options = ApplyOptions { wait_timeout: timeout, ..ApplyOptions::default() };
    Ok(Applier::new(client.clone()).apply_all(objects, &options).await?)
}

/// Restricted mode must not keep the `cluster-admin` binding a default-mode install of the same
/// namespace made: deletes it when it exists and carries our labels. Returns whether it did.
pub async fn remove_cluster_admin_binding(client: &Client, options: &InstallOptions) -> Result<bool, ClusterError> {
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = cluster_admin_binding_name(options);
    let context = || format!("removing ClusterRoleBinding {name} (restricted mode)");
    let Some(live) = bindings.get_opt(&name).await.map_err(|source| ClusterError::Api { context: context(), source })? else {
        return Ok(false);
    };
    let labels = live.metadata.labels.unwrap_or_default();
    let ours = labels.get("app.kubernetes.io/part-of").is_some_and(|v| v == "ferroflux")
        && labels.get("app.kubernetes.io/instance").is_some_and(|v| *v == options.namespace);
    if !ours {
        return Ok(false);
    }
    match bindings.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
        Err(source) => Err(ClusterError::Api { context: context(), source }),
    }
}

/// Waits until the controller's Deployment is Available, calling `progress` with each new status
/// message. On timeout the error names what its Pods are waiting for.
pub async fn wait_available(client: &Client, namespace: &str, timeout: Duration, mut progress: impl FnMut(&str)) -> Result<(), ClusterError> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("not found");
    loop {
        let live = deployments
            .get_opt(APP_NAME)
            .await
            .map_err(|source| ClusterError::Api { context: format!("reading Deployment {namespace}/{APP_NAME}"), source })?;
        let status = match live.map(|d| serde_json::to_value(d).map(|v| health(&with_kind(v)))) {
            Some(Ok(Health::Current)) => return Ok(()),
            Some(Ok(Health::Failed(message))) => return Err(ClusterError::Failed { namespace: namespace.to_owned(), message }),
            Some(Ok(Health::InProgress(message))) => message,
            Some(Err(e)) => format!("unreadable Deployment: {e}"),
            None => "Deployment not found".to_owned(),
        };
        if status != last {
            progress(&status);
            last = status;
        }
        if tokio::time::Instant::now() >= deadline {
            let pods = pod_problems(client, namespace).await;
            return Err(ClusterError::NotAvailable { namespace: namespace.to_owned(), timeout, last, pods });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Typed objects serialize without `kind`, which [`health`] dispatches on.
fn with_kind(mut deployment: Value) -> Value {
    if let Some(object) = deployment.as_object_mut() {
        object.insert("kind".into(), "Deployment".into());
    }
    deployment
}

/// Why the controller's Pods are not ready (unscheduled, image not found, crashing), one line each;
/// empty when that cannot be read.
async fn pod_problems(client: &Client, namespace: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(&format!("app.kubernetes.io/name={APP_NAME}"))).await else {
        return String::new();
    };
    list.items.iter().map(|pod| format!("\n  pod {}: {}", pod.metadata.name.as_deref().unwrap_or("?"), pod_problem(pod))).collect()
}

/// One Pod's most telling state: a container's waiting reason, else its phase and conditions.
fn pod_problem(pod: &Pod) -> String {
    let Some(status) = &pod.status else { return "no status yet".into() };
    for container in status.container_statuses.iter().flatten() {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or("waiting");
            return match waiting.message.as_deref() {
                Some(message) => format!("{reason}: {message}"),
                None => reason.to_owned(),
            };
        }
    }
    let unhappy: Vec<String> = status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status != "True")
        .map(|c| format!("{} ({})", c.type_, c.message.as_deref().or(c.reason.as_deref()).unwrap_or("not true")))
        .collect();
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if unhappy.is_empty() { phase.to_owned() } else { format!("{phase}, {}", unhappy.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_problem_prefers_the_waiting_reason() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending",
                "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
                "containerStatuses": [{"name": "manager", "image": "ferroflux:0.1.0", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "image not present"}}}]}
        }))
        .unwrap();
        assert_eq!(pod_problem(&pod), "ErrImageNeverPull: image not present");
        let unscheduled: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "message": "0/0 nodes are available"}]}
        }))
        .unwrap();
        assert_eq!(pod_problem(&unscheduled), "Pending, PodScheduled (0/0 nodes are available)");
    }
}
