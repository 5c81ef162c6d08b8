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

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the test cluster, starting one if none was given.
pub fn kubeconfig() -> &'static Path {
    let cluster = CLUSTER.get_or_init(|| {
        if let Ok(path) = std::env::var(KUBECONFIG_ENV) {
            return Ok(Cluster { kubeconfig: PathBuf::from(path), _dir: None });
        }
        let dir = tempfile::Builder::new()
            .prefix("ferroflux-k8s-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?;
        let out = Command::new("bash")
            .arg(repo_root().join("hack/k8s-up.sh"))
            .arg(dir.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .output()
            .map_err(|e| format!("running hack/k8s-up.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "hack/k8s-up.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
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
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig to config");
    Client::try_from(config).expect("building the client")
}

/// Creates a fresh namespace named after the test.
pub async fn namespace(client: &Client, test: &str) -> String {
    let suffix: u32 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!("{}-{:x}", test.replace('_', "-"), suffix % 0xfffff);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .expect("namespace object");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating the test namespace");
    name
}

static CRDS_INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// Installs ferroflux's CRDs once per test process and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    CRDS_INSTALLED.get_or_init(|| apply_crds(client.clone())).await;
}

async fn apply_crds(client: Client) {
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
                api.get(&name).await.ok().and_then(|c| c.status).is_some_and(|s| {
                    s.conditions.unwrap_or_default().iter().any(|c| c.type_ == "Established" && c.status == "True")
                })
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

pub fn has_kubectl() -> bool {
    Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success())
}

/// Runs kubectl against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig())
        .args(args)
        .output()
        .expect("running kubectl")
}
