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
    /// Print the CustomResourceDefinitions (GitRepository, Kustomization), or write them to a folder.
    Crds {
        /// Write one file per CRD into this folder instead of printing them.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the version.
    Version,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
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
