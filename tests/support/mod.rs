//! Test support: a real Kubernetes control plane for the integration tests.
//!
//! `FERROFLUX_TEST_KUBECONFIG` names an existing cluster (the test script starts one and shares it
//! between all test binaries; kind or k3d work too). Without it, the first test that asks starts its
//! own control plane with `hack/k8s-up.sh`, tied to this process's lifetime.
//! Tests isolate themselves by namespace, so they share one control plane and run in parallel.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub const KUBECONFIG_ENV: &str = "FERROFLUX_TEST_KUBECONFIG";

struct Cluster {
    kubeconfig: PathBuf,
    // Keeps a self-started control plane's folder alive for the life of the process.
    _dir: Option<tempfile::TempDir>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// A test that cannot run here for lack of something it needs (Docker, Git servers, port 53):
/// under `CI=true` that is a failure, never a silent pass; elsewhere the test says why, and the
/// skip is recorded in the file `FERROFLUX_SKIP_LOG` names, so that `hack/test.sh` counts it as
/// skipped rather than passed. Call it, then return from the test.
pub fn skip(reason: &str) {
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} needs what is missing here (CI=true requires it): {reason}");
    }
    eprintln!("SKIPPED: {test}: {reason}");
    if let Ok(path) = std::env::var("FERROFLUX_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: {}\n", reason.lines().next().unwrap_or_default());
        let appended = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            panic!("{test}: cannot record its skip in {path}: {e}");
        }
    }
}

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the test cluster, starting one if none was given.
pub fn kubeconfig() -> &'static Path {
    let cluster = CLUSTER.get_or_init(|| {
        if let Ok(path) = std::env::var(KUBECONFIG_ENV) {
            return Ok(Cluster { kubeconfig: PathBuf::from(path), _dir: None });
        }
        let dir = tempfile::Builder::new().prefix("ferroflux-k8s-").tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("bash")
            .arg(repo_root().join("hack/k8s-up.sh"))
            .arg(dir.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .output()
            .map_err(|e| format!("running hack/k8s-up.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("hack/k8s-up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr)));
        }
        // The folder lives in a static, which is never dropped: remove it when the process ends.
        cleanup_on_exit(&format!("'{0}/down.sh'; rm -rf '{0}'", dir.path().display()));
        Ok(Cluster { kubeconfig: dir.path().join("kubeconfig"), _dir: Some(dir) })
    });
    match cluster {
        Ok(c) => &c.kubeconfig,
        Err(e) => panic!("no test cluster: {e}"),
    }
}

/// A client for the test cluster, as its admin.
pub async fn client() -> Client {
    client_for(kubeconfig()).await
}

pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("reading the test kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.expect("kubeconfig to config");
    Client::try_from(config).expect("building the client")
}

/// Creates a fresh namespace named after the test.
pub async fn namespace(client: &Client, test: &str) -> String {
    let suffix: u32 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("{}-{:x}", test.replace('_', "-"), suffix % 0xfffff);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .expect("namespace object");
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("creating the test namespace");
    name
}

static CRDS_INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs ferroflux's CRDs once per test process and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    CRDS_INSTALLED.get_or_init(|| apply_crds(client.clone())).await;
}

pub async fn apply_crds(client: Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let crds = ferroflux::api::crd::all().expect("generating CRDs");
    for crd in &crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        let params = PatchParams::apply("ferroflux-tests").force();
        // Another test binary may be applying the same CRD at this moment: retry on conflicts.
        let mut attempt = 0;
        loop {
            match api.patch(&name, &params, &Patch::Apply(crd)).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if attempt < 5 && (e.code == 409 || e.code == 422 || e.code == 500) => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => panic!("applying CRD {name}: {e}"),
            }
        }
    }
    for crd in &crds {
        let name = crd.metadata.name.clone().expect("CRD name");
        wait_for(Duration::from_secs(30), || {
            let api = api.clone();
            let name = name.clone();
            async move {
                api.get(&name)
                    .await
                    .ok()
                    .and_then(|c| c.status)
                    .is_some_and(|s| s.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True"))
            }
        })
        .await
        .unwrap_or_else(|| panic!("CRD {name} did not become Established"));
    }
}

