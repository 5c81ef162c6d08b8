//! `ferroflux controller`: runs the reconcilers, the artifact server and the health endpoints in
//! one process until SIGTERM/SIGINT.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::watcher::{self, Config as WatcherConfig};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::artifact::{ArtifactCache, LocalStorage};
use super::leader::{LeaderConfig, LeaderElector};
use super::{Context, ControllerOptions, ReconcileError, gitrepository, kustomization};
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
    /// `--graceful-shutdown-timeout`: how long in-flight reconciles may run on after SIGTERM
    /// before they are abandoned (the next leader redoes them).
    pub graceful_shutdown_timeout: Duration,
    /// Settings of the reconcilers.
    pub options: ControllerOptions,
}

/// Why a reconcile ended without an [`Action`]: its own error, or the backstop deadline of
/// [`bounded`].
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    #[error("reconcile abandoned after {0:?}: it ran past its timeout and freed its worker")]
    Deadline(Duration),
}

/// Runs one reconcile on one of `workers`' permits ([`super::workers`]), bounded by `limit`.
///
/// kube-runtime's own concurrency limit parks due requests in a hash map and picks them in hash
/// order, so a few stuck objects can starve others for good. Instead the runner starts every due
/// request at once and they queue for a worker, first come, first served, so each object gets
/// its turn in the order it became due. `limit` is a backstop above the reconcilers' own
/// timeouts: a reconcile that runs past it is dropped (cancelled at its next await; a blocking
/// build thread runs on but holds no worker).
async fn bounded<Fut>(workers: Arc<Semaphore>, limit: Duration, reconcile: Fut) -> Result<Action, WorkerError>
where
    Fut: Future<Output = Result<Action, ReconcileError>>,
{
    super::workers::on_worker(workers, async move {
        match tokio::time::timeout(limit, reconcile).await {
            Ok(result) => result.map_err(WorkerError::from),
            Err(_) => Err(WorkerError::Deadline(limit)),
        }
    })
    .await
}

/// How the trigger watches recover from errors (the API server restarted or unreachable, a watch
/// expired): kube-runtime's default (client-go's, up to 30 s, reset only after 2 quiet minutes,
/// shared by all of a controller's watches) left pushes waiting for minutes after an API server
/// restart. A controller's watches are a handful of cheap requests; retrying every few seconds
/// costs the API server nothing and brings triggers back within seconds.
fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// The backstop deadline of a GitRepository reconcile: its own timeout (which bounds the Git
/// operations) plus time for the status and event writes.
fn repository_limit(repo: &GitRepository) -> Duration {
    gitrepository::timeout(repo) + Duration::from_secs(30)
}

/// The backstop deadline of a Kustomization reconcile: build, apply and health check are each
/// bounded by its timeout; plus time for the API calls around them.
fn kustomization_limit(ks: &Kustomization) -> Duration {
    kustomization::timeout(ks) * 3 + Duration::from_secs(60)
}

/// What `/readyz` answers.
struct Readiness {
    client: Client,
    shutting_down: AtomicBool,
}

impl Readiness {
    /// Not ready while shutting down, or when the API server does not answer within 2 s.
    async fn check(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err("shutting down".into());
        }
        match tokio::time::timeout(Duration::from_secs(2), self.client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("kube-apiserver unreachable: {e}")),
            Err(_) => Err("kube-apiserver unreachable: no answer within 2s".into()),
        }
    }
}

/// What re-triggers a reconcile of one of our objects: a new generation (spec change), a new
/// `reconcile.fluxcd.io/requestedAt`, deletion: Flux's predicates. Our own writes (status, the
/// finalizer, which is added inside the reconcile that then does the work) change none of these,
/// so they do not trigger another reconcile.
fn trigger_hash<K: Resource>(object: &K) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    object.meta().generation.hash(&mut hasher);
    object.annotations().get(RECONCILE_REQUEST_ANNOTATION).hash(&mut hasher);
    object.meta().deletion_timestamp.as_ref().map(|t| t.0.to_string()).hash(&mut hasher);
    Some(hasher.finish())
}

