//! The CRDs against a real kube-apiserver: they install, the tutorial's manifests apply verbatim,
//! the deprecated `v1beta2` fields survive storage, the schema rejects what Flux's rejects, and
//! `kubectl get` prints Flux's columns.

mod support;

use ferroflux::api::{GitRepository, Kustomization};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

fn read_example(path: &str) -> String {
    std::fs::read_to_string(support::repo_root().join(path)).expect("reading an example manifest")
}

fn parse_yaml(yaml: &str) -> Value {
    serde_saphyr::from_str(yaml).expect("parsing a test manifest")
}

/// Creates any of our objects from YAML through the API (what `kubectl create` does).
async fn create(client: &Client, ns: &str, yaml: &str) -> Result<DynamicObject, kube::Error> {
    support::create_object(client, ns, parse_yaml(yaml)).await
}

fn api_error_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message,
        other => panic!("expected an API rejection, got {other}"),
    }
}

#[tokio::test]
async fn crds_install_and_serve_v1_stored_and_v1beta2_deprecated() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for (name, kind) in [("gitrepositories.source.toolkit.fluxcd.io", "GitRepository"), ("kustomizations.kustomize.toolkit.fluxcd.io", "Kustomization")] {
        let crd = api.get(name).await.expect("CRD installed");
        let versions: Vec<_> = crd.spec.versions.iter().map(|v| (v.name.as_str(), v.served, v.storage)).collect();
        assert_eq!(versions, vec![("v1", true, true), ("v1beta2", true, false)], "{name}");
        let beta = &crd.spec.versions[1];
        assert_eq!(beta.deprecated, Some(true));
        assert_eq!(beta.deprecation_warning.as_deref(), Some(format!("v1beta2 {kind} is deprecated, upgrade to v1").as_str()));
        assert!(crd.spec.versions.iter().all(|v| v.subresources.as_ref().is_some_and(|s| s.status.is_some())));
        let status = crd.status.expect("CRD status");
        let accepted: Vec<_> = status.accepted_names.and_then(|n| n.short_names).unwrap_or_default();
        assert_eq!(accepted, vec![if kind == "GitRepository" { "gitrepo" } else { "ks" }.to_owned()]);
    }
}

#[tokio::test]
async fn tutorial_manifests_apply_verbatim_and_read_back_as_v1() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "tutorial-verbatim").await;

    if support::has_kubectl() {
        for (file, created) in [
            ("examples/tutorial/fluxcd-repo.yaml", "gitrepository.source.toolkit.fluxcd.io/hello-world-flask created"),
            ("examples/tutorial/fluxcd-kustomize.yaml", "kustomization.kustomize.toolkit.fluxcd.io/hello-world-flask created"),
        ] {
            let path = support::repo_root().join(file);
            let out = support::kubectl(&["apply", "-n", &ns, "-f", path.to_str().expect("utf-8 path")]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "kubectl apply {file}: {stderr}");
            assert_eq!(stdout.trim(), created);
            assert!(stderr.contains("is deprecated, upgrade to v1"), "no deprecation warning: {stderr}");
        }
    } else {
        for file in ["examples/tutorial/fluxcd-repo.yaml", "examples/tutorial/fluxcd-kustomize.yaml"] {
            create(&client, &ns, &read_example(file)).await.expect("tutorial manifest accepted");
        }
    }

    let repo = Api::<GitRepository>::namespaced(client.clone(), &ns).get("hello-world-flask").await.expect("GitRepository as v1");
    assert_eq!(repo.spec.url, "https://github.com/lyzhang1999/fluxcd-demo");
    assert_eq!(repo.spec.interval, "5s");
    assert_eq!(repo.spec.r#ref.and_then(|r| r.branch).as_deref(), Some("main"));
    // Defaults from the v1beta2 schema, applied by the server.
    assert_eq!(repo.spec.timeout.as_deref(), Some("60s"));

    let ks = Api::<Kustomization>::namespaced(client, &ns).get("hello-world-flask").await.expect("Kustomization as v1");
    assert!(ks.spec.prune);
    assert_eq!(ks.spec.path.as_deref(), Some("./"));
    assert_eq!(ks.spec.target_namespace.as_deref(), Some("default"));
    assert_eq!(ks.spec.source_ref.name, "hello-world-flask");
    assert_eq!(ks.spec.force, Some(false));
}

