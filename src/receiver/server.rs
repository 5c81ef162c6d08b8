//! The webhook server: `POST /hook/<digest>` (any method, as in Flux). Answers 404 for a path no
//! Receiver publishes, 503 while the Receiver is suspended or not Ready, 401 with a Warning
//! Event when the call does not verify (nothing else happens then), 500 when a resource could
//! not be annotated, 200 when every resource was asked to reconcile.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::{ReceiverError, Triggers, reconciler, verify};
use crate::api::meta::{RECONCILE_REQUEST_ANNOTATION, condition as meta};
use crate::api::notification::WEBHOOK_PATH_PREFIX;
use crate::api::notification::condition as reason;
use crate::api::notification::v1::{Receiver, ReceiverResource, default_api_version};
use crate::controller::Context;
use crate::controller::conditions;

/// Flux's limit on a webhook body.
const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// What the handler needs.
pub struct ReceiverServer {
    pub ctx: Arc<Context>,
    /// The Receivers this process reconciles (the reflector of their controller).
    pub receivers: Store<Receiver>,
    pub triggers: Triggers,
    /// Kinds resolved through discovery, once each.
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, bool)>>,
}

impl ReceiverServer {
    pub fn new(ctx: Arc<Context>, receivers: Store<Receiver>, triggers: Triggers) -> Self {
        ReceiverServer { ctx, receivers, triggers, kinds: Mutex::new(HashMap::new()) }
    }
}

/// Serves until the listener fails.
pub async fn serve(addr: SocketAddr, server: Arc<ReceiverServer>) -> anyhow::Result<()> {
    let app = axum::Router::new().route("/hook/{digest}", axum::routing::any(hook)).layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(server);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn hook(State(server): State<Arc<ReceiverServer>>, Path(digest): Path<String>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let path = format!("{WEBHOOK_PATH_PREFIX}{digest}");
    let Some(receiver) = server.receivers.state().into_iter().find(|r| r.status.as_ref().and_then(|s| s.webhook_path.as_deref()) == Some(path.as_str())) else {
        return StatusCode::NOT_FOUND;
    };
    let (ns, name) = (receiver.namespace().unwrap_or_default(), receiver.name_any());
    let ready = receiver.status.as_ref().is_some_and(|s| conditions::is_true(&s.conditions, meta::READY));
    if receiver.spec.suspend == Some(true) || !ready {
        info!(receiver = %format!("{ns}/{name}"), suspended = receiver.spec.suspend == Some(true), "webhook call refused: the receiver is suspended or not ready");
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let token = match reconciler::token(&receiver, &server.ctx).await {
        Ok(token) => token,
        Err(e) => {
            server.ctx.event(receiver.as_ref(), true, reason::TOKEN_NOT_FOUND, format!("unable to validate payload: {e}")).await;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    let events = receiver.spec.events.clone().unwrap_or_default();
    let event = match verify::verify(receiver.spec.r#type, &token, &events, &headers, &body) {
        Ok(event) => event,
        Err(e) => {
            warn!(receiver = %format!("{ns}/{name}"), error = %e, "webhook call refused");
            server.ctx.event(receiver.as_ref(), true, reason::VALIDATION_FAILED, format!("unable to validate payload: {e}")).await;
            return StatusCode::UNAUTHORIZED;
        }
    };
    info!(receiver = %format!("{ns}/{name}"), event = event.as_deref().unwrap_or(""), "handling webhook call");
    let mut failures = Vec::new();
    for resource in &receiver.spec.resources {
        if let Err(e) = server.request_reconcile(resource, &ns).await {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        StatusCode::OK
    } else {
        server.ctx.event(receiver.as_ref(), true, meta::FAILED, format!("unable to request reconciliation: {}", failures.join("; "))).await;
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

impl ReceiverServer {
    /// Annotates the resource (or every object `matchLabels` selects when the name is `*`) with
    /// a new `reconcile.fluxcd.io/requestedAt`, and hands our own kinds straight to their
    /// controllers.
    async fn request_reconcile(&self, resource: &ReceiverResource, receiver_ns: &str) -> Result<(), ReceiverError> {
        let failed = |message: String| ReceiverError::Resource { kind: resource.kind.clone(), name: resource.name.clone(), message };
        let ns = resource.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| receiver_ns.to_owned());
        if self.ctx.options.no_cross_namespace_refs && ns != receiver_ns {
            return Err(failed("cross-namespace references are not allowed".into()));
        }
        let api_version = resource
            .api_version
            .clone()
            .filter(|v| !v.is_empty())
            .or_else(|| default_api_version(&resource.kind).map(str::to_owned))
            .ok_or_else(|| failed(format!("apiVersion must be specified for kind {:?}", resource.kind)))?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version.as_str()));
        let gvk = GroupVersionKind::gvk(group, version, &resource.kind);
        let (api_resource, namespaced) = self.kind(&gvk).await.map_err(|e| failed(e.to_string()))?;
        let api: Api<DynamicObject> =
            if namespaced { Api::namespaced_with(self.ctx.client.clone(), &ns, &api_resource) } else { Api::all_with(self.ctx.client.clone(), &api_resource) };
        let names = if resource.name == "*" {
            let labels = resource
                .match_labels
                .clone()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| failed("matchLabels field not set when using wildcard '*' as name".into()))?;
            let selector = labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
            let listed = api.list_metadata(&ListParams::default().labels(&selector)).await.map_err(|e| failed(e.to_string()))?;
            if listed.items.is_empty() {
                warn!(kind = %resource.kind, %ns, %selector, "no resources match the receiver's matchLabels");
            }
            listed.items.into_iter().filter_map(|o| o.metadata.name).collect()
        } else {
            vec![resource.name.clone()]
        };
        let requested_at = jiff::Timestamp::now().to_string();
        let patch = json!({"metadata": {"annotations": {RECONCILE_REQUEST_ANNOTATION: requested_at}}});
        for name in names {
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map_err(|e| ReceiverError::Resource {
                kind: resource.kind.clone(),
                name: name.clone(),
                message: match e {
                    kube::Error::Api(status) => status.message,
                    other => other.to_string(),
                },
            })?;
            info!(kind = %resource.kind, %ns, %name, "annotated");
            // Ours: straight into the controller's queue (a closed channel means the process is
            // stopping; the annotation still triggers the next instance).
            match (group, resource.kind.as_str()) {
                (crate::api::source::GROUP, "GitRepository") => {
                    let _ = self.triggers.git_repositories.unbounded_send(ObjectRef::new(&name).within(&ns));
                }
                (crate::api::kustomize::GROUP, "Kustomization") => {
                    let _ = self.triggers.kustomizations.unbounded_send(ObjectRef::new(&name).within(&ns));
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn kind(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, bool), kube::Error> {
        if let Some(found) = self.kinds.lock().await.get(gvk) {
            return Ok(found.clone());
        }
        let (resource, caps) = pinned_kind(&self.ctx.client, gvk).await?;
        let found = (resource, caps.scope == Scope::Namespaced);
        self.kinds.lock().await.insert(gvk.clone(), found.clone());
        Ok(found)
    }
}
