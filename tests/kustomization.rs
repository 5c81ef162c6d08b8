//! The tutorial end to end, automated: a real `ferroflux controller`, a real kube-apiserver and
//! kube-controller-manager, a real Git server, and a simulated node that makes Pods Ready.
//! `git push` releases, `git reset --hard` + `git push -f` rolls back, a removed file is pruned, a
//! bad commit changes nothing, and the next good commit recovers.

mod support;

use std::time::Duration;

use ferroflux::api::Kustomization;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use support::{TestRepo, setup};

const DEPLOYMENT: &str = include_str!("../examples/tutorial/deployment.yaml");
const SERVICE: &str = "apiVersion: v1
kind: Service
metadata:
  name: hello-world-flask
spec:
  selector:
    app: hello-world-flask
  ports:
  - port: 80
    protocol: TCP
    targetPort: 5000
";

/// Generous: on a loaded machine a fresh control plane can take a while to roll out Pods.
async fn wait_ks(client: &Client, ns: &str, name: &str, status: &str, message_contains: &str) -> Kustomization {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, status, message_contains, Duration::from_secs(180), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

fn image_of(deployment: &Deployment) -> String {
    deployment.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.containers.first()).and_then(|c| c.image.clone()).unwrap_or_default()
}

#[tokio::test]
async fn the_tutorial_push_releases_force_push_rolls_back_prune_and_bad_commits() {
    let (client, ns) = setup("ks-tutorial").await;
    let _node = support::simulated_node(&client, &ns).await;
    let repo = TestRepo::new(&format!("{ns}-fluxcd-demo"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    support::create_example(&client, &ns, "examples/tutorial/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    support::create_example(&client, &ns, "examples/tutorial/fluxcd-kustomize.yaml", json!({"targetNamespace": ns, "interval": "1m"})).await;

    // Applied: the Deployment exists, with Flux's ownership labels, and the status says so.
    let ks = wait_ks(&client, &ns, "hello-world-flask", "True", &format!("Applied revision: main@sha1:{first}")).await;
    let status = ks.status.expect("status");
    assert_eq!(status.last_applied_revision.as_deref(), Some(format!("main@sha1:{first}").as_str()));
    assert_eq!(status.last_attempted_revision, status.last_applied_revision);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "ReconciliationSucceeded");
    let entries: Vec<(String, String)> = status.inventory.expect("inventory").entries.into_iter().map(|e| (e.id, e.v)).collect();
    assert_eq!(entries, [(format!("{ns}_hello-world-flask_apps_Deployment"), "v1".to_owned())]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let deployment = deployments.get("hello-world-flask").await.expect("deployment applied");
    assert_eq!(image_of(&deployment), "lyzhang1999/hello-world-flask:latest");
    let labels = deployment.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("kustomize.toolkit.fluxcd.io/name").map(String::as_str), Some("hello-world-flask"));
    assert_eq!(labels.get("kustomize.toolkit.fluxcd.io/namespace").map(String::as_str), Some(ns.as_str()));
    let managers: Vec<_> = deployment.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"ferroflux".to_owned()), "{managers:?}");

    if support::has_kubectl() {
        let out = support::kubectl(&["get", "kustomization", "-n", &ns]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row: Vec<&str> = stdout.lines().nth(1).expect("a row").split_whitespace().collect();
        assert_eq!(row[2..], ["True", "Applied", "revision:", &format!("main@sha1:{first}")]);
    }

    // git push releases, at once (the source's new revision triggers the Kustomization, whose
    // own interval here is a minute).
    let v1 = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", ":v1"))], "Update image tag to v1");
    wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{v1}")).await;
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:v1");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = events.list(&Default::default()).await.expect("events").items.into_iter().filter_map(|e| e.message).collect();
    assert!(notes.iter().any(|n| n.contains(&format!("Deployment/{ns}/hello-world-flask configured"))), "{notes:?}");

    // git reset --hard <first> && git push -f rolls back.
    repo.reset_hard_and_force_push(&first);
    wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{first}")).await;
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:latest");

    // A Service added, then removed: pruned.
    let with_service = repo.commit(&[("service.yaml", SERVICE)], "Add service");
    let ks = wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{with_service}")).await;
    assert_eq!(ks.status.and_then(|s| s.inventory).map(|i| i.entries.len()), Some(2));
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    assert!(services.get_opt("hello-world-flask").await.expect("get").is_some());
    let without = repo.remove("service.yaml", "Remove service");
    wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{without}")).await;
    support::wait_for(Duration::from_secs(10), || {
        let services = services.clone();
        async move { services.get_opt("hello-world-flask").await.ok().flatten().is_none() }
    })
    .await
    .expect("the removed Service is pruned");

    // A bad commit: BuildFailed, nothing changes, the last good revision stays applied.
    let before = deployments.get("hello-world-flask").await.expect("deployment");
    let bad = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", ":v2")), ("broken.yaml", "kind: [unclosed\n")], "Broken");
    let failed = wait_ks(&client, &ns, "hello-world-flask", "False", "broken.yaml").await;
    let status = failed.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "BuildFailed", "{}", ready.message);
    assert!(ready.message.contains("broken.yaml"), "the message names the file: {}", ready.message);
    assert_eq!(status.last_applied_revision.as_deref(), Some(format!("main@sha1:{without}").as_str()));
    assert_eq!(status.last_attempted_revision.as_deref(), Some(format!("main@sha1:{bad}").as_str()));
    let after = deployments.get("hello-world-flask").await.expect("deployment");
    assert_eq!(image_of(&after), "lyzhang1999/hello-world-flask:latest", "nothing of the bad commit may be applied");
    assert_eq!(before.metadata.resource_version, after.metadata.resource_version);

    // The next good commit recovers.
    let fixed = repo.remove("broken.yaml", "Fix");
    wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{fixed}")).await;
    assert_eq!(image_of(&deployments.get("hello-world-flask").await.expect("deployment")), "lyzhang1999/hello-world-flask:v2");
}

#[tokio::test]
async fn schema_invalid_or_unknown_objects_write_nothing_and_name_the_object() {
    let (client, ns) = setup("ks-invalid").await;
    let repo = TestRepo::new(&format!("{ns}-invalid"));
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n";
    let invalid = DEPLOYMENT.replace("replicas: 2", "replicas: two");
    let commit = repo.commit(&[("config.yaml", config), ("deployment.yaml", &invalid)], "invalid");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    support::create_example(&client, &ns, "examples/v1/fluxcd-kustomize.yaml", json!({"targetNamespace": ns, "interval": "1m"})).await;

    let failed = wait_ks(&client, &ns, "hello-world-flask", "False", "dry-run failed").await;
    let status = failed.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "ReconciliationFailed", "{}", ready.message);
    assert!(ready.message.contains(&format!("Deployment/{ns}/hello-world-flask dry-run failed")), "{}", ready.message);
    assert_eq!(status.last_attempted_revision.as_deref(), Some(format!("main@sha1:{commit}").as_str()));
    assert!(status.last_applied_revision.is_none());
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(configs.get_opt("settings").await.expect("get").is_none(), "nothing of the stage may be written");

    let unknown =
        repo.commit(&[("deployment.yaml", DEPLOYMENT), ("widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")], "unknown kind");
    let failed = wait_ks(&client, &ns, "hello-world-flask", "False", &format!("Widget/{ns}/w is not known")).await;
    assert_eq!(failed.status.and_then(|s| s.last_attempted_revision).as_deref(), Some(format!("main@sha1:{unknown}").as_str()));
    assert!(configs.get_opt("settings").await.expect("get").is_none());

    let good = repo.remove("widget.yaml", "fix");
    wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{good}")).await;
    assert!(configs.get_opt("settings").await.expect("get").is_some());
}