#[tokio::test]
async fn v1_twins_of_the_tutorial_apply() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "tutorial-v1").await;
    for file in ["examples/v1/fluxcd-repo.yaml", "examples/v1/fluxcd-kustomize.yaml"] {
        let created = create(&client, &ns, &read_example(file)).await.expect("v1 manifest accepted");
        assert_eq!(created.metadata.name.as_deref(), Some("hello-world-flask"));
    }
    let repo = Api::<GitRepository>::namespaced(client, &ns).get("hello-world-flask").await.expect("v1 GitRepository");
    assert_eq!(repo.spec.timeout.as_deref(), Some("60s"));
    assert_eq!(repo.spec.git_implementation, None, "v1 must not default the v1beta2-only field");
}

#[tokio::test]
async fn deprecated_v1beta2_fields_survive_storage() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "v1beta2-fields").await;
    create(
        &client,
        &ns,
        r#"
apiVersion: source.toolkit.fluxcd.io/v1beta2
kind: GitRepository
metadata: {name: legacy}
spec:
  interval: 1m
  url: ssh://git@example.com/repo.git
  gitImplementation: libgit2
"#,
    )
    .await
    .expect("v1beta2 GitRepository");
    create(
        &client,
        &ns,
        r#"
apiVersion: kustomize.toolkit.fluxcd.io/v1beta2
kind: Kustomization
metadata: {name: legacy}
spec:
  interval: 10m
  prune: false
  validation: client
  sourceRef: {kind: GitRepository, name: legacy}
  patchesStrategicMerge:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: app}
    spec:
      replicas: 3
  patchesJson6902:
  - target: {group: apps, version: v1, kind: Deployment, name: app}
    patch:
    - {op: add, path: /metadata/annotations, value: {team: a}}
    - {op: remove, path: /spec/paused}
"#,
    )
    .await
    .expect("v1beta2 Kustomization");

    let repo = Api::<GitRepository>::namespaced(client.clone(), &ns).get("legacy").await.expect("read as v1");
    assert_eq!(serde_json::to_value(repo.spec.git_implementation).expect("json"), json!("libgit2"));
    let ks = Api::<Kustomization>::namespaced(client, &ns).get("legacy").await.expect("read as v1");
    let spec = serde_json::to_value(&ks.spec).expect("json");
    assert_eq!(spec["validation"], json!("client"));
    assert_eq!(spec["patchesStrategicMerge"][0]["spec"]["replicas"], json!(3));
    assert_eq!(spec["patchesJson6902"][0]["patch"][0]["value"], json!({"team": "a"}));
    assert_eq!(spec["patchesJson6902"][0]["patch"][1], json!({"op": "remove", "path": "/spec/paused"}));
    assert_eq!(spec["patchesJson6902"][0]["target"]["kind"], json!("Deployment"));
}

#[tokio::test]
async fn schema_rejects_what_flux_rejects_naming_the_field() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "schema-rejects").await;
    let cases = [
        ("source.toolkit.fluxcd.io/v1", "GitRepository", "interval: 1m", "spec.url"),
        ("source.toolkit.fluxcd.io/v1beta2", "GitRepository", "interval: 1m", "spec.url"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository", "interval: 1m\n  url: ftp://example.com/repo", "spec.url"),
        ("source.toolkit.fluxcd.io/v1beta2", "GitRepository", "interval: 1m\n  url: git@github.com:org/repo", "spec.url"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository", "interval: 5 seconds\n  url: https://example.com/repo", "spec.interval"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository", "url: https://example.com/repo", "spec.interval"),
        ("source.toolkit.fluxcd.io/v1", "GitRepository", "interval: 1m\n  timeout: 1h\n  url: https://example.com/repo", "spec.timeout"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "interval: 1m\n  prune: true\n  sourceRef: {kind: HelmRepository, name: x}", "spec.sourceRef.kind"),
        (
            "kustomize.toolkit.fluxcd.io/v1beta2",
            "Kustomization",
            "interval: 1m\n  prune: true\n  sourceRef: {kind: ExternalArtifact, name: x}",
            "spec.sourceRef.kind",
        ),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "interval: 1m\n  sourceRef: {kind: GitRepository, name: x}", "spec.prune"),
        ("kustomize.toolkit.fluxcd.io/v1beta2", "Kustomization", "interval: 1m\n  prune: true", "spec.sourceRef"),
        ("kustomize.toolkit.fluxcd.io/v1", "Kustomization", "interval: 1x\n  prune: true\n  sourceRef: {kind: GitRepository, name: x}", "spec.interval"),
        (
            "kustomize.toolkit.fluxcd.io/v1",
            "Kustomization",
            "interval: 1m\n  prune: true\n  targetNamespace: ''\n  sourceRef: {kind: GitRepository, name: x}",
            "spec.targetNamespace",
        ),
        (
            "kustomize.toolkit.fluxcd.io/v1beta2",
            "Kustomization",
            "interval: 1m\n  prune: true\n  validation: strict\n  sourceRef: {kind: GitRepository, name: x}",
            "spec.validation",
        ),
    ];
    for (i, (api_version, kind, spec, field)) in cases.iter().enumerate() {
        let yaml = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata:\n  name: invalid-{i}\nspec:\n  {spec}\n");
        let message = match create(&client, &ns, &yaml).await {
            Ok(_) => panic!("case {i} was accepted but Flux rejects it:\n{yaml}"),
            Err(err) => api_error_message(err),
        };
        assert!(message.contains(field), "case {i}: the message does not name {field}: {message}");
    }
}

