//! The Receiver reconciler: reads the token from `spec.secretRef` and publishes
//! `status.webhookPath` with `Ready=True` ("Receiver initialized for path: ..."), or
//! `Ready=False` with why (`TokenNotFound`, a CEL filter ferroflux does not evaluate).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{instrument, warn};

use super::ReceiverError;
use crate::api::meta::{RECONCILE_REQUEST_ANNOTATION, condition as meta, parse_duration};
use crate::api::notification::condition as reason;
use crate::api::notification::v1::{Receiver, ReceiverType, webhook_path};
use crate::controller::conditions::{self, Status};
use crate::controller::{Context, ReconcileError, now, with_jitter};

/// Flux's default `spec.interval`.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);

#[instrument(skip_all, fields(receiver = %format!("{}/{}", receiver.namespace().unwrap_or_default(), receiver.name_any())))]
pub async fn reconcile(receiver: Arc<Receiver>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = receiver.namespace().unwrap_or_default();
    let name = receiver.name_any();
    let started = std::time::Instant::now();
    let mut status = receiver.status.clone().unwrap_or_default();
    if let Some(requested) = receiver.annotations().get(RECONCILE_REQUEST_ANNOTATION) {
        status.last_handled_reconcile_at = Some(requested.clone());
    }
    let generation = receiver.meta().generation;
    status.observed_generation = generation;
    let time = now();
    let previous_message = conditions::get(&status.conditions, meta::READY).map(|c| (c.status.clone(), c.message.clone()));
    match token(&receiver, &ctx).await {
        Ok(token) => {
            let path = webhook_path(&token, &name, &ns);
            let message = format!("Receiver initialized for path: {path}");
            conditions::set(&mut status.conditions, meta::READY, Status::True, meta::SUCCEEDED, &message, generation, &time);
            status.webhook_path = Some(path);
            if previous_message != Some(("True".into(), message.clone())) {
                ctx.event(receiver.as_ref(), false, meta::SUCCEEDED, message).await;
            }
        }
        Err(e) => {
            let why = match &e {
                ReceiverError::Cel(_) => reason::VALIDATION_FAILED,
                _ => reason::TOKEN_NOT_FOUND,
            };
            let message = e.to_string();
            conditions::set(&mut status.conditions, meta::READY, Status::False, why, &message, generation, &time);
            // No path while there is no token: nobody can call it.
            status.webhook_path = None;
            if previous_message != Some(("False".into(), message.clone())) {
                ctx.event(receiver.as_ref(), true, why, message).await;
            }
        }
    }
    let ready = conditions::status_of(&status.conditions, meta::READY).to_owned();
    ctx.metrics.record_status("Receiver", &ns, &name, &ready, receiver.spec.suspend == Some(true));
    if receiver.status.as_ref() != Some(&status) {
        let api: Api<Receiver> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await?;
    }
    ctx.metrics.reconciled("Receiver", &ns, &name, started.elapsed(), true);
    let interval = receiver.spec.interval.as_deref().and_then(|i| parse_duration(i).ok()).unwrap_or(DEFAULT_INTERVAL);
    Ok(Action::requeue(with_jitter(interval)))
}

pub fn error_policy(_receiver: Arc<Receiver>, error: &ReconcileError, _ctx: Arc<Context>) -> Action {
    warn!(%error, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// The Receiver's token (`secretRef`'s key `token`), read with the controller's rights as Flux
/// does; also refuses what ferroflux cannot honour (CEL filters).
pub async fn token(receiver: &Receiver, ctx: &Context) -> Result<String, ReceiverError> {
    if receiver.spec.resource_filter.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(ReceiverError::Cel("spec.resourceFilter"));
    }
    if receiver.spec.resources.iter().any(|r| r.filter.as_deref().is_some_and(|f| !f.is_empty())) {
        return Err(ReceiverError::Cel("spec.resources[].filter"));
    }
    let ns = receiver.namespace().unwrap_or_default();
    let Some(secret_ref) = &receiver.spec.secret_ref else {
        return match receiver.spec.r#type {
            ReceiverType::Generic => Err(ReceiverError::NoSecretRef("generic (the token makes the path unguessable)")),
            other => Err(ReceiverError::NoSecretRef(other.as_str())),
        };
    };
    let secret_name = format!("{ns}/{}", secret_ref.name);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = secrets.get_opt(&secret_ref.name).await.map_err(|e| ReceiverError::Token {
        secret: secret_name.clone(),
        message: match e {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        },
    })?;
    let Some(secret) = secret else {
        return Err(ReceiverError::Token { secret: secret_name, message: format!("secrets \"{}\" not found", secret_ref.name) });
    };
    let token = secret.data.as_ref().and_then(|d| d.get("token")).map(|t| t.0.clone());
    match token.map(String::from_utf8) {
        Some(Ok(token)) if !token.is_empty() => Ok(token),
        _ => Err(ReceiverError::NoToken { secret: secret_name }),
    }
}