#[tokio::test]
async fn wait_reports_health_once_the_deployment_is_available() {
    let (client, ns) = setup("ks-health").await;
    let _node = support::simulated_node(&client, &ns).await;
    let repo = TestRepo::new(&format!("{ns}-health"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    support::create_example(&client, &ns, "examples/v1/fluxcd-kustomize.yaml", json!({"targetNamespace": ns, "interval": "1m", "wait": true, "timeout": "3m"}))
        .await;
    let ks = wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{commit}")).await;
    let healthy = ks.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Healthy").expect("Healthy condition");
    assert_eq!(healthy.status, "True");
    let deployment = Api::<Deployment>::namespaced(client, &ns).get("hello-world-flask").await.expect("deployment");
    assert_eq!(deployment.status.and_then(|s| s.available_replicas), Some(2));
}

#[tokio::test]
async fn deleting_the_kustomization_prunes_what_it_applied() {
    let (client, ns) = setup("ks-delete").await;
    let repo = TestRepo::new(&format!("{ns}-delete"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT), ("service.yaml", SERVICE)], "app");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    support::create_example(&client, &ns, "examples/v1/fluxcd-kustomize.yaml", json!({"targetNamespace": ns, "interval": "1m"})).await;
    wait_ks(&client, &ns, "hello-world-flask", "True", &commit).await;

    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    kustomizations.delete("hello-world-flask", &Default::default()).await.expect("delete");
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    support::wait_for(Duration::from_secs(20), || {
        let (kustomizations, services) = (kustomizations.clone(), services.clone());
        async move {
            kustomizations.get_opt("hello-world-flask").await.ok().flatten().is_none() && services.get_opt("hello-world-flask").await.ok().flatten().is_none()
        }
    })
    .await
    .expect("the Kustomization is gone and its Service pruned");
}

#[tokio::test]
async fn depends_on_holds_until_the_dependency_is_ready_and_requested_at_is_handled() {
    let (client, ns) = setup("ks-depends").await;
    let repo = TestRepo::new(&format!("{ns}-depends"));
    let config = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    let commit = repo.commit(&[("infra/infra.yaml", &config("infra")), ("apps/apps.yaml", &config("apps"))], "two layers");
    // A controller of this test's own (a shard), whose dependency retry is an hour away: the
    // dependent can only become Ready in time through the trigger of its dependency.
    let shard = [(support::SHARD_LABEL.to_owned(), ns.clone())].into_iter().collect::<std::collections::BTreeMap<_, _>>();
    let _controller = support::spawn_controller(&["--watch-label-selector", &format!("{}={ns}", support::SHARD_LABEL), "--requeue-dependency", "1h"]);
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "hello-world-flask", "labels": shard},
        "spec": {"interval": "1s", "url": repo.http_url(), "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository");
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let make = |name: &str, depends: bool| -> Kustomization {
        let mut spec = json!({"interval": "10m", "path": format!("./{name}"), "prune": true, "targetNamespace": ns,
            "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"}});
        if depends {
            spec["dependsOn"] = json!([{"name": "infra"}]);
        }
        serde_json::from_value(json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": name, "labels": shard}, "spec": spec}))
        .expect("kustomization")
    };
    kustomizations.create(&PostParams::default(), &make("apps", true)).await.expect("apps");
    let waiting = wait_ks(&client, &ns, "apps", "False", &format!("dependency '{ns}/infra' is not ready")).await;
    let reason = waiting.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.reason);
    assert_eq!(reason.as_deref(), Some("DependencyNotReady"));
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(configs.get_opt("apps").await.expect("get").is_none(), "nothing applied before the dependency is ready");

    // The dependency appears and becomes Ready: the dependent follows at once (its own retry is
    // an hour away, past wait_ks's deadline).
    kustomizations.create(&PostParams::default(), &make("infra", false)).await.expect("infra");
    wait_ks(&client, &ns, "infra", "True", &commit).await;
    wait_ks(&client, &ns, "apps", "True", &commit).await;
    assert!(configs.get_opt("apps").await.expect("get").is_some());

    // `flux reconcile`'s handshake: a new requestedAt value is reconciled and echoed in status.
    let token = "2026-11-22T20:00:00.000000000Z";
    let annotate = json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": token}}});
    kustomizations.patch("apps", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&annotate)).await.expect("annotate");
    support::wait_for(Duration::from_secs(20), || {
        let kustomizations = kustomizations.clone();
        async move { kustomizations.get("apps").await.ok().and_then(|k| k.status).and_then(|s| s.last_handled_reconcile_at).as_deref() == Some(token) }
    })
    .await
    .expect("lastHandledReconcileAt echoes the request");
}

