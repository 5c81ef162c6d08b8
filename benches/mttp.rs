//! A replay of Flux's MTTP benchmark (fluxcd/flux-benchmark) with GitRepositories: N
//! GitRepositories and N Kustomizations in one namespace, each Kustomization with `wait`,
//! `prune`, `timeout: 1m`, `serviceAccountName` (a namespace-admin ServiceAccount, impersonated),
//! `targetNamespace` and `postBuild.substitute`, applying benches/mttp/app.yaml (ServiceAccount,
//! Service, a Deployment scaled to 0, Ingress). One `ferroflux controller` process of its own per
//! size, so its peak RSS (VmHWM) is that size's.
//!
//! `FERROFLUX_MTTP_SIZES=100,500,1000 cargo bench --bench mttp` (default 100,500,1000;
//! `FERROFLUX_MTTP_CONCURRENT`, default 20, is `--concurrent`). Prints where the CPU went: the
//! controller's, kube-apiserver's and etcd's CPU seconds over the run, and the machine load.
//! Leaves its objects behind: run it on a control plane of its own (the default without
//! FERROFLUX_TEST_KUBECONFIG).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::RoleBinding;

const APP: &str = include_str!("mttp/app.yaml");

/// CPU seconds (user + system) a process used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn memory_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Processes by command name (read-only: for their CPU counters).
fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .collect()
}

fn total_cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|p| cpu_seconds(*p)).sum()
}

fn uptime() -> String {
    std::process::Command::new("uptime").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned()).unwrap_or_default()
}

async fn run(client: &Client, size: usize, concurrent: &str, url: &str) {
    let ns = support::namespace(client, &format!("mttp-{size}")).await;
    let shard = format!("mttp-{size}-{}", &ns[ns.len().saturating_sub(5)..]);
    let controller = support::spawn_controller(&["--watch-label-selector", &format!("{}={shard}", support::SHARD_LABEL), "--concurrent", concurrent]);
    let pid = controller.child.id();
    let account: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "flux"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), &ns).create(&PostParams::default(), &account).await.expect("sa");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "flux-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "flux", "namespace": ns}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), &ns).create(&PostParams::default(), &binding).await.expect("binding");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let servers = [pids_named("kube-apiserver"), pids_named("etcd")];
    let (api_cpu, etcd_cpu, our_cpu) = (total_cpu(&servers[0]), total_cpu(&servers[1]), cpu_seconds(pid));
    let sources: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let started = Instant::now();
    let labels = json!({support::SHARD_LABEL: shard});
    stream::iter(0..size)
        .map(|i| {
            let (sources, kustomizations, labels, ns) = (sources.clone(), kustomizations.clone(), labels.clone(), ns.clone());
            async move {
                let source: GitRepository = serde_json::from_value(json!({
                    "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                    "metadata": {"name": format!("app-{i}"), "labels": labels},
                    "spec": {"interval": "60m", "url": url, "ref": {"branch": "main"}}
                }))
                .expect("source");
                sources.create(&PostParams::default(), &source).await.expect("source");
                let ks: Kustomization = serde_json::from_value(json!({
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                    "metadata": {"name": format!("app-{i}"), "labels": labels},
                    "spec": {"interval": "60m", "retryInterval": "2m", "path": "./", "prune": true, "wait": true, "timeout": "1m",
                             "serviceAccountName": "flux", "targetNamespace": ns,
                             "sourceRef": {"kind": "GitRepository", "name": format!("app-{i}")},
                             "postBuild": {"substitute": {"INDEX": format!("{i}app"), "PODS": "0", "MCPU": "1m"}}}
                }))
                .expect("kustomization");
                kustomizations.create(&PostParams::default(), &ks).await.expect("kustomization");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let created = started.elapsed();
    let exist = Instant::now();
    let mut peak_rss = 0;
    let mut ready = 0;
    let mut sources_ready = 0;
    let deadline = Duration::from_secs(600);
    while exist.elapsed() < deadline {
        peak_rss = peak_rss.max(memory_kib(pid, "VmRSS:"));
        let listed = kustomizations.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
        ready = listed
            .iter()
            .filter(|k| {
                k.status.as_ref().is_some_and(|s| s.last_applied_revision.is_some() && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .count();
        if sources_ready < size {
            let repos = sources.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            sources_ready = repos.iter().filter(|r| r.status.as_ref().is_some_and(|s| s.artifact.is_some())).count();
            if sources_ready == size {
                println!("  {size}: all GitRepositories have an artifact after {:.1}s", exist.elapsed().as_secs_f64());
            }
        }
        if ready == size {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = exist.elapsed().as_secs_f64();
    let hwm = memory_kib(pid, "VmHWM:").max(peak_rss);
    println!(
        "MTTP {size}: {ready}/{size} Kustomizations Ready in {elapsed:.1}s after the objects existed (creating them took {:.1}s); \
         controller peak RSS {:.1} MiB; CPU seconds over the run: ferroflux {:.1}, kube-apiserver {:.1}, etcd {:.1}; load: {}",
        created.as_secs_f64(),
        hwm as f64 / 1024.0,
        cpu_seconds(pid) - our_cpu,
        total_cpu(&servers[0]) - api_cpu,
        total_cpu(&servers[1]) - etcd_cpu,
        uptime()
    );
    if ready < size {
        println!("  controller log tail:\n{}", controller.log_tail());
    }
}

#[tokio::main]
async fn main() {
    let sizes: Vec<usize> =
        std::env::var("FERROFLUX_MTTP_SIZES").unwrap_or_else(|_| "100,500,1000".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let concurrent = std::env::var("FERROFLUX_MTTP_CONCURRENT").unwrap_or_else(|_| "20".into());
    println!("machine load before: {}", uptime());
    let client = support::client().await;
    support::install_crds(&client).await;
    let repo = support::TestRepo::new("mttp-app");
    repo.commit(&[("app.yaml", APP)], "the benchmark's application");
    for size in sizes {
        run(&client, size, &concurrent, &repo.http_url()).await;
    }
}