/// Polls `check` until it is true or `timeout` passes; `Some(())` when it became true.
pub async fn wait_for<F, Fut>(timeout: Duration, mut check: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return Some(());
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates one of ferroflux's objects (GitRepository or Kustomization, any served version) from a
/// manifest, as `kubectl create` does.
pub async fn create_object(client: &Client, ns: &str, manifest: serde_json::Value) -> Result<kube::api::DynamicObject, kube::Error> {
    let api_version = manifest["apiVersion"].as_str().unwrap_or_default().to_owned();
    let kind = manifest["kind"].as_str().unwrap_or_default().to_owned();
    let (group, version) = api_version.split_once('/').expect("a group/version apiVersion");
    let plural = match kind.as_str() {
        "GitRepository" => "gitrepositories",
        "Kustomization" => "kustomizations",
        other => panic!("unexpected kind {other}"),
    };
    let resource = kube::core::ApiResource::from_gvk_with_plural(&kube::core::GroupVersionKind::gvk(group, version, &kind), plural);
    let object: kube::api::DynamicObject = serde_json::from_value(manifest).expect("a Kubernetes object");
    Api::namespaced_with(client.clone(), ns, &resource).create(&PostParams::default(), &object).await
}

/// Creates an example manifest (a path under the repository), verbatim but for the spec fields
/// in `overrides`.
pub async fn create_example(client: &Client, ns: &str, file: &str, overrides: serde_json::Value) {
    let text = std::fs::read_to_string(repo_root().join(file)).expect("example manifest");
    let mut manifest: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
    for (key, value) in overrides.as_object().expect("overrides is a map").clone() {
        manifest["spec"][key] = value;
    }
    create_object(client, ns, manifest).await.unwrap_or_else(|e| panic!("creating {file}: {e}"));
}

/// Waits until `namespace/name`'s Ready condition has `status` and a message containing
/// `message_contains`; returns the object. Panics with the last Ready seen and the controller's
/// log otherwise.
pub async fn wait_ready<K>(
    api: &Api<K>,
    name: &str,
    status: &str,
    message_contains: &str,
    timeout: Duration,
    conditions: impl Fn(&K) -> Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>,
) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(object) = api.get(name).await {
            let ready =
                conditions(&object).and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
            if let Some((s, _, m)) = &ready {
                if s == status && m.contains(message_contains) {
                    return object;
                }
            }
            last = ready;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{name} never became Ready={status} with {message_contains:?}; last Ready: {last:?}\ncontroller log:\n{}", controller().log_tail());
}

pub fn has_kubectl() -> bool {
    Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success())
}

/// Runs kubectl against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl").env("KUBECONFIG", kubeconfig()).args(args).output().expect("running kubectl")
}

/// Runs `cmd` in the background until this test process exits, then runs `cleanup` (a shell
/// command): no daemon outlives the tests, even when a test panics.
pub fn cleanup_on_exit(cleanup: &str) {
    let watcher = format!("while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup}", std::process::id());
    let _ = Command::new("sh")
        .arg("-c")
        .arg(watcher)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
}

/// The real Git servers of `hack/git-servers.sh` (HTTPS with basic auth and a custom CA, plain
/// HTTP, SSH), started once per test process.
pub struct GitServers {
    pub env: std::collections::HashMap<String, String>,
    _dir: tempfile::TempDir,
}

impl GitServers {
    pub fn var(&self, key: &str) -> &str {
        self.env.get(key).map(String::as_str).unwrap_or_else(|| panic!("git-servers env has no {key}"))
    }
}

