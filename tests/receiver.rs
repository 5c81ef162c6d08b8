//! The webhook Receiver end to end on the real API server: `ferroflux controller` publishes
//! `status.webhookPath`, refuses calls whose signature or token does not verify (401, a Warning
//! Event, nothing annotated), and on a valid call reconciles the named source at once — far
//! sooner than its one-hour interval — which then applies the pushed commit.

mod support;

use std::time::{Duration, Instant};

use ferroflux::api::notification::v1::{Receiver, webhook_path};
use ferroflux::api::{GitRepository, Kustomization};
use ferroflux::receiver::verify::github_signature;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use support::{TestRepo, setup};

const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

fn config_map(value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  value: \"{value}\"\n")
}

async fn create<K>(client: &Client, ns: &str, manifest: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(manifest).expect("manifest");
    Api::<K>::namespaced(client.clone(), ns).create(&PostParams::default(), &object).await.expect("create")
}

async fn token_secret(client: &Client, ns: &str, token: &str) {
    create::<Secret>(client, ns, json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "webhook-token"}, "stringData": {"token": token}})).await;
}

/// A GitRepository and a Kustomization that poll only once an hour: whatever happens sooner was
/// the webhook.
async fn slow_source(client: &Client, ns: &str, repo: &TestRepo) {
    create::<GitRepository>(
        client,
        ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app", "labels": {"team": "a"}},
            "spec": {"interval": "1h", "url": repo.http_url(), "ref": {"branch": "main"}}
        }),
    )
    .await;
    create::<Kustomization>(
        client,
        ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "app", "labels": {"team": "a"}},
            "spec": {"interval": "1h", "path": "./", "prune": true, "targetNamespace": ns, "sourceRef": {"kind": "GitRepository", "name": "app"}}
        }),
    )
    .await;
}

async fn wait_applied(client: &Client, ns: &str, commit: &str, timeout: Duration) -> bool {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    support::wait_for(timeout, || {
        let api = api.clone();
        async move { api.get("app").await.ok().and_then(|k| k.status).and_then(|s| s.last_applied_revision).is_some_and(|r| r.ends_with(commit)) }
    })
    .await
    .is_some()
}

async fn ready_receiver(client: &Client, ns: &str, name: &str) -> Receiver {
    let api: Api<Receiver> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, "True", "Receiver initialized for path: /hook/", Duration::from_secs(60), |r| r.status.as_ref().map(|s| &s.conditions))
        .await
}

async fn post(path: &str, headers: &[(&str, String)], body: &[u8]) -> u16 {
    let mut request = reqwest::Client::new().post(format!("{}{path}", support::controller().receiver_base)).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("calling the receiver").status().as_u16()
}

async fn warning_reasons(client: &Client, ns: &str, name: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name) && e.type_.as_deref() == Some("Warning"))
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

async fn annotated(client: &Client, ns: &str) -> bool {
    let api: Api<GitRepository> = Api::namespaced(client.clone(), ns);
    api.get("app").await.ok().is_some_and(|r| r.metadata.annotations.unwrap_or_default().contains_key(REQUESTED_AT))
}

