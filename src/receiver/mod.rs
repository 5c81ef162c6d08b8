//! Flux's webhook `Receiver` (`notification.toolkit.fluxcd.io/v1`): a reconciler that publishes
//! `status.webhookPath`, and an HTTP server (`--receiver-addr`, Flux's `:9292`) that verifies
//! each call as Flux does for its type and then makes the named objects reconcile at once, in
//! this process, recording `reconcile.fluxcd.io/requestedAt` on them as Flux does.

pub mod reconciler;
pub mod server;
pub mod verify;

use futures::channel::mpsc;
use kube::runtime::reflector::ObjectRef;

use crate::api::kustomize::v1::Kustomization;
use crate::api::source::v1::GitRepository;

/// Why a Receiver or a webhook call failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
    #[error("unable to read token from secret '{secret}': {message}")]
    Token { secret: String, message: String },
    #[error("invalid '{secret}' secret data: required field 'token'")]
    NoToken { secret: String },
    #[error("spec.secretRef is required for receivers of type {0}")]
    NoSecretRef(&'static str),
    #[error("{0} is a CEL expression, which ferroflux does not evaluate; remove it")]
    Cel(&'static str),
    #[error("resource {kind}/{name}: {message}")]
    Resource { kind: String, name: String, message: String },
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Hands objects straight to the controllers' queues, so that a webhook call reconciles without
/// waiting for the annotation to come back through the API server's watch.
#[derive(Clone)]
pub struct Triggers {
    pub git_repositories: mpsc::UnboundedSender<ObjectRef<GitRepository>>,
    pub kustomizations: mpsc::UnboundedSender<ObjectRef<Kustomization>>,
}

/// The receiving ends, for `Controller::reconcile_on`.
pub struct TriggerStreams {
    pub git_repositories: mpsc::UnboundedReceiver<ObjectRef<GitRepository>>,
    pub kustomizations: mpsc::UnboundedReceiver<ObjectRef<Kustomization>>,
}

pub fn triggers() -> (Triggers, TriggerStreams) {
    let (git_tx, git_rx) = mpsc::unbounded();
    let (ks_tx, ks_rx) = mpsc::unbounded();
    (Triggers { git_repositories: git_tx, kustomizations: ks_tx }, TriggerStreams { git_repositories: git_rx, kustomizations: ks_rx })
}
