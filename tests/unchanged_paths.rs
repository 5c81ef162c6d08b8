//! "Skip what did not change", on the real API server: in a monorepo, a commit that touches only
//! another app's folder is recorded as applied by the Kustomization of `./apps/a` without
//! building or applying; a commit to the `../../base` it references is built and applied.

mod support;

use std::time::Duration;

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use support::TestRepo;

fn config(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n")
}

async fn applied(api: &Api<Kustomization>, commit: &str) -> bool {
    support::wait_for(Duration::from_secs(60), || {
        let api = api.clone();
        async move { api.get("a").await.ok().and_then(|k| k.status).and_then(|s| s.last_applied_revision).is_some_and(|r| r.ends_with(commit)) }
    })
    .await
    .is_some()
}

fn skips(ns: &str, commit: &str) -> usize {
    std::fs::read_to_string(&support::controller().log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("{ns}/a")) && l.contains("recorded without building or applying") && l.contains(commit))
        .count()
}

async fn value(client: &Client, ns: &str, name: &str) -> String {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    api.get(name).await.ok().and_then(|c| c.data).and_then(|d| d.get("value").cloned()).unwrap_or_default()
}

#[tokio::test]
async fn a_commit_elsewhere_in_the_repository_is_recorded_without_a_build_and_one_to_a_base_is_applied() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let controller = support::controller();
    let ns = support::namespace(&client, "unchanged-paths").await;
    let repo = TestRepo::new(&format!("{ns}-mono"));
    let first = repo.commit(
        &[
            ("apps/a/kustomization.yaml", "resources:\n- ../../base\n- app.yaml\n"),
            ("apps/a/app.yaml", &config("app-a", "1")),
            ("apps/b/kustomization.yaml", "resources:\n- app.yaml\n"),
            ("apps/b/app.yaml", &config("app-b", "1")),
            ("base/kustomization.yaml", "resources:\n- shared.yaml\n"),
            ("base/shared.yaml", &config("shared", "1")),
        ],
        "two apps and a base",
    );
    let source: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "mono"},
        "spec": {"interval": "1s", "url": repo.http_url(), "ref": {"branch": "main"}}
    }))
    .expect("source");
    Api::<GitRepository>::namespaced(client.clone(), &ns).create(&PostParams::default(), &source).await.expect("source");
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "a"},
        "spec": {"interval": "1h", "path": "./apps/a", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "mono"}}
    }))
    .expect("kustomization");
    let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &ks).await.expect("kustomization");
    assert!(applied(&api, &first).await, "first commit\n{}", controller.log_tail());
    assert_eq!(value(&client, &ns, "shared").await, "1");

    // Another app's folder only: recorded, not built.
    let other = repo.commit(&[("apps/b/app.yaml", &config("app-b", "2"))], "b only");
    assert!(applied(&api, &other).await, "the commit to apps/b was not recorded\n{}", controller.log_tail());
    assert_eq!(skips(&ns, &other), 1, "no skip logged for {other}\n{}", controller.log_tail());

    // The base apps/a references: built and applied.
    let base = repo.commit(&[("base/shared.yaml", &config("shared", "2"))], "base");
    assert!(applied(&api, &base).await, "the commit to base was not applied\n{}", controller.log_tail());
    assert_eq!(skips(&ns, &base), 0, "a change to ../../base was skipped");
    assert_eq!(value(&client, &ns, "shared").await, "2");

    // And after a real build, skipping works again.
    let again = repo.commit(&[("apps/b/app.yaml", &config("app-b", "3")), ("README.md", "notes\n")], "b and a readme");
    assert!(applied(&api, &again).await);
    assert_eq!(skips(&ns, &again), 1);
    let ready = api.get("a").await.expect("a").status.expect("status");
    let condition = ready.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((condition.status.as_str(), condition.message.as_str()), ("True", format!("Applied revision: main@sha1:{again}").as_str()));
    assert_eq!(ready.inventory.map(|i| i.entries.len()), Some(2), "the inventory stays");
}
