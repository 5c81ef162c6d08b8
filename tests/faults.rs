//! Faults end converged: controllers killed with SIGKILL at chosen moments and restarted, a
//! kube-apiserver stopped and started again with the same flags, Git remotes that accept and
//! never answer, SIGTERM with a reconcile stuck, two instances without leader election, and a
//! namespace deleted under a Kustomization that impersonates a ServiceAccount.
//!
//! Each test runs its own controller processes (objects carry a shard label the shared
//! controller ignores) and asserts the end state: exactly the desired objects, inventories that
//! match the cluster, no object with our ownership labels outside every inventory, no desired
//! object deleted. Times to converge are printed (run with `--nocapture`), never asserted
//! against a threshold; every wait has a generous deadline.

#[path = "support/faults.rs"]
mod fault;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use fault::{BlackHole, Controller, OwnControlPlane};
use support::{SHARD_LABEL, TestRepo};

const NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";

async fn setup(test: &str) -> (Client, String) {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, test).await;
    (client, ns)
}

/// The flags of a controller that reconciles only the objects of `ns` (they carry its shard
/// label; the shared controller leaves them alone).
fn shard_flags(ns: &str) -> Vec<String> {
    vec!["--watch-label-selector".into(), format!("{SHARD_LABEL}={ns}")]
}

fn flags(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

async fn git_repository(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    support::create_object(
        client,
        ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "labels": {SHARD_LABEL: ns}}, "spec": spec}),
    )
    .await
    .unwrap_or_else(|e| panic!("creating GitRepository {name}: {e}"));
}

async fn kustomization(client: &Client, ns: &str, name: &str, spec: serde_json::Value) {
    support::create_object(
        client,
        ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "labels": {SHARD_LABEL: ns}}, "spec": spec}),
    )
    .await
    .unwrap_or_else(|e| panic!("creating Kustomization {name}: {e}"));
}

/// A scenario's GitRepository and Kustomization, both named `name`: `repo`'s main branch polled
/// every `poll`, `path` applied into `ns` with prune. The Kustomization's interval is long (10m),
/// so only the source's new revisions trigger its reconciles.
async fn source_and_kustomization(client: &Client, ns: &str, name: &str, repo: &TestRepo, poll: &str, path: &str) {
    git_repository(client, ns, name, json!({"interval": poll, "url": repo.http_url(), "ref": {"branch": "main"}})).await;
    kustomization(
        client,
        ns,
        name,
        json!({"interval": "10m", "prune": true, "path": path, "targetNamespace": ns,
        "sourceRef": {"kind": "GitRepository", "name": name}}),
    )
    .await;
}

/// `count` ConfigMaps named `<prefix>-<i>`, as one multi-document file.
fn config_maps(prefix: &str, count: usize) -> String {
    (0..count).map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {prefix}-{i}\ndata:\n  n: \"{i}\"\n")).collect::<Vec<_>>().join("---\n")
}

fn names(prefix: &str, count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

/// The ConfigMaps of `ns` carrying the ownership label of Kustomization `ks`, by name with uid.
async fn labelled(client: &Client, ns: &str, ks: &str) -> BTreeMap<String, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api.list(&ListParams::default().labels(&format!("{NAME_LABEL}={ks}"))).await {
        Ok(list) => list.items.into_iter().filter(|c| c.metadata.deletion_timestamp.is_none()).map(|c| (c.name_any(), c.uid().unwrap_or_default())).collect(),
        Err(_) => BTreeMap::new(),
    }
}

/// The ConfigMap names in a Kustomization's inventory (ids `<ns>_<name>__ConfigMap`).
fn inventory_config_maps(ks: &Kustomization) -> BTreeSet<String> {
    ks.status
        .as_ref()
        .and_then(|s| s.inventory.as_ref())
        .map(|inv| inv.entries.iter().filter_map(|e| e.id.strip_suffix("__ConfigMap")?.split_once('_').map(|(_, n)| n.to_owned())).collect())
        .unwrap_or_default()
}

async fn get_ks(client: &Client, ns: &str, name: &str) -> Option<Kustomization> {
    Api::<Kustomization>::namespaced(client.clone(), ns).get_opt(name).await.ok().flatten()
}

