//! The apply engine against a real kube-apiserver: staged dry-run validation, server-side apply
//! with change reporting, field takeover from kubectl, force, and prune.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use ferroflux::apply::{Action, Applier, ApplyError, ApplyOptions, ObjectId};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn options(ns: &str) -> ApplyOptions {
    ApplyOptions {
        force: false,
        owner_labels: BTreeMap::from([
            ("kustomize.toolkit.fluxcd.io/name".to_owned(), "app".to_owned()),
            ("kustomize.toolkit.fluxcd.io/namespace".to_owned(), ns.to_owned()),
        ]),
        wait_timeout: Duration::from_secs(30),
    }
}

fn labels(ns: &str) -> Value {
    json!({"kustomize.toolkit.fluxcd.io/name": "app", "kustomize.toolkit.fluxcd.io/namespace": ns})
}

fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels(ns)}, "data": data})
}

fn deployment(ns: &str, image: &str, replicas: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "hello-world-flask", "namespace": ns, "labels": labels(ns)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "hello-world-flask"}},
            "template": {
                "metadata": {"labels": {"app": "hello-world-flask"}},
                "spec": {"containers": [{"name": "hello-world-flask", "image": image}]}
            }
        }
    })
}

fn actions(changes: &[ferroflux::apply::Change]) -> Vec<String> {
    changes.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn apply_reports_created_unchanged_configured() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-changes").await;
    let applier = Applier::new(client.clone());
    let opts = options(&ns);
    let objects = vec![deployment(&ns, "lyzhang1999/hello-world-flask:latest", json!(2)), config_map(&ns, "settings", json!({"a": "1"}))];

    let first = applier.apply_all(objects.clone(), &opts).await.expect("first apply");
    assert_eq!(actions(&first), [format!("ConfigMap/{ns}/settings created"), format!("Deployment/{ns}/hello-world-flask created")]);

    let second = applier.apply_all(objects, &opts).await.expect("second apply");
    assert!(second.iter().all(|c| c.action == Action::Unchanged), "{:?}", actions(&second));

    let third = applier
        .apply_all(vec![deployment(&ns, "lyzhang1999/hello-world-flask:v1", json!(2)), config_map(&ns, "settings", json!({"a": "1"}))], &opts)
        .await
        .expect("third apply");
    assert_eq!(actions(&third), [format!("ConfigMap/{ns}/settings unchanged"), format!("Deployment/{ns}/hello-world-flask configured")]);

    let live = Api::<Deployment>::namespaced(client, &ns).get("hello-world-flask").await.expect("deployment");
    let image = live.spec.and_then(|s| s.template.spec).map(|s| s.containers[0].image.clone().unwrap_or_default());
    assert_eq!(image.as_deref(), Some("lyzhang1999/hello-world-flask:v1"));
    let managers: Vec<_> = live.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"ferroflux".to_owned()), "{managers:?}");
}

#[tokio::test]
async fn one_invalid_object_means_nothing_in_its_stage_is_written() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-dry-run").await;
    let applier = Applier::new(client.clone());
    // replicas must be an integer: the API server's schema rejects it.
    let objects = vec![config_map(&ns, "settings", json!({"a": "1"})), deployment(&ns, "nginx", json!("two"))];
    let err = applier.apply_all(objects, &options(&ns)).await.expect_err("schema-invalid Deployment");
    match &err {
        ApplyError::DryRunFailed(failures) => {
            assert_eq!(failures.len(), 1);
            assert_eq!(failures[0].0.to_string(), format!("Deployment/{ns}/hello-world-flask"));
        }
        other => panic!("expected a dry-run failure, got {other}"),
    }
    assert!(err.to_string().starts_with(&format!("Deployment/{ns}/hello-world-flask dry-run failed: ")), "{err}");
    let cm = Api::<ConfigMap>::namespaced(client, &ns).get_opt("settings").await.expect("get");
    assert!(cm.is_none(), "the valid ConfigMap of the failed stage must not be written");
}

