//! The controller as an operator: leader election between replicas on a real Lease, failover
//! when the leader dies, a clean hand-over on SIGTERM, sharding by label selector, and
//! `--no-cross-namespace-refs`.

mod support;

use std::time::Duration;

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use serde_json::json;

use support::{SHARD_LABEL, SpawnedController, TestRepo};

const LEASE: &str = "ferroflux-leader-election";

async fn holder(client: &Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt(LEASE).await.ok().flatten().and_then(|l| l.spec).and_then(|s| s.holder_identity)
}

fn holds(holder: &Option<String>, controller: &SpawnedController) -> bool {
    holder.as_deref().is_some_and(|h| h.contains(&format!("_{}_", controller.child.id())))
}

async fn wait_holder(client: &Client, ns: &str, controller: &SpawnedController, within: Duration) {
    let found = support::wait_for(within, || async { holds(&holder(client, ns).await, controller) }).await;
    assert!(
        found.is_some(),
        "process {} never held the lease (holder {:?}); its log:\n{}",
        controller.child.id(),
        holder(client, ns).await,
        controller.log_tail()
    );
}

async fn git_repository(client: &Client, ns: &str, name: &str, url: &str) {
    support::create_object(
        client,
        ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": name, "labels": {SHARD_LABEL: ns}},
            "spec": {"interval": "1s", "url": url, "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository created");
}

async fn wait_repository_ready(client: &Client, ns: &str, name: &str, commit: &str) {
    let api: Api<GitRepository> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, "True", commit, Duration::from_secs(60), |o| o.status.as_ref().map(|s| &s.conditions)).await;
}

#[tokio::test]
async fn one_leader_reconciles_a_replica_takes_over_when_it_dies_and_sigterm_hands_over() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "leader").await;
    let selector = format!("{SHARD_LABEL}={ns}");
    let flags = [
        "--watch-label-selector",
        &selector,
        "--enable-leader-election",
        "--leader-election-namespace",
        &ns,
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "3s",
        "--leader-election-retry-period",
        "500ms",
        "--no-cross-namespace-refs",
    ];
    let repo = TestRepo::new(&format!("{ns}-leader"));
    let first = repo.commit(&[("config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n")], "first");

    let mut first_replica = support::spawn_controller(&flags);
    wait_holder(&client, &ns, &first_replica, Duration::from_secs(60)).await;
    let second_replica = support::spawn_controller(&flags);
    git_repository(&client, &ns, "app", &repo.http_url()).await;
    wait_repository_ready(&client, &ns, "app", &first).await;
    // The second replica waits; it never reconciled anything.
    assert!(holds(&holder(&client, &ns).await, &first_replica));
    assert!(!second_replica.log_tail().contains("became leader"), "{}", second_replica.log_tail());

    // The leader dies without a word: after the lease duration the other replica takes over and
    // picks up new commits.
    first_replica.child.kill().expect("kill the leader");
    let _ = first_replica.child.wait();
    wait_holder(&client, &ns, &second_replica, Duration::from_secs(60)).await;
    let second = repo.commit(&[("more.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: more\n")], "second");
    wait_repository_ready(&client, &ns, "app", &second).await;

    // `--no-cross-namespace-refs`: a source in another namespace is refused, as Flux does.
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "elsewhere", "labels": {SHARD_LABEL: ns}},
            "spec": {"interval": "10m", "prune": true, "path": "./",
                "sourceRef": {"kind": "GitRepository", "name": "app", "namespace": "default"}}}),
    )
    .await
    .expect("Kustomization created");
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let refused = support::wait_ready(&kustomizations, "elsewhere", "False", "cross-namespace references have been blocked", Duration::from_secs(60), |o| {
        o.status.as_ref().map(|s| &s.conditions)
    })
    .await;
    let ready = refused.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).expect("Ready");
    assert_eq!(ready.reason, "AccessDenied");

    // SIGTERM: the leader finishes, releases the Lease and exits 0; a waiting replica takes over
    // without waiting out the lease duration (the lease is released, not expired).
    let mut second_replica = second_replica;
    let third_replica = support::spawn_controller(&flags);
    support::wait_for(Duration::from_secs(60), || async { third_replica.log_tail().contains("waiting for leadership") }).await.expect("the third replica runs");
    let status = std::process::Command::new("kill").args(["-TERM", &second_replica.child.id().to_string()]).status().expect("kill -TERM");
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let exit = second_replica.child.wait();
        (exit, second_replica)
    })
    .await
    .expect("join");
    let (exit, second_replica) = exit;
    assert!(exit.expect("exit status").success(), "SIGTERM ends the controller cleanly:\n{}", second_replica.log_tail());
    assert!(second_replica.log_tail().contains("released the leader election lease"), "{}", second_replica.log_tail());
    wait_holder(&client, &ns, &third_replica, Duration::from_secs(60)).await;
    let third = repo.commit(&[("third.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: third\n")], "third");
    wait_repository_ready(&client, &ns, "app", &third).await;
}

#[tokio::test]
async fn objects_of_another_shard_are_left_alone() {
    let client = support::client().await;
    support::install_crds(&client).await;
    // The shared controller runs with `!sharding.fluxcd.io/key`: an object labelled for a shard
    // nobody runs is never reconciled.
    support::controller();
    let ns = support::namespace(&client, "shard").await;
    let repo = TestRepo::new(&format!("{ns}-shard"));
    let commit = repo.commit(&[("a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n")], "a");
    git_repository(&client, &ns, "unsharded-elsewhere", &repo.http_url()).await;
    let repositories: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    // The sync point: an unlabelled object created after it is reconciled by the main
    // controller, which by then has seen (and must have ignored) the shard's one.
    let witness = serde_json::json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "witness"},
        "spec": {"interval": "1m", "url": repo.http_url(), "ref": {"branch": "main"}}});
    support::create_object(&client, &ns, witness).await.expect("witness");
    wait_repository_ready(&client, &ns, "witness", &commit).await;
    let untouched = repositories.get("unsharded-elsewhere").await.expect("get");
    assert!(untouched.status.is_none_or(|s| s.artifact.is_none()), "a shard's object was reconciled by the main controller");

    // A controller for that shard picks it up. (It logs JSON, one object a line, for log
    // collectors.)
    let shard = support::spawn_controller(&["--watch-label-selector", &format!("{SHARD_LABEL}={ns}"), "--log-encoding", "json"]);
    wait_repository_ready(&client, &ns, "unsharded-elsewhere", &commit).await;
    let log = std::fs::read_to_string(&shard.log).expect("log");
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(entry.get("level").is_some() && entry.get("timestamp").is_some(), "{line}");
    }
}