#[tokio::test]
async fn github_receiver_refuses_bad_signatures_and_a_signed_push_reconciles_the_source_at_once() {
    let (client, ns) = setup("receiver-github").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("settings.yaml", &config_map("one"))], "first");
    slow_source(&client, &ns, &repo).await;
    assert!(wait_applied(&client, &ns, &first, Duration::from_secs(120)).await, "first commit not applied\n{}", support::controller().log_tail());

    token_secret(&client, &ns, "s3cret-token").await;
    create::<Receiver>(
        &client,
        &ns,
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver", "metadata": {"name": "github"},
            "spec": {"type": "github", "events": ["push"], "secretRef": {"name": "webhook-token"},
                     "resources": [{"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "name": "app"}]}
        }),
    )
    .await;
    let receiver = ready_receiver(&client, &ns, "github").await;
    let path = receiver.status.and_then(|s| s.webhook_path).expect("webhookPath");
    assert_eq!(path, webhook_path("s3cret-token", "github", &ns), "Flux's /hook/sha256(token+name+namespace)");

    let second = repo.commit(&[("settings.yaml", &config_map("two"))], "second");
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"org/app"}}"#;
    let push = ("X-GitHub-Event", "push".to_owned());
    // Refused: a signature made with another secret, none at all, GitLab's token header (the
    // wrong sender type), a signature of another body, an event the Receiver does not allow.
    let refused = [
        vec![push.clone(), ("X-Hub-Signature-256", github_signature("guessed", body))],
        vec![push.clone()],
        vec![("X-Gitlab-Event", "Push Hook".to_owned()), ("X-Gitlab-Token", "s3cret-token".to_owned())],
        vec![push.clone(), ("X-Hub-Signature-256", github_signature("s3cret-token", b"{}"))],
        vec![("X-GitHub-Event", "ping".to_owned()), ("X-Hub-Signature-256", github_signature("s3cret-token", body))],
    ];
    for headers in &refused {
        assert_eq!(post(&path, headers, body).await, 401, "{headers:?}");
    }
    assert_eq!(post("/hook/0000", std::slice::from_ref(&push), body).await, 404, "a path no Receiver publishes");
    assert!(!annotated(&client, &ns).await, "a refused call annotated the source");
    let warnings = warning_reasons(&client, &ns, "github").await;
    assert!(warnings.iter().any(|(reason, note)| reason == "ValidationFailed" && note.contains("X-Hub-Signature-256")), "{warnings:?}");
    assert!(warnings.iter().all(|(_, note)| !note.contains("s3cret-token")), "the token leaked into an event: {warnings:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let still = api.get("app").await.expect("ks").status.and_then(|s| s.last_applied_revision).unwrap_or_default();
    assert!(still.ends_with(&first), "something reconciled the new commit without a valid call: {still}");

    let called = Instant::now();
    assert_eq!(post(&path, &[push.clone(), ("X-Hub-Signature-256", github_signature("s3cret-token", body))], body).await, 200);
    assert!(wait_applied(&client, &ns, &second, Duration::from_secs(30)).await, "the signed push did not release\n{}", support::controller().log_tail());
    eprintln!("signed push -> applied in {:.2}s", called.elapsed().as_secs_f64());
    assert!(annotated(&client, &ns).await, "the source carries reconcile.fluxcd.io/requestedAt, as with Flux");
    let applied = Api::<ConfigMap>::namespaced(client.clone(), &ns).get("settings").await.expect("configmap");
    assert_eq!(applied.data.unwrap_or_default().get("value").map(String::as_str), Some("two"));
}