static GIT_SERVERS: OnceLock<GitServers> = OnceLock::new();

pub fn git_servers() -> &'static GitServers {
    GIT_SERVERS.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ferroflux-git-").tempdir().expect("temp dir");
        let script = repo_root().join("hack/git-servers.sh");
        let out = Command::new("bash").arg(&script).arg("start").arg(dir.path()).output().expect("running hack/git-servers.sh");
        assert!(out.status.success(), "hack/git-servers.sh start failed:\n{}", String::from_utf8_lossy(&out.stderr));
        cleanup_on_exit(&format!("bash '{}' stop '{1}'; rm -rf '{1}'", script.display(), dir.path().display()));
        let text = std::fs::read_to_string(dir.path().join("env")).expect("git-servers env");
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        GitServers { env, _dir: dir }
    })
}

/// A repository on the test Git servers with a work tree to commit and push from.
pub struct TestRepo {
    pub name: String,
    pub bare: PathBuf,
    work: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=ferroflux-tests", "-c", "user.email=tests@ferroflux.invalid", "-c", "init.defaultBranch=main"])
        .args(args)
        .output()
        .expect("running git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl TestRepo {
    /// A new bare repository `<name>.git` served by all the test servers.
    pub fn new(name: &str) -> TestRepo {
        let servers = git_servers();
        let bare = PathBuf::from(servers.var("REPO_ROOT")).join(format!("{name}.git"));
        let out = Command::new("git").args(["init", "--bare", "-q", "-b", "main"]).arg(&bare).output().expect("git init");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        git(&bare, &["config", "http.receivepack", "true"]);
        let work = tempfile::Builder::new().prefix("ferroflux-work-").tempdir().expect("temp dir");
        git(work.path(), &["init", "-q", "-b", "main"]);
        git(work.path(), &["remote", "add", "origin", bare.to_str().expect("utf-8 path")]);
        TestRepo { name: name.to_owned(), bare, work }
    }

    pub fn http_url(&self) -> String {
        format!("{}/{}.git", git_servers().var("HTTP_URL_BASE"), self.name)
    }

    pub fn https_url(&self) -> String {
        format!("{}/{}.git", git_servers().var("HTTPS_URL_BASE"), self.name)
    }

    pub fn ssh_url(&self) -> String {
        format!("{}/{}.git", git_servers().var("SSH_URL_BASE"), self.name)
    }

    /// Writes the files, commits them and pushes `main`; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let file = self.work.path().join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(file, content).expect("write file");
        }
        git(self.work.path(), &["add", "-A"]);
        git(self.work.path(), &["commit", "-q", "--allow-empty", "-m", message]);
        git(self.work.path(), &["push", "-q", "-f", "origin", "main"]);
        git(self.work.path(), &["rev-parse", "HEAD"])
    }

    pub fn remove(&self, path: &str, message: &str) -> String {
        git(self.work.path(), &["rm", "-q", path]);
        git(self.work.path(), &["commit", "-q", "-m", message]);
        git(self.work.path(), &["push", "-q", "origin", "main"]);
        git(self.work.path(), &["rev-parse", "HEAD"])
    }

    /// `git reset --hard <commit> && git push -f`: the tutorial's rollback.
    pub fn reset_hard_and_force_push(&self, commit: &str) {
        git(self.work.path(), &["reset", "-q", "--hard", commit]);
        git(self.work.path(), &["push", "-q", "-f", "origin", "main"]);
    }

    pub fn tag(&self, tag: &str) {
        git(self.work.path(), &["tag", tag]);
        git(self.work.path(), &["push", "-q", "origin", tag]);
    }
}

/// `ferroflux controller`, started once per test process against the test cluster, with its
/// artifact server on a free loopback port.
pub struct ControllerProcess {
    pub storage_base: String,
    pub metrics_url: String,
    /// `http://127.0.0.1:<port>` of the webhook Receiver server.
    pub receiver_base: String,
    pub log: PathBuf,
}