fn ready_of(conditions: Option<&Vec<Condition>>) -> Option<&Condition> {
    conditions?.iter().find(|c| c.type_ == "Ready")
}

/// Waits until the Kustomization reports `revision` applied; panics with the controller's log.
async fn wait_applied(client: &Client, ns: &str, name: &str, commit: &str, within: Duration, controller: &Controller) -> Kustomization {
    let wanted = format!("Applied revision: main@sha1:{commit}");
    let ready = |ks: &Option<Kustomization>| ks.as_ref().and_then(|k| ready_of(k.status.as_ref().map(|s| &s.conditions))).cloned();
    let found = support::wait_for(within, || async { ready(&get_ks(client, ns, name).await).is_some_and(|c| c.status == "True" && c.message == wanted) }).await;
    let ks = get_ks(client, ns, name).await;
    let last = ready(&ks).map(|c| (c.status, c.reason, c.message));
    assert!(found.is_some(), "Kustomization {name} never applied {commit}; last Ready {last:?}\ncontroller log:\n{}", controller.log_tail());
    ks.expect("the Kustomization")
}

/// Finding 1: the inventory a reconcile prunes against is the latest one written. A revision
/// adding 400 ConfigMaps is being applied when the controller is SIGKILLed; a revert is pushed;
/// the restarted controller must end with exactly the first revision's objects: the 400 pruned
/// (none left labelled outside the inventory), none of the first 100 deleted or recreated.
#[tokio::test]
async fn controller_killed_mid_apply_then_reverted_ends_with_exactly_the_desired_objects() {
    let (client, ns) = setup("fault-kill-apply").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("a.yaml", &config_maps("a", 100))], "A: 100 ConfigMaps");
    let shard = shard_flags(&ns);
    let mut controller = Controller::start(support::kubeconfig(), &flags(&shard));
    source_and_kustomization(&client, &ns, "app", &repo, "1s", "./").await;
    wait_applied(&client, &ns, "app", &first, Duration::from_secs(180), &controller).await;
    let desired = names("a", 100);
    let original_uids = labelled(&client, &ns, "app").await;
    assert_eq!(original_uids.keys().cloned().collect::<BTreeSet<_>>(), desired);

    // B adds 400; SIGKILL once some of them exist.
    repo.commit(&[("b.yaml", &config_maps("b", 400))], "B: 400 more");
    let started = support::wait_for(Duration::from_secs(180), || async { labelled(&client, &ns, "app").await.len() > 110 }).await;
    assert!(started.is_some(), "B was never applied:\n{}", controller.log_tail());
    controller.kill();
    let at_kill = labelled(&client, &ns, "app").await.len();
    println!("killed the controller with {at_kill} of 500 ConfigMaps of revision B applied");

    // C reverts B; the controller comes back.
    let revert = repo.remove("b.yaml", "C: revert B");
    let restarted = Instant::now();
    controller.restart();
    let converged = support::wait_for(Duration::from_secs(240), || async {
        let Some(ks) = get_ks(&client, &ns, "app").await else { return false };
        let applied = ks.status.as_ref().and_then(|s| s.last_applied_revision.clone()).unwrap_or_default();
        let live: BTreeSet<String> = labelled(&client, &ns, "app").await.into_keys().collect();
        applied.ends_with(&revert) && live == desired && inventory_config_maps(&ks) == desired
    })
    .await;
    let ks = get_ks(&client, &ns, "app").await.expect("the Kustomization");
    let live = labelled(&client, &ns, "app").await;
    assert!(
        converged.is_some(),
        "did not converge on revision C: {} labelled ConfigMaps ({} not desired), inventory of {}, last applied {:?}\ncontroller log:\n{}",
        live.len(),
        live.keys().filter(|n| !desired.contains(*n)).count(),
        inventory_config_maps(&ks).len(),
        ks.status.as_ref().and_then(|s| s.last_applied_revision.clone()),
        controller.log_tail()
    );
    println!("converged on revision C {:?} after the restart", restarted.elapsed());
    // No object of the desired set was deleted (or deleted and recreated) on the way.
    assert_eq!(live, original_uids, "desired ConfigMaps were deleted and recreated");
}

