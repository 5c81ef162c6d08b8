//! `ferroflux controller`: the flags, named like Flux's, and the process around the manager.

use std::path::PathBuf;

use crate::controller::ControllerOptions;
use crate::controller::leader::{self, LeaderConfig};

/// Flags of `ferroflux controller`, named like Flux's.
#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// Where artifacts are stored.
    #[arg(long, default_value = "/data")]
    pub storage_path: PathBuf,
    /// The address the artifact server listens on.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub storage_addr: std::net::SocketAddr,
    /// The address the artifact server is reached at, written into status.artifact.url
    /// (defaults to the storage address, with 0.0.0.0 read as localhost).
    #[arg(long)]
    pub storage_adv_addr: Option<String>,
    /// The address /healthz and /readyz are served on.
    #[arg(long, default_value = "0.0.0.0:9440")]
    pub health_addr: std::net::SocketAddr,
    /// The address Prometheus /metrics is served on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: std::net::SocketAddr,
    /// The address the webhook Receiver server listens on (Flux's notification-controller port).
    #[arg(long, default_value = "0.0.0.0:9292", value_parser = parse_listen_addr)]
    pub receiver_addr: std::net::SocketAddr,
    /// Do not watch applied objects for changes made by others: drift is then corrected at each
    /// Kustomization's interval only, as in Flux.
    #[arg(long)]
    pub no_drift_watch: bool,
    /// How many objects of each kind are reconciled at once (one that only waits, for health or
    /// for a shared Git fetch, does not count meanwhile).
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,
    /// Where downloaded artifacts are unpacked for building (defaults to a folder under the
    /// storage path).
    #[arg(long)]
    pub artifact_cache: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json", "console"])]
    pub log_encoding: String,
    /// Reconcile only objects whose labels match this selector (sharding), e.g.
    /// `!sharding.fluxcd.io/key` for the main instance, `sharding.fluxcd.io/key=shard1` for a shard.
    #[arg(long)]
    pub watch_label_selector: Option<String>,
    /// Refuse sources and dependencies in namespaces other than the Kustomization's own.
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
    /// Refuse remote (URL) bases in kustomizations; only the source's own files are built.
    #[arg(long)]
    pub no_remote_bases: bool,
    /// Send a GitRepository's basic auth or bearer token over plain http:// (refused by default,
    /// as in Flux's Git library: anyone on the path can read them).
    #[arg(long)]
    pub allow_insecure_http_credentials: bool,
    /// Impersonate this ServiceAccount (in each Kustomization's namespace) when
    /// spec.serviceAccountName is empty: the restricted mode, where the controller itself has no
    /// rights on applied objects.
    #[arg(long)]
    pub default_service_account: Option<String>,
    /// A Secret of age keys (`*.agekey` entries) in the controller's namespace ($RUNTIME_NAMESPACE,
    /// else the kubeconfig's), used by Kustomizations whose spec.decryption names no secretRef.
    /// `NAME` or `NAMESPACE/NAME`.
    #[arg(long)]
    pub sops_age_secret: Option<String>,
    /// Take part in leader election: only the holder of the Lease reconciles and serves
    /// artifacts; another replica takes over when it stops renewing.
    #[arg(long)]
    pub enable_leader_election: bool,
    /// The Lease's name.
    #[arg(long, default_value = "ferroflux-leader-election")]
    pub leader_election_id: String,
    /// The Lease's namespace (default: $RUNTIME_NAMESPACE, else the kubeconfig's namespace).
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// How long other replicas wait after the leader's last renewal before taking over.
    #[arg(long, default_value = "35s", value_parser = parse_duration)]
    pub leader_election_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it steps down (and exits).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub leader_election_renew_deadline: std::time::Duration,
    /// How often acquiring or renewing is tried.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub leader_election_retry_period: std::time::Duration,
    /// How long a Kustomization waits before it looks again at a dependency that is not ready,
    /// or a source without an artifact (Flux's `--requeue-dependency`). A dependency becoming
    /// Ready triggers its dependents at once anyway.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub requeue_dependency: std::time::Duration,
    /// After SIGTERM, how long in-flight reconciles may finish before they are abandoned and the
    /// process exits (the next leader redoes them).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub graceful_shutdown_timeout: std::time::Duration,
}

/// `HOST:PORT`, or Flux's `:PORT` meaning every address.
fn parse_listen_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let text = if text.starts_with(':') { format!("0.0.0.0{text}") } else { text.to_owned() };
    text.parse().map_err(|e| format!("{text}: {e}"))
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::api::meta::parse_duration(text).map_err(|e| e.to_string())
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging(&args.log_encoding);
    let storage_adv_addr = args.storage_adv_addr.clone().unwrap_or_else(|| {
        let addr = args.storage_addr;
        if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
    });
    // The namespace the kubeconfig (or the in-cluster service account) points at.
    let kube_namespace = kube::Config::infer().await.map(|c| c.default_namespace).unwrap_or_else(|_| "default".into());
    let artifact_cache = args.artifact_cache.clone().unwrap_or_else(|| args.storage_path.join(".build-cache"));
    crate::controller::manager::run(crate::controller::manager::ManagerConfig {
        storage_path: args.storage_path,
        storage_addr: args.storage_addr,
        storage_adv_addr,
        health_addr: args.health_addr,
        metrics_addr: args.metrics_addr,
        concurrent: args.concurrent,
        receiver_addr: args.receiver_addr,
        drift_watch: !args.no_drift_watch,
        artifact_cache,
        watch_label_selector: args.watch_label_selector.filter(|s| !s.is_empty()),
        leader_election: args.enable_leader_election.then(|| LeaderConfig {
            namespace: args.leader_election_namespace.or_else(|| std::env::var("RUNTIME_NAMESPACE").ok()).unwrap_or_else(|| kube_namespace.clone()),
            name: args.leader_election_id,
            identity: leader::identity(),
            lease_duration: args.leader_election_lease_duration,
            renew_deadline: args.leader_election_renew_deadline,
            retry_period: args.leader_election_retry_period,
        }),
        graceful_shutdown_timeout: args.graceful_shutdown_timeout,
        options: ControllerOptions {
            no_cross_namespace_refs: args.no_cross_namespace_refs,
            default_service_account: args.default_service_account.filter(|s| !s.is_empty()),
            enable_remote_bases: !args.no_remote_bases,
            allow_insecure_http_credentials: args.allow_insecure_http_credentials,
            sops_age_secret: args.sops_age_secret.filter(|s| !s.is_empty()).map(|s| match s.split_once('/') {
                Some((namespace, name)) => crate::sops::cluster::SecretName { namespace: namespace.to_owned(), name: name.to_owned() },
                None => crate::sops::cluster::SecretName { namespace: std::env::var("RUNTIME_NAMESPACE").unwrap_or_else(|_| kube_namespace.clone()), name: s },
            }),
            requeue_dependency: Some(args.requeue_dependency),
        },
    })
    .await
}

fn init_logging(encoding: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if encoding == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
