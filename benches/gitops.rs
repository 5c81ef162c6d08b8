//! GitOps end to end on the real control plane, with `ferroflux controller`:
//! (c) push → applied latency with the tutorial's `interval: 5s`, p50/p95 over 20 pushes;
//! (d) 200 Kustomizations on one source: push → all applied with the new revision.
//!
//! `cargo bench --bench gitops` (FERROFLUX_TEST_KUBECONFIG names a cluster; without it one is
//! started). Uses the test harness: real Git servers, the controller binary. Run it on a cluster
//! without other GitRepositories: stale ones that time out hold the controller's workers.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use ferroflux::api::{GitRepository, Kustomization};
use kube::api::{Api, PostParams};
use serde_json::json;

const DEPLOYMENT: &str = include_str!("../examples/tutorial/deployment.yaml");

async fn applied(api: &Api<Kustomization>, name: &str, commit: &str) -> bool {
    api.get(name).await.ok().and_then(|k| k.status).and_then(|s| s.last_applied_revision).is_some_and(|r| r.ends_with(commit))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn create_source(client: &kube::Client, ns: &str, name: &str, url: &str) {
    let source: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": name},
        "spec": {"interval": "5s", "url": url, "ref": {"branch": "main"}}
    }))
    .expect("source");
    Api::<GitRepository>::namespaced(client.clone(), ns).create(&PostParams::default(), &source).await.expect("source");
}

fn kustomization(name: &str, path: &str, ns: &str, source: &str) -> Kustomization {
    serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name},
        "spec": {"interval": "10m", "path": path, "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": source}}
    }))
    .expect("kustomization")
}

#[tokio::main]
async fn main() {
    let client = support::client().await;
    support::install_crds(&client).await;
    support::controller();

    // (c) Latency.
    let ns = support::namespace(&client, "bench-latency").await;
    let repo = support::TestRepo::new(&format!("{ns}-latency"));
    let mut commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    create_source(&client, &ns, "app", &repo.http_url()).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    kustomizations.create(&PostParams::default(), &kustomization("app", "./", &ns, "app")).await.expect("kustomization");
    while !applied(&kustomizations, "app", &commit).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut latencies = Vec::new();
    for i in 0..20 {
        commit = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", &format!(":v{i}")))], &format!("release v{i}"));
        let pushed = Instant::now();
        while !applied(&kustomizations, "app", &commit).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies.push(pushed.elapsed().as_secs_f64());
        // Pushes land at different points of the poll interval.
        tokio::time::sleep(Duration::from_millis(700 + (i * 373) % 2000)).await;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "(c) push -> applied, GitRepository interval 5s, 20 pushes: p50 {:.2}s, p95 {:.2}s, max {:.2}s",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        latencies[latencies.len() - 1]
    );

    // (d) 200 Kustomizations on one source.
    let ns = support::namespace(&client, "bench-fanout").await;
    let repo = support::TestRepo::new(&format!("{ns}-fanout"));
    let files = |version: u32| -> Vec<(String, String)> {
        (0..200)
            .map(|i| {
                (
                    format!("apps/app-{i:03}/config.yaml"),
                    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-{i:03}\ndata:\n  version: \"{version}\"\n"),
                )
            })
            .collect()
    };
    let first = files(1);
    let mut commit = repo.commit(&first.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect::<Vec<_>>(), "200 apps");
    create_source(&client, &ns, "fleet", &repo.http_url()).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    for i in 0..200 {
        let ks = kustomization(&format!("app-{i:03}"), &format!("./apps/app-{i:03}"), &ns, "fleet");
        kustomizations.create(&PostParams::default(), &ks).await.expect("kustomization");
    }
    let all_applied = |commit: String| {
        let kustomizations = kustomizations.clone();
        async move {
            let list = kustomizations.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            list.len() == 200 && list.iter().all(|k| k.status.as_ref().and_then(|s| s.last_applied_revision.as_ref()).is_some_and(|r| r.ends_with(&commit)))
        }
    };
    let started = Instant::now();
    while !all_applied(commit.clone()).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let created = started.elapsed().as_secs_f64();
    let second = files(2);
    commit = repo.commit(&second.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect::<Vec<_>>(), "bump all");
    let pushed = Instant::now();
    while !all_applied(commit.clone()).await {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "(d) 200 Kustomizations on one source: created -> all applied {created:.1}s; push -> all 200 applied {:.1}s (GitRepository interval 5s)",
        pushed.elapsed().as_secs_f64()
    );
}