/// Finding 2: after the kube-apiserver restarts, new source revisions reach the Kustomization
/// within seconds through the watches, not at its (10 minute) interval. Also `/readyz` says
/// not-ready while the API server is down, and ready again after.
#[tokio::test]
async fn after_a_kube_apiserver_restart_new_revisions_apply_through_the_watches() {
    let plane = tokio::task::spawn_blocking(OwnControlPlane::start).await.expect("control plane");
    let client = support::client_for(&plane.kubeconfig()).await;
    support::apply_crds(client.clone()).await;
    let ns = support::namespace(&client, "fault-apiserver").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("a.yaml", &config_maps("a", 3))], "first");
    let controller = Controller::start(&plane.kubeconfig(), &[]);
    source_and_kustomization(&client, &ns, "app", &repo, "2s", "./").await;
    wait_applied(&client, &ns, "app", &first, Duration::from_secs(180), &controller).await;
    let readyz = controller.readyz_url();
    assert_eq!(fault::http_get(&readyz).await.map(|(s, _)| s), Some(200), "readyz before the outage");

    plane.stop_apiserver();
    // Checked at the end, so that a failure here does not hide how the watches recover.
    let unready = support::wait_for(Duration::from_secs(30), || async { fault::http_get(&readyz).await.is_some_and(|(s, _)| s == 503) }).await;
    // Pushes during a 15 s outage (a deliberate outage length, not a wait for absence).
    for i in 0..3 {
        repo.commit(&[("during.yaml", &config_maps(&format!("during-{i}"), 1))], &format!("during the outage {i}"));
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    plane.start_apiserver();
    let back = Instant::now();
    let ready_again = support::wait_for(Duration::from_secs(60), || async { fault::http_get(&readyz).await.is_some_and(|(s, _)| s == 200) }).await;
    println!("/readyz ready {:?} after the API server was back", back.elapsed());

    // A push after the restart reaches the Kustomization through the GitRepository watch: its
    // own interval is 10 minutes. Before the fix it waited for the watches' shared backoff
    // (up to ~2 minutes measured).
    let after = repo.commit(&[("after.yaml", &config_maps("after", 1))], "after the restart");
    let pushed = Instant::now();
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    support::wait_for(Duration::from_secs(30), || async {
        repos.get("app").await.ok().and_then(|r| r.status?.artifact).is_some_and(|a| a.revision.ends_with(&after))
    })
    .await;
    println!("the GitRepository stored the revision pushed after the restart in {:?}", pushed.elapsed());
    wait_applied(&client, &ns, "app", &after, Duration::from_secs(30), &controller).await;
    println!("revision pushed after the API server restart applied in {:?} ({:?} after it was back)", pushed.elapsed(), back.elapsed());
    let ks = get_ks(&client, &ns, "app").await.expect("the Kustomization");
    let live: BTreeSet<String> = labelled(&client, &ns, "app").await.into_keys().collect();
    let mut desired = names("a", 3);
    desired.extend(["during-2-0".to_owned(), "after-0".to_owned()]);
    // during.yaml was overwritten by each push: only the last one's ConfigMap is desired.
    assert_eq!(live, desired);
    assert_eq!(inventory_config_maps(&ks), desired);
    assert!(unready.is_some(), "/readyz kept answering ready with the API server down:\n{}", controller.log_tail());
    assert!(ready_again.is_some(), "/readyz never became ready again:\n{}", controller.log_tail());
}

