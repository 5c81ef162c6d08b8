//! The container image: `hack/image.sh` builds it from a static binary on `FROM scratch` (no
//! registry to pull a base from), and it works: it runs locked down as nobody, resolves host
//! names (through /etc/hosts and through DNS), and as the controller clones over HTTPS trusting
//! the image's CA bundle and applies what it cloned. Where no Docker engine answers, each test
//! fails under `CI=true` and is counted as skipped elsewhere (`support::skip`).

mod support;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use ferroflux::deploy::{self, InstallOptions};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

fn docker_works() -> bool {
    Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("running docker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The image, built once per test process (hack/image.sh is incremental); `None` without Docker.
fn image() -> Option<String> {
    static BUILT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !docker_works() {
                return None;
            }
            let build = Command::new("bash").arg(support::repo_root().join("hack/image.sh")).output().expect("running hack/image.sh");
            assert!(build.status.success(), "hack/image.sh failed:\n{}{}", text(&build.stdout), text(&build.stderr));
            let stdout = text(&build.stdout);
            assert!(stdout.contains("static-pie linked") || stdout.contains("statically linked"), "{stdout}");
            Some(format!("ferroflux:{}", env!("CARGO_PKG_VERSION")))
        })
        .clone()
}

#[test]
fn image_runs_version_locked_down_as_nobody() {
    let Some(tag) = image() else {
        support::skip("no Docker engine answers `docker info`: the image is not built or tested here");
        return;
    };
    let run = docker(&["run", "--rm", &tag, "version"]);
    assert!(run.status.success(), "docker run failed:\n{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), format!("ferroflux {}\n", env!("CARGO_PKG_VERSION")));

    let config = docker(&["image", "inspect", "-f", "{{.Config.User}} {{json .Config.Entrypoint}}", &tag]);
    assert_eq!(text(&config.stdout).trim(), r#"65534:65534 ["/ferroflux"]"#);
    // What the Deployment runs under: read-only root, no capabilities, no privilege escalation.
    let locked_down = docker(&["run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", &tag, "version"]);
    assert!(locked_down.status.success(), "{}", text(&locked_down.stderr));
}

/// A copy of `kubeconfig` whose API server is reached as `host_name`, readable by nobody.
fn kubeconfig_naming(kubeconfig: &Path, host_name: &str, dir: &Path) -> (std::path::PathBuf, String) {
    let config = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let server = config.lines().find_map(|l| l.trim().strip_prefix("server:")).expect("a server line").trim().to_owned();
    let address = server.trim_start_matches("https://").rsplit_once(':').expect("host:port").0.to_owned();
    assert!(address.parse::<std::net::IpAddr>().is_ok(), "expected the test API server at an IP address, got {server}");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, config.replace(&server, &server.replace(&address, host_name))).expect("writing kubeconfig");
    readable_by_all(dir);
    (path, address)
}

/// The container runs as nobody: files mounted into it must be readable by all.
fn readable_by_all(dir: &Path) {
    let status = Command::new("chmod").args(["-R", "a+rX"]).arg(dir).status().expect("chmod");
    assert!(status.success());
}

/// `ferroflux install --dry-run` in the image, against the test cluster reached by a host name.
fn dry_run_in_image(tag: &str, kubeconfig: &Path, extra: &[&str]) -> Output {
    let mount = format!("{}:/kubeconfig:ro", kubeconfig.display());
    let mut args = vec!["run", "--rm", "--network", "host", "-v", &mount, "-e", "KUBECONFIG=/kubeconfig"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[tag, "install", "--dry-run", "--namespace", "image-test-absent"]);
    docker(&args)
}

/// The static binary resolves names with the resolver glibc links in (`hosts: files dns` in the
/// image), the way both kube's HTTP client and libgit2 do (getaddrinfo).
#[test]
fn image_resolves_host_names_through_etc_hosts_and_dns() {
    let Some(tag) = image() else {
        support::skip("no Docker engine answers `docker info`: the image is not built or tested here");
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");

    let (kubeconfig, address) = kubeconfig_naming(support::kubeconfig(), "apiserver.ferroflux.test", dir.path());
    let unresolved = dry_run_in_image(&tag, &kubeconfig, &[]);
    assert!(!unresolved.status.success(), "the name should not resolve without a hosts entry");
    let add_host = format!("apiserver.ferroflux.test:{address}");
    let run = dry_run_in_image(&tag, &kubeconfig, &["--add-host", &add_host]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "ferroflux in the image failed:\n{stdout}{}", text(&run.stderr));
    assert!(stdout.contains("✔ CustomResourceDefinition/gitrepositories.source.toolkit.fluxcd.io valid (server dry run)"), "{stdout}");

    // DNS: a one-name DNS server on 127.0.0.1:53 and a resolv.conf naming it. Binding port 53
    // needs root (or CAP_NET_BIND_SERVICE) and a free port: without them, say so.
    let Ok(socket) = UdpSocket::bind("127.0.0.1:53") else {
        support::skip("cannot listen on 127.0.0.1:53: DNS resolution in the image is not tested here");
        return;
    };
    let dns_dir = tempfile::tempdir().expect("temp dir");
    let (kubeconfig, address) = kubeconfig_naming(support::kubeconfig(), "apiserver.dns.ferroflux.test", dns_dir.path());
    let resolv = dns_dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").expect("resolv.conf");
    readable_by_all(dns_dir.path());
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = answered.clone();
    let ip: std::net::Ipv4Addr = address.parse().expect("an IPv4 API server address");
    std::thread::spawn(move || serve_one_name(socket, "apiserver.dns.ferroflux.test", ip, &counter));
    let mount = format!("{}:/etc/resolv.conf:ro", resolv.display());
    let run = dry_run_in_image(&tag, &kubeconfig, &["-v", &mount]);
    assert!(run.status.success(), "ferroflux in the image failed with DNS:\n{}{}", text(&run.stdout), text(&run.stderr));
    assert!(answered.load(std::sync::atomic::Ordering::SeqCst) > 0, "the DNS server was never asked");
}

/// Answers A queries for `name` with `ip`, and every other query with no records.
fn serve_one_name(socket: UdpSocket, name: &str, ip: std::net::Ipv4Addr, answered: &std::sync::atomic::AtomicUsize) {
    let mut buffer = [0u8; 512];
    while let Ok((len, peer)) = socket.recv_from(&mut buffer) {
        let query = &buffer[..len];
        if len < 12 {
            continue;
        }
        // The question: labels up to a zero byte, then type and class.
        let mut at = 12;
        let mut labels = Vec::new();
        while at < len && query[at] != 0 {
            let size = query[at] as usize;
            labels.push(String::from_utf8_lossy(&query[at + 1..(at + 1 + size).min(len)]).into_owned());
            at += 1 + size;
        }
        if at + 5 > len {
            continue;
        }
        let question = &query[12..at + 5];
        let qtype = u16::from_be_bytes([query[at + 1], query[at + 2]]);
        let matches = labels.join(".") == name;
        let with_answer = matches && qtype == 1;
        let mut reply = Vec::with_capacity(64);
        reply.extend_from_slice(&query[..2]);
        reply.extend_from_slice(&(if matches { 0x8180u16 } else { 0x8183 }).to_be_bytes());
        reply.extend_from_slice(&[0, 1, 0, u8::from(with_answer), 0, 0, 0, 0]);
        reply.extend_from_slice(question);
        if with_answer {
            reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            reply.extend_from_slice(&ip.octets());
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let _ = socket.send_to(&reply, peer);
    }
}

/// Removes the controller container and stops the private control plane, also when a test fails.
struct Cleanup {
    container: String,
    control_plane: std::path::PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.container]).output();
        let _ = Command::new("bash").arg(self.control_plane.join("down.sh")).output();
        let _ = std::fs::remove_dir_all(&self.control_plane);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("address").port()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello-world-flask
spec:
  replicas: 1
  selector:
    matchLabels: {app: hello-world-flask}
  template:
    metadata:
      labels: {app: hello-world-flask}
    spec:
      containers:
      - name: app
        image: hello-world-flask:v1
";

fn dynamic(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn ready(object: &DynamicObject) -> Option<(String, String)> {
    let conditions = object.data.pointer("/status/conditions")?.as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some((ready["status"].as_str()?.to_owned(), ready["message"].as_str().unwrap_or("").to_owned()))
}

/// The image as the controller: it watches a control plane of its own (a cluster-wide controller
/// would reconcile the other tests' objects on the shared one), clones over HTTPS trusting only
/// the CA bundle at the image's path — no `ca.crt` in the secret — and applies the Deployment it
/// cloned, read-only and as nobody, as the install's Deployment runs it.
#[tokio::test(flavor = "multi_thread")]
async fn image_as_controller_clones_over_https_with_its_ca_bundle_and_applies() {
    let Some(tag) = image() else {
        support::skip("no Docker engine answers `docker info`: the image is not built or tested here");
        return;
    };
    let control_plane = tempfile::Builder::new().prefix("ferroflux-image-k8s-").tempdir().expect("temp dir").keep();
    let up = Command::new("bash")
        .arg(support::repo_root().join("hack/k8s-up.sh"))
        .arg(&control_plane)
        .args(["--watch-pid", &std::process::id().to_string()])
        .output()
        .expect("hack/k8s-up.sh");
    assert!(up.status.success(), "hack/k8s-up.sh failed:\n{}", text(&up.stderr));
    let container = format!("ferroflux-image-test-{}", std::process::id());
    let _cleanup = Cleanup { container: container.clone(), control_plane: control_plane.clone() };
    let kubeconfig = control_plane.join("kubeconfig");
    let client = support::client_for(&kubeconfig).await;

    // The CRDs, as `ferroflux install` applies them.
    let crds = deploy::manifests(&InstallOptions::default()).expect("manifests").crds;
    let applier = ferroflux::apply::Applier::new(client.clone());
    applier.apply_all(crds, &ferroflux::apply::ApplyOptions { wait_timeout: Duration::from_secs(60), ..Default::default() }).await.expect("CRDs");

    let servers = support::git_servers();
    let repo = support::TestRepo::new(&format!("image-{}", std::process::id()));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");

    // The bundle holds only the test Git server's CA: a clone that succeeds read it.
    let mounts = tempfile::tempdir().expect("temp dir");
    std::fs::copy(servers.var("CA_FILE"), mounts.path().join("ca-certificates.crt")).expect("CA");
    std::fs::copy(&kubeconfig, mounts.path().join("kubeconfig")).expect("kubeconfig");
    readable_by_all(mounts.path());
    let storage_port = free_port();
    let mount_ca = format!("{}:/etc/ssl/certs/ca-certificates.crt:ro", mounts.path().join("ca-certificates.crt").display());
    let mount_kubeconfig = format!("{}:/kubeconfig:ro", mounts.path().join("kubeconfig").display());
    let storage_addr = format!("--storage-addr=127.0.0.1:{storage_port}");
    let health_addr = format!("--health-addr=127.0.0.1:{}", free_port());
    let metrics_addr = format!("--metrics-addr=127.0.0.1:{}", free_port());
    // Host networking: the Receiver's default :9292 may be taken by another test's controller.
    let receiver_addr = format!("--receiver-addr=127.0.0.1:{}", free_port());
    let started = docker(&[
        "run",
        "-d",
        "--name",
        &container,
        "--network",
        "host",
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--tmpfs",
        "/data:uid=65534,gid=65534",
        "--tmpfs",
        "/tmp:mode=1777",
        "-v",
        &mount_ca,
        "-v",
        &mount_kubeconfig,
        "-e",
        "KUBECONFIG=/kubeconfig",
        &tag,
        "controller",
        "--storage-path=/data",
        &storage_addr,
        &health_addr,
        &metrics_addr,
        &receiver_addr,
        "--log-encoding=json",
    ]);
    assert!(started.status.success(), "docker run failed:\n{}", text(&started.stderr));
    let logs = || text(&docker(&["logs", "--tail", "40", &container]).stderr);

    let ns = support::namespace(&client, "image").await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "git-auth"},
        "stringData": {"username": servers.var("USERNAME"), "password": servers.var("PASSWORD")}
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), &ns).create(&PostParams::default(), &secret).await.expect("secret");
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app"},
            "spec": {"interval": "1s", "url": repo.https_url(), "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}}
        }),
    )
    .await
    .expect("GitRepository");
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "app"},
            "spec": {"interval": "1m", "path": "./", "prune": true, "targetNamespace": ns,
                "sourceRef": {"kind": "GitRepository", "name": "app"}}
        }),
    )
    .await
    .expect("Kustomization");

    let repositories: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &dynamic("source.toolkit.fluxcd.io", "v1", "GitRepository", "gitrepositories"));
    let kustomizations: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &ns, &dynamic("kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations"));
    let last = std::sync::Mutex::new(None);
    let cloned = support::wait_for(Duration::from_secs(90), || async {
        let Ok(object) = repositories.get("app").await else { return false };
        let seen = ready(&object);
        let done = seen.as_ref().is_some_and(|(status, message)| status == "True" && message.contains(&commit));
        *last.lock().unwrap() = seen;
        done
    })
    .await;
    assert!(cloned.is_some(), "the GitRepository never became Ready with {commit}; last Ready: {:?}\nlogs:\n{}", last.lock().unwrap(), logs());
    let applied = support::wait_for(Duration::from_secs(90), || async {
        let Ok(object) = kustomizations.get("app").await else { return false };
        let seen = ready(&object);
        let done = seen.as_ref().is_some_and(|(status, _)| status == "True");
        *last.lock().unwrap() = seen;
        done
    })
    .await;
    assert!(applied.is_some(), "the Kustomization never became Ready; last Ready: {:?}\nlogs:\n{}", last.lock().unwrap(), logs());
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns).get("hello-world-flask").await.expect("the applied Deployment");
    let image: Value = serde_json::to_value(&deployment).expect("json")["spec"]["template"]["spec"]["containers"][0]["image"].clone();
    assert_eq!(image, "hello-world-flask:v1");
}
