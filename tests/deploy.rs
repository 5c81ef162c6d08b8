//! The in-cluster install: `deploy/` equals what `ferroflux install --export --dir deploy`
//! generates, the API server accepts it, and `ferroflux install` applies it and waits for the
//! controller (its Pods run on a simulated node: the test control plane has no kubelet).

mod support;

use std::collections::BTreeMap;
use std::process::Output;

use ferroflux::deploy::{self, InstallOptions};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};

fn deploy_dir() -> std::path::PathBuf {
    support::repo_root().join("deploy")
}

#[test]
fn deploy_folder_matches_the_generator() {
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(deploy_dir()).expect("deploy/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            on_disk.insert(name, std::fs::read_to_string(&path).expect("readable"));
        }
    }
    let generated: BTreeMap<String, String> = deploy::manifests(&InstallOptions::default()).expect("manifests").files().into_iter().collect();
    assert_eq!(
        on_disk.keys().collect::<Vec<_>>(),
        generated.keys().collect::<Vec<_>>(),
        "deploy/ has other files than `ferroflux install --export --dir deploy` writes"
    );
    for (name, yaml) in &generated {
        assert!(on_disk[name] == *yaml, "deploy/{name} differs from src/deploy: run `cargo run -- install --export --dir deploy`");
    }
}

fn by_id(objects: Vec<Value>) -> BTreeMap<String, Value> {
    objects
        .into_iter()
        .map(|o| {
            (
                format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or("")
                ),
                o,
            )
        })
        .collect()
}

/// `kubectl apply -k deploy/` and `kubectl apply -f deploy/install.yaml` install the same objects.
#[test]
fn kustomization_and_install_yaml_hold_the_same_objects() {
    let dir = deploy_dir();
    let built = ferroflux::kustomize::build(&dir, &dir, &ferroflux::kustomize::BuildOptions::default()).expect("deploy/ builds");
    let install = std::fs::read_to_string(dir.join("install.yaml")).expect("install.yaml");
    let listed = ferroflux::kustomize::parse_objects(&install, &dir.join("install.yaml")).expect("install.yaml parses");
    assert_eq!(listed.len(), deploy::manifests(&InstallOptions::default()).unwrap().all().len());
    assert_eq!(by_id(built), by_id(listed));
}

/// Creates the namespace unless it exists; other tests may share it.
async fn ensure_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating namespace {name}: {e}"),
    }
}

async fn ferroflux(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_ferroflux")).args(args).env("KUBECONFIG", support::kubeconfig()).output().await.expect("running ferroflux")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn install_yaml_passes_a_server_side_dry_run() {
    let client = support::client().await;
    // A dry-run does not create the namespace, so the objects in it need it to exist.
    ensure_namespace(&client, deploy::DEFAULT_NAMESPACE).await;
    let install = deploy_dir().join("install.yaml");
    if support::has_kubectl() {
        // --force-conflicts: other tests apply the same CRDs with their own field manager.
        let out = support::kubectl(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", install.to_str().expect("utf-8 path")]);
        assert!(out.status.success(), "kubectl dry-run failed:\n{}{}", text(&out.stdout), text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains("deployment.apps/ferroflux serverside-applied (server dry run)"), "{stdout}");
        assert!(stdout.contains("service/ferroflux serverside-applied (server dry run)"), "{stdout}");
    } else {
        println!("kubectl is not installed: validating with `ferroflux install --dry-run` only");
    }
    let out = ferroflux(&["install", "--dry-run"]).await;
    assert!(out.status.success(), "ferroflux install --dry-run failed:\n{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    for id in [
        "Namespace//flux-system",
        "ClusterRoleBinding//ferroflux-cluster-reconciler-flux-system",
        "Deployment/flux-system/ferroflux",
        "Service/flux-system/ferroflux",
    ] {
        let (kind, rest) = id.split_once('/').unwrap();
        let (namespace, name) = rest.split_once('/').unwrap();
        let shown = if namespace.is_empty() { format!("{kind}/{name}") } else { format!("{kind}/{namespace}/{name}") };
        assert!(stdout.contains(&format!("✔ {shown} valid (server dry run)")), "{shown} missing in:\n{stdout}");
    }
}

#[tokio::test]
async fn dry_run_into_a_missing_namespace_says_what_it_could_not_check() {
    let client = support::client().await;
    let namespace = format!("deploy-missing-{:x}", std::process::id());
    let out = ferroflux(&["install", "--dry-run", "--namespace", &namespace]).await;
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("namespace {namespace} does not exist yet")), "{stdout}");
    assert!(stdout.contains(&format!("Deployment/{namespace}/ferroflux")), "{stdout}");
    // Nothing was written.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    assert!(namespaces.get_opt(&namespace).await.unwrap().is_none());
    let roles: Api<ClusterRole> = Api::all(client);
    assert!(roles.get_opt(&format!("ferroflux-{namespace}")).await.unwrap().is_none());
}

