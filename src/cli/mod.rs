//! The `ferroflux` command line: the controller and Flux's CLI verbs in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::api::crd;

#[derive(Parser, Debug)]
#[command(name = "ferroflux", version, about = "GitOps for Kubernetes: a drop-in for the core of FluxCD")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the source and kustomize controllers (in-cluster, or against the current kubeconfig).
    Controller(ControllerArgs),
    /// Build a kustomization directory and print the objects, like `kubectl kustomize DIR`.
    Build {
        /// The directory holding kustomization.yaml.
        dir: PathBuf,
        /// Nothing outside this folder may be read (default: no limit beyond kustomize's own rule
        /// that a kustomization reads files only in or below its folder).
        #[arg(long)]
        root: Option<PathBuf>,
    },
    /// Print the CustomResourceDefinitions (GitRepository, Kustomization), or write them to a folder.
    Crds {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

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

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Controller(args) => controller(args).await?,
        Command::Build { dir, root } => build(&dir, root.as_deref())?,

        Command::Crds { dir } => crds(dir)?,
        Command::Version => println!("ferroflux {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(ExitCode::SUCCESS)
}

fn crds(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = crd::all().context("merging CRD versions")?;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for c in &crds {
                let path = dir.join(crd::file_name(c));
                std::fs::write(&path, crd::to_yaml(c)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        None => {
            for c in &crds {
                print!("{}", crd::to_yaml(c)?);
            }
        }
    }
    Ok(())
}

async fn controller(args: ControllerArgs) -> anyhow::Result<()> {
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

fn build(dir: &std::path::Path, root: Option<&std::path::Path>) -> anyhow::Result<()> {
    let objects = crate::kustomize::build(root.unwrap_or(std::path::Path::new("/")), dir, &crate::kustomize::BuildOptions::default())?;
    print!("{}", crate::kustomize::to_yaml(&objects));
    Ok(())
}