static CONTROLLER: OnceLock<ControllerProcess> = OnceLock::new();

/// A port nothing listens on now and that this process has not handed out before: the kernel
/// may give a just-released ephemeral port again at once, and a controller once got the same
/// port for its storage and its metrics ("Address already in use").
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
        if given.insert(port) {
            return port;
        }
    }
}

/// A `ferroflux controller` process of a test's own, with a folder for storage and log.
pub struct SpawnedController {
    pub child: std::process::Child,
    pub storage_base: String,
    pub health_url: String,
    pub metrics_url: String,
    /// `http://127.0.0.1:<port>` of the webhook Receiver server.
    pub receiver_base: String,
    pub log: PathBuf,
    pub dir: tempfile::TempDir,
}

impl SpawnedController {
    /// The controller's log so far, for assertion messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for SpawnedController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Starts a `ferroflux controller` with free loopback ports and `extra` flags.
pub fn spawn_controller(extra: &[&str]) -> SpawnedController {
    let dir = tempfile::Builder::new().prefix("ferroflux-controller-").tempdir().expect("temp dir");
    let storage_port = free_port();
    let health_port = free_port();
    let metrics_port = free_port();
    let receiver_port = free_port();
    let log = dir.path().join("controller.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_ferroflux"))
        .arg("controller")
        .arg("--storage-path")
        .arg(dir.path().join("storage"))
        .arg("--storage-addr")
        .arg(format!("127.0.0.1:{storage_port}"))
        .arg("--health-addr")
        .arg(format!("127.0.0.1:{health_port}"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{metrics_port}"))
        .arg("--receiver-addr")
        .arg(format!("127.0.0.1:{receiver_port}"))
        .args(extra)
        .env("KUBECONFIG", kubeconfig())
        .env("RUST_LOG", "info,ferroflux=debug")
        // As deploy/ runs it (see the controller's Deployment there).
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .expect("starting ferroflux controller");
    cleanup_on_exit(&format!("kill {} 2>/dev/null; sleep 1; rm -rf '{}'", child.id(), dir.path().display()));
    SpawnedController {
        child,
        storage_base: format!("http://127.0.0.1:{storage_port}"),
        health_url: format!("http://127.0.0.1:{health_port}"),
        metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        receiver_base: format!("http://127.0.0.1:{receiver_port}"),
        log,
        dir,
    }
}

/// The label that sends an object to a shard of its own (Flux's sharding key): the shared
/// controller leaves such objects alone, so a test can run controllers of its own.
pub const SHARD_LABEL: &str = "sharding.fluxcd.io/key";

/// Starts the shared controller (once); the CRDs must be installed first. It reconciles every
/// object without a shard label.
pub fn controller() -> &'static ControllerProcess {
    CONTROLLER.get_or_init(|| {
        let spawned = spawn_controller(&["--watch-label-selector", &format!("!{SHARD_LABEL}")]);
        let process = ControllerProcess {
            storage_base: spawned.storage_base.clone(),
            metrics_url: spawned.metrics_url.clone(),
            receiver_base: spawned.receiver_base.clone(),
            log: spawned.log.clone(),
        };
        // Lives as long as the test process; the exit hook kills it.
        std::mem::forget(spawned);
        process
    })
}

/// A test's start against the shared controller: a client, the CRDs, the controller running,
/// and a fresh namespace named after `test`.
pub async fn setup(test: &str) -> (Client, String) {
    let client = client().await;
    install_crds(&client).await;
    controller();
    let ns = namespace(&client, test).await;
    (client, ns)
}

impl ControllerProcess {
    /// The controller's log so far, for assertion messages.
    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

/// A simulated node, the way kwok does it: registers a Node and, for the Pods of one namespace,
/// binds them to it and reports them Running and Ready, so Deployments become Available on a
/// control plane without kubelets. Runs until the returned handle is dropped.
pub struct SimulatedNode {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SimulatedNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn simulated_node(client: &Client, namespace: &str) -> SimulatedNode {
    use k8s_openapi::api::core::v1::{Node, Pod};
    let node_name = format!("sim-{namespace}");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": node_name, "labels": {"type": "simulated"}},
        "spec": {}
    }))
    .expect("node");
    let _ = nodes.create(&PostParams::default(), &node).await;
    let client = client.clone();
    let namespace = namespace.to_owned();
    let task = tokio::spawn(async move {
        let nodes: Api<Node> = Api::all(client.clone());
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        let mut tick = 0u32;
        loop {
            if tick % 20 == 0 {
                // A heartbeat, so the node lifecycle controller keeps the node Ready.
                let now = jiff::Timestamp::now().to_string();
                let status = serde_json::json!({"status": {
                    "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "simulated",
                        "lastHeartbeatTime": now, "lastTransitionTime": now}],
                    "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "500"},
                    "capacity": {"cpu": "64", "memory": "256Gi", "pods": "500"}
                }});
                let _ = nodes.patch_status(&node_name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
            tick += 1;
            if let Ok(list) = pods.list(&Default::default()).await {
                for pod in list.items {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    if pod.metadata.deletion_timestamp.is_some() {
                        // No kubelet will confirm the kill: finish the deletion ourselves.
                        let _ = pods.delete(&name, &kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await;
                        continue;
                    }
                    let bound = pod.spec.as_ref().and_then(|s| s.node_name.clone()).is_some();
                    if !bound {
                        let binding = serde_json::json!({
                            "apiVersion": "v1", "kind": "Binding",
                            "metadata": {"name": name, "namespace": namespace},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}
                        });
                        let request = http::Request::post(format!("/api/v1/namespaces/{namespace}/pods/{name}/binding"))
                            .header("Content-Type", "application/json")
                            .body(serde_json::to_vec(&binding).unwrap_or_default());
                        if let Ok(request) = request {
                            let _ = client.request_text(request).await;
                        }
                        continue;
                    }
                    let ready =
                        pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    if !ready {
                        let now = jiff::Timestamp::now().to_string();
                        let containers: Vec<serde_json::Value> = pod
                            .spec
                            .as_ref()
                            .map(|s| {
                                s.containers
                                    .iter()
                                    .map(|c| {
                                        serde_json::json!({
                                            "name": c.name, "image": c.image, "imageID": "", "ready": true, "restartCount": 0,
                                            "started": true, "state": {"running": {"startedAt": now}}
                                        })
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let status = serde_json::json!({"status": {
                            "phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.0.0.2", "startTime": now,
                            "conditions": [
                                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                                {"type": "Ready", "status": "True", "lastTransitionTime": now}
                            ],
                            "containerStatuses": containers
                        }});
                        let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    SimulatedNode { task }
}

/// A ServiceAccount `name` in `ns` that may manage ConfigMaps there and nothing else (a Role and
/// its RoleBinding): a Kustomization impersonating it may apply ConfigMaps, and is refused the rest.
pub async fn configmap_only_service_account(client: &Client, ns: &str, name: &str) {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Api, PostParams};
    let role = serde_json::json!({"metadata": {"name": format!("{name}-configmaps")},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]});
    let binding = serde_json::json!({"metadata": {"name": format!("{name}-configmaps")},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{name}-configmaps")},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]});
    let account = serde_json::json!({"metadata": {"name": name}});
    let params = PostParams::default();
    Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&params, &serde_json::from_value(account).expect("sa")).await.expect("ServiceAccount");
    Api::<Role>::namespaced(client.clone(), ns).create(&params, &serde_json::from_value(role).expect("role")).await.expect("Role");
    Api::<RoleBinding>::namespaced(client.clone(), ns).create(&params, &serde_json::from_value(binding).expect("binding")).await.expect("RoleBinding");
}
