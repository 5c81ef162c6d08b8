//! Watch-driven drift correction on the real API server: with Kustomization and source
//! intervals of an hour, `kubectl scale` of a managed Deployment is reverted and a deleted
//! ConfigMap recreated within seconds; an object annotated
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled` is left as edited; `--no-drift-watch` turns
//! it all off.

mod support;

use std::time::{Duration, Instant};

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use support::TestRepo;

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
";
const CONFIG: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: strict
";
const FREE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: free
data:
  mode: strict
";

async fn objects(client: &Client, ns: &str, labels: serde_json::Value, repo: &TestRepo) {
    let source: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app", "labels": labels},
        "spec": {"interval": "1h", "url": repo.http_url(), "ref": {"branch": "main"}}
    }))
    .expect("source");
    Api::<GitRepository>::namespaced(client.clone(), ns).create(&PostParams::default(), &source).await.expect("source");
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "app", "labels": labels},
        "spec": {"interval": "1h", "path": "./", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "app"}}
    }))
    .expect("kustomization");
    Api::<Kustomization>::namespaced(client.clone(), ns).create(&PostParams::default(), &ks).await.expect("kustomization");
}

async fn applied(client: &Client, ns: &str, commit: &str, log: impl Fn() -> String) {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    let done = support::wait_for(Duration::from_secs(120), || {
        let api = api.clone();
        async move { api.get("app").await.ok().and_then(|k| k.status).and_then(|s| s.last_applied_revision).is_some_and(|r| r.ends_with(commit)) }
    })
    .await;
    assert!(done.is_some(), "not applied\n{}", log());
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default()
}

async fn scale(client: &Client, ns: &str, to: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    // What `kubectl scale` does: an update of the scale subresource, by another field manager.
    let params = PatchParams { field_manager: Some("kubectl".into()), ..Default::default() };
    deployments.patch_scale("web", &params, &Patch::Merge(json!({"spec": {"replicas": to}}))).await.expect("scale");
}

#[tokio::test]
async fn scaled_deployments_and_deleted_configmaps_are_put_back_within_seconds() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let controller = support::controller();
    let ns = support::namespace(&client, "drift").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let commit = repo.commit(&[("web.yaml", DEPLOYMENT), ("settings.yaml", CONFIG), ("free.yaml", FREE)], "app");
    objects(&client, &ns, json!({}), &repo).await;
    applied(&client, &ns, &commit, || controller.log_tail()).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    // Let the deployment controller's first status writes pass: they are not drift.
    tokio::time::sleep(Duration::from_secs(2)).await;

    scale(&client, &ns, 3).await;
    let scaled = Instant::now();
    let reverted = support::wait_for(Duration::from_secs(20), || {
        let deployments = deployments.clone();
        async move { deployments.get("web").await.is_ok_and(|d| replicas(&d) == 1) }
    })
    .await;
    assert!(reverted.is_some(), "kubectl scale was not reverted within 20s (intervals are 1h)\n{}", controller.log_tail());
    eprintln!("scale reverted in {:.2}s", scaled.elapsed().as_secs_f64());

    configs.delete("settings", &DeleteParams::default()).await.expect("delete");
    let deleted = Instant::now();
    let recreated = support::wait_for(Duration::from_secs(20), || {
        let configs = configs.clone();
        async move { configs.get_opt("settings").await.ok().flatten().is_some() }
    })
    .await;
    assert!(recreated.is_some(), "the deleted ConfigMap was not recreated within 20s\n{}", controller.log_tail());
    eprintln!("deleted ConfigMap recreated in {:.2}s", deleted.elapsed().as_secs_f64());

    // `kubectl edit` of a ConfigMap's data (an update by another field manager: kinds without a
    // generation are judged by the fields we own, which the edit takes from us).
    let edit = PatchParams { field_manager: Some("kubectl-edit".into()), ..Default::default() };
    configs.patch("settings", &edit, &Patch::Merge(json!({"data": {"mode": "lenient"}}))).await.expect("edit");
    let edited = Instant::now();
    let restored = support::wait_for(Duration::from_secs(20), || {
        let configs = configs.clone();
        async move { configs.get("settings").await.is_ok_and(|c| c.data.unwrap_or_default().get("mode").map(String::as_str) == Some("strict")) }
    })
    .await;
    assert!(restored.is_some(), "kubectl edit of the ConfigMap was not put back within 20s\n{}", controller.log_tail());
    eprintln!("edited ConfigMap put back in {:.2}s", edited.elapsed().as_secs_f64());

    // `reconcile: disabled` set on the live object (as `kubectl annotate` does): an edit stays.
    // (The same annotation in Git means the object is never applied at all: tests/apply.rs.)
    let opt_out = json!({"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}}, "data": {"mode": "relaxed"}});
    configs.patch("free", &edit, &Patch::Merge(opt_out)).await.expect("edit");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let free = configs.get("free").await.expect("free");
    assert_eq!(free.data.unwrap_or_default().get("mode").map(String::as_str), Some("relaxed"), "an object with reconcile: disabled was put back");
}

#[tokio::test]
async fn no_drift_watch_leaves_drift_to_the_interval() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "nodrift").await;
    let shard = format!("nodrift-{}", &ns[ns.len().saturating_sub(5)..]);
    let controller = support::spawn_controller(&["--no-drift-watch", "--watch-label-selector", &format!("{}={shard}", support::SHARD_LABEL)]);
    let repo = TestRepo::new(&format!("{ns}-app"));
    let commit = repo.commit(&[("web.yaml", DEPLOYMENT)], "app");
    objects(&client, &ns, json!({support::SHARD_LABEL: shard}), &repo).await;
    applied(&client, &ns, &commit, || controller.log_tail()).await;
    scale(&client, &ns, 2).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(replicas(&deployments.get("web").await.expect("web")), 2, "reverted although --no-drift-watch\n{}", controller.log_tail());
}