#[tokio::test]
async fn unknown_kind_is_an_error_naming_the_object_and_nothing_is_written() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-unknown").await;
    let applier = Applier::new(client.clone());
    let objects =
        vec![config_map(&ns, "settings", json!({})), json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": ns}})];
    let err = applier.apply_all(objects, &options(&ns)).await.expect_err("unknown kind");
    assert!(matches!(err, ApplyError::UnknownKind { .. }), "{err}");
    assert!(err.to_string().starts_with(&format!("Widget/{ns}/w is not known to the API server")), "{err}");
    assert!(Api::<ConfigMap>::namespaced(client, &ns).get_opt("settings").await.expect("get").is_none());
}

#[tokio::test]
async fn crds_and_namespaces_are_applied_first_and_waited_for() {
    let client = support::client().await;
    let suffix = support::namespace(&client, "apply-stages").await;
    let applier = Applier::new(client.clone());
    let group = format!("{suffix}.example.com");
    let ns = format!("{suffix}-new");
    let objects = vec![
        json!({"apiVersion": format!("{group}/v1"), "kind": "Widget", "metadata": {"name": "w", "namespace": ns}, "spec": {"size": 3}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("widgets.{group}")},
            "spec": {"group": group, "scope": "Namespaced",
                "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]}
        }),
    ];
    let changes = applier.apply_all(objects, &options(&ns)).await.expect("staged apply");
    assert_eq!(
        actions(&changes),
        [format!("CustomResourceDefinition/widgets.{group} created"), format!("Namespace/{ns} created"), format!("Widget/{ns}/w created")]
    );
}

#[tokio::test]
async fn fields_set_by_kubectl_are_taken_over_so_removing_them_from_git_removes_them() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-takeover").await;
    let mut before = config_map(&ns, "settings", json!({"a": "1", "legacy": "x"}));
    before["metadata"]["annotations"] = json!({"team": "a"});
    // What `kubectl apply` (client-side) records as its field manager.
    let cm: ConfigMap = serde_json::from_value(before).expect("configmap");
    let params = PostParams { field_manager: Some("kubectl-client-side-apply".into()), ..PostParams::default() };
    Api::<ConfigMap>::namespaced(client.clone(), &ns).create(&params, &cm).await.expect("kubectl-style create");

    let applier = Applier::new(client.clone());
    let changes = applier.apply_all(vec![config_map(&ns, "settings", json!({"a": "1"}))], &options(&ns)).await.expect("apply");
    assert_eq!(actions(&changes), [format!("ConfigMap/{ns}/settings configured")]);
    let live = Api::<ConfigMap>::namespaced(client, &ns).get("settings").await.expect("configmap");
    assert_eq!(live.data, Some(BTreeMap::from([("a".to_owned(), "1".to_owned())])), "kubectl's key must be gone");
    assert!(!live.metadata.annotations.unwrap_or_default().contains_key("team"), "kubectl's annotation must be gone");
    let managers: Vec<_> = live.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert_eq!(managers, ["ferroflux"]);
}

