//! The node tier: the tutorial on a real node. `hack/k8s-up.sh --node` starts a kubelet on this
//! machine's Docker engine, kube-proxy and kube-scheduler next to the control plane; ferroflux is
//! installed in the cluster from its image (`hack/image.sh`) with `ferroflux install`, and the
//! tutorial's app (`examples/hello-world-flask`) answers over HTTP through its Service. Asserted:
//! the controller runs as a Pod (Ready, restricted, leader of its Lease, in-cluster config); the
//! app's Pods run; the answer before the release, after it (`v1`) and after the rollback
//! (`git reset --hard` + `git push -f`); each release replaces the Pods (new Pods, none patched in
//! place); and after the teardown the host is as it was (sysctls, iptables, log folders, dockerd's
//! OOM score, containers, images).
//!
//! A tier of its own, `#[ignore]`d in the default run (which counts it as skipped): it needs root,
//! Docker with its docker0 bridge, and one node per machine. Run it with
//! `cargo test --test node -- --ignored` (`.ci/run` does where Docker answers). Asked for and
//! missing any of these, it fails: it never passes without having run.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const APP: &str = "hello-world-flask";
const FIRST_ANSWER: &str = "Hello, my first docker images! ";
const V1_ANSWER: &str = "Hello, my v1 version docker images! ";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run(command: &mut Command) -> Output {
    let description = format!("{command:?}");
    command.output().unwrap_or_else(|e| panic!("running {description}: {e}"))
}

/// Runs a command that must succeed; returns its stdout.
fn must(command: &mut Command) -> String {
    let description = format!("{command:?}");
    let out = run(command);
    assert!(out.status.success(), "{description} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

fn script(path: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(support::repo_root().join(path));
    command
}

/// What a node may change on the host, one fact a line (`hack/k8s-node-host.sh snapshot`).
fn host_snapshot() -> String {
    must(script("hack/k8s-node-host.sh").arg("snapshot"))
}

fn image_exists(image: &str) -> bool {
    run(Command::new("docker").args(["image", "inspect", image])).status.success()
}

/// Why this machine cannot run a node, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let uid = run(Command::new("id").arg("-u"));
    if text(&uid.stdout).trim() != "0" {
        return Some("the node tier needs root (the kubelet runs containers and sets iptables rules)".into());
    }
    if !Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success()) {
        return Some("no Docker engine answers `docker info`".into());
    }
    if docker0_address().is_none() {
        return Some("Docker has no docker0 bridge with an IPv4 address".into());
    }
    if !support::has_kubectl() {
        return Some("kubectl is not installed".into());
    }
    None
}

fn docker0_address() -> Option<String> {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "docker0"]).output().ok()?;
    let line = text(&out.stdout);
    let cidr = line.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
    Some(cidr.split('/').next()?.to_owned())
}

/// The node, its Git server and the images this test built; dropping it (also when the test
/// panics) tears everything down again.
struct Node {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    git_dir: tempfile::TempDir,
    images_built: Vec<String>,
}

impl Node {
    fn kubectl(&self, args: &[&str]) -> Output {
        run(Command::new("kubectl").env("KUBECONFIG", &self.kubeconfig).args(args))
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(out.status.success(), "kubectl {args:?} failed:\n{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl's JSON")
    }

    /// The controller's log, for assertion messages.
    fn controller_log(&self) -> String {
        let out = self.kubectl(&["logs", "-n", "flux-system", "deployment/ferroflux", "--tail", "40"]);
        format!("{}{}", text(&out.stdout), text(&out.stderr))
    }

