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
use super::leader::{LeaderConfig, LeaderElector};
use super::{Context, ControllerOptions, gitrepository, kustomization};
use crate::api::kustomize::v1::{Kustomization, SourceKind};
use crate::api::meta::RECONCILE_REQUEST_ANNOTATION;
use crate::api::notification::v1::Receiver;
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
    /// `--watch-label-selector`: only objects matching it are reconciled (sharding, as in Flux:
    /// the main instance runs with `!sharding.fluxcd.io/key`, a shard with
    /// `sharding.fluxcd.io/key=shard1`).
    pub watch_label_selector: Option<String>,
    /// Leader election: only the holder of the Lease reconciles and serves artifacts.
    pub leader_election: Option<LeaderConfig>,
    /// Where the webhook Receiver server listens (`--receiver-addr`).
    pub receiver_addr: SocketAddr,
    /// Watch managed objects and put back what others change (`--no-drift-watch` turns it off).
    pub drift_watch: bool,
    /// Settings of the reconcilers.
    pub options: ControllerOptions,
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

/// Runs until SIGTERM/SIGINT (then finishes in-flight reconciles, releases the Lease and returns
/// `Ok`) or until leadership is lost (returns the error: the process must exit, so that it
/// never reconciles next to a new leader).
pub async fn run(config: ManagerConfig) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer().await?;
    let client = Client::try_from(kube_config.clone())?;
    let metrics = Arc::new(super::metrics::Metrics::default());
    // Probes and metrics answer from the start, also while waiting for leadership.
    let health_server = tokio::spawn(serve_health(config.health_addr));
    let metrics_server = tokio::spawn(serve_metrics(config.metrics_addr, metrics.clone()));

    let mut elector = config.leader_election.clone().map(|leader| LeaderElector::new(client.clone(), leader));
    if let Some(elector) = elector.as_mut() {
        tokio::select! {
            result = elector.acquire() => result?,
            _ = shutdown_signal() => {
                info!("stopped before becoming leader");
                return Ok(());
            }
        }
    }
    let lost = async {
        match elector.as_mut() {
            Some(elector) => {
                let error = elector.keep().await;
                Err::<(), _>(error)
            }
            None => std::future::pending().await,
        }
    };

    let storage = Arc::new(Storage::new(config.storage_path.clone())?);
    let ctx = Arc::new(Context::new(client.clone(), Some(kube_config), config.options.clone(), ArtifactCache::new(config.artifact_cache.clone()), metrics.clone()));
    let git_ctx = Arc::new(gitrepository::GitContext {
        ctx: ctx.clone(),
        storage: storage.clone(),
        advertised_base: format!("http://{}", config.storage_adv_addr.trim_start_matches("http://").trim_end_matches('/')),
    });
    let (triggers, trigger_streams) = crate::receiver::triggers();
    let controller_config = ControllerConfig::default().concurrency(config.concurrent);
    let watch_config = match &config.watch_label_selector {
        Some(selector) => WatcherConfig::default().labels(selector),
        None => WatcherConfig::default(),
    };

    // GitRepositories.
    let (repo_store, repo_writer) = reflector::store::<GitRepository>();
    let repo_stream = watcher::watcher(Api::<GitRepository>::all(client.clone()), watch_config.clone())
        .default_backoff()
        .reflect(repo_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let repositories = Controller::for_stream(repo_stream, repo_store)
        .reconcile_on(trigger_streams.git_repositories)
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
    let ks_stream = watcher::watcher(Api::<Kustomization>::all(client.clone()), watch_config.clone())
        .default_backoff()
        .reflect(ks_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let dependents = ks_store.clone();
    let drift = config.drift_watch.then(|| super::drift::DriftWatch::new(ctx.clone(), ks_store.clone(), triggers.kustomizations.clone()));
    let waiting = ks_store.clone();
    let watching_ctx = ctx.clone();
    let kustomizations = Controller::for_stream(ks_stream, ks_store)
        .watches(Api::<GitRepository>::all(client.clone()), watch_config.clone(), move |repo: GitRepository| {
            let repo_ns = repo.namespace().unwrap_or_default();
            let repo_name = repo.name_any();
            watching_ctx.observe_source_revision(
                kustomization::source_key("GitRepository", &repo_ns, &repo_name),
                repo.status.as_ref().and_then(|s| s.artifact.as_ref()).map(|a| a.revision.clone()),
            );
            dependents
                .state()
                .into_iter()
                .filter(|ks| {
                    let source = &ks.spec.source_ref;
                    source.kind == SourceKind::GitRepository && source.name == repo_name && kustomization::source_namespace(ks) == repo_ns
                })
                .map(|ks| ObjectRef::from_obj(ks.as_ref()))
                .collect::<Vec<_>>()
        })
        // A dependency that becomes Ready releases its dependents at once, not at their next
        // retry.
        .watches(Api::<Kustomization>::all(client.clone()), watch_config.clone(), move |dependency: Kustomization| {
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
        .reconcile_on(trigger_streams.kustomizations)
        .with_config(controller_config.clone())
        .shutdown_on_signal()
        .run(kustomization::reconcile, kustomization::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Kustomization controller");
            }
        });

    // Receivers, and the webhook server that answers for them.
    let (receiver_store, receiver_writer) = reflector::store::<Receiver>();
    let receiver_stream = watcher::watcher(Api::<Receiver>::all(client.clone()), watch_config.clone())
        .default_backoff()
        .reflect(receiver_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let receivers = Controller::for_stream(receiver_stream, receiver_store.clone())
        .with_config(controller_config)
        .shutdown_on_signal()
        .run(crate::receiver::reconciler::reconcile, crate::receiver::reconciler::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Receiver controller");
            }
        });
    let receiver_server = crate::receiver::server::serve(config.receiver_addr, Arc::new(crate::receiver::server::ReceiverServer::new(ctx.clone(), receiver_store, triggers)));
    let drift_watch = async move {
        match drift {
            Some(drift) => drift.run().await,
            None => std::future::pending().await,
        }
    };

    let storage_server = crate::source::server::serve(config.storage_path.clone(), config.storage_addr);
    info!(storage = %config.storage_addr, health = %config.health_addr, metrics = %config.metrics_addr, receiver = %config.receiver_addr, drift_watch = config.drift_watch, "ferroflux controller started");
    let outcome = tokio::select! {
        // Both controllers stop on SIGTERM/SIGINT after their in-flight reconciles finish.
        _ = async { tokio::join!(repositories, kustomizations, receivers) } => Ok::<(), anyhow::Error>(()),
        result = receiver_server => result,
        _ = drift_watch => Ok(()),
        result = storage_server => result.map_err(anyhow::Error::from),
        result = lost => result.map_err(anyhow::Error::from),
        result = health_server => result.map_err(anyhow::Error::from).and_then(|r| r),
        result = metrics_server => result.map_err(anyhow::Error::from).and_then(|r| r),
    };
    if outcome.is_ok() {
        if let Some(elector) = elector.as_mut() {
            elector.release().await;
        }
    }
    info!("ferroflux controller stopped");
    outcome
}

/// SIGTERM or SIGINT.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
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
