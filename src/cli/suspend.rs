//! `ferroflux suspend|resume source git|ks NAME...|--all`: set or clear `spec.suspend`; resume
//! then waits until the controller made the object Ready again, as `flux resume` does.

use clap::Subcommand;
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::output;
use super::reconcile;
use super::status::{self, FluxKind};
use super::{CliError, ClusterArgs};

#[derive(Subcommand, Debug)]
pub enum Target {
    /// Sources: `git NAME...|--all`.
    #[command(subcommand)]
    Source(SourceTarget),
    /// Kustomizations.
    #[command(alias = "ks", alias = "kustomizations")]
    Kustomization(Names),
}

#[derive(Subcommand, Debug)]
pub enum SourceTarget {
    /// GitRepositories.
    Git(Names),
}

#[derive(clap::Args, Debug)]
pub struct Names {
    /// The objects' names.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// All objects of the kind in the namespace.
    #[arg(long)]
    pub all: bool,
    /// (resume) Wait for each object to become Ready; the default with one name.
    #[arg(long)]
    pub wait: bool,
}

impl Target {
    fn split(self) -> (FluxKind, Names) {
        match self {
            Target::Source(SourceTarget::Git(names)) => (FluxKind::GitRepository, names),
            Target::Kustomization(names) => (FluxKind::Kustomization, names),
        }
    }
}

/// The objects named, or all of the kind in the namespace with `--all`; each name at most once.
async fn select(client: &Client, kind: FluxKind, ns: &str, names: &Names) -> Result<Vec<Value>, CliError> {
    if names.all {
        let objects = super::list_objects(client, kind, Some(ns)).await?;
        if objects.is_empty() {
            return Err(CliError::NoneFound { kind: kind.name(), namespace: ns.to_owned(), target: kind.verb_target() });
        }
        return Ok(objects);
    }
    let mut objects = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in names.names.iter().filter(|n| seen.insert(n.as_str())) {
        objects.push(super::get_object(client, kind, ns, name).await?);
    }
    Ok(objects)
}

async fn set_suspended(client: &Client, kind: FluxKind, ns: &str, name: &str, suspend: bool) -> Result<(), CliError> {
    super::flux_api(client, kind, Some(ns))
        .patch(name, &PatchParams::default(), &Patch::Merge(status::suspend_patch(suspend)))
        .await
        .map(|_| ())
        .map_err(CliError::api(format!("{} {} '{name}'", if suspend { "suspending" } else { "resuming" }, kind.name())))
}

pub async fn suspend(cluster: &ClusterArgs, target: Target) -> Result<(), CliError> {
    let client = super::client(cluster).await?;
    let ns = cluster.namespace.as_str();
    let (kind, names) = target.split();
    for object in select(&client, kind, ns, &names).await? {
        let name = status::name_of(&object);
        output::action(format!("suspending {} {name} in {ns} namespace", kind.human()));
        set_suspended(&client, kind, ns, name, true).await?;
        output::success(format!("{} suspended", kind.human()));
    }
    Ok(())
}

pub async fn resume(cluster: &ClusterArgs, target: Target) -> Result<(), CliError> {
    let client = super::client(cluster).await?;
    let ns = cluster.namespace.as_str();
    let (kind, names) = target.split();
    let wait = names.wait || (!names.all && names.names.len() == 1);
    let objects = select(&client, kind, ns, &names).await?;
    for object in &objects {
        let name = status::name_of(object);
        output::action(format!("resuming {} {name} in {ns} namespace", kind.human()));
        set_suspended(&client, kind, ns, name, false).await?;
        output::success(format!("{} resumed", kind.human()));
    }
    if !wait {
        return Ok(());
    }
    let mut failed = 0;
    for object in &objects {
        let name = status::name_of(object);
        output::waiting(format!("waiting for {} reconciliation", kind.name()));
        match reconcile::wait(&client, kind, ns, name, None, cluster.timeout).await {
            Ok(ready) => {
                output::success(format!("{} {name} reconciliation completed", kind.name()));
                output::success(kind.success_message(&ready));
            }
            Err(e) if objects.len() == 1 => return Err(e),
            Err(e) => {
                output::failure(format!("{} {name} reconciliation failed: {e}", kind.name()));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Usage(format!("reconciliation failed for {failed} {}(s)", kind.name())));
    }
    Ok(())
}
