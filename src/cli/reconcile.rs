//! `ferroflux reconcile source git NAME` and `reconcile ks NAME [--with-source]`: request a
//! reconciliation with the `reconcile.fluxcd.io/requestedAt` annotation, then wait until the
//! controller has handled that request and says Ready, as `flux reconcile` does.

use std::time::Duration;

use clap::Subcommand;
use kube::Client;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use super::output;
use super::status::{self, FluxKind, Progress};
use super::{CliError, ClusterArgs};

#[derive(Subcommand, Debug)]
pub enum ReconcileTarget {
    /// Sources: `git NAME`.
    #[command(subcommand)]
    Source(SourceTarget),
    /// A Kustomization.
    #[command(alias = "ks", alias = "kustomizations")]
    Kustomization {
        name: String,
        /// Reconcile its source first.
        #[arg(long)]
        with_source: bool,
    },
    /// A webhook Receiver (re-reads its Secret and publishes its path).
    #[command(alias = "receivers")]
    Receiver { name: String },
}

#[derive(Subcommand, Debug)]
pub enum SourceTarget {
    /// A GitRepository.
    Git { name: String },
}

/// How often the object is read while waiting.
const POLL: Duration = Duration::from_secs(1);
/// How often a long wait says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

pub async fn run(cluster: &ClusterArgs, target: ReconcileTarget) -> Result<(), CliError> {
    let client = super::client(cluster).await?;
    let ns = cluster.namespace.as_str();
    match target {
        ReconcileTarget::Source(SourceTarget::Git { name }) => reconcile(&client, FluxKind::GitRepository, ns, &name, cluster.timeout).await,
        ReconcileTarget::Kustomization { name, with_source } => {
            if with_source {
                let ks = super::get_object(&client, FluxKind::Kustomization, ns, &name).await?;
                refuse_suspended(FluxKind::Kustomization, &ks)?;
                let (kind, source_ns, source_name) = source_of(&ks);
                let kind = FluxKind::from_name(&kind)
                    .filter(|k| *k == FluxKind::GitRepository)
                    .ok_or_else(|| CliError::Usage(format!("cannot reconcile source of kind {kind}: ferroflux serves GitRepository sources")))?;
                reconcile(&client, kind, &source_ns, &source_name, cluster.timeout).await?;
            }
            reconcile(&client, FluxKind::Kustomization, ns, &name, cluster.timeout).await
        }
        ReconcileTarget::Receiver { name } => reconcile(&client, FluxKind::Receiver, ns, &name, cluster.timeout).await,
    }
}

/// A Kustomization's `spec.sourceRef`: kind, namespace (its own by default) and name.
pub fn source_of(ks: &Value) -> (String, String, String) {
    let field = |p: &str| ks.pointer(p).and_then(Value::as_str).unwrap_or("").to_owned();
    let namespace = Some(field("/spec/sourceRef/namespace")).filter(|n| !n.is_empty()).unwrap_or_else(|| status::namespace_of(ks).to_owned());
    (field("/spec/sourceRef/kind"), namespace, field("/spec/sourceRef/name"))
}

fn refuse_suspended(kind: FluxKind, object: &Value) -> Result<(), CliError> {
    if status::is_suspended(object) {
        return Err(CliError::Suspended {
            kind: kind.name(),
            name: status::name_of(object).to_owned(),
            namespace: status::namespace_of(object).to_owned(),
            target: kind.object_target(),
        });
    }
    Ok(())
}

/// Annotates one object and waits for the reconciliation it requests.
pub async fn reconcile(client: &Client, kind: FluxKind, ns: &str, name: &str, timeout: Duration) -> Result<(), CliError> {
    let object = super::get_object(client, kind, ns, name).await?;
    refuse_suspended(kind, &object)?;
    output::action(format!("annotating {} {name} in {ns} namespace", kind.name()));
    let requested_at = jiff::Timestamp::now().to_string();
    super::flux_api(client, kind, Some(ns))
        .patch(name, &PatchParams::default(), &Patch::Merge(status::request_patch(&requested_at)))
        .await
        .map_err(super::CliError::api(format!("annotating {} '{name}'", kind.name())))?;
    output::success(format!("{} annotated", kind.name()));
    output::waiting(format!("waiting for {} reconciliation", kind.name()));
    let object = wait(client, kind, ns, name, Some(&requested_at), timeout).await?;
    output::success(kind.success_message(&object));
    Ok(())
}

/// Polls until the object is Ready (returned) or not Ready (an error) for its current
/// generation and, if given, the reconcile request; says so every few seconds when it takes long.
pub async fn wait(client: &Client, kind: FluxKind, ns: &str, name: &str, requested_at: Option<&str>, timeout: Duration) -> Result<Value, CliError> {
    let started = tokio::time::Instant::now();
    let mut next_progress = started + PROGRESS_EVERY;
    loop {
        let object = super::get_object(client, kind, ns, name).await?;
        match status::progress(&object, requested_at) {
            Progress::Ready => return Ok(object),
            Progress::Failed(message) => {
                return Err(CliError::ReconciliationFailed { kind: kind.name(), name: name.to_owned(), namespace: ns.to_owned(), message });
            }
            Progress::Waiting(why) => {
                let now = tokio::time::Instant::now();
                if now.duration_since(started) >= timeout {
                    return Err(CliError::Timeout { kind: kind.name(), name: name.to_owned(), namespace: ns.to_owned(), waited: timeout, last: why });
                }
                if now >= next_progress {
                    output::waiting(format!("still waiting for {} {name} after {}: {why}", kind.name(), output::human_duration(now.duration_since(started))));
                    next_progress = now + PROGRESS_EVERY;
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_source_defaults_to_the_kustomizations_namespace() {
        let ks = json!({"metadata": {"name": "apps", "namespace": "team"}, "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo"}}});
        assert_eq!(source_of(&ks), ("GitRepository".into(), "team".into(), "repo".into()));
        let ks = json!({"metadata": {"name": "apps", "namespace": "team"}, "spec": {"sourceRef": {"kind": "GitRepository", "name": "repo", "namespace": "flux-system"}}});
        assert_eq!(source_of(&ks).1, "flux-system");
    }
}