fn kustomization(name: &str, spec: serde_json::Value) -> Kustomization {
    serde_json::from_value(json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name}, "spec": spec}))
        .expect("kustomization")
}

#[tokio::test]
async fn substitute_from_reads_config_maps_and_secrets_and_substitute_wins() {
    let (client, ns) = setup("ks-substitute-from").await;
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let vars: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cluster-vars"}, "data": {"region": "eu-1", "tier": "from-configmap"}})).expect("cm");
    configs.create(&PostParams::default(), &vars).await.expect("vars");
    let secret = serde_json::from_value(json!({"metadata": {"name": "cluster-secrets"}, "stringData": {"token": "s3cret"}})).expect("secret");
    secrets.create(&PostParams::default(), &secret).await.expect("secret");
    let repo = TestRepo::new(&format!("{ns}-subst"));
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered\ndata:\n  region: ${region}\n  tier: ${tier}\n  token: ${token}\n  size: ${size:=small}\n";
    let commit = repo.commit(&[("config.yaml", manifest)], "vars");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let spec = |absent_optional: bool| {
        json!({"interval": "10m", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"},
            "postBuild": {"substitute": {"tier": "inline"}, "substituteFrom": [
                {"kind": "ConfigMap", "name": "cluster-vars"},
                {"kind": "Secret", "name": "cluster-secrets"},
                {"kind": "ConfigMap", "name": "absent", "optional": absent_optional}]}})
    };
    kustomizations.create(&PostParams::default(), &kustomization("vars", spec(true))).await.expect("create");
    wait_ks(&client, &ns, "vars", "True", &commit).await;
    let data = configs.get("rendered").await.expect("rendered").data.unwrap_or_default();
    assert_eq!(data.get("region").map(String::as_str), Some("eu-1"));
    assert_eq!(data.get("tier").map(String::as_str), Some("inline"), "substitute wins over substituteFrom");
    assert_eq!(data.get("token").map(String::as_str), Some("s3cret"));
    assert_eq!(data.get("size").map(String::as_str), Some("small"));

    // A missing object that is not optional fails the build and names it.
    kustomizations.patch("vars", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(json!({"spec": spec(false)}))).await.expect("patch");
    let failed = wait_ks(&client, &ns, "vars", "False", "substitute from 'ConfigMap/absent' failed").await;
    let ready = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).expect("Ready");
    assert_eq!(ready.reason, "BuildFailed");
}

