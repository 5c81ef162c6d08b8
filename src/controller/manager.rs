//! `ferroflux controller`: runs the reconcilers, the artifact server and the health endpoints in
//! one process until SIGTERM/SIGINT.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::controller::{Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::artifact::ArtifactCache;
use super::{Context, gitrepository, kustomization};
use crate::api::kustomize::v1::{Kustomization, SourceKind};
use crate::api::meta::RECONCILE_REQUEST_ANNOTATION;
use crate::api::source::v1::GitRepository;
use crate::source::storage::Storage;

/// Settings of the controller process, named like Flux's flags.
#[derive(Clone, Debug)]
pub struct ManagerConfig {
    /// Where artifacts are stored.
    pub storage_path: PathBuf,
    /// Where the artifact server listens.
    pub storage_addr: SocketAddr,
    /// The address other controllers reach the artifact server at (`status.artifact.url`).
    pub storage_adv_addr: String,
    /// Where `/healthz` and `/readyz` are served.
    pub health_addr: SocketAddr,
    /// Where Prometheus `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// How many objects of each kind are reconciled at once.
    pub concurrent: u16,
    /// Where downloaded artifacts are unpacked for building.
    pub artifact_cache: PathBuf,
}

/// What re-triggers a reconcile of one of our objects: a new generation (spec change), a new
/// `reconcile.fluxcd.io/requestedAt`, deletion. Our own status writes change none of these, so
/// they do not trigger another reconcile.
fn trigger_hash<K: Resource>(object: &K) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.meta().generation.hash(&mut hasher);
    object.annotations().get(RECONCILE_REQUEST_ANNOTATION).hash(&mut hasher);
    object.meta().deletion_timestamp.as_ref().map(|t| t.0.to_string()).hash(&mut hasher);
    object.finalizers().hash(&mut hasher);
    Some(hasher.finish())
}

pub async fn run(config: ManagerConfig) -> anyhow::Result<()> {
    let client = Client::try_default().await?;
    let storage = Arc::new(Storage::new(config.storage_path.clone())?);
    let metrics = Arc::new(super::metrics::Metrics::default());
    let ctx = Arc::new(Context::new(client.clone(), ArtifactCache::new(config.artifact_cache.clone()), metrics.clone()));
    let git_ctx = Arc::new(gitrepository::GitContext {
        ctx: ctx.clone(),
        storage: storage.clone(),
        advertised_base: format!("http://{}", config.storage_adv_addr.trim_start_matches("http://").trim_end_matches('/')),
    });
    let controller_config = ControllerConfig::default().concurrency(config.concurrent);

    // GitRepositories.
    let (repo_store, repo_writer) = reflector::store::<GitRepository>();
    let repo_stream = watcher::watcher(Api::<GitRepository>::all(client.clone()), WatcherConfig::default())
        .default_backoff()
        .reflect(repo_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let repositories = Controller::for_stream(repo_stream, repo_store)
        .with_config(controller_config.clone())
        .shutdown_on_signal()
        .run(gitrepository::reconcile, gitrepository::error_policy, git_ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "GitRepository controller");
            }
        });

    // Kustomizations, re-triggered at once by any change of the source they build from.
    let (ks_store, ks_writer) = reflector::store::<Kustomization>();
    let ks_stream = watcher::watcher(Api::<Kustomization>::all(client.clone()), WatcherConfig::default())
        .default_backoff()
        .reflect(ks_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let dependents = ks_store.clone();
    let waiting = ks_store.clone();
    let kustomizations = Controller::for_stream(ks_stream, ks_store)
        .watches(Api::<GitRepository>::all(client.clone()), WatcherConfig::default(), move |repo: GitRepository| {
            let repo_ns = repo.namespace().unwrap_or_default();
            let repo_name = repo.name_any();
            dependents
                .state()
                .into_iter()
                .filter(|ks| {
                    let source = &ks.spec.source_ref;
                    let ns = source.namespace.clone().unwrap_or_else(|| ks.namespace().unwrap_or_default());
                    source.kind == SourceKind::GitRepository && source.name == repo_name && ns == repo_ns
                })
                .map(|ks| ObjectRef::from_obj(ks.as_ref()))
                .collect::<Vec<_>>()
        })
        // A dependency that becomes Ready releases its dependents at once, not at their next
        // retry.
        .watches(Api::<Kustomization>::all(client.clone()), WatcherConfig::default(), move |dependency: Kustomization| {
            let ready = dependency.status.as_ref().is_some_and(|s| super::conditions::is_true(&s.conditions, "Ready"));
            let (dep_ns, dep_name) = (dependency.namespace().unwrap_or_default(), dependency.name_any());
            waiting
                .state()
                .into_iter()
                .filter(|ks| {
                    ready
                        && ks.spec.depends_on.iter().flatten().any(|d| {
                            d.name == dep_name && d.namespace.clone().unwrap_or_else(|| ks.namespace().unwrap_or_default()) == dep_ns
                        })
                })
                .map(|ks| ObjectRef::from_obj(ks.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(controller_config)
        .shutdown_on_signal()
        .run(kustomization::reconcile, kustomization::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Kustomization controller");
            }
        });

    let storage_server = crate::source::server::serve(config.storage_path.clone(), config.storage_addr);
    let health_server = serve_health(config.health_addr);
    let metrics_server = serve_metrics(config.metrics_addr, metrics);
    info!(storage = %config.storage_addr, health = %config.health_addr, metrics = %config.metrics_addr, "ferroflux controller started");
    tokio::select! {
        _ = async { tokio::join!(repositories, kustomizations) } => {}
        result = storage_server => result?,
        result = health_server => result?,
        result = metrics_server => result?,
    }
    info!("ferroflux controller stopped");
    Ok(())
}

/// Prometheus `/metrics`.
async fn serve_metrics(addr: SocketAddr, metrics: Arc<super::metrics::Metrics>) -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// `/healthz` and `/readyz`: the process is up and its loops run.
async fn serve_health(addr: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