#[tokio::test]
async fn force_recreates_objects_whose_immutable_fields_changed() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-force").await;
    let applier = Applier::new(client.clone());
    let mut opts = options(&ns);
    applier.apply_all(vec![deployment(&ns, "nginx", json!(1))], &opts).await.expect("first apply");
    let mut changed = deployment(&ns, "nginx", json!(1));
    changed["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
    changed["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});

    let err = applier.apply_all(vec![changed.clone()], &opts).await.expect_err("selector is immutable");
    assert!(err.to_string().contains("field is immutable"), "{err}");

    opts.force = true;
    let changes = applier.apply_all(vec![changed], &opts).await.expect("forced apply");
    assert_eq!(actions(&changes), [format!("Deployment/{ns}/hello-world-flask configured")]);
    let live = Api::<Deployment>::namespaced(client, &ns).get("hello-world-flask").await.expect("deployment");
    assert_eq!(live.spec.map(|s| s.selector.match_labels), Some(Some(BTreeMap::from([("app".to_owned(), "other".to_owned())]))));
}

#[tokio::test]
async fn prune_deletes_only_owned_objects_not_opted_out() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-prune").await;
    let applier = Applier::new(client.clone());
    let opts = options(&ns);
    let mut keep = config_map(&ns, "keep", json!({}));
    keep["metadata"]["annotations"] = json!({"kustomize.toolkit.fluxcd.io/prune": "disabled"});
    let mut foreign = config_map(&ns, "foreign", json!({}));
    foreign["metadata"]["labels"] = json!({"owner": "someone-else"});
    applier.apply_all(vec![config_map(&ns, "gone", json!({})), keep, foreign], &opts).await.expect("apply");

    let stale: Vec<(ObjectId, String)> = ["gone", "keep", "foreign", "never-existed"]
        .iter()
        .map(|name| (ObjectId { namespace: ns.clone(), name: (*name).to_owned(), group: String::new(), kind: "ConfigMap".into() }, "v1".to_owned()))
        .collect();
    let (changes, failed) = applier.prune(&stale, &opts).await;
    assert!(failed.is_empty(), "{failed:?}");
    let mut lines = actions(&changes);
    lines.sort();
    assert_eq!(lines, [format!("ConfigMap/{ns}/foreign skipped"), format!("ConfigMap/{ns}/gone deleted"), format!("ConfigMap/{ns}/keep skipped")]);
    let api = Api::<ConfigMap>::namespaced(client, &ns);
    assert!(api.get_opt("keep").await.expect("get").is_some());
    assert!(api.get_opt("foreign").await.expect("get").is_some());
    support::wait_for(Duration::from_secs(10), || {
        let api = api.clone();
        async move { api.get_opt("gone").await.ok().flatten().is_none() }
    })
    .await
    .expect("pruned ConfigMap deleted");
}

#[tokio::test]
async fn remembered_state_skips_unchanged_objects_and_still_corrects_drift() {
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-state").await;
    let applier = Applier::new(client.clone());
    let opts = options(&ns);
    let mut state = ferroflux::apply::AppliedState::default();
    let objects = vec![config_map(&ns, "a", json!({"k": "1"})), config_map(&ns, "b", json!({"k": "2"}))];
    let first = applier.apply_all_with(objects.clone(), &opts, &mut state).await.expect("first apply");
    assert!(first.iter().all(|c| c.action == Action::Created));
    assert_eq!(state.len(), 2);

    let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let before = api.get("a").await.expect("a").metadata.resource_version;
    let second = applier.apply_all_with(objects.clone(), &opts, &mut state).await.expect("no-op apply");
    assert!(second.iter().all(|c| c.action == Action::Unchanged), "{:?}", actions(&second));
    assert_eq!(api.get("a").await.expect("a").metadata.resource_version, before, "a no-op apply must not write");

    // Drift, as `kubectl edit` makes it: the next apply corrects it.
    let drift = json!({"data": {"k": "edited"}});
    api.patch("b", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&drift)).await.expect("drift");
    let third = applier.apply_all_with(objects, &opts, &mut state).await.expect("drift correction");
    assert_eq!(actions(&third), [format!("ConfigMap/{ns}/a unchanged"), format!("ConfigMap/{ns}/b configured")]);
    assert_eq!(api.get("b").await.expect("b").data.and_then(|d| d.get("k").cloned()).as_deref(), Some("2"));
}