#[tokio::test]
async fn service_account_name_applies_with_only_that_accounts_rights() {
    let (client, ns) = setup("ks-impersonate").await;
    // A ServiceAccount that may manage ConfigMaps in its namespace, and nothing else.
    support::configmap_only_service_account(&client, &ns, "deployer").await;

    let repo = TestRepo::new(&format!("{ns}-impersonate"));
    let config = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: allowed\n";
    let commit = repo.commit(&[("config.yaml", config)], "a configmap");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let spec = json!({"interval": "10m", "prune": true, "targetNamespace": ns, "serviceAccountName": "deployer",
        "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"}});
    kustomizations.create(&PostParams::default(), &kustomization("restricted", spec)).await.expect("create");
    wait_ks(&client, &ns, "restricted", "True", &commit).await;
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let allowed = configs.get("allowed").await.expect("applied as the ServiceAccount");
    let managers: Vec<_> = allowed.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"ferroflux".to_owned()), "{managers:?}");

    // A Service is beyond the account's rights: refused by the API server, nothing written, and
    // the message says who was refused.
    let denied = repo.commit(&[("service.yaml", SERVICE)], "a service");
    let failed = wait_ks(&client, &ns, "restricted", "False", "forbidden").await;
    let message = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.message).unwrap_or_default();
    assert!(message.contains(&format!("system:serviceaccount:{ns}:deployer")), "{message}");
    let _ = denied;
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    assert!(services.get_opt("hello-world-flask").await.expect("get").is_none());
}

