//! `ferroflux events [--for Kind/name] [-A]`: the Events of GitRepositories and Kustomizations,
//! oldest first, LAST SEEN TYPE REASON OBJECT MESSAGE, as `flux events` prints them. With
//! `--for Kustomization/NAME`, also the Events of its source.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use super::output;
use super::status::FluxKind;
use super::{CliError, ClusterArgs};

#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Only the Events of this object (and, for a Kustomization, of its source): Kind/name.
    #[arg(long = "for", value_name = "KIND/NAME")]
    pub for_object: Option<String>,
    /// Events in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// The objects whose Events are shown: (kind, namespace or any, name or any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    pub kind: FluxKind,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

impl Selector {
    fn matches(&self, event: &Event) -> bool {
        let Some(regarding) = &event.regarding else { return false };
        regarding.kind.as_deref().and_then(FluxKind::from_name) == Some(self.kind)
            && self.name.as_ref().is_none_or(|n| regarding.name.as_ref() == Some(n))
            && self.namespace.as_ref().is_none_or(|ns| regarding.namespace.as_ref() == Some(ns))
    }
}

/// Parses `--for Kind/name` (or `Kind`).
pub fn parse_for(text: &str) -> Result<(FluxKind, Option<String>), CliError> {
    let (kind, name) = match text.split_once('/') {
        Some((kind, name)) => (kind, Some(name.to_owned()).filter(|n| !n.is_empty())),
        None => (text, None),
    };
    let kind = FluxKind::from_name(kind)
        .ok_or_else(|| CliError::Usage(format!("--for {text}: the kind must be GitRepository or Kustomization, as in --for Kustomization/apps")))?;
    Ok((kind, name))
}

pub async fn run(cluster: &ClusterArgs, args: EventsArgs) -> Result<(), CliError> {
    let client = super::client(cluster).await?;
    let namespace = (!args.all_namespaces).then(|| cluster.namespace.clone());
    let selectors = match &args.for_object {
        None => vec![
            Selector { kind: FluxKind::GitRepository, namespace: None, name: None },
            Selector { kind: FluxKind::Kustomization, namespace: None, name: None },
        ],
        Some(text) => {
            let (kind, name) = parse_for(text)?;
            let mut selectors = vec![Selector { kind, namespace: namespace.clone(), name: name.clone() }];
            if let (FluxKind::Kustomization, Some(name)) = (kind, &name) {
                let ks = super::get_object(&client, kind, &cluster.namespace, name).await?;
                let (source_kind, source_ns, source_name) = super::reconcile::source_of(&ks);
                if let Some(source_kind) = FluxKind::from_name(&source_kind) {
                    selectors.push(Selector { kind: source_kind, namespace: Some(source_ns), name: Some(source_name) });
                }
            }
            selectors
        }
    };
    // A source in another namespace needs that namespace's Events too.
    let mut namespaces: Vec<Option<String>> = vec![namespace.clone()];
    if namespace.is_some() {
        for s in &selectors {
            if s.namespace.is_some() && !namespaces.contains(&s.namespace) {
                namespaces.push(s.namespace.clone());
            }
        }
    }
    let mut events = Vec::new();
    for ns in &namespaces {
        let api: Api<Event> = match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let listed = api.list(&ListParams::default()).await.map_err(CliError::api("listing Events"))?;
        events.extend(listed.items.into_iter().filter(|e| selectors.iter().any(|s| s.matches(e))));
    }
    if events.is_empty() {
        match &namespace {
            Some(ns) => output::failure(format!("No events found in {ns} namespace.")),
            None => output::failure("No events found."),
        }
        return Ok(());
    }
    let show_namespace = namespaces.len() > 1 || namespace.is_none();
    print!("{}", table(events, Timestamp::now(), show_namespace));
    Ok(())
}

