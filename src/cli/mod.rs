//! The `ferroflux` command line: the controller and Flux's CLI verbs in one binary.
//!
//! The cluster is found as kubectl finds it (`--kubeconfig`, else `KUBECONFIG`, else
//! `~/.kube/config`, else the in-cluster service account; `--context` picks a context), and
//! objects are looked up in `-n/--namespace`, `flux-system` by default, as `flux` does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::Value;

use crate::api::crd;

pub mod build;
pub mod controller;
pub mod diff;
pub mod events;
pub mod get;
pub mod install;
pub mod output;
pub mod reconcile;
pub mod status;
pub mod suspend;
pub mod tree;

use status::FluxKind;

#[derive(Parser, Debug)]
#[command(name = "ferroflux", version, about = "GitOps for Kubernetes: a drop-in for the core of FluxCD")]
pub struct Cli {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the CLI's verbs find the cluster and the objects, named like kubectl's and flux's flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Path to a kubeconfig (default: $KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace of the Flux objects.
    #[arg(short = 'n', long, global = true, default_value = "flux-system", env = "FLUX_SYSTEM_NAMESPACE")]
    pub namespace: String,
    /// How long to wait for an operation (reconcile, resume), e.g. 30s, 5m, 1h.
    #[arg(long, global = true, default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    crate::api::meta::parse_duration(text).map_err(|_| format!("'{text}' is not a duration such as 30s, 5m or 1h"))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the source and kustomize controllers (in-cluster, or against the current kubeconfig).
    Controller(Box<controller::ControllerArgs>),
    /// Print Flux objects and their status.
    Get(get::GetArgs),
    /// Request a reconciliation now and wait for its result.
    #[command(subcommand)]
    Reconcile(reconcile::ReconcileTarget),
    /// Stop reconciling objects (spec.suspend: true).
    #[command(subcommand)]
    Suspend(suspend::Target),
    /// Reconcile suspended objects again, and wait until they are Ready.
    #[command(subcommand)]
    Resume(suspend::Target),
    /// Build a kustomization directory and print the objects, like `kubectl kustomize DIR`;
    /// or, with `build ks NAME --path DIR`, build DIR as the Kustomization NAME in the cluster
    /// would.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Build {
        #[command(subcommand)]
        kustomization: Option<build::BuildTarget>,
        /// The directory holding kustomization.yaml.
        #[arg(required = true)]
        dir: Option<PathBuf>,
        /// Nothing outside this folder may be read (default: no limit beyond kustomize's own rule
        /// that a kustomization reads files only in or below its folder).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Allow remote (Git URL) bases and components; without it they are refused, so a build
        /// reads only local files.
        #[arg(long)]
        enable_remote: bool,
    },
    /// Show what applying a local directory as a Kustomization would change in the cluster.
    /// Exit code 0: no differences; 1: differences; 2: error.
    #[command(subcommand)]
    Diff(diff::DiffTarget),
    /// Print the objects a Kustomization applied, and theirs, as a tree.
    #[command(subcommand)]
    Tree(tree::TreeTarget),
    /// Print the Events of GitRepositories and Kustomizations, oldest first.
    Events(events::EventsArgs),
    /// Print a shell completion script: `source <(ferroflux completions bash)`.
    Completions { shell: clap_complete::Shell },
    /// Print the CustomResourceDefinitions (GitRepository, Kustomization), or write them to a folder.
    Crds {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Install the controller into the current kubeconfig's cluster, or print its manifests (--export).
    Install(install::InstallArgs),
    /// Print the version.
    Version,
}

impl Command {
    /// Whether the verb talks to a cluster (or runs the controller), and so needs tokio's
    /// runtime. The local verbs run without it: starting its threads and I/O driver was a large
    /// part of a small `ferroflux build`.
    pub fn needs_runtime(&self) -> bool {
        !matches!(
            self,
            Command::Build { kustomization: None, .. }
                | Command::Crds { .. }
                | Command::Version
                | Command::Completions { .. }
                | Command::Install(install::InstallArgs { export: true, .. })
        )
    }
}