#[tokio::test]
async fn a_new_revision_cancels_a_running_health_wait() {
    let (client, ns) = setup("ks-health-cancel").await;
    // No simulated node: the Deployment's Pods never become Ready, so the health wait would run
    // into its 10-minute timeout.
    let repo = TestRepo::new(&format!("{ns}-health-cancel"));
    let stuck = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "never available");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    support::create_example(
        &client,
        &ns,
        "examples/v1/fluxcd-kustomize.yaml",
        json!({"targetNamespace": ns, "interval": "1h", "wait": true, "timeout": "10m"}),
    )
    .await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    support::wait_for(Duration::from_secs(60), || {
        let kustomizations = kustomizations.clone();
        let stuck = stuck.clone();
        async move {
            kustomizations
                .get("hello-world-flask")
                .await
                .ok()
                .and_then(|k| k.status)
                .and_then(|s| s.last_attempted_revision)
                .is_some_and(|r| r.contains(&stuck))
        }
    })
    .await
    .expect("the first revision is being applied");

    // The fix: zero replicas is healthy at once. It is applied without waiting out the timeout.
    let fixed = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace("replicas: 2", "replicas: 0"))], "scale to zero");
    let ks = wait_ks(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{fixed}")).await;
    let healthy = ks.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Healthy").expect("Healthy");
    assert_eq!(healthy.status, "True");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events.list(&Default::default()).await.expect("events").items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().any(|r| r == "HealthCheckCanceled"), "{reasons:?}");
}

#[tokio::test]
async fn kube_config_applies_with_the_kubeconfig_of_the_secret() {
    let (client, ns) = setup("ks-kubeconfig").await;
    // The "remote" cluster is the test cluster, reached with a kubeconfig whose user acts as the
    // ServiceAccount `remote` (the kubeconfig's `as`): the controller's own admin rights must not
    // be what applies.
    let mut kubeconfig = kube::config::Kubeconfig::read_from(support::kubeconfig()).expect("kubeconfig");
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            auth.impersonate = Some(format!("system:serviceaccount:{ns}:remote"));
        }
    }
    let text = serde_json::to_string(&kubeconfig).expect("kubeconfig as JSON, which is YAML");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let secret = serde_json::from_value(json!({"metadata": {"name": "remote-kubeconfig"}, "stringData": {"value": text}})).expect("secret");
    secrets.create(&PostParams::default(), &secret).await.expect("secret");

    let repo = TestRepo::new(&format!("{ns}-kubeconfig"));
    let commit = repo.commit(&[("config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: remote-config\n")], "config");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let spec = json!({"interval": "10m", "retryInterval": "2s", "prune": true, "targetNamespace": ns, "kubeConfig": {"secretRef": {"name": "remote-kubeconfig"}},
        "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"}});
    kustomizations.create(&PostParams::default(), &kustomization("remote", spec)).await.expect("create");
    let refused = wait_ks(&client, &ns, "remote", "False", "forbidden").await;
    let message = refused.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.message).unwrap_or_default();
    assert!(message.contains(&format!("system:serviceaccount:{ns}:remote")), "{message}");

    // Rights for that identity, and the next retry applies.
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), &ns);
    let role = json!({"metadata": {"name": "configmaps"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]});
    roles.create(&PostParams::default(), &serde_json::from_value(role).expect("role")).await.expect("role");
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(client.clone(), &ns);
    let binding = json!({"metadata": {"name": "remote"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "configmaps"},
        "subjects": [{"kind": "ServiceAccount", "name": "remote", "namespace": ns}]});
    bindings.create(&PostParams::default(), &serde_json::from_value(binding).expect("binding")).await.expect("binding");
    wait_ks(&client, &ns, "remote", "True", &commit).await;
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(configs.get_opt("remote-config").await.expect("get").is_some());

    // A kubeconfig that would run a command in the controller is refused.
    let exec = "apiVersion: v1\nkind: Config\ncurrent-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\nclusters:\n- name: k\n  cluster: {server: 'https://127.0.0.1:1'}\nusers:\n- name: u\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: touch}\n";
    let patch = json!({"stringData": {"value": exec}});
    secrets.patch("remote-kubeconfig", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.expect("patch");
    kustomizations
        .patch(
            "remote",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "exec"}}})),
        )
        .await
        .expect("annotate");
    wait_ks(&client, &ns, "remote", "False", "uses exec").await;
}

