//! `ferroflux get`: Flux's status tables, NAME REVISION SUSPENDED READY MESSAGE (NAMESPACE first
//! with `-A`), as `flux get` prints them.

use clap::Subcommand;
use serde_json::Value;

use super::output;
use super::status::{self, FluxKind};
use super::{CliError, ClusterArgs};

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// List the objects across all namespaces.
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    #[command(subcommand)]
    pub what: What,
}

#[derive(Subcommand, Debug)]
pub enum What {
    /// Sources: `git` (GitRepository) or `all`.
    #[command(subcommand, alias = "source")]
    Sources(Sources),
    /// Kustomizations.
    #[command(alias = "ks", alias = "kustomization")]
    Kustomizations {
        /// Only this one.
        name: Option<String>,
    },
    /// Webhook Receivers.
    #[command(alias = "receiver", alias = "rcv")]
    Receivers {
        /// Only this one.
        name: Option<String>,
    },
    /// Sources and Kustomizations.
    All,
}

#[derive(Subcommand, Debug)]
pub enum Sources {
    /// GitRepository sources.
    Git {
        /// Only this one.
        name: Option<String>,
    },
    /// All sources (ferroflux serves GitRepository).
    All,
}

pub async fn run(cluster: &ClusterArgs, args: GetArgs) -> Result<(), CliError> {
    let client = super::client(cluster).await?;
    let namespace = (!args.all_namespaces).then_some(cluster.namespace.as_str());
    // `get all` and `get sources all` prefix names with the kind and skip empty kinds silently.
    let all = matches!(args.what, What::All | What::Sources(Sources::All));
    let sections: Vec<(FluxKind, Option<String>)> = match args.what {
        What::Sources(Sources::Git { name }) => vec![(FluxKind::GitRepository, name)],
        What::Kustomizations { name } => vec![(FluxKind::Kustomization, name)],
        What::Receivers { name } => vec![(FluxKind::Receiver, name)],
        What::Sources(Sources::All) => vec![(FluxKind::GitRepository, None)],
        What::All => vec![(FluxKind::GitRepository, None), (FluxKind::Kustomization, None)],
    };
    let mut printed = false;
    for (kind, name) in sections {
        let mut objects = super::list_objects(&client, kind, namespace).await?;
        if let Some(name) = &name {
            objects.retain(|o| status::name_of(o) == name);
        }
        if objects.is_empty() {
            if all {
                continue;
            }
            return Err(match name {
                Some(name) if !args.all_namespaces => {
                    CliError::NotFound { kind: kind.name(), name, namespace: cluster.namespace.clone(), target: kind.verb_target() }
                }
                Some(name) => CliError::Usage(format!("{} '{name}' not found in any namespace", kind.name())),
                None if !args.all_namespaces => CliError::NoneFound { kind: kind.name(), namespace: cluster.namespace.clone(), target: kind.verb_target() },
                None => CliError::Usage(format!("no {} objects found in any namespace", kind.name())),
            });
        }
        if printed {
            println!();
        }
        print!("{}", table(kind, &objects, args.all_namespaces, all));
        printed = true;
    }
    if all && !printed {
        output::failure(format!(
            "no Flux objects found in {}",
            if args.all_namespaces { "any namespace".to_owned() } else { format!("namespace '{}'", cluster.namespace) }
        ));
    }
    Ok(())
}

/// The rows of one kind: `[NAMESPACE] NAME REVISION SUSPENDED READY MESSAGE`, names prefixed
/// with the lower-case kind (`kustomization/apps`) in `get all`; Receivers, which have no
/// revision, as `flux get receivers`: `NAME SUSPENDED READY MESSAGE`.
pub fn table(kind: FluxKind, objects: &[Value], with_namespace: bool, with_kind: bool) -> String {
    let revisioned = kind != FluxKind::Receiver;
    let mut headers = vec!["Name", "Revision", "Suspended", "Ready", "Message"];
    if !revisioned {
        headers.remove(1);
    }
    if with_namespace {
        headers.insert(0, "Namespace");
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|object| {
            let name = status::name_of(object);
            let name = if with_kind { format!("{}/{name}", kind.name().to_lowercase()) } else { name.to_owned() };
            let (ready, message) = status::ready_status(object);
            let suspended = if status::is_suspended(object) { "True" } else { "False" };
            let mut row = vec![name, output::truncate_hex(&kind.revision(object)), suspended.to_owned(), ready, output::truncate_hex(&message)];
            if !revisioned {
                row.remove(1);
            }
            if with_namespace {
                row.insert(0, status::namespace_of(object).to_owned());
            }
            row
        })
        .collect();
    output::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_revision_suspension_and_ready() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let objects = vec![
            json!({"metadata": {"name": "podinfo", "namespace": "flux-system"}, "spec": {"suspend": true},
                   "status": {"artifact": {"revision": format!("main@sha1:{sha}")},
                              "conditions": [{"type": "Ready", "status": "True", "message": format!("stored artifact for revision 'main@sha1:{sha}'")}]}}),
            json!({"metadata": {"name": "new", "namespace": "team"}, "spec": {}}),
        ];
        assert_eq!(
            table(FluxKind::GitRepository, &objects, false, false),
            "NAME   \tREVISION          \tSUSPENDED\tREADY\tMESSAGE\n\
             podinfo\tmain@sha1:01234567\tTrue     \tTrue \tstored artifact for revision 'main@sha1:01234567'\n\
             new    \t                  \tFalse    \tFalse\twaiting to be reconciled\n"
        );
        let receivers = vec![json!({"metadata": {"name": "github", "namespace": "flux-system"}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "status": "True", "message": "Receiver initialized for path: /hook/abc"}]}})];
        assert_eq!(
            table(FluxKind::Receiver, &receivers, false, false),
            "NAME  \tSUSPENDED\tREADY\tMESSAGE\ngithub\tFalse    \tTrue \tReceiver initialized for path: /hook/abc\n"
        );
        let all = table(FluxKind::GitRepository, &objects, true, true);
        let mut lines = all.lines();
        assert!(lines.next().is_some_and(|l| l.starts_with("NAMESPACE  \tNAME")));
        assert!(lines.next().is_some_and(|l| l.starts_with("flux-system\tgitrepository/podinfo")));
    }
}
