//! The apply engine against `kubectl apply --server-side`, side by side on one real API server:
//! (a) the first apply of 1,000 objects; (b) the requests and writes the API server counts
//! (`apiserver_request_total`) during no-op reconciles, with and without the remembered state.
//!
//! `cargo bench --bench apply` (FERROFLUX_TEST_KUBECONFIG names a cluster; without it one is
//! started with hack/k8s-up.sh). Prints ratios.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ferroflux::apply::{AppliedState, Applier, ApplyOptions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};

const OBJECTS: usize = 1000;

fn objects(ns: &str) -> Vec<Value> {
    let labels = json!({"kustomize.toolkit.fluxcd.io/name": "bench", "kustomize.toolkit.fluxcd.io/namespace": ns});
    let mut out = Vec::new();
    for i in 0..OBJECTS / 4 {
        let name = format!("app-{i:04}");
        out.push(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels}, "data": {"index": i.to_string()}}),
        );
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-extra"), "namespace": ns, "labels": labels}, "data": {"a": "b"}}));
        out.push(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "protocol": "TCP"}]}}));
        out.push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}));
    }
    out
}

/// (requests, writes) the API server counted so far for the resources the benchmark touches.
async fn request_counts(client: &Client) -> (f64, f64) {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(request).await.expect("/metrics");
    let (mut requests, mut writes) = (0.0, 0.0);
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let touched = ["resource=\"configmaps\"", "resource=\"services\"", "resource=\"deployments\""].iter().any(|r| line.contains(r));
        if !touched || !line.contains("subresource=\"\"") {
            continue;
        }
        let value: f64 = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        requests += value;
        let write = ["verb=\"POST\"", "verb=\"PUT\"", "verb=\"PATCH\"", "verb=\"APPLY\"", "verb=\"DELETE\""].iter().any(|v| line.contains(v));
        if write && line.contains("dry_run=\"\"") {
            writes += value;
        }
    }
    (requests, writes)
}

fn kubeconfig() -> (String, Option<tempfile::TempDir>) {
    if let Ok(path) = std::env::var("FERROFLUX_TEST_KUBECONFIG") {
        return (path, None);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/k8s-up.sh");
    let out = Command::new("bash").arg(script).arg(dir.path()).arg("--watch-pid").arg(std::process::id().to_string()).output().expect("k8s-up");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (dir.path().join("kubeconfig").to_string_lossy().into_owned(), Some(dir))
}

fn create_namespace(kubeconfig: &str, ns: &str) {
    let out = Command::new("kubectl").env("KUBECONFIG", kubeconfig).args(["create", "namespace", ns]).output().expect("kubectl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::main]
async fn main() {
    let (kubeconfig, _cluster) = kubeconfig();
    let kc = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let client = Client::try_from(Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("config")).expect("client");
    let suffix = std::process::id();
    let (ours_ns, theirs_ns) = (format!("bench-ferroflux-{suffix}"), format!("bench-kubectl-{suffix}"));
    create_namespace(&kubeconfig, &ours_ns);
    create_namespace(&kubeconfig, &theirs_ns);
    let opts = ApplyOptions {
        force: false,
        owner_labels: BTreeMap::from([
            ("kustomize.toolkit.fluxcd.io/name".to_owned(), "bench".to_owned()),
            ("kustomize.toolkit.fluxcd.io/namespace".to_owned(), ours_ns.clone()),
        ]),
        wait_timeout: Duration::from_secs(60),
    };

    // (a) First apply.
    let applier = Applier::new(client.clone());
    let mut state = AppliedState::default();
    let started = Instant::now();
    let changes = applier.apply_all_with(objects(&ours_ns), &opts, &mut state).await.expect("ferroflux apply");
    let ours = started.elapsed();
    assert_eq!(changes.len(), OBJECTS);

    let file = tempfile::NamedTempFile::new().expect("temp file");
    let yaml: String = objects(&theirs_ns).iter().map(|o| format!("---\n{}\n", serde_json::to_string(o).unwrap_or_default())).collect();
    std::fs::write(file.path(), yaml).expect("write manifests");
    let started = Instant::now();
    let out = Command::new("kubectl")
        .env("KUBECONFIG", &kubeconfig)
        .args(["apply", "--server-side", "--field-manager=bench", "-f"])
        .arg(file.path())
        .output()
        .expect("kubectl apply");
    let theirs = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "(a) first apply of {OBJECTS} objects: ferroflux {:.2}s (dry-run of all, then apply), kubectl apply --server-side {:.2}s (apply only): ferroflux {:.1}x faster",
        ours.as_secs_f64(),
        theirs.as_secs_f64(),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    assert!(String::from_utf8_lossy(&out.stdout).lines().count() >= OBJECTS, "kubectl applied fewer objects than expected");

    // (b) No-op reconciles: with the remembered state, and without (what Flux does: a dry-run
    // of every object every interval).
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (label, remember) in [("with remembered state", true), ("without (a dry-run per object, as Flux)", false)] {
        let before = request_counts(&client).await;
        let started = Instant::now();
        const RECONCILES: usize = 3;
        for _ in 0..RECONCILES {
            let mut fresh = AppliedState::default();
            let target = if remember { &mut state } else { &mut fresh };
            applier.apply_all_with(objects(&ours_ns), &opts, target).await.expect("no-op apply");
        }
        let took = started.elapsed() / RECONCILES as u32;
        let after = request_counts(&client).await;
        println!(
            "(b) no-op reconcile of {OBJECTS} objects {label}: {:.0} requests, {:.0} writes, {:.3}s per reconcile",
            (after.0 - before.0) / RECONCILES as f64,
            (after.1 - before.1) / RECONCILES as f64,
            took.as_secs_f64()
        );
    }
    for ns in [&ours_ns, &theirs_ns] {
        let _ = Command::new("kubectl").env("KUBECONFIG", &kubeconfig).args(["delete", "namespace", ns, "--wait=false"]).output();
    }
}