/// Runs until SIGTERM/SIGINT (then finishes in-flight reconciles for at most the graceful
/// shutdown timeout, abandons the rest, releases the Lease and returns `Ok`) or until leadership
/// is lost (returns the error: the process must exit, so that it never reconciles next to a new
/// leader).
pub async fn run(config: ManagerConfig) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer().await?;
    let client = Client::try_from(kube_config.clone())?;
    let metrics = Arc::new(super::metrics::Metrics::default());
    let readiness = Arc::new(Readiness { client: client.clone(), shutting_down: AtomicBool::new(false) });
    // Probes and metrics answer from the start, also while waiting for leadership.
    let health_server = tokio::spawn(serve_health(config.health_addr, readiness.clone()));
    let metrics_server = tokio::spawn(serve_metrics(config.metrics_addr, metrics.clone()));

    // The first SIGTERM/SIGINT starts the shutdown: `/readyz` says so at once, the controllers
    // take no new work and drain.
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let (shutdown, readiness) = (shutdown.clone(), readiness.clone());
        async move {
            shutdown_signal().await;
            readiness.shutting_down.store(true, Ordering::SeqCst);
            shutdown.cancel();
        }
    });

    let mut elector = config.leader_election.clone().map(|leader| LeaderElector::new(client.clone(), leader));
    if let Some(elector) = elector.as_mut() {
        tokio::select! {
            result = elector.acquire() => result?,
            _ = shutdown.cancelled() => {
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
    let advertised_base = format!("http://{}", config.storage_adv_addr.trim_start_matches("http://").trim_end_matches('/'));
    // The Kustomizations read this process's own artifacts from disk, not over HTTP.
    let own_storage = LocalStorage { root: storage.root().to_owned(), advertised_base: advertised_base.clone() };
    let artifacts = ArtifactCache::new(config.artifact_cache.clone()).with_local_storage(own_storage);
    let ctx = Arc::new(Context::new(client.clone(), Some(kube_config), config.options.clone(), artifacts, metrics.clone()));
    let git_ctx = Arc::new(gitrepository::GitContext::new(ctx.clone(), storage.clone(), advertised_base));
    // Unbounded in kube-runtime (which still runs one reconcile per object at a time); the
    // `--concurrent` limit is enforced fairly by `bounded`.
    let controller_config = ControllerConfig::default().concurrency(0);
    let workers = usize::from(config.concurrent.max(1));
    let (repo_workers, ks_workers) = (Arc::new(Semaphore::new(workers)), Arc::new(Semaphore::new(workers)));
    let (triggers, trigger_streams) = crate::receiver::triggers();
    // Lists served from the API server's watch cache (resourceVersion=0), as client-go's
    // informers do: a quorum LIST of every object from etcd on each (re)list costs the API server
    // more than anything else we do at a thousand objects, and a watch started from the cache's
    // version is never too old for it (no 410-and-relist loop under heavy writes).
    let watch_config = match &config.watch_label_selector {
        Some(selector) => WatcherConfig::default().any_semantic().labels(selector),
        None => WatcherConfig::default().any_semantic(),
    };

    // One watch per kind of ours, shared: the reflector stores keep no managedFields (nothing
    // reads them, and at a thousand objects they are most of the memory), and the events that
    // must reach other reconcilers (a source's new artifact, a dependency becoming Ready) are
    // taken from the same stream instead of a second watch of the kind.
    let (ks_store, ks_writer) = reflector::store::<Kustomization>();

    // GitRepositories. Their Kustomizations are re-triggered at once by any change of the
    // source they build from.
    let (repo_store, repo_writer) = reflector::store::<GitRepository>();
    let (source_ctx, dependents, to_kustomizations) = (ctx.clone(), ks_store.clone(), triggers.kustomizations.clone());
    // No backoff of its own: the controller's trigger backoff covers every watch it runs.
    let repo_stream = watcher::watcher(Api::<GitRepository>::all(client.clone()), watch_config.clone())
        .modify(|repo| repo.managed_fields_mut().clear())
        .reflect(repo_writer)
        .inspect(move |event| {
            let (repo, gone) = match event {
                Ok(watcher::Event::Apply(repo) | watcher::Event::InitApply(repo)) => (repo, false),
                Ok(watcher::Event::Delete(repo)) => (repo, true),
                _ => return,
            };
            let (repo_ns, repo_name) = (repo.namespace().unwrap_or_default(), repo.name_any());
            // A source being deleted is read again (and found gone) rather than from here.
            let artifact = (!gone && repo.metadata.deletion_timestamp.is_none()).then(|| repo.status.as_ref().and_then(|s| s.artifact.clone()));
            if !source_ctx.observe_source_artifact(kustomization::source_key("GitRepository", &repo_ns, &repo_name), artifact) {
                return;
            }
            for ks in dependents.state() {
                let source = &ks.spec.source_ref;
                if source.kind == SourceKind::GitRepository && source.name == repo_name && kustomization::source_namespace(&ks) == repo_ns {
                    let _ = to_kustomizations.unbounded_send(ObjectRef::from_obj(ks.as_ref()));
                }
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let repositories = Controller::for_stream(repo_stream, repo_store)
        .reconcile_on(trigger_streams.git_repositories)
        .with_config(controller_config.clone())
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            move |repo, gctx| bounded(repo_workers.clone(), repository_limit(&repo), gitrepository::reconcile(repo, gctx)),
            |repo, error, gctx| match error {
                WorkerError::Reconcile(error) => gitrepository::error_policy(repo, error, gctx),
                WorkerError::Deadline(_) => {
                    warn!(%error, "GitRepository reconcile");
                    Action::requeue(Duration::from_secs(10))
                }
            },
            git_ctx,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "GitRepository controller");
            }
        });

    // Kustomizations. A dependency that becomes Ready releases its dependents at once, not at
    // their next retry.
    let (waiting, to_dependents) = (ks_store.clone(), triggers.kustomizations.clone());
    let ks_stream = watcher::watcher(Api::<Kustomization>::all(client.clone()), watch_config.clone())
        .modify(|ks| ks.managed_fields_mut().clear())
        .reflect(ks_writer)
        .inspect(move |event| {
            let dependency = match event {
                Ok(watcher::Event::Apply(ks) | watcher::Event::InitApply(ks)) => ks,
                _ => return,
            };
            if !dependency.status.as_ref().is_some_and(|s| super::conditions::is_true(&s.conditions, "Ready")) {
                return;
            }
            let (dep_ns, dep_name) = (dependency.namespace().unwrap_or_default(), dependency.name_any());
            for ks in waiting.state() {
                let depends = ks
                    .spec
                    .depends_on
                    .iter()
                    .flatten()
                    .any(|d| d.name == dep_name && d.namespace.clone().unwrap_or_else(|| ks.namespace().unwrap_or_default()) == dep_ns);
                if depends {
                    let _ = to_dependents.unbounded_send(ObjectRef::from_obj(ks.as_ref()));
                }
            }
        })
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let drift = config.drift_watch.then(|| super::drift::DriftWatch::new(ctx.clone(), ks_store.clone(), triggers.kustomizations.clone()));
    let kustomizations = Controller::for_stream(ks_stream, ks_store)
        .reconcile_on(trigger_streams.kustomizations)
        .with_config(controller_config.clone())
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            move |ks, ctx| bounded(ks_workers.clone(), kustomization_limit(&ks), kustomization::reconcile(ks, ctx)),
            |ks, error, ctx| match error {
                WorkerError::Reconcile(error) => kustomization::error_policy(ks, error, ctx),
                WorkerError::Deadline(_) => {
                    warn!(%error, "Kustomization reconcile");
                    Action::requeue(Duration::from_secs(10))
                }
            },
            ctx.clone(),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Kustomization controller");
            }
        });

    // Receivers, and the webhook server that answers for them.
    let (receiver_store, receiver_writer) = reflector::store::<Receiver>();
    let receiver_stream = watcher::watcher(Api::<Receiver>::all(client.clone()), watch_config.clone())
        .reflect(receiver_writer)
        .applied_objects()
        .predicate_filter(trigger_hash, Default::default());
    let receivers = Controller::for_stream(receiver_stream, receiver_store.clone())
        .with_config(controller_config)
        .trigger_backoff(watch_backoff())
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(crate::receiver::reconciler::reconcile, crate::receiver::reconciler::error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "Receiver controller");
            }
        });
    let receiver_server =
        crate::receiver::server::serve(config.receiver_addr, Arc::new(crate::receiver::server::ReceiverServer::new(ctx.clone(), receiver_store, triggers)));
    let drift_watch = async move {
        match drift {
            Some(drift) => drift.run().await,
            None => std::future::pending().await,
        }
    };

    let storage_server = crate::source::server::serve(config.storage_path.clone(), config.storage_addr);
    info!(storage = %config.storage_addr, health = %config.health_addr, metrics = %config.metrics_addr, receiver = %config.receiver_addr, drift_watch = config.drift_watch, "ferroflux controller started");
    let controllers = async { tokio::join!(repositories, kustomizations, receivers) };
    tokio::pin!(controllers);
    let outcome = tokio::select! {
        _ = &mut controllers => Ok::<(), anyhow::Error>(()),
        _ = shutdown.cancelled() => {
            drain(&mut controllers, config.graceful_shutdown_timeout).await;
            Ok(())
        }
        result = receiver_server => result,
        _ = drift_watch => Ok(()),
        result = storage_server => result.map_err(anyhow::Error::from),
        result = lost => result.map_err(anyhow::Error::from),
        result = health_server => result.map_err(anyhow::Error::from).and_then(|r| r),
        result = metrics_server => result.map_err(anyhow::Error::from).and_then(|r| r),
    };
    if outcome.is_ok() {
        if let Some(elector) = elector.as_mut() {
            // An unreachable API server must not hold the exit: the Lease then expires by itself.
            if tokio::time::timeout(Duration::from_secs(5), elector.release()).await.is_err() {
                warn!("could not release the leader election lease within 5s; it expires by itself");
            }
        }
    }
    info!("ferroflux controller stopped");
    outcome
}

