//! Flux's CLI verbs, run as the `ferroflux` binary against the real control plane: `get`,
//! `suspend`/`resume`, `reconcile`, `build ks`, `diff ks`, `tree ks`, `events`, `completions`.
//! Where a verb waits for a controller, a real `ferroflux controller` and a real Git server do the
//! work.

mod support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;

use support::TestRepo;

const DEPLOYMENT: &str = include_str!("../examples/tutorial/deployment.yaml");
const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";

/// Runs `ferroflux ARGS -n NS` against the test cluster.
fn ferroflux(ns: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ferroflux"))
        .arg("--kubeconfig")
        .arg(support::kubeconfig())
        .args(["-n", ns])
        .args(args)
        .output()
        .expect("running ferroflux")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a verb that must succeed; returns stdout and stderr.
fn ok(ns: &str, args: &[&str]) -> (String, String) {
    let out = ferroflux(ns, args);
    assert!(
        out.status.success(),
        "ferroflux {args:?} failed ({:?}):\n{}\n{}\ncontroller log:\n{}",
        out.status.code(),
        stdout(&out),
        stderr(&out),
        controller_log()
    );
    (stdout(&out), stderr(&out))
}

fn controller_log() -> String {
    support::controller().log_tail()
}

async fn cluster(test: &str) -> (Client, String) {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, test).await;
    (client, ns)
}

fn resource(kind: &str) -> ApiResource {
    match kind {
        "GitRepository" => ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", kind), "gitrepositories"),
        _ => ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", kind), "kustomizations"),
    }
}

async fn patch_status(client: &Client, ns: &str, kind: &str, name: &str, status: serde_json::Value) {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource(kind));
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.expect("patching the status");
}

fn ready(status: &str, message: &str) -> serde_json::Value {
    json!([{"type": "Ready", "status": status, "reason": "Test", "message": message, "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}])
}

/// A GitRepository (`interval`) on a test repository and a Kustomization of `path` in it, applied
/// into the test namespace; waits until the Kustomization applied `commit`.
async fn gitops(client: &Client, ns: &str, repo: &TestRepo, interval: &str, path: &str, commit: &str) {
    support::controller();
    support::create_object(
        client,
        ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "hello-world-flask"},
            "spec": {"interval": interval, "ref": {"branch": "main"}, "url": repo.http_url()}
        }),
    )
    .await
    .expect("creating the GitRepository");
    support::create_object(
        client,
        ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "hello-world-flask"},
            "spec": {"interval": "1h", "path": path, "prune": true, "targetNamespace": ns,
                     "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"}}
        }),
    )
    .await
    .expect("creating the Kustomization");
    wait_ks(client, ns, "hello-world-flask", &format!("main@sha1:{commit}")).await;
}