#[tokio::test]
async fn dry_run_reports_what_the_api_server_rejects() {
    let out = ferroflux(&["install", "--dry-run", "--namespace", "Not_A_Namespace"]).await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("invalid namespace \"Not_A_Namespace\""), "{}", text(&out.stderr));
}

/// Whether `user` may do `verb` on `resource`, as the API server's authorizer answers.
async fn allowed(client: &Client, user: &str, namespace: &str, verb: &str, group: &str, resource: &str) -> bool {
    let review: SubjectAccessReview = serde_json::from_value(json!({
        "spec": {
            "user": user,
            "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
            "resourceAttributes": {"namespace": namespace, "verb": verb, "group": group, "resource": resource},
        }
    }))
    .unwrap();
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await.expect("SubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

async fn delete_cluster_rbac(client: &Client, namespace: &str) {
    let roles: Api<ClusterRole> = Api::all(client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(client.clone());
    let _ = roles.delete(&format!("ferroflux-{namespace}"), &DeleteParams::default()).await;
    let _ = bindings.delete(&format!("ferroflux-{namespace}"), &DeleteParams::default()).await;
    let _ = bindings.delete(&format!("ferroflux-cluster-reconciler-{namespace}"), &DeleteParams::default()).await;
}

#[tokio::test]
async fn restricted_install_applies_waits_for_the_controller_and_grants_no_cluster_admin() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "deploy-restricted").await;
    // Plays the kubelet for this namespace, so the Deployment can become Available.
    let _node = support::simulated_node(&client, &namespace).await;
    // First the default install, then restricted mode over it: the cluster-admin binding must go.
    let default = ferroflux(&["install", "--namespace", &namespace, "--timeout", "2m"]).await;
    let out = ferroflux(&["install", "--namespace", &namespace, "--default-service-account", "deployer", "--timeout", "2m"]).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let user = format!("system:serviceaccount:{namespace}:ferroflux");
    let may = |verb: &'static str, group: &'static str, resource: &'static str| {
        let (client, user, namespace) = (client.clone(), user.clone(), namespace.clone());
        async move { allowed(&client, &user, &namespace, verb, group, resource).await }
    };
    let checks = [
        (may("list", "source.toolkit.fluxcd.io", "gitrepositories").await, true, "list GitRepositories"),
        (may("patch", "kustomize.toolkit.fluxcd.io", "kustomizations/status").await, true, "patch Kustomization status"),
        (may("get", "", "secrets").await, true, "read Secrets"),
        (may("create", "", "secrets").await, false, "create Secrets"),
        (may("create", "events.k8s.io", "events").await, true, "create Events"),
        (may("update", "coordination.k8s.io", "leases").await, true, "update Leases"),
        (may("impersonate", "", "serviceaccounts").await, true, "impersonate ServiceAccounts"),
        (may("create", "apps", "deployments").await, false, "create Deployments"),
        (may("delete", "", "namespaces").await, false, "delete Namespaces"),
    ];
    let binding_left = Api::<ClusterRoleBinding>::all(client.clone()).get_opt(&format!("ferroflux-cluster-reconciler-{namespace}")).await.unwrap().is_some();
    delete_cluster_rbac(&client, &namespace).await;
    assert!(default.status.success(), "default install failed:\n{}{}", text(&default.stdout), text(&default.stderr));
    assert!(text(&default.stdout).contains(&format!("✔ Deployment/{namespace}/ferroflux created")), "{}", text(&default.stdout));
    assert!(out.status.success(), "ferroflux install failed:\n{stdout}{stderr}");
    assert!(stdout.contains(&format!("✔ Deployment/{namespace}/ferroflux configured")), "{stdout}");
    assert!(stdout.contains(&format!("✔ ClusterRoleBinding/ferroflux-cluster-reconciler-{namespace} deleted")), "{stdout}");
    assert!(stdout.contains("✔ install finished"), "{stdout}");
    assert!(!binding_left);
    for (actual, expected, what) in checks {
        assert_eq!(actual, expected, "the restricted controller may {what}: expected {expected}");
    }
}

#[tokio::test]
async fn install_without_a_node_times_out_saying_what_to_do() {
    let client = support::client().await;
    let namespace = support::namespace(&client, "deploy-no-node").await;
    let out = ferroflux(&["install", "--namespace", &namespace, "--timeout", "3s"]).await;
    delete_cluster_rbac(&client, &namespace).await;
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stdout}{stderr}");
    // The default install binds cluster-admin, like Flux.
    assert!(stdout.contains(&format!("✔ ClusterRoleBinding/ferroflux-cluster-reconciler-{namespace} created")), "{stdout}");
    assert!(stderr.contains(&format!("Deployment {namespace}/ferroflux did not become Available within 3s")), "{stderr}");
    assert!(stderr.contains(&format!("kubectl -n {namespace} describe deployment ferroflux")), "{stderr}");
}