/// Flux's per-object annotations: `ssa: Ignore` and `reconcile: disabled` (in Git or on the live
/// object) leave an object alone; `ssa: IfNotPresent` creates it once and never updates it.
#[tokio::test]
async fn ssa_ignore_if_not_present_and_reconcile_disabled_leave_objects_alone() {
    use ferroflux::apply::policy::{RECONCILE_ANNOTATION, SSA_ANNOTATION};
    let client = support::client().await;
    let ns = support::namespace(&client, "apply-ssa-policy").await;
    let applier = Applier::new(client.clone());
    let opts = options(&ns);
    let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let data = |name: &str| {
        let api = api.clone();
        let name = name.to_owned();
        async move { api.get(&name).await.expect("get").data.and_then(|d| d.get("k").cloned()) }
    };
    let annotated = |name: &str, k: &str, key: &str, value: &str| {
        let mut object = config_map(&ns, name, json!({"k": k}));
        object["metadata"]["annotations"] = json!({key: value});
        object
    };
    let set = |k: &str| {
        vec![
            annotated("once", k, SSA_ANNOTATION, "IfNotPresent"),
            annotated("ignored", k, SSA_ANNOTATION, "Ignore"),
            annotated("disabled", k, RECONCILE_ANNOTATION, "disabled"),
            config_map(&ns, "frozen-live", json!({"k": k})),
        ]
    };

    let first = applier.apply_all(set("1"), &opts).await.expect("first apply");
    let mut lines = actions(&first);
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("ConfigMap/{ns}/disabled skipped"),
            format!("ConfigMap/{ns}/frozen-live created"),
            format!("ConfigMap/{ns}/ignored skipped"),
            format!("ConfigMap/{ns}/once created"),
        ]
    );
    assert!(api.get_opt("ignored").await.expect("get").is_none(), "ssa: Ignore in Git: never created");
    assert!(api.get_opt("disabled").await.expect("get").is_none(), "reconcile: disabled in Git: never created");

    // Someone edits both live objects and opts one out on the object itself.
    let edit = |annotations: Value| json!({"metadata": {"annotations": annotations}, "data": {"k": "edited"}});
    api.patch("once", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&edit(json!({})))).await.expect("edit");
    api.patch("frozen-live", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&edit(json!({SSA_ANNOTATION: "ignore"})))).await.expect("edit");

    let second = applier.apply_all(set("2"), &opts).await.expect("second apply");
    assert!(second.iter().all(|c| c.action == Action::Skipped), "{:?}", actions(&second));
    assert_eq!(data("once").await.as_deref(), Some("edited"), "IfNotPresent: an existing object is never updated");
    assert_eq!(data("frozen-live").await.as_deref(), Some("edited"), "ssa: Ignore on the live object: left alone");

    // Remembered: a reconcile where neither Git nor the cluster changed asks nothing more of the
    // skipped objects, and still leaves them alone.
    let mut state = ferroflux::apply::AppliedState::default();
    let recorded = applier.apply_all_with(set("2"), &opts, &mut state).await.expect("apply with state");
    assert!(recorded.iter().all(|c| c.action == Action::Skipped), "{:?}", actions(&recorded));
    assert_eq!(state.len(), 2, "the two existing skipped objects are recorded");
    let cached = applier.apply_all_with(set("2"), &opts, &mut state).await.expect("no-op apply");
    let mut lines = actions(&cached);
    lines.sort();
    assert_eq!(
        lines,
        [
            format!("ConfigMap/{ns}/disabled skipped"),
            format!("ConfigMap/{ns}/frozen-live unchanged"),
            format!("ConfigMap/{ns}/ignored skipped"),
            format!("ConfigMap/{ns}/once unchanged"),
        ]
    );
    assert_eq!(data("once").await.as_deref(), Some("edited"));
    assert_eq!(data("frozen-live").await.as_deref(), Some("edited"));

    // Without the annotations, both are applied again.
    api.patch("frozen-live", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&json!({"metadata": {"annotations": {SSA_ANNOTATION: null}}})))
        .await
        .expect("remove the annotation");
    let plain = vec![config_map(&ns, "once", json!({"k": "3"})), config_map(&ns, "frozen-live", json!({"k": "3"}))];
    let third = applier.apply_all(plain, &opts).await.expect("third apply");
    assert!(third.iter().all(|c| c.action == Action::Configured), "{:?}", actions(&third));
    assert_eq!(data("once").await.as_deref(), Some("3"));
    assert_eq!(data("frozen-live").await.as_deref(), Some("3"));
}