#[tokio::test]
async fn own_artifacts_reach_kustomizations_in_process_without_the_artifact_server() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "ks-in-process").await;
    // The advertised artifact address is one nothing listens on, as our own Service is for a
    // pod in a cluster without hairpin routing: an HTTP download cannot succeed.
    let unreachable = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port");
    let shard =
        support::spawn_controller(&["--watch-label-selector", &format!("{}={ns}", support::SHARD_LABEL), "--storage-adv-addr", &unreachable.to_string()]);
    let repo = TestRepo::new(&format!("{ns}-in-process"));
    let commit = repo.commit(&[("config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: handed-over\ndata:\n  a: b\n")], "first");
    let labels = json!({support::SHARD_LABEL: ns});
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
        "metadata": {"name": "repo", "labels": labels},
        "spec": {"interval": "1s", "url": repo.http_url(), "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository");
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "labels": labels},
        "spec": {"interval": "10m", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "repo"}}}),
    )
    .await
    .expect("Kustomization");
    let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let found = support::wait_for(Duration::from_secs(90), || async {
        api.get_opt("apps").await.ok().flatten().and_then(|k| k.status).is_some_and(|s| s.last_applied_revision.as_deref().is_some_and(|r| r.contains(&commit)))
    })
    .await;
    assert!(found.is_some(), "the revision was never applied; the controller's log:\n{}", shard.log_tail());
    let repositories: Api<ferroflux::api::GitRepository> = Api::namespaced(client.clone(), &ns);
    let artifact = repositories.get("repo").await.expect("repo").status.and_then(|s| s.artifact).expect("an artifact");
    assert!(artifact.url.starts_with(&format!("http://{unreachable}/")), "{}", artifact.url);
    let configs: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert_eq!(configs.get("handed-over").await.expect("applied").data.unwrap_or_default().get("a").map(String::as_str), Some("b"));
}

#[tokio::test]
async fn substituted_secret_values_never_reach_status_or_events() {
    let (client, ns) = setup("ks-mask").await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    // Not a valid label value: the API server's dry-run refusal quotes it.
    let secret =
        serde_json::from_value(json!({"metadata": {"name": "vars"}, "stringData": {"token": "hunter2 s3cr3t!", "broken": "[hunter3-s3cr3t"}})).expect("secret");
    secrets.create(&PostParams::default(), &secret).await.expect("secret");
    let repo = TestRepo::new(&format!("{ns}-mask"));
    let labelled = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: labelled\n  labels:\n    token: ${token}\n";
    let commit = repo.commit(&[("config.yaml", labelled)], "a secret in a label");
    support::create_example(&client, &ns, "examples/v1/fluxcd-repo.yaml", json!({"url": repo.http_url(), "interval": "1s"})).await;
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let spec = json!({"interval": "10m", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "hello-world-flask"},
        "postBuild": {"substituteFrom": [{"kind": "Secret", "name": "vars"}]}});
    kustomizations.create(&PostParams::default(), &kustomization("masked", spec)).await.expect("create");
    let failed = wait_ks(&client, &ns, "masked", "False", "dry-run failed").await.status.unwrap_or_default();
    assert_eq!(failed.last_attempted_revision.as_deref(), Some(format!("main@sha1:{commit}").as_str()));
    let message = failed.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.message).unwrap_or_default();
    assert!(!message.contains("s3cr3t") && message.contains("***"), "{message}");

    // A value that breaks the YAML once substituted: the parse error does not quote it.
    let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\ndata:\n  value: ${broken}\n";
    repo.commit(&[("config.yaml", broken)], "a secret that breaks the YAML");
    let failed = wait_ks(&client, &ns, "masked", "False", "variable substitution failed").await;
    let message = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.message).unwrap_or_default();
    assert!(!message.contains("s3cr3t"), "{message}");

    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = events.list(&Default::default()).await.expect("events").items.into_iter().filter_map(|e| e.message).collect();
    assert!(notes.iter().any(|n| n.contains("***")), "{notes:?}");
    assert!(notes.iter().all(|n| !n.contains("s3cr3t")), "{notes:?}");
}