/// Failures of the CLI's verbs, each saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot load the kubeconfig: {0}; name the file with --kubeconfig or KUBECONFIG, and the context with --context")]
    Kubeconfig(String),
    #[error("{kind} '{name}' not found in namespace '{namespace}'; list them with `ferroflux get {target} -A`")]
    NotFound { kind: &'static str, name: String, namespace: String, target: &'static str },
    #[error("no {kind} objects found in namespace '{namespace}'; list all namespaces with `ferroflux get {target} -A`")]
    NoneFound { kind: &'static str, namespace: String, target: &'static str },
    #[error("{kind} '{name}' in namespace '{namespace}' is suspended; resume it with `ferroflux resume {target} {name} -n {namespace}`")]
    Suspended { kind: &'static str, name: String, namespace: String, target: &'static str },
    #[error("{kind} reconciliation failed: '{message}'; see `ferroflux events --for {kind}/{name} -n {namespace}`")]
    ReconciliationFailed { kind: &'static str, name: String, namespace: String, message: String },
    #[error(
        "timed out after {waited:?} waiting for {kind} '{name}' ({last}); check that the controller runs, see `ferroflux events --for {kind}/{name} -n {namespace}`, or raise --timeout"
    )]
    Timeout { kind: &'static str, name: String, namespace: String, waited: Duration, last: String },
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Api { context: String, source: kube::Error },
}

impl CliError {
    fn api(context: impl Into<String>) -> impl FnOnce(kube::Error) -> CliError {
        let context = context.into();
        move |source| CliError::Api { context, source }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let cluster = cli.cluster;
    match cli.command {
        Command::Controller(args) => controller::run(*args).await?,
        Command::Get(args) => get::run(&cluster, args).await?,
        Command::Reconcile(target) => reconcile::run(&cluster, target).await?,
        Command::Suspend(target) => suspend::suspend(&cluster, target).await?,
        Command::Resume(target) => suspend::resume(&cluster, target).await?,
        Command::Build { kustomization: Some(target), .. } => build::run(&cluster, target).await?,
        Command::Build { kustomization: None, dir, root, enable_remote } => {
            let dir = dir.ok_or_else(|| CliError::Usage("ferroflux build needs a directory, or `ks NAME --path DIR`".into()))?;
            build_dir(&dir, root.as_deref(), enable_remote)?
        }
        Command::Diff(target) => return diff::run(&cluster, target).await,
        Command::Tree(target) => tree::run(&cluster, target).await?,
        Command::Events(args) => events::run(&cluster, args).await?,
        Command::Completions { shell } => {
            // Rendered first, then written: a closed pipe (`| head`) ends the output quietly
            // instead of panicking inside the generator.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ferroflux", &mut script);
            write_stdout(&script)?;
        }
        Command::Crds { dir } => crds(dir)?,
        Command::Install(args) => install::run(&cluster, args).await?,
        Command::Version => println!("ferroflux {}", env!("CARGO_PKG_VERSION")),
    }
    Ok(ExitCode::SUCCESS)
}

/// A client for the cluster `args` names, resolved as kubectl resolves it.
pub async fn client(args: &ClusterArgs) -> Result<Client, CliError> {
    let options = KubeConfigOptions { context: args.context.clone(), ..KubeConfigOptions::default() };
    let from_env = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
    let config = match (&args.kubeconfig, from_env) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| CliError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| CliError::Kubeconfig(e.to_string()))?
        }
        (None, Some(list)) => {
            let kubeconfig = merged_kubeconfig(&list)?;
            Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| CliError::Kubeconfig(e.to_string()))?
        }
        (None, None) => match Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            // No kubeconfig at all: inside a pod, the service account.
            Err(kubeconfig_error) if args.context.is_none() => Config::incluster().map_err(|_| CliError::Kubeconfig(kubeconfig_error.to_string()))?,
            Err(e) => return Err(CliError::Kubeconfig(e.to_string())),
        },
    };
    Client::try_from(config).map_err(|e| CliError::Kubeconfig(e.to_string()))
}