/// Finding 3 and #11 High 2: more stuck objects than `--concurrent` (GitRepositories whose
/// remote accepts and never answers, Kustomizations whose build hangs on such a remote base)
/// each get their turn and end `Ready=False` with their timeout, while a healthy GitRepository
/// and Kustomization keep applying new commits. The stuck conditions' lastTransitionTime is
/// when they failed, not when their reconcile started.
#[tokio::test]
async fn stuck_sources_and_builds_hold_no_worker_past_their_timeout() {
    let (client, ns) = setup("fault-stuck").await;
    let hole = BlackHole::start();
    let repo = TestRepo::new(&format!("{ns}-healthy"));
    let stuck_base = format!("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- {}\n", hole.url("remote.git//base?ref=main"));
    let first = repo.commit(&[("app/a.yaml", &config_maps("a", 1)), ("stuck/kustomization.yaml", &stuck_base)], "first");
    let mut shard = shard_flags(&ns);
    shard.extend(["--concurrent".to_owned(), "2".to_owned()]);
    let controller = Controller::start(support::kubeconfig(), &flags(&shard));
    source_and_kustomization(&client, &ns, "healthy", &repo, "2s", "./app").await;
    wait_applied(&client, &ns, "healthy", &first, Duration::from_secs(120), &controller).await;

    let stuck_repos: Vec<String> = (0..6).map(|i| format!("stuck-{i}")).collect();
    for name in &stuck_repos {
        git_repository(&client, &ns, name, json!({"interval": "2s", "timeout": "4s", "url": hole.url(&format!("{name}.git")), "ref": {"branch": "main"}}))
            .await;
    }
    let stuck_builds: Vec<String> = (0..3).map(|i| format!("stuck-build-{i}")).collect();
    for name in &stuck_builds {
        kustomization(
            &client,
            &ns,
            name,
            json!({"interval": "3s", "timeout": "4s", "prune": true, "path": "./stuck", "targetNamespace": ns,
            "sourceRef": {"kind": "GitRepository", "name": "healthy"}}),
        )
        .await;
    }

    // The healthy pair keeps applying new commits meanwhile.
    let mut latencies = Vec::new();
    for i in 0..3 {
        let commit = repo.commit(&[("app/a.yaml", &config_maps("a", i + 2))], &format!("healthy {i}"));
        let pushed = Instant::now();
        wait_applied(&client, &ns, "healthy", &commit, Duration::from_secs(90), &controller).await;
        latencies.push(pushed.elapsed());
    }
    println!("with 6 stuck sources and 3 stuck builds on 2 workers each, healthy pushes applied after {latencies:?}");

    // Every stuck object got its turn: each ended Ready=False, with its timeout.
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    for name in &stuck_repos {
        let repo = support::wait_ready(&repos, name, "False", "", Duration::from_secs(120), |o| o.status.as_ref().map(|s| &s.conditions)).await;
        // The condition changed when the fetch failed, at least ~4 s after the object was
        // created (1 s slack for clocks rounded to seconds).
        let created = repo.metadata.creation_timestamp.as_ref().expect("creationTimestamp").0;
        let ready = ready_of(repo.status.as_ref().map(|s| &s.conditions)).expect("Ready").clone();
        // Our deadline or the Git session's own, whichever ends first.
        assert!(ready.message.contains("timeout") || ready.message.contains("timed out"), "{name}: {}", ready.message);
        let after = ready.last_transition_time.0.duration_since(created);
        assert!(
            after >= jiff::SignedDuration::from_secs(3),
            "{name}: Ready=False at {} is only {after:?} after creation: the reconcile's start, not the failure",
            ready.last_transition_time.0
        );
    }
    let kss: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    for name in &stuck_builds {
        let ks = support::wait_ready(&kss, name, "False", "", Duration::from_secs(120), |o| o.status.as_ref().map(|s| &s.conditions)).await;
        let ready = ready_of(ks.status.as_ref().map(|s| &s.conditions)).expect("Ready");
        assert_eq!(ready.reason, "BuildFailed", "{name}: {}", ready.message);
        assert!(ready.message.contains("timeout after 4s"), "{name}: not its own timeout: {}", ready.message);
    }
    assert!(hole.accepted() > 0, "nothing ever connected to the stuck remote");
    let live: BTreeSet<String> = labelled(&client, &ns, "healthy").await.into_keys().collect();
    assert_eq!(live, names("a", 4));
}