#[tokio::test]
async fn gitlab_and_generic_hmac_receivers_select_by_labels_and_check_their_own_headers() {
    let (client, ns) = setup("receiver-gitlab").await;
    let repo = TestRepo::new(&format!("{ns}-app"));
    let first = repo.commit(&[("settings.yaml", &config_map("one"))], "first");
    slow_source(&client, &ns, &repo).await;
    assert!(wait_applied(&client, &ns, &first, Duration::from_secs(120)).await, "first commit not applied");
    token_secret(&client, &ns, "gl-token").await;
    // GitLab, every Kustomization labelled team=a.
    create::<Receiver>(
        &client,
        &ns,
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver", "metadata": {"name": "gitlab"},
            "spec": {"type": "gitlab", "events": ["Push Hook"], "secretRef": {"name": "webhook-token"},
                     "resources": [{"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "name": "*", "matchLabels": {"team": "a"}}]}
        }),
    )
    .await;
    create::<Receiver>(
        &client,
        &ns,
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver", "metadata": {"name": "hmac"},
            "spec": {"type": "generic-hmac", "secretRef": {"name": "webhook-token"}, "resources": [{"kind": "GitRepository", "name": "app"}]}
        }),
    )
    .await;
    let gitlab = ready_receiver(&client, &ns, "gitlab").await.status.and_then(|s| s.webhook_path).expect("path");
    let hmac = ready_receiver(&client, &ns, "hmac").await.status.and_then(|s| s.webhook_path).expect("path");
    let event = ("X-Gitlab-Event", "Push Hook".to_owned());
    assert_eq!(post(&gitlab, &[event.clone(), ("X-Gitlab-Token", "gl-tokeN".into())], b"{}").await, 401);
    assert_eq!(post(&gitlab, std::slice::from_ref(&event), b"{}").await, 401, "no token");
    assert_eq!(
        post(&gitlab, &[("X-Gitlab-Event", "Tag Push Hook".into()), ("X-Gitlab-Token", "gl-token".into())], b"{}").await,
        401,
        "event not in spec.events"
    );
    assert_eq!(post(&hmac, &[("X-Hub-Signature-256", github_signature("gl-token", b"{}"))], b"{}").await, 401, "generic-hmac reads X-Signature");
    assert_eq!(post(&hmac, &[("X-Signature", github_signature("wrong", b"{}"))], b"{}").await, 401);
    assert!(!annotated(&client, &ns).await);

    assert_eq!(post(&gitlab, &[event.clone(), ("X-Gitlab-Token", "gl-token".into())], b"{}").await, 200);
    let kustomizations: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let handled = support::wait_for(Duration::from_secs(30), || {
        let api = kustomizations.clone();
        async move {
            let Ok(ks) = api.get("app").await else { return false };
            let requested = ks.metadata.annotations.unwrap_or_default().get(REQUESTED_AT).cloned();
            requested.is_some() && ks.status.and_then(|s| s.last_handled_reconcile_at) == requested
        }
    })
    .await;
    assert!(handled.is_some(), "the labelled Kustomization was not reconciled on request\n{}", support::controller().log_tail());

    let body = br#"{"release":"v2"}"#;
    let second = repo.commit(&[("settings.yaml", &config_map("two"))], "second");
    assert_eq!(post(&hmac, &[("X-Signature", github_signature("gl-token", body))], body).await, 200);
    assert!(wait_applied(&client, &ns, &second, Duration::from_secs(30)).await, "the generic-hmac call did not release");
}

#[tokio::test]
async fn a_receiver_without_its_secret_is_not_ready_and_publishes_no_path() {
    let (client, ns) = setup("receiver-nosecret").await;
    create::<Receiver>(
        &client,
        &ns,
        json!({
            "apiVersion": "notification.toolkit.fluxcd.io/v1", "kind": "Receiver", "metadata": {"name": "orphan"},
            "spec": {"type": "github", "secretRef": {"name": "missing"}, "resources": [{"kind": "GitRepository", "name": "app"}]}
        }),
    )
    .await;
    let api: Api<Receiver> = Api::namespaced(client.clone(), &ns);
    let receiver =
        support::wait_ready(&api, "orphan", "False", "secrets \"missing\" not found", Duration::from_secs(60), |r| r.status.as_ref().map(|s| &s.conditions))
            .await;
    let status = receiver.status.expect("status");
    assert_eq!(status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.reason.as_str()), Some("TokenNotFound"));
    assert_eq!(status.webhook_path, None);
    // Once the Secret exists, the next reconcile (here: asked for) makes it Ready.
    token_secret(&client, &ns, "late").await;
    let secret_fixed = json!({"metadata": {"annotations": {REQUESTED_AT: "now"}}, "spec": {"secretRef": {"name": "webhook-token"}}});
    api.patch("orphan", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&secret_fixed)).await.expect("patch");
    let receiver = ready_receiver(&client, &ns, "orphan").await;
    assert_eq!(receiver.status.and_then(|s| s.webhook_path), Some(webhook_path("late", "orphan", &ns)));
}