/// The files of `KUBECONFIG` merged as kubectl merges them: the first file to set a value wins,
/// and files that do not exist are skipped.
fn merged_kubeconfig(list: &std::ffi::OsStr) -> Result<Kubeconfig, CliError> {
    let mut merged: Option<Kubeconfig> = None;
    for path in std::env::split_paths(list).filter(|p| p.is_file()) {
        let next = Kubeconfig::read_from(&path).map_err(|e| CliError::Kubeconfig(format!("{}: {e}", path.display())))?;
        merged = Some(match merged {
            None => next,
            Some(first) => first.merge(next).map_err(|e| CliError::Kubeconfig(e.to_string()))?,
        });
    }
    merged.ok_or_else(|| CliError::Kubeconfig(format!("none of the files in KUBECONFIG={} exists", list.to_string_lossy())))
}

/// The API of one of our kinds in `namespace`, or in all namespaces.
pub fn flux_api(client: &Client, kind: FluxKind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &kind.resource()),
        None => Api::all_with(client.clone(), &kind.resource()),
    }
}

/// Reads one of our objects as JSON; not found is an error that says how to list them.
pub async fn get_object(client: &Client, kind: FluxKind, namespace: &str, name: &str) -> Result<Value, CliError> {
    let found = flux_api(client, kind, Some(namespace))
        .get_opt(name)
        .await
        .map_err(CliError::api(format!("reading {} '{name}' in namespace '{namespace}'", kind.name())))?;
    match found {
        Some(object) => Ok(serde_json::to_value(object).unwrap_or(Value::Null)),
        None => Err(CliError::NotFound { kind: kind.name(), name: name.to_owned(), namespace: namespace.to_owned(), target: kind.verb_target() }),
    }
}

/// Lists our objects of `kind` as JSON, sorted by namespace and name.
pub async fn list_objects(client: &Client, kind: FluxKind, namespace: Option<&str>) -> Result<Vec<Value>, CliError> {
    let listed = flux_api(client, kind, namespace).list(&ListParams::default()).await.map_err(CliError::api(format!("listing {} objects", kind.name())))?;
    let mut objects: Vec<Value> = listed.items.into_iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
    objects.sort_by(|a, b| (status::namespace_of(a), status::name_of(a)).cmp(&(status::namespace_of(b), status::name_of(b))));
    Ok(objects)
}

fn crds(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let crds = crd::all().context("merging CRD versions")?;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            for c in &crds {
                let path = dir.join(crd::file_name(c));
                std::fs::write(&path, crd::to_yaml(c)?).with_context(|| format!("writing {}", path.display()))?;
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

/// Writes to stdout; a reader that went away (a closed pipe) is not an error.
fn write_stdout(bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

fn build_dir(dir: &Path, root: Option<&Path>, enable_remote: bool) -> anyhow::Result<()> {
    let options = crate::kustomize::BuildOptions { enable_remote };
    let objects = crate::kustomize::build(root.unwrap_or(Path::new("/")), dir, &options)?;
    write_stdout(crate::kustomize::to_yaml(&objects).as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn build_takes_a_directory_or_a_kustomization() {
        let cli = Cli::try_parse_from(["ferroflux", "build", "./apps"]).expect("build DIR");
        assert!(matches!(cli.command, Command::Build { kustomization: None, dir: Some(_), .. }));
        let cli = Cli::try_parse_from(["ferroflux", "build", "ks", "apps", "--path", "./apps", "-n", "team"]).expect("build ks");
        assert!(matches!(cli.command, Command::Build { kustomization: Some(_), .. }));
        assert_eq!(cli.cluster.namespace, "team");
        assert!(Cli::try_parse_from(["ferroflux", "build"]).is_err());
    }

    #[test]
    fn flags_default_like_flux() {
        let cli = Cli::try_parse_from(["ferroflux", "get", "ks"]).expect("get ks");
        assert_eq!(cli.cluster.timeout, Duration::from_secs(300));
        assert!(Cli::try_parse_from(["ferroflux", "get", "kustomizations", "-A", "--timeout", "30s"]).is_ok());
        assert!(Cli::try_parse_from(["ferroflux", "reconcile", "ks", "apps", "--timeout", "soon"]).is_err());
    }
}