/// After the shutdown signal: lets the controllers finish their in-flight reconciles for at most
/// `deadline` (a second signal cuts it short), then drops whatever still runs. Dropping cancels
/// the reconciles at their next await; the abandoned work is redone by the next leader, as after
/// a crash.
async fn drain(controllers: &mut (impl Future + Unpin), deadline: Duration) {
    info!(deadline = ?deadline, "shutdown requested, finishing in-flight reconciles");
    tokio::select! {
        _ = controllers => info!("in-flight reconciles finished"),
        _ = tokio::time::sleep(deadline) => warn!(deadline = ?deadline, "in-flight reconciles abandoned: the graceful shutdown timeout passed"),
        _ = shutdown_signal() => warn!("second shutdown signal: in-flight reconciles abandoned"),
    }
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

/// `/healthz`: the process is up and its loops run. `/readyz`: besides, not shutting down and
/// the API server answers (503 with the reason otherwise).
async fn serve_health(addr: SocketAddr, readiness: Arc<Readiness>) -> anyhow::Result<()> {
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
        "/readyz",
        axum::routing::get(move || {
            let readiness = readiness.clone();
            async move {
                match readiness.check().await {
                    Ok(()) => (axum::http::StatusCode::OK, "ok".to_owned()),
                    Err(why) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, why),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