async fn wait_ks(client: &Client, ns: &str, name: &str, message: &str) -> Kustomization {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, "True", message, Duration::from_secs(120), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

fn image_of(deployment: &Deployment) -> String {
    deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

#[tokio::test]
async fn get_prints_flux_tables_for_sources_kustomizations_and_all() {
    let (client, ns) = cluster("cli-get").await;
    // Suspended, so that a controller running in this test process leaves the patched statuses.
    let sha = "0123456789abcdef0123456789abcdef01234567";
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "podinfo"},
            "spec": {"interval": "1h", "url": "http://127.0.0.1:9/podinfo.git", "suspend": true}
        }),
    )
    .await
    .expect("GitRepository");
    patch_status(&client, &ns, "GitRepository", "podinfo", json!({
        "artifact": {"path": "x.tar.gz", "url": "http://x/x.tar.gz", "revision": format!("main@sha1:{sha}"), "digest": "sha256:00", "lastUpdateTime": "2026-01-01T00:00:00Z"},
        "conditions": ready("True", &format!("stored artifact for revision 'main@sha1:{sha}'"))
    }))
    .await;
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "apps"},
            "spec": {"interval": "1h", "prune": true, "suspend": true, "sourceRef": {"kind": "GitRepository", "name": "podinfo"}}
        }),
    )
    .await
    .expect("Kustomization");
    patch_status(
        &client,
        &ns,
        "Kustomization",
        "apps",
        json!({
            "lastAppliedRevision": format!("main@sha1:{sha}"),
            "conditions": ready("False", "kustomization path not found: ./apps")
        }),
    )
    .await;

    let (out, _) = ok(&ns, &["get", "sources", "git"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]);
    assert_eq!(
        lines[1].split('\t').map(str::trim).collect::<Vec<_>>(),
        ["podinfo", "main@sha1:01234567", "True", "True", "stored artifact for revision 'main@sha1:01234567'"]
    );

    let (out, _) = ok(&ns, &["get", "ks"]);
    assert_eq!(
        out.lines().nth(1).map(|l| l.split('\t').map(str::trim).collect::<Vec<_>>()),
        Some(vec!["apps", "main@sha1:01234567", "True", "False", "kustomization path not found: ./apps"])
    );
    let (named, _) = ok(&ns, &["get", "kustomizations", "apps"]);
    assert_eq!(named, out);

    // -A: NAMESPACE first, and other namespaces' objects too.
    let (out, _) = ok(&ns, &["get", "kustomizations", "-A"]);
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert!(out.lines().any(|l| l.split('\t').map(str::trim).take(2).eq([ns.as_str(), "apps"])), "{out}");

    // get all: each kind in its own table, names prefixed with the kind.
    let (out, _) = ok(&ns, &["get", "all"]);
    assert!(out.contains("gitrepository/podinfo"), "{out}");
    assert!(out.contains("kustomization/apps"), "{out}");
    assert_eq!(out.matches("NAME").count(), 2, "{out}");
    let (out, _) = ok(&ns, &["get", "sources", "all"]);
    assert!(out.contains("gitrepository/podinfo") && !out.contains("kustomization/"), "{out}");

    // Not found: an error that says how to list them.
    let out = ferroflux(&ns, &["get", "ks", "missing"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("✗ Kustomization 'missing' not found in namespace '{ns}'; list them with `ferroflux get ks -A`")),
        "{}",
        stderr(&out)
    );
    let empty = support::namespace(&client, "cli-get-empty").await;
    let out = ferroflux(&empty, &["get", "sources", "git"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no GitRepository objects found"), "{}", stderr(&out));
}

#[tokio::test]
async fn suspend_and_resume_change_spec_suspend_and_resume_waits_for_ready() {
    let (client, ns) = cluster("cli-suspend").await;
    let repo = TestRepo::new(&format!("{ns}-demo"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    gitops(&client, &ns, &repo, "1s", "./", &commit).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let repositories: Api<GitRepository> = Api::namespaced(client.clone(), &ns);

    let (_, progress) = ok(&ns, &["suspend", "ks", "hello-world-flask"]);
    assert!(progress.contains(&format!("► suspending kustomization hello-world-flask in {ns} namespace")), "{progress}");
    assert!(progress.contains("✔ kustomization suspended"), "{progress}");
    assert_eq!(kustomizations.get("hello-world-flask").await.expect("ks").spec.suspend, Some(true));
    let (out, _) = ok(&ns, &["get", "ks"]);
    assert_eq!(out.lines().nth(1).and_then(|l| l.split('\t').nth(2)).map(str::trim), Some("True"), "{out}");

    // A suspended object is not reconciled: the error says how to resume it.
    let out = ferroflux(&ns, &["reconcile", "ks", "hello-world-flask"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains(&format!("is suspended; resume it with `ferroflux resume ks hello-world-flask -n {ns}`")), "{}", stderr(&out));

    // Suspended, a push is not applied... The sync point: a witness Kustomization of the same
    // source (its objects prefixed) applies the push, so the trigger has fired for both.
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "witness"},
            "spec": {"interval": "1h", "path": "./", "prune": true, "targetNamespace": ns, "namePrefix": "witness-",
                     "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"}}
        }),
    )
    .await
    .expect("creating the witness Kustomization");
    wait_ks(&client, &ns, "witness", &format!("main@sha1:{commit}")).await;
    let v1 = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", ":v1"))], "v1");
    support::wait_ready(&repositories, "hello-world-flask", "True", &v1, Duration::from_secs(60), |o| o.status.as_ref().map(|s| &s.conditions)).await;
    wait_ks(&client, &ns, "witness", &format!("main@sha1:{v1}")).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(image_of(&deployments.get("witness-hello-world-flask").await.expect("witness deployment")), "lyzhang1999/hello-world-flask:v1");
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:latest");

    // ...until resumed: resume waits for the controller and reports the applied revision.
    let (_, progress) = ok(&ns, &["resume", "ks", "hello-world-flask"]);
    assert!(progress.contains("✔ kustomization resumed"), "{progress}");
    assert!(progress.contains("◎ waiting for Kustomization reconciliation"), "{progress}");
    assert!(progress.contains("✔ Kustomization hello-world-flask reconciliation completed"), "{progress}");
    assert!(progress.contains(&format!("✔ applied revision main@sha1:{v1}")), "{progress}");
    assert_ne!(kustomizations.get("hello-world-flask").await.expect("ks").spec.suspend, Some(true));
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:v1");

    // Sources, all at once.
    let (_, progress) = ok(&ns, &["suspend", "source", "git", "--all"]);
    assert!(progress.contains("✔ source git suspended"), "{progress}");
    assert_eq!(repositories.get("hello-world-flask").await.expect("repo").spec.suspend, Some(true));
    let (_, progress) = ok(&ns, &["resume", "source", "git", "hello-world-flask"]);
    assert!(progress.contains(&format!("✔ fetched revision main@sha1:{v1}")), "{progress}");
    assert_ne!(repositories.get("hello-world-flask").await.expect("repo").spec.suspend, Some(true));

    // Unknown names say how to list what exists.
    let out = ferroflux(&ns, &["suspend", "ks", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Kustomization 'nope' not found"), "{}", stderr(&out));
}

#[tokio::test]
async fn reconcile_requests_a_reconciliation_and_waits_for_its_result() {
    let (client, ns) = cluster("cli-reconcile").await;
    let repo = TestRepo::new(&format!("{ns}-demo"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    // The source polls hourly: only the CLI's request makes it fetch a new commit soon.
    gitops(&client, &ns, &repo, "1h", "./", &first).await;

    let (_, progress) = ok(&ns, &["reconcile", "source", "git", "hello-world-flask"]);
    assert!(progress.contains(&format!("► annotating GitRepository hello-world-flask in {ns} namespace")), "{progress}");
    assert!(progress.contains("✔ GitRepository annotated"), "{progress}");
    assert!(progress.contains("◎ waiting for GitRepository reconciliation"), "{progress}");
    assert!(progress.contains(&format!("✔ fetched revision main@sha1:{first}")), "{progress}");
    let repositories: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let handled = repositories.get("hello-world-flask").await.expect("repo").status.and_then(|s| s.last_handled_reconcile_at);
    let requested =
        repositories.get("hello-world-flask").await.expect("repo").metadata.annotations.and_then(|a| a.get("reconcile.fluxcd.io/requestedAt").cloned());
    assert!(handled.is_some() && handled == requested, "{handled:?} {requested:?}");

    let v1 = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", ":v1"))], "v1");
    let (_, progress) = ok(&ns, &["reconcile", "ks", "hello-world-flask", "--with-source"]);
    assert!(progress.contains(&format!("✔ fetched revision main@sha1:{v1}")), "{progress}");
    assert!(progress.contains("► annotating Kustomization hello-world-flask"), "{progress}");
    assert!(progress.contains(&format!("✔ applied revision main@sha1:{v1}")), "{progress}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:v1");

    // A broken commit: the reconciliation ends Ready=False and the command fails with its message.
    repo.commit(&[("broken.yaml", "kind: [unclosed\n")], "broken");
    let out = ferroflux(&ns, &["reconcile", "ks", "hello-world-flask", "--with-source"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("✗ Kustomization reconciliation failed: '") && err.contains("broken.yaml"), "{err}");
    assert!(err.contains("ferroflux events --for Kustomization/hello-world-flask"), "{err}");

    // Unknown objects: a clear error.
    let out = ferroflux(&ns, &["reconcile", "source", "git", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("GitRepository 'nope' not found in namespace '{ns}'; list them with `ferroflux get sources git -A`")),
        "{}",
        stderr(&out)
    );
}

fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().expect("a parent")).expect("mkdir");
        std::fs::write(file, content).expect("write");
    }
}

#[tokio::test]
async fn build_diff_tree_and_events_of_an_applied_kustomization() {
    let (client, ns) = cluster("cli-build").await;
    let repo = TestRepo::new(&format!("{ns}-demo"));
    // The app, and a child Kustomization (applied by the parent) with a ConfigMap of its own.
    let child = format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: child\n  namespace: {ns}\nspec:\n  interval: 1h\n  path: ./child\n  prune: true\n  targetNamespace: {ns}\n  sourceRef:\n    kind: GitRepository\n    name: hello-world-flask\n"
    );
    let child_config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child-config\ndata:\n  a: \"1\"\n";
    let files = [("app/deployment.yaml", DEPLOYMENT), ("app/config.yaml", CONFIG), ("app/child.yaml", child.as_str()), ("child/config.yaml", child_config)];
    let commit = repo.commit(&files, "app and child");
    gitops(&client, &ns, &repo, "1h", "./app", &commit).await;
    wait_ks(&client, &ns, "child", &format!("main@sha1:{commit}")).await;

    // A local copy of the repository, as someone about to push would have.
    let local = tempfile::tempdir().expect("temp dir");
    write_tree(local.path(), &files);
    std::fs::create_dir(local.path().join(".git")).expect("a work tree marker");
    let app = local.path().join("app");
    let app = app.to_str().expect("utf-8 path");

    // build: the Kustomization's settings (targetNamespace) and Flux's owner labels.
    let (out, _) = ok(&ns, &["build", "ks", "hello-world-flask", "--path", app]);
    let objects = ferroflux::kustomize::parse_objects(&out, Path::new("build.yaml")).expect("multi-doc YAML");
    assert_eq!(objects.len(), 3, "{out}");
    for object in &objects {
        assert_eq!(object["metadata"]["namespace"], ns.as_str(), "{out}");
        assert_eq!(object["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"], "hello-world-flask", "{out}");
        assert_eq!(object["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/namespace"], ns.as_str(), "{out}");
    }

    // diff: nothing differs from what the controller applied.
    let out = ferroflux(&ns, &["diff", "ks", "hello-world-flask", "--path", app]);
    assert_eq!(out.status.code(), Some(0), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "");

    // A changed image, a removed ConfigMap (prune is on), a new Service: exit code 1, each listed.
    write_tree(local.path(), &[("app/deployment.yaml", &DEPLOYMENT.replace(":latest", ":v2"))]);
    std::fs::remove_file(local.path().join("app/config.yaml")).expect("rm");
    write_tree(
        local.path(),
        &[(
            "app/service.yaml",
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n  ports:\n  - port: 80\n    protocol: TCP\n",
        )],
    );
    let out = ferroflux(&ns, &["diff", "ks", "hello-world-flask", "--path", app]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{}", stderr(&out));
    assert!(text.contains(&format!("► Deployment/{ns}/hello-world-flask drifted\n")), "{text}");
    assert!(text.contains("  spec.template.spec.containers[name=hello-world-flask].image\n    - lyzhang1999/hello-world-flask:latest\n    + lyzhang1999/hello-world-flask:v2\n"), "{text}");
    assert!(text.contains(&format!("► Service/{ns}/web created")), "{text}");
    assert!(text.contains(&format!("► ConfigMap/{ns}/settings deleted")), "{text}");
    assert!(!text.contains("Kustomization/"), "the child did not change: {text}");
    // Nothing was written.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:latest");

    // tree: the inventory, into the child Kustomization.
    let (out, _) = ok(&ns, &["tree", "ks", "hello-world-flask"]);
    assert_eq!(
        out,
        format!(
            "Kustomization/{ns}/hello-world-flask\n\
             ├── Kustomization/{ns}/child\n\
             │   └── ConfigMap/{ns}/child-config\n\
             ├── Deployment/{ns}/hello-world-flask\n\
             └── ConfigMap/{ns}/settings\n"
        )
    );

    // events: the Kustomization's, and its source's.
    let (out, _) = ok(&ns, &["events", "--for", "Kustomization/hello-world-flask"]);
    let header: Vec<&str> = out.lines().next().map(|l| l.split('\t').map(str::trim).collect()).unwrap_or_default();
    assert_eq!(header, ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], "{out}");
    assert!(out.lines().any(|l| l.contains("Kustomization/hello-world-flask") && l.contains(&format!("Deployment/{ns}/hello-world-flask created"))), "{out}");
    assert!(out.lines().any(|l| l.contains("GitRepository/hello-world-flask") && l.contains("NewArtifact")), "{out}");
    assert!(!out.contains("Kustomization/child"), "{out}");
    let (all, _) = ok(&ns, &["events"]);
    assert!(all.contains("Kustomization/child"), "{all}");

    // Errors name the fix.
    let out = ferroflux(&ns, &["diff", "ks", "nope", "--path", app]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ferroflux get ks -A"), "{}", stderr(&out));
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferroflux")).args(["completions", shell]).output().expect("running ferroflux");
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains("ferroflux") && script.contains("reconcile"), "{shell}: {script}");
    }
}

