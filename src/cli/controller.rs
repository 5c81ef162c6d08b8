//! `ferroflux controller`: the flags, named like Flux's, and the process around the manager.

use std::path::PathBuf;

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
    /// How many objects of each kind are reconciled at once.
    #[arg(long, default_value_t = 4)]
    pub concurrent: u16,
    /// Where downloaded artifacts are unpacked for building (defaults to a folder under the
    /// storage path).
    #[arg(long)]
    pub artifact_cache: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    pub log_encoding: String,
}

pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    init_logging(&args.log_encoding);
    let storage_adv_addr = args.storage_adv_addr.clone().unwrap_or_else(|| {
        let addr = args.storage_addr;
        if addr.ip().is_unspecified() { format!("localhost:{}", addr.port()) } else { addr.to_string() }
    });
    let artifact_cache = args.artifact_cache.clone().unwrap_or_else(|| args.storage_path.join(".build-cache"));
    crate::controller::manager::run(crate::controller::manager::ManagerConfig {
        storage_path: args.storage_path,
        storage_addr: args.storage_addr,
        storage_adv_addr,
        health_addr: args.health_addr,
        metrics_addr: args.metrics_addr,
        concurrent: args.concurrent,
        artifact_cache,
    })
    .await
}

fn init_logging(encoding: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if encoding == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