/// Finding 4: SIGTERM with a reconcile stuck on a remote that never answers (its own timeout is
/// 2 minutes) exits within the graceful shutdown timeout, says not-ready meanwhile, and
/// releases the Lease.
#[tokio::test]
async fn sigterm_with_a_stuck_reconcile_exits_within_the_shutdown_deadline() {
    let (client, ns) = setup("fault-shutdown").await;
    let hole = BlackHole::start();
    let mut shard = shard_flags(&ns);
    shard.extend(
        [
            "--enable-leader-election",
            "--leader-election-namespace",
            &ns,
            "--leader-election-lease-duration",
            "60s",
            "--leader-election-retry-period",
            "1s",
            "--graceful-shutdown-timeout",
            "3s",
        ]
        .map(String::from),
    );
    let mut controller = Controller::start(support::kubeconfig(), &flags(&shard));
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let holder =
        || async { leases.get_opt("ferroflux-leader-election").await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity).unwrap_or_default() };
    let leading = support::wait_for(Duration::from_secs(60), || async { !holder().await.is_empty() }).await;
    assert!(leading.is_some(), "never became leader:\n{}", controller.log_tail());
    git_repository(&client, &ns, "stuck", json!({"interval": "1m", "timeout": "2m", "url": hole.url("stuck.git"), "ref": {"branch": "main"}})).await;
    let in_flight = support::wait_for(Duration::from_secs(60), || async { hole.accepted() > 0 }).await;
    assert!(in_flight.is_some(), "the fetch never started:\n{}", controller.log_tail());

    let readyz = controller.readyz_url();
    let started = Instant::now();
    fault::signal(controller.pid(), "-TERM");
    let mut saw_not_ready = false;
    while controller.running() && started.elapsed() < Duration::from_secs(60) {
        if fault::http_get(&readyz).await.is_some_and(|(s, _)| s == 503) {
            saw_not_ready = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let still_running = controller.running();
    let log = controller.log_tail();
    assert!(!still_running, "still running {took:?} after SIGTERM with a 3s graceful shutdown timeout:\n{log}");
    println!("exited {took:?} after SIGTERM (graceful shutdown timeout 3s, the stuck fetch's own timeout 2m)");
    assert!(saw_not_ready, "/readyz never said not-ready during the shutdown:\n{log}");
    assert!(log.contains("abandoned"), "{log}");
    assert!(holder().await.is_empty(), "the Lease was not released: {}", holder().await);
}

/// NewArtifact Events about `revision` on GitRepository `name` (a series counts as its count).
async fn new_artifact_events(client: &Client, ns: &str, name: &str, revision: &str) -> i32 {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some("NewArtifact") && e.note.as_deref().is_some_and(|n| n.contains(revision)))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum()
}

async fn repo_reconciles(metrics_url: &str, ns: &str) -> u64 {
    fault::reconcile_count(metrics_url, "GitRepository", ns, "app").await
}