#[tokio::test]
async fn build_resolves_substitute_from_with_the_callers_rights() {
    let (client, ns) = cluster("cli-build-vars").await;
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    let vars = serde_json::from_value(json!({"metadata": {"name": "cluster-vars"}, "data": {"region": "eu-1", "tier": "silver"}})).expect("cm");
    configs.create(&Default::default(), &vars).await.expect("vars");
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "vars", "labels": {support::SHARD_LABEL: "nobody"}},
            "spec": {"interval": "1h", "path": "./", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "absent"},
                     "postBuild": {"substitute": {"tier": "gold"}, "substituteFrom": [{"kind": "ConfigMap", "name": "cluster-vars"}]}}
        }),
    )
    .await
    .expect("creating the Kustomization");
    let local = tempfile::tempdir().expect("temp dir");
    write_tree(local.path(), &[("config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered\ndata:\n  region: ${region}\n  tier: ${tier}\n")]);
    let (out, _) = ok(&ns, &["build", "ks", "vars", "--path", local.path().to_str().expect("utf-8 path")]);
    assert!(out.contains("region: eu-1") && out.contains("tier: gold"), "{out}");

    // A ConfigMap that is not there and not optional: the error names it.
    let patch = json!({"spec": {"postBuild": {"substituteFrom": [{"kind": "ConfigMap", "name": "absent"}]}}});
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    kustomizations.patch("vars", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.expect("patch");
    let out = ferroflux(&ns, &["build", "ks", "vars", "--path", local.path().to_str().expect("utf-8 path")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("substitute from 'ConfigMap/absent' failed"), "{}", stderr(&out));
}
