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

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
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

/// The API server's request counters (`apiserver_request_total`) by verb, resource and
/// subresource, summed over codes and scopes. `None` when /metrics cannot be read.
async fn api_requests(client: &Client) -> Option<BTreeMap<String, f64>> {
    let request = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = client.request_text(request).await.ok()?;
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |name: &str| labels.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("").to_owned();
        let dry_run = if label("dry_run").is_empty() { "" } else { " (dry-run)" };
        let subresource = label("subresource");
        let resource = if subresource.is_empty() { label("resource") } else { format!("{}/{subresource}", label("resource")) };
        let key = format!("{} {resource}{dry_run}", label("verb"));
        *counts.entry(key).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    Some(counts)
}

fn request_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut delta: Vec<(String, f64)> = after.iter().map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0))).filter(|(_, d)| *d >= 1.0).collect();
    delta.sort_by(|a, b| b.1.total_cmp(&a.1));
    delta
}

fn print_requests(requests: &[(String, f64)], size: usize) {
    let total: f64 = requests.iter().map(|(_, n)| n).sum();
    println!("  API requests over the run: {total:.0} ({:.1} per Kustomization + GitRepository pair, all clients):", total / size as f64);
    for (key, n) in requests.iter().take(16) {
        println!("    {n:>8.0}  {:>5.2}/pair  {key}", n / size as f64);
    }
}

/// The controller's largest resident set seen while sampling, what it was made of (KiB), and
/// the most threads it had.
#[derive(Debug, Clone, Copy, Default)]
struct PeakMemory {
    rss: u64,
    anon: u64,
    file: u64,
    threads: u64,
    /// Open file descriptors: mostly connections to the API server (each with its buffers).
    files: u64,
}

/// Follows the Kustomizations and GitRepositories of the shard by watch until every
/// Kustomization is Ready with an applied revision (or the deadline). Returns how many are, when
/// every GitRepository had an artifact (seconds), and the controller's peak RSS seen.
async fn watch_until_ready(
    kustomizations: &Api<Kustomization>,
    sources: &Api<GitRepository>,
    shard: &str,
    size: usize,
    pid: u32,
    deadline: Duration,
) -> (usize, Option<f64>, PeakMemory, Vec<(usize, f64)>) {
    use kube::runtime::{WatchStreamExt, watcher};
    let started = Instant::now();
    let config = watcher::Config::default().any_semantic().labels(&format!("{}={shard}", support::SHARD_LABEL));
    let ks_events = watcher::watcher(kustomizations.clone(), config.clone()).default_backoff().applied_objects().map(|k| {
        k.map(|k: Kustomization| {
            let ready =
                k.status.as_ref().is_some_and(|s| s.last_applied_revision.is_some() && s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            (true, k.name_any(), ready)
        })
    });
    let repo_events = watcher::watcher(sources.clone(), config).default_backoff().applied_objects().map(|r| {
        r.map(|r: GitRepository| {
            let ready = r.status.as_ref().is_some_and(|s| s.artifact.is_some());
            (false, r.name_any(), ready)
        })
    });
    let mut events = std::pin::pin!(stream::select(ks_events, repo_events));
    let (mut ready_ks, mut ready_repos) = (BTreeSet::new(), BTreeSet::new());
    let mut sources_at = None;
    let mut peak = PeakMemory::default();
    // When half, 90 % and 99 % of the Kustomizations were Ready: the tail shows stragglers
    // (retries, backoffs) that the total alone hides.
    let mut milestones: Vec<(usize, f64)> = Vec::new();
    let marks = [size / 2, size * 9 / 10, size * 99 / 100];
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    while started.elapsed() < deadline && ready_ks.len() < size {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok((is_ks, name, ready))) => {
                    let set = if is_ks { &mut ready_ks } else { &mut ready_repos };
                    if ready { set.insert(name); } else { set.remove(&name); }
                    if let Some(mark) = marks.iter().find(|m| **m == ready_ks.len() && !milestones.iter().any(|(done, _)| done == *m)) {
                        milestones.push((*mark, started.elapsed().as_secs_f64()));
                    }
                    if sources_at.is_none() && ready_repos.len() == size {
                        sources_at = Some(started.elapsed().as_secs_f64());
                    }
                }
                Some(Err(e)) => println!("  watch: {e}"),
                None => break,
            },
            _ = ticker.tick() => {
                let rss = memory_kib(pid, "VmRSS:");
                if rss > peak.rss {
                    // What the peak is made of: heap and stacks (anonymous) vs the binary's pages.
                    peak = PeakMemory { rss, anon: memory_kib(pid, "RssAnon:"), file: memory_kib(pid, "RssFile:"), ..peak };
                }
                peak.threads = peak.threads.max(memory_kib(pid, "Threads:"));
                peak.files = peak.files.max(std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0));
            }
        }
    }
    (ready_ks.len(), sources_at, peak, milestones)
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
    let requests_before = api_requests(client).await.unwrap_or_default();
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
    // Watched, not listed: a full list of N Kustomizations every half second costs the API server
    // as much as a good part of the work being measured (it decodes and encodes every object).
    let (ready, sources_ready, peak, milestones) = watch_until_ready(&kustomizations, &sources, &shard, size, pid, Duration::from_secs(600)).await;
    let elapsed = exist.elapsed().as_secs_f64();
    if let Some(at) = sources_ready {
        println!("  {size}: all GitRepositories have an artifact after {at:.1}s");
    }
    let marks: Vec<String> = milestones.iter().map(|(n, at)| format!("{n} after {at:.1}s")).collect();
    println!("  {size}: Kustomizations Ready: {}", marks.join(", "));
    // FERROFLUX_BENCH_LOGS=<dir>: each size's controller log is kept there, for where the time went.
    if let Ok(dir) = std::env::var("FERROFLUX_BENCH_LOGS") {
        let _ = std::fs::copy(&controller.log, std::path::Path::new(&dir).join(format!("mttp-{size}.log")));
    }
    let hwm = memory_kib(pid, "VmHWM:").max(peak.rss);
    println!(
        "  {size}: largest sampled RSS {:.1} MiB = {:.1} MiB anonymous (heap, stacks) + {:.1} MiB of files (the binary); at most {} threads and {} open files",
        peak.rss as f64 / 1024.0,
        peak.anon as f64 / 1024.0,
        peak.file as f64 / 1024.0,
        peak.threads,
        peak.files
    );
    let requests = api_requests(client).await.map(|after| request_delta(&requests_before, &after));
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
    if let Some(requests) = requests {
        print_requests(&requests, size);
    }
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
