//! Release speed on the real control plane, with `ferroflux controller`:
//! (e) push → applied through the webhook Receiver: the test Git server's post-receive hook
//!     POSTs a GitHub-style `push` payload signed with `X-Hub-Signature-256`; the GitRepository
//!     polls only hourly, so every release is the webhook's. 20 pushes, p50/p95.
//! (f) the same 20 pushes with polling at the tutorial's 5s interval, no webhook.
//! (g) drift: `kubectl scale` of a managed Deployment (Kustomization interval 1h) → reverted by
//!     the drift watch, 20 times, p50/p95.
//!
//! `cargo bench --bench release` (FERROFLUX_TEST_KUBECONFIG names a cluster; without it one is
//! started). Prints `uptime` first: the machine is shared.

#[path = "../tests/support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const DEPLOYMENT: &str = include_str!("../examples/tutorial/deployment.yaml");
const PUSHES: usize = 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn summary(mut samples: Vec<f64>) -> String {
    samples.sort_by(f64::total_cmp);
    format!("p50 {:.2}s, p95 {:.2}s, min {:.2}s, max {:.2}s", percentile(&samples, 0.5), percentile(&samples, 0.95), samples[0], samples[samples.len() - 1])
}

fn uptime() -> String {
    std::process::Command::new("uptime").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

async fn applied(api: &Api<Kustomization>, commit: &str) -> bool {
    api.get("app").await.ok().and_then(|k| k.status).and_then(|s| s.last_applied_revision).is_some_and(|r| r.ends_with(commit))
}

async fn source_and_kustomization(client: &Client, ns: &str, url: &str, interval: &str) -> Api<Kustomization> {
    let source: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app"},
        "spec": {"interval": interval, "url": url, "ref": {"branch": "main"}}
    }))
    .expect("source");
    Api::<GitRepository>::namespaced(client.clone(), ns).create(&PostParams::default(), &source).await.expect("source");
    let ks: Kustomization = serde_json::from_value(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "app"},
        "spec": {"interval": "1h", "path": "./", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "app"}}
    }))
    .expect("kustomization");
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    api.create(&PostParams::default(), &ks).await.expect("kustomization");
    api
}

/// 20 releases; each timed from just before `git push` to `lastAppliedRevision` = the commit.
async fn releases(repo: &support::TestRepo, api: &Api<Kustomization>, spread: bool) -> Vec<f64> {
    let mut latencies = Vec::new();
    for i in 0..PUSHES {
        let content = DEPLOYMENT.replace(":latest", &format!(":v{i}"));
        let started = Instant::now();
        let commit = repo.commit(&[("deployment.yaml", &content)], &format!("release v{i}"));
        while !applied(api, &commit).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        latencies.push(started.elapsed().as_secs_f64());
        // Polled pushes land at different points of the interval.
        let pause = if spread { 700 + (i as u64 * 373) % 2000 } else { 300 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    latencies
}

#[tokio::main]
async fn main() {
    println!("machine load before: {}", uptime());
    let client = support::client().await;
    support::install_crds(&client).await;
    let controller = support::controller();

    // (e) Webhook.
    let ns = support::namespace(&client, "bench-webhook").await;
    let repo = support::TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "first");
    let api = source_and_kustomization(&client, &ns, &repo.http_url(), "1h").await;
    while !applied(&api, &first).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = "bench-webhook-token";
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "webhook-token"}, "stringData": {"token": token}})).expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.expect("secret");
    let receiver = json!({
        "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver", "metadata": {"name": "github"},
        "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
                 "resources": [{"kind": "GitRepository", "name": "app"}]}
    });
    let receivers: Api<ferroflux::api::notification::v1::Receiver> = Api::namespaced(client.clone(), &ns);
    receivers.create(&PostParams::default(), &serde_json::from_value(receiver).expect("receiver")).await.expect("receiver");
    let path = loop {
        if let Some(path) = receivers.get("github").await.ok().and_then(|r| r.status).and_then(|s| s.webhook_path) {
            break path;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The Git server's post-receive hook calls the Receiver as GitHub would.
    let hook = repo.bare.join("hooks/post-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nbody='{{\"ref\":\"refs/heads/main\",\"repository\":{{\"full_name\":\"bench/app\"}}}}'\n\
             sig=$(printf %s \"$body\" | openssl dgst -sha256 -hmac '{token}' | sed 's/^.* //')\n\
             curl -s -o /dev/null -X POST -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
             -H \"X-Hub-Signature-256: sha256=$sig\" --data \"$body\" '{}{path}'\n",
            controller.receiver_base
        ),
    )
    .expect("hook");
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let webhook = releases(&repo, &api, false).await;
    println!("(e) push -> applied via the webhook Receiver (GitRepository interval 1h), {PUSHES} pushes: {}", summary(webhook));

    // (f) Polling at 5s.
    let ns = support::namespace(&client, "bench-polling").await;
    let repo = support::TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "first");
    let api = source_and_kustomization(&client, &ns, &repo.http_url(), "5s").await;
    while !applied(&api, &first).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let polling = releases(&repo, &api, true).await;
    println!("(f) push -> applied by polling (GitRepository interval 5s), {PUSHES} pushes: {}", summary(polling));

    // (g) Drift.
    let ns = support::namespace(&client, "bench-drift").await;
    let repo = support::TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "first");
    let api = source_and_kustomization(&client, &ns, &repo.http_url(), "1h").await;
    while !applied(&api, &first).await {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default();
    let wanted = replicas(&deployments.get("hello-world-flask").await.expect("deployment"));
    let mut drift = Vec::new();
    let params = PatchParams { field_manager: Some("kubectl".into()), ..Default::default() };
    for i in 0..PUSHES {
        let scaled_to = wanted + 1 + (i as i32 % 3);
        let started = Instant::now();
        deployments.patch_scale("hello-world-flask", &params, &Patch::Merge(json!({"spec": {"replicas": scaled_to}}))).await.expect("scale");
        loop {
            if deployments.get("hello-world-flask").await.is_ok_and(|d| replicas(&d) == wanted) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "not reverted\n{}", controller.log_tail());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drift.push(started.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("(g) kubectl scale -> reverted by the drift watch (Kustomization interval 1h), {PUSHES} times: {}", summary(drift));
    println!("machine load after: {}", uptime());
}