/// Flux's printer columns, through the server's Table API (what kubectl asks for) and kubectl.
#[tokio::test]
async fn get_prints_flux_columns_with_the_ready_message() {
    let client = support::client().await;
    support::install_crds(&client).await;
    let ns = support::namespace(&client, "printer-columns").await;
    create(&client, &ns, &read_example("examples/tutorial/fluxcd-repo.yaml")).await.expect("GitRepository");
    create(&client, &ns, &read_example("examples/tutorial/fluxcd-kustomize.yaml")).await.expect("Kustomization");

    let revision = "main@sha1:8260f5a0ac1e4ccdba64e074d1ee2c154956f12d";
    let ready = |message: String| {
        json!({"status": {"conditions": [{
            "type": "Ready", "status": "True", "reason": "Succeeded", "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
        }]}})
    };
    let repo_message = format!("stored artifact for revision '{revision}'");
    let ks_message = format!("Applied revision: {revision}");
    Api::<GitRepository>::namespaced(client.clone(), &ns)
        .patch_status("hello-world-flask", &PatchParams::default(), &Patch::Merge(ready(repo_message.clone())))
        .await
        .expect("GitRepository status subresource");
    Api::<Kustomization>::namespaced(client.clone(), &ns)
        .patch_status("hello-world-flask", &PatchParams::default(), &Patch::Merge(ready(ks_message.clone())))
        .await
        .expect("Kustomization status subresource");

    for (path, columns, cells) in [
        (
            format!("/apis/source.toolkit.fluxcd.io/v1/namespaces/{ns}/gitrepositories"),
            vec!["Name", "URL", "Age", "Ready", "Status"],
            vec![json!("hello-world-flask"), json!("https://github.com/lyzhang1999/fluxcd-demo"), Value::Null, json!("True"), json!(repo_message)],
        ),
        (
            format!("/apis/kustomize.toolkit.fluxcd.io/v1beta2/namespaces/{ns}/kustomizations"),
            vec!["Name", "Age", "Ready", "Status"],
            vec![json!("hello-world-flask"), Value::Null, json!("True"), json!(ks_message)],
        ),
    ] {
        let request = http::Request::get(path).header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").body(Vec::new()).expect("request");
        let table: Value = serde_json::from_str(&client.request_text(request).await.expect("Table API")).expect("JSON table");
        let names: Vec<_> = table["columnDefinitions"].as_array().expect("columns").iter().map(|c| c["name"].as_str().unwrap_or_default()).collect();
        assert_eq!(names, columns);
        let row = table["rows"][0]["cells"].as_array().expect("one row");
        for (i, expected) in cells.iter().enumerate() {
            if !expected.is_null() {
                assert_eq!(&row[i], expected, "column {}", columns[i]);
            }
        }
    }

    if support::has_kubectl() {
        let out = support::kubectl(&["get", "gitrepo,ks", "-n", &ns]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<Vec<&str>> = stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[0], ["NAME", "URL", "AGE", "READY", "STATUS"], "{stdout}");
        assert_eq!(lines[1][0], "gitrepository.source.toolkit.fluxcd.io/hello-world-flask");
        assert_eq!(lines[1][3..], ["True", "stored", "artifact", "for", "revision", &format!("'{revision}'")]);
        assert_eq!(lines[2], ["NAME", "AGE", "READY", "STATUS"], "{stdout}");
        assert_eq!(lines[3][2..], ["True", "Applied", "revision:", revision]);
    }
}
