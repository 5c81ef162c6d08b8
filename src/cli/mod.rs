//! The `ferroflux` command line: the controller and Flux's CLI verbs in one binary.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::api::crd;

pub mod controller;
pub mod install;

#[derive(Parser, Debug)]
#[command(name = "ferroflux", version, about = "GitOps for Kubernetes: a drop-in for the core of FluxCD")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the source and kustomize controllers (in-cluster, or against the current kubeconfig).
    Controller(controller::ControllerArgs),
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
    /// Install the controller into the current kubeconfig's cluster, or print its manifests (--export).
    Install(install::InstallArgs),
    /// Print the version.
    Version,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Controller(args) => controller::run(args).await?,
        Command::Build { dir, root } => build(&dir, root.as_deref())?,

        Command::Crds { dir } => crds(dir)?,
        Command::Install(args) => install::run(args).await?,
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

fn build(dir: &std::path::Path, root: Option<&std::path::Path>) -> anyhow::Result<()> {
    let objects = crate::kustomize::build(root.unwrap_or(std::path::Path::new("/")), dir, &crate::kustomize::BuildOptions::default())?;
    print!("{}", crate::kustomize::to_yaml(&objects));
    Ok(())
}