    fn teardown(&mut self) {
        let down = self.dir.path().join("down.sh");
        if down.exists() {
            let _ = Command::new("sh").arg(&down).output();
        }
        let _ = Command::new("bash").arg(support::repo_root().join("hack/git-servers.sh")).arg("stop").arg(self.git_dir.path()).output();
        for image in self.images_built.drain(..) {
            let _ = Command::new("docker").args(["rmi", &image]).output();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Polls `check` every 500 ms until it returns `Some`, or panics with `what` and `context()`.
fn wait_until<T>(timeout: Duration, what: &str, context: impl Fn() -> String, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}\n{}", context());
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    must(Command::new("git").arg("-C").arg(dir).args(["-c", "user.name=ferroflux-tests", "-c", "user.email=tests@ferroflux.invalid"]).args(args))
        .trim()
        .to_owned()
}

/// The app's Pods: name -> (uid, image, phase, ready, restarts), without Pods being deleted.
fn app_pods(node: &Node) -> Vec<(String, String, String, String, bool, i64)> {
    let list = node.json(&["get", "pods", "-n", "default", "-l", &format!("app={APP}")]);
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| {
                    let status = &p["status"]["containerStatuses"][0];
                    (
                        p["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                        p["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
                        p["spec"]["containers"][0]["image"].as_str().unwrap_or_default().to_owned(),
                        p["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                        status["ready"].as_bool().unwrap_or(false),
                        status["restartCount"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until exactly `replicas` live Pods run `image`, all Ready, and no other Pod is left;
/// returns their UIDs.
fn wait_pods_running(node: &Node, image: &str, replicas: usize) -> BTreeSet<String> {
    wait_until(
        Duration::from_secs(180),
        &format!("{replicas} Running and Ready Pods of {image}, and no others"),
        || format!("pods: {:?}\ncontroller log:\n{}", app_pods(node), node.controller_log()),
        || {
            let pods = app_pods(node);
            let all_running =
                pods.len() == replicas && pods.iter().all(|(_, _, i, phase, ready, restarts)| i == image && phase == "Running" && *ready && *restarts == 0);
            // Terminating Pods are filtered out above; wait until they are gone too.
            let list = node.json(&["get", "pods", "-n", "default", "-l", &format!("app={APP}")]);
            let total = list["items"].as_array().map(Vec::len).unwrap_or(0);
            (all_running && total == replicas).then(|| pods.into_iter().map(|p| p.1).collect())
        },
    )
}

/// Asks the Service until it answers `expected` followed by the name of one of `pods`' Pods.
fn wait_answer(node: &Node, service_ip: &str, expected: &str) -> String {
    wait_until(
        Duration::from_secs(60),
        &format!("the app's answer {expected:?}"),
        || format!("pods: {:?}", app_pods(node)),
        || {
            let out = Command::new("curl").args(["-s", "-m", "2", &format!("http://{service_ip}/")]).output().ok()?;
            let answer = text(&out.stdout);
            let pod = answer.strip_prefix(expected)?.to_owned();
            app_pods(node).iter().any(|p| p.0 == pod).then_some(answer)
        },
    )
}

fn wait_applied(node: &Node, commit: &str) {
    wait_until(
        Duration::from_secs(120),
        &format!("the Kustomization applying {commit}"),
        || node.controller_log(),
        || {
            let ks = node.json(&["get", "kustomization", APP, "-n", "default"]);
            let revision = ks["status"]["lastAppliedRevision"].as_str().unwrap_or_default();
            revision.ends_with(commit).then_some(())
        },
    );
}

#[test]
#[ignore = "the node tier: needs root and Docker; run with `cargo test --test node -- --ignored`"]
fn tutorial_on_a_real_node_releases_and_rolls_back() {
    if let Some(reason) = missing_prerequisite() {
        panic!("the node tier cannot run here: {reason}");
    }
    let host_before = host_snapshot();
    let pause_image = "k8s.gcr.io/pause:3.2";
    let pause_before = image_exists(pause_image);
    let version = env!("CARGO_PKG_VERSION");
    let controller_image = format!("ferroflux:{version}");
    let app_images = [format!("lyzhang1999/{APP}:latest"), format!("lyzhang1999/{APP}:v1")];
    let images_before: Vec<(String, bool)> = app_images.iter().chain(std::iter::once(&controller_image)).map(|i| (i.clone(), image_exists(i))).collect();

    let dir = tempfile::Builder::new().prefix("ferroflux-node-").tempdir().expect("temp dir");
    let git_dir = tempfile::Builder::new().prefix("ferroflux-node-git-").tempdir().expect("temp dir");
    let mut node = Node { kubeconfig: dir.path().join("kubeconfig"), dir, git_dir, images_built: Vec::new() };
    node.images_built = images_before.iter().filter(|(_, existed)| !existed).map(|(i, _)| i.clone()).collect();

    // The node. --watch-pid: should this process die without unwinding, the node goes too.
    must(script("hack/k8s-up.sh").arg(node.dir.path()).arg("--node").arg("--watch-pid").arg(std::process::id().to_string()));
    let nodes = node.json(&["get", "nodes"]);
    assert_eq!(nodes["items"].as_array().map(Vec::len), Some(1), "one real node: {nodes}");

    // The images, on the node's Docker engine.
    must(&mut script("examples/hello-world-flask/build.sh"));
    let built = must(&mut script("hack/image.sh"));
    assert!(built.contains(&format!("built {controller_image}")), "{built}");

    // The Git server, where Pods reach it (docker0), and the tutorial's repository.
    let docker0 = docker0_address().expect("docker0");
    must(script("hack/git-servers.sh").env("GIT_SERVERS_ADDR", &docker0).arg("start").arg(node.git_dir.path()));
    let env = std::fs::read_to_string(node.git_dir.path().join("env")).expect("git-servers env");
    let var = |key: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_else(|| panic!("no {key} in git env")).to_owned();
    let bare = Path::new(&var("REPO_ROOT")).join("fluxcd-demo.git");
    must(Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(&bare));
    let work = tempfile::Builder::new().prefix("ferroflux-node-work-").tempdir().expect("temp dir");
    git(work.path(), &["init", "-q", "-b", "main"]);
    git(work.path(), &["remote", "add", "origin", bare.to_str().expect("utf-8 path")]);
    let tutorial = std::fs::read_to_string(support::repo_root().join("examples/tutorial/deployment.yaml")).expect("deployment.yaml");
    // The one change to the tutorial's manifest (README): `:latest` would default to
    // imagePullPolicy Always and pull from Docker Hub.
    let deployment = tutorial.replace(
        &format!("      - image: lyzhang1999/{APP}:latest\n"),
        &format!("      - image: lyzhang1999/{APP}:latest\n        imagePullPolicy: IfNotPresent\n"),
    );
    assert_ne!(deployment, tutorial, "the tutorial's deployment.yaml changed shape");
    std::fs::write(work.path().join("deployment.yaml"), &deployment).expect("write");
    git(work.path(), &["add", "-A"]);
    git(work.path(), &["commit", "-q", "-m", "Add deployment"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    let first = git(work.path(), &["rev-parse", "HEAD"]);

    // ferroflux in the cluster.
    must(Command::new(env!("CARGO_BIN_EXE_ferroflux")).arg("--kubeconfig").arg(&node.kubeconfig).args(["--timeout", "3m", "install"]));
    let pods = node.json(&["get", "pods", "-n", "flux-system", "-l", "app.kubernetes.io/name=ferroflux"]);
    let controller = pods["items"]
        .as_array()
        .and_then(|items| items.iter().find(|p| p["metadata"]["deletionTimestamp"].is_null()))
        .unwrap_or_else(|| panic!("no ferroflux Pod: {pods}"))
        .clone();
    let controller_pod = controller["metadata"]["name"].as_str().unwrap_or_default().to_owned();
    assert_eq!(controller["status"]["phase"], "Running", "{controller}");
    assert_eq!(controller["spec"]["nodeName"], "localhost", "scheduled on the real node: {controller}");
    assert_eq!(controller["spec"]["containers"][0]["image"], controller_image.as_str());
    let security = &controller["spec"]["containers"][0]["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{security}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{security}");
    assert_eq!(security["capabilities"]["drop"][0], "ALL", "{security}");
    // The Pod's container runs as nobody, as the kubelet reports from Docker.
    let container_id = controller["status"]["containerStatuses"][0]["containerID"].as_str().unwrap_or_default();
    let docker_id = container_id.strip_prefix("docker://").unwrap_or_else(|| panic!("a Docker container: {container_id}"));
    let user = must(Command::new("docker").args(["inspect", "-f", "{{.Config.User}}", docker_id]));
    assert!(user.trim().starts_with("65534"), "the controller's container runs as {user:?}");
    // Leader election through in-cluster config: the Pod holds the Lease.
    let lease = wait_until(
        Duration::from_secs(60),
        "the controller Pod holding the leader election Lease",
        || node.controller_log(),
        || {
            let out = node.kubectl(&["get", "lease", "-n", "flux-system", "ferroflux-leader-election", "-o", "json"]);
            let lease: Value = serde_json::from_slice(&out.stdout).ok()?;
            let holder = lease["spec"]["holderIdentity"].as_str()?.to_owned();
            holder.starts_with(&format!("{controller_pod}_")).then_some(holder)
        },
    );
    println!("the controller Pod {controller_pod} leads as {lease}");

    // The tutorial's two manifests, the repository URL swapped for the local one.
    let repo_url = format!("{}/fluxcd-demo.git", var("HTTP_URL_BASE"));
    let repo_manifest = std::fs::read_to_string(support::repo_root().join("examples/tutorial/fluxcd-repo.yaml")).expect("fluxcd-repo.yaml");
    let repo_manifest: String = repo_manifest
        .lines()
        .map(|l| if l.trim_start().starts_with("url:") { format!("  url: {repo_url}") } else { l.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    let manifests = node.dir.path().join("fluxcd-repo.yaml");
    std::fs::write(&manifests, repo_manifest).expect("write");
    node.kubectl_ok(&["apply", "-f", manifests.to_str().expect("utf-8")]);
    let kustomization = support::repo_root().join("examples/tutorial/fluxcd-kustomize.yaml");
    node.kubectl_ok(&["apply", "-f", kustomization.to_str().expect("utf-8")]);

    wait_applied(&node, &first);
    let latest = format!("lyzhang1999/{APP}:latest");
    let v1 = format!("lyzhang1999/{APP}:v1");
    let first_pods = wait_pods_running(&node, &latest, 2);
    node.kubectl_ok(&["expose", "deployment", APP, "-n", "default", "--port", "80", "--target-port", "5000"]);
    let service_ip = node.kubectl_ok(&["get", "service", APP, "-n", "default", "-o", "jsonpath={.spec.clusterIP}"]);
    let answer = wait_answer(&node, &service_ip, FIRST_ANSWER);
    println!("before the release: {answer}");

    // Release: the image tag to v1, commit, push.
    std::fs::write(work.path().join("deployment.yaml"), deployment.replace(&latest, &v1)).expect("write");
    git(work.path(), &["commit", "-q", "-am", "Update image tag to v1"]);
    git(work.path(), &["push", "-q", "origin", "main"]);
    let release = git(work.path(), &["rev-parse", "HEAD"]);
    wait_applied(&node, &release);
    let release_pods = wait_pods_running(&node, &v1, 2);
    assert!(first_pods.is_disjoint(&release_pods), "the release replaced the Pods: {first_pods:?} -> {release_pods:?}");
    let answer = wait_answer(&node, &service_ip, V1_ANSWER);
    println!("after the release: {answer}");

    // Rollback: git reset --hard <first> && git push -f.
    git(work.path(), &["reset", "-q", "--hard", &first]);
    git(work.path(), &["push", "-q", "-f", "origin", "main"]);
    wait_applied(&node, &first);
    let rollback_pods = wait_pods_running(&node, &latest, 2);
    assert!(
        release_pods.is_disjoint(&rollback_pods) && first_pods.is_disjoint(&rollback_pods),
        "the rollback replaced the Pods: {release_pods:?} -> {rollback_pods:?}"
    );
    let answer = wait_answer(&node, &service_ip, FIRST_ANSWER);
    println!("after the rollback: {answer}");

    // The controller did all of this from its one Pod, without restarting.
    let controller_now = node.json(&["get", "pod", "-n", "flux-system", &controller_pod]);
    assert_eq!(controller_now["status"]["containerStatuses"][0]["restartCount"], 0, "{controller_now}");

    // Nothing left behind.
    node.teardown();
    let containers = must(Command::new("docker").args(["ps", "-a", "--filter", "label=io.kubernetes.docker.type", "-q"]));
    assert_eq!(containers.trim(), "", "the node's containers are gone");
    for (image, existed) in &images_before {
        assert_eq!(image_exists(image), *existed, "{image} is as it was before the test");
    }
    assert_eq!(image_exists(pause_image), pause_before, "{pause_image} is as it was before the test");
    assert_eq!(host_snapshot(), host_before, "the host after the node's teardown");
}