/// When an Event was last seen: its series' last observation, else its last timestamp, else its
/// time.
fn last_seen(event: &Event) -> Option<Timestamp> {
    event
        .series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or_else(|| event.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn first_seen(event: &Event) -> Option<Timestamp> {
    event.event_time.as_ref().map(|t| t.0).or_else(|| event.deprecated_first_timestamp.as_ref().map(|t| t.0))
}

fn age(now: Timestamp, then: Option<Timestamp>) -> String {
    match then {
        Some(then) => output::human_duration(now.duration_since(then).unsigned_abs()),
        None => "<unknown>".to_owned(),
    }
}

/// The table, oldest first: `5s`, or `5s (x3 over 2m)` for a repeated Event.
pub fn table(mut events: Vec<Event>, now: Timestamp, show_namespace: bool) -> String {
    events.sort_by_key(last_seen);
    let mut headers = vec!["Last seen", "Type", "Reason", "Object", "Message"];
    if show_namespace {
        headers.insert(0, "Namespace");
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let count = e.series.as_ref().map(|s| s.count).or(e.deprecated_count).unwrap_or(1);
            let seen = if count > 1 { format!("{} (x{count} over {})", age(now, last_seen(e)), age(now, first_seen(e))) } else { age(now, last_seen(e)) };
            let regarding = e.regarding.clone().unwrap_or_default();
            let mut row = vec![
                seen,
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                format!("{}/{}", regarding.kind.unwrap_or_default(), regarding.name.unwrap_or_default()),
                // One line per Event: a change list becomes comma-separated.
                e.note.clone().unwrap_or_default().trim().replace('\n', ", "),
            ];
            if show_namespace {
                row.insert(0, e.metadata.namespace.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    output::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::EventSeries;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn event(kind: &str, name: &str, at: Timestamp, reason: &str, note: &str) -> Event {
        Event {
            regarding: Some(ObjectReference { kind: Some(kind.into()), name: Some(name.into()), namespace: Some("flux-system".into()), ..Default::default() }),
            event_time: Some(MicroTime(at)),
            reason: Some(reason.into()),
            note: Some(note.into()),
            type_: Some("Normal".into()),
            metadata: kube::api::ObjectMeta { namespace: Some("flux-system".into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn events_are_sorted_oldest_first_with_series_counts() {
        let now: Timestamp = "2026-01-01T12:00:00Z".parse().expect("time");
        let minutes_ago = |m: i64| now - jiff::SignedDuration::from_mins(m);
        let mut repeated = event("GitRepository", "repo", minutes_ago(30), "GitOperationFailed", "auth failed");
        repeated.type_ = Some("Warning".into());
        repeated.series = Some(EventSeries { count: 3, last_observed_time: MicroTime(minutes_ago(1)) });
        let events =
            vec![repeated, event("Kustomization", "apps", minutes_ago(5), "Progressing", "Deployment/default/app configured\nService/default/app created")];
        assert_eq!(
            table(events, now, false),
            "LAST SEEN        \tTYPE   \tREASON            \tOBJECT            \tMESSAGE\n\
             5m               \tNormal \tProgressing       \tKustomization/apps\tDeployment/default/app configured, Service/default/app created\n\
             60s (x3 over 30m)\tWarning\tGitOperationFailed\tGitRepository/repo\tauth failed\n"
        );
    }

    #[test]
    fn for_selects_a_kind_and_name() {
        assert_eq!(parse_for("Kustomization/apps").ok(), Some((FluxKind::Kustomization, Some("apps".into()))));
        assert_eq!(parse_for("gitrepository").ok(), Some((FluxKind::GitRepository, None)));
        assert!(parse_for("Deployment/app").is_err());
        let selector = Selector { kind: FluxKind::Kustomization, namespace: Some("flux-system".into()), name: Some("apps".into()) };
        let now = Timestamp::now();
        assert!(selector.matches(&event("Kustomization", "apps", now, "x", "y")));
        assert!(!selector.matches(&event("Kustomization", "other", now, "x", "y")));
        assert!(!selector.matches(&event("GitRepository", "apps", now, "x", "y")));
    }
}