/// Finding 5: two instances without leader election (different storage addresses) reconcile
/// the same GitRepository without rewriting each other's status (no status write at all while
/// nothing changes) and announce each new revision once.
#[tokio::test]
async fn two_controllers_without_leader_election_do_not_churn_status_or_events() {
    let (client, ns) = setup("fault-two").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("a.yaml", &config_maps("a", 1))], "first");
    let shard = shard_flags(&ns);
    let one = Controller::start(support::kubeconfig(), &flags(&shard));
    let two = Controller::start(support::kubeconfig(), &flags(&shard));
    git_repository(&client, &ns, "app", json!({"interval": "1s", "url": repo.http_url(), "ref": {"branch": "main"}})).await;
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);

    for round in 0..2 {
        // The second round's revision is pushed once the first was checked.
        let commit = if round == 0 { first.clone() } else { repo.commit(&[("a.yaml", &config_maps("a", 2))], "second") };
        let stored = support::wait_for(Duration::from_secs(120), || async {
            repos
                .get("app")
                .await
                .ok()
                .is_some_and(|r| ready_of(r.status.as_ref().map(|s| &s.conditions)).is_some_and(|c| c.status == "True" && c.message.contains(&commit)))
        })
        .await;
        let last = repos.get("app").await.ok().and_then(|r| ready_of(r.status.as_ref().map(|s| &s.conditions)).cloned()).map(|c| c.message);
        assert!(stored.is_some(), "{commit} never stored; last Ready {last:?}\n{}\n---\n{}", one.log_tail(), two.log_tail());
        // Both instances reconcile it a few more times; nothing may be written meanwhile.
        let (url_one, url_two) = (one.metrics_url(), two.metrics_url());
        let settle = support::wait_for(Duration::from_secs(60), || async {
            let (a, b) = (repo_reconciles(&url_one, &ns).await, repo_reconciles(&url_two, &ns).await);
            a > 0 && b > 0
        })
        .await;
        assert!(settle.is_some(), "one of the instances never reconciled:\n{}\n---\n{}", one.log_tail(), two.log_tail());
        // Let both store the revision (the second may still be fetching its own copy).
        let (base_one, base_two) = (repo_reconciles(&url_one, &ns).await, repo_reconciles(&url_two, &ns).await);
        support::wait_for(Duration::from_secs(60), || async {
            repo_reconciles(&url_one, &ns).await >= base_one + 2 && repo_reconciles(&url_two, &ns).await >= base_two + 2
        })
        .await;
        let before = repos.get("app").await.expect("GitRepository");
        let (base_one, base_two) = (repo_reconciles(&url_one, &ns).await, repo_reconciles(&url_two, &ns).await);
        let more = support::wait_for(Duration::from_secs(90), || async {
            repo_reconciles(&url_one, &ns).await >= base_one + 5 && repo_reconciles(&url_two, &ns).await >= base_two + 5
        })
        .await;
        assert!(more.is_some(), "the instances stopped reconciling:\n{}\n---\n{}", one.log_tail(), two.log_tail());
        let after = repos.get("app").await.expect("GitRepository");
        let url = |r: &GitRepository| r.status.as_ref().and_then(|s| s.artifact.as_ref()).map(|a| a.url.clone());
        assert_eq!(
            before.resource_version(),
            after.resource_version(),
            "status rewritten while nothing changed: artifact URL {:?} -> {:?}",
            url(&before),
            url(&after)
        );
        let events = new_artifact_events(&client, &ns, "app", &commit).await;
        assert_eq!(events, 1, "NewArtifact for {commit} announced {events} times");
        println!("revision {commit}: one status, one NewArtifact event from two instances (URL {:?})", url(&after));
    }
}

/// Finding 6: deleting the namespace of a Kustomization that impersonates a ServiceAccount
/// finishes once the account is gone: the prune (which can only fail then) is skipped with an
/// error, and the finalizer removed.
#[tokio::test]
async fn namespace_deletion_with_an_impersonated_service_account_finishes() {
    let (client, ns) = setup("fault-tenant").await;
    let repo = TestRepo::new(&format!("{ns}-tenant"));
    let first = repo.commit(&[("a.yaml", &config_maps("a", 3))], "first");
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    accounts
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "deployer"}})).expect("ServiceAccount"))
        .await
        .expect("ServiceAccount created");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "deployer-admin"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
                "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}))
            .expect("RoleBinding"),
        )
        .await
        .expect("RoleBinding created");
    let controller = Controller::start(support::kubeconfig(), &flags(&shard_flags(&ns)));
    git_repository(&client, &ns, "tenant", json!({"interval": "5s", "url": repo.http_url(), "ref": {"branch": "main"}})).await;
    kustomization(
        &client,
        &ns,
        "tenant",
        json!({"interval": "1m", "prune": true, "path": "./", "serviceAccountName": "deployer",
        "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "tenant"}}),
    )
    .await;
    wait_applied(&client, &ns, "tenant", &first, Duration::from_secs(120), &controller).await;
    assert_eq!(labelled(&client, &ns, "tenant").await.len(), 3);

    // The tenant's namespace goes, its RBAC first (the order the namespace controller may take).
    bindings.delete("deployer-admin", &DeleteParams::default()).await.expect("RoleBinding deleted");
    let started = Instant::now();
    Api::<Namespace>::all(client.clone()).delete(&ns, &DeleteParams::default()).await.expect("namespace deleted");
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let gone = support::wait_for(Duration::from_secs(180), || async { matches!(namespaces.get_opt(&ns).await, Ok(None)) }).await;
    assert!(gone.is_some(), "namespace {ns} still there {:?} after its deletion:\n{}", started.elapsed(), controller.log_tail());
    println!("namespace deleted in {:?}", started.elapsed());
    assert!(controller.log().contains("skipping pruning: the ServiceAccount to impersonate is gone"), "{}", controller.log_tail());
}
