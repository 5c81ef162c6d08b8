//! The GitRepository controller end to end: a real `ferroflux controller` process, a real
//! kube-apiserver, real Git servers on loopback.

mod support;

use std::time::Duration;

use ferroflux::api::GitRepository;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sha2::Digest;

use support::{TestRepo, setup};

const DEPLOYMENT: &str = include_str!("../examples/tutorial/deployment.yaml");

/// The tutorial's `fluxcd-repo.yaml`, verbatim but for the URL (and a 1s interval).
async fn create_tutorial_repo(client: &Client, ns: &str, url: &str) {
    support::create_example(client, ns, "examples/tutorial/fluxcd-repo.yaml", json!({"url": url, "interval": "1s"})).await;
}

/// Waits until the Ready condition matches, returning the object.
async fn wait_ready(client: &Client, ns: &str, name: &str, status: &str, message_contains: &str) -> GitRepository {
    let api: Api<GitRepository> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, status, message_contains, Duration::from_secs(30), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

async fn download(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.expect("artifact GET");
    assert!(response.status().is_success(), "GET {url}: {}", response.status());
    response.bytes().await.expect("artifact body").to_vec()
}

fn files_in(archive: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = tar::Archive::new(flate2::read::GzDecoder::new(archive))
        .entries()
        .expect("tar")
        .filter_map(|e| e.ok().and_then(|e| e.path().ok().map(|p| p.to_string_lossy().into_owned())))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn tutorial_repository_becomes_ready_with_its_revision_and_follows_pushes_and_rollbacks() {
    let (client, ns) = setup("gitrepo-tutorial").await;
    let repo = TestRepo::new(&format!("{ns}-demo"));
    let first = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    create_tutorial_repo(&client, &ns, &repo.http_url()).await;

    let ready = wait_ready(&client, &ns, "hello-world-flask", "True", &format!("stored artifact for revision 'main@sha1:{first}'")).await;
    let artifact = ready.status.as_ref().and_then(|s| s.artifact.clone()).expect("artifact");
    assert_eq!(artifact.revision, format!("main@sha1:{first}"));
    assert_eq!(artifact.path, format!("gitrepository/{ns}/hello-world-flask/{first}.tar.gz"));
    assert!(artifact.url.starts_with(&support::controller().storage_base), "{}", artifact.url);
    let bytes = download(&artifact.url).await;
    assert_eq!(artifact.digest, format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))));
    assert_eq!(artifact.size, Some(bytes.len() as i64));
    assert_eq!(files_in(&bytes), ["deployment.yaml"]);
    let conditions: Vec<_> = ready.status.as_ref().map(|s| s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone())).collect()).unwrap_or_default();
    assert_eq!(conditions, [("Ready".to_owned(), "True".to_owned()), ("ArtifactInStorage".to_owned(), "True".to_owned())]);
    assert_eq!(ready.status.as_ref().and_then(|s| s.observed_generation), ready.metadata.generation);

    // kubectl shows what the tutorial shows.
    if support::has_kubectl() {
        let out = support::kubectl(&["get", "gitrepository", "-n", &ns]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let row: Vec<&str> = stdout.lines().nth(1).expect("a row").split_whitespace().collect();
        assert_eq!(row[0], "hello-world-flask");
        assert_eq!(row[1], repo.http_url());
        assert_eq!(row[3..], ["True", "stored", "artifact", "for", "revision", &format!("'main@sha1:{first}'")]);
    }

    // git push releases...
    let v1 = repo.commit(&[("deployment.yaml", &DEPLOYMENT.replace(":latest", ":v1"))], "Update image tag to v1");
    let ready = wait_ready(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{v1}")).await;
    let artifact = ready.status.and_then(|s| s.artifact).expect("artifact");
    let bytes = download(&artifact.url).await;
    let content = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        .entries()
        .expect("tar")
        .filter_map(Result::ok)
        .find_map(|mut e| {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).ok().map(|_| s)
        })
        .expect("deployment.yaml");
    assert!(content.contains("lyzhang1999/hello-world-flask:v1"));

    // ... and git reset --hard + push -f rolls back.
    repo.reset_hard_and_force_push(&first);
    wait_ready(&client, &ns, "hello-world-flask", "True", &format!("main@sha1:{first}")).await;

    // An event per new artifact.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), &ns);
    let reasons: Vec<String> = events.list(&Default::default()).await.expect("events").items.into_iter().filter_map(|e| e.reason).collect();
    assert!(reasons.iter().filter(|r| *r == "NewArtifact").count() >= 2, "{reasons:?}");

    // Flux's reconcile metric, per object, as existing dashboards read it.
    let metrics = reqwest::get(&support::controller().metrics_url).await.expect("metrics").text().await.expect("text");
    let series = format!("gotk_reconcile_duration_seconds_count{{kind=\"GitRepository\",name=\"hello-world-flask\",namespace=\"{ns}\"}} ");
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{metrics}"));
    assert!(count >= 3, "{count} reconciles recorded");
    assert!(metrics.contains("controller_runtime_reconcile_total{controller=\"gitrepository\",result=\"success\"}"));
    // The condition and suspend gauges of Flux's dashboards.
    let labels = format!("kind=\"GitRepository\",name=\"hello-world-flask\",namespace=\"{ns}\"");
    let gauge = |series: String| metrics.lines().find_map(|l| l.strip_prefix(&series).map(|v| v.trim().to_owned()));
    assert_eq!(gauge(format!("gotk_reconcile_condition{{{labels},type=\"Ready\",status=\"True\"}} ")).as_deref(), Some("1"), "{metrics}");
    assert_eq!(gauge(format!("gotk_reconcile_condition{{{labels},type=\"Ready\",status=\"False\"}} ")).as_deref(), Some("0"), "{metrics}");
    assert_eq!(gauge(format!("gotk_suspend_status{{{labels}}} ")).as_deref(), Some("0"), "{metrics}");
}

/// No new commit: each poll is one ref listing (one `GET /info/refs`), never a fetch.
#[tokio::test]
async fn polls_without_changes_only_list_refs() {
    let (client, ns) = setup("gitrepo-noop").await;
    let repo = TestRepo::new(&format!("{ns}-noop"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    create_tutorial_repo(&client, &ns, &repo.http_url()).await;
    wait_ready(&client, &ns, "hello-world-flask", "True", &commit).await;

    let log = std::path::PathBuf::from(support::git_servers().var("HTTP_ACCESS_LOG"));
    let count = |needle: &str| {
        std::fs::read_to_string(&log).unwrap_or_default().lines().filter(|l| l.contains(&format!("/{}.git/", repo.name)) && l.contains(needle)).count()
    };
    let (refs_before, fetches_before) = (count("info/refs"), count("POST "));
    // Three polls (interval 1s) are the sync point: none of them may fetch.
    let polled = support::wait_for(Duration::from_secs(60), || async { count("info/refs") >= refs_before + 3 }).await;
    assert!(polled.is_some(), "interval 1s: expected three polls, saw {}", count("info/refs") - refs_before);
    assert_eq!(count("POST "), fetches_before, "a poll without a new commit must not fetch");

    let repo_obj = Api::<GitRepository>::namespaced(client, &ns).get("hello-world-flask").await.expect("repo");
    let artifact = repo_obj.status.and_then(|s| s.artifact).expect("artifact");
    assert_eq!(artifact.revision, format!("main@sha1:{commit}"));
}

#[tokio::test]
async fn wrong_password_is_authentication_failed_keeps_the_artifact_and_recovers() {
    let (client, ns) = setup("gitrepo-auth").await;
    let servers = support::git_servers();
    let repo = TestRepo::new(&format!("{ns}-private"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    let ca = std::fs::read_to_string(servers.var("CA_FILE")).expect("CA");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret = |password: &str| -> Secret {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "git-auth"},
            "stringData": {"username": servers.var("USERNAME"), "password": password, "ca.crt": ca}
        }))
        .expect("secret")
    };
    secrets.create(&PostParams::default(), &secret(servers.var("PASSWORD"))).await.expect("secret");
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let object: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "private"},
        "spec": {"interval": "1s", "url": repo.https_url(), "ref": {"branch": "main"}, "secretRef": {"name": "git-auth"}}
    }))
    .expect("object");
    repos.create(&PostParams::default(), &object).await.expect("GitRepository");
    wait_ready(&client, &ns, "private", "True", &commit).await;

    let wrong = "not-the-password-7f3a";
    secrets.replace("git-auth", &PostParams::default(), &secret(wrong)).await.expect("secret update");
    // A new commit makes the next poll need the server, which now refuses us.
    let newer = repo.commit(&[("extra.yaml", "a: 1\n")], "more");
    let failed = wait_ready(&client, &ns, "private", "False", "").await;
    let ready = failed.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned()).expect("Ready");
    assert_eq!(ready.reason, "AuthenticationFailed", "{}", ready.message);
    assert!(!ready.message.contains(wrong), "the message leaks the password: {}", ready.message);
    assert!(!support::controller().log_tail().contains(wrong), "the log leaks the password");
    let kept = failed.status.as_ref().and_then(|s| s.artifact.clone()).expect("previous artifact kept");
    assert_eq!(kept.revision, format!("main@sha1:{commit}"));
    assert!(failed.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "FetchFailed" && c.status == "True")));
    assert_eq!(download(&kept.url).await.len() as i64, kept.size.unwrap_or(-1), "the previous artifact is still served");

    secrets.replace("git-auth", &PostParams::default(), &secret(servers.var("PASSWORD"))).await.expect("secret fix");
    let recovered = wait_ready(&client, &ns, "private", "True", &newer).await;
    assert!(recovered.status.is_some_and(|s| !s.conditions.iter().any(|c| c.type_ == "FetchFailed")));
}

/// Many GitRepositories on one URL (tenants on a platform repository, Flux's benchmark) share
/// their ref listings and fetches, but only with equal credentials: one with a wrong password on
/// the same URL, created in the same moment, still fails on its own, and each artifact is its
/// own file with the same bytes.
#[tokio::test]
async fn repositories_on_one_url_share_git_work_only_with_equal_credentials() {
    let (client, ns) = setup("gitrepo-shared").await;
    let servers = support::git_servers();
    let repo = TestRepo::new(&format!("{ns}-shared"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    let ca = std::fs::read_to_string(servers.var("CA_FILE")).expect("CA");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for (name, password) in [("good-a", servers.var("PASSWORD")), ("good-b", servers.var("PASSWORD")), ("wrong", "not-the-password-51c2")] {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {"username": servers.var("USERNAME"), "password": password, "ca.crt": ca}
        }))
        .expect("secret");
        secrets.create(&PostParams::default(), &secret).await.expect("secret");
    }
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let names: Vec<(String, &str)> =
        (0..6).map(|i| (format!("tenant-{i}"), if i % 2 == 0 { "good-a" } else { "good-b" })).chain([("intruder".to_owned(), "wrong")]).collect();
    futures::future::join_all(names.iter().map(|(name, secret)| {
        let object: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": name},
            "spec": {"interval": "1h", "url": repo.https_url(), "ref": {"branch": "main"}, "secretRef": {"name": secret}}
        }))
        .expect("object");
        let repos = repos.clone();
        async move { repos.create(&PostParams::default(), &object).await.expect("GitRepository") }
    }))
    .await;
    let mut digests = std::collections::BTreeSet::new();
    let mut paths = std::collections::BTreeSet::new();
    for (name, _) in names.iter().filter(|(n, _)| n != "intruder") {
        let ready = wait_ready(&client, &ns, name, "True", &commit).await;
        let artifact = ready.status.and_then(|s| s.artifact).expect("artifact");
        assert_eq!(download(&artifact.url).await.len() as i64, artifact.size.unwrap_or(-1), "{name}'s artifact is served");
        digests.insert(artifact.digest);
        paths.insert(artifact.path);
    }
    assert_eq!(digests.len(), 1, "the same commit packs to the same bytes: {digests:?}");
    assert_eq!(paths.len(), 6, "each GitRepository has its own artifact file: {paths:?}");
    let failed = wait_ready(&client, &ns, "intruder", "False", "").await;
    let status = failed.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.reason, "AuthenticationFailed", "{}", ready.message);
    assert!(status.artifact.is_none(), "wrong credentials never get another GitRepository's artifact");
}

#[tokio::test]
async fn unreachable_server_and_missing_branch_fail_then_recover_on_spec_change() {
    let (client, ns) = setup("gitrepo-faults").await;
    let repo = TestRepo::new(&format!("{ns}-faults"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let object: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "faults"},
        "spec": {"interval": "1s", "timeout": "5s", "url": "http://127.0.0.1:9/nothing.git", "ref": {"branch": "main"}}
    }))
    .expect("object");
    repos.create(&PostParams::default(), &object).await.expect("GitRepository");
    let failed = wait_ready(&client, &ns, "faults", "False", "").await;
    let ready = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).expect("Ready");
    assert_eq!(ready.reason, "GitOperationFailed", "{}", ready.message);

    let patch = json!({"spec": {"url": repo.http_url(), "ref": {"branch": "nope"}}});
    repos.patch("faults", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    wait_ready(&client, &ns, "faults", "False", "refs/heads/nope").await;

    let patch = json!({"spec": {"ref": {"branch": "main"}}});
    repos.patch("faults", &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patch");
    wait_ready(&client, &ns, "faults", "True", &commit).await;
}

#[tokio::test]
async fn tags_semver_and_ssh_with_known_hosts() {
    let (client, ns) = setup("gitrepo-refs").await;
    let servers = support::git_servers();
    let repo = TestRepo::new(&format!("{ns}-refs"));
    let v1 = repo.commit(&[("version", "1.0.0")], "v1");
    repo.tag("v1.0.0");
    let v12 = repo.commit(&[("version", "1.2.0")], "v1.2");
    repo.tag("v1.2.0");
    repo.commit(&[("version", "2.0.0")], "v2");
    repo.tag("v2.0.0");

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let ssh_secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssh"},
        "stringData": {
            "identity": std::fs::read_to_string(servers.var("SSH_KEY_FILE")).expect("key"),
            "known_hosts": std::fs::read_to_string(servers.var("KNOWN_HOSTS_FILE")).expect("known_hosts")
        }
    }))
    .expect("secret");
    secrets.create(&PostParams::default(), &ssh_secret).await.expect("secret");
    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    for (name, url, reference, secret) in [
        ("tag", repo.http_url(), json!({"tag": "v1.0.0"}), None),
        ("semver", repo.http_url(), json!({"semver": ">=1.0.0 <2.0.0"}), None),
        ("ssh", repo.ssh_url(), json!({"tag": "v1.2.0"}), Some("ssh")),
    ] {
        let mut spec = json!({"interval": "1m", "url": url, "ref": reference});
        if let Some(secret) = secret {
            spec["secretRef"] = json!({"name": secret});
        }
        let object: GitRepository = serde_json::from_value(json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": name}, "spec": spec
        }))
        .expect("object");
        repos.create(&PostParams::default(), &object).await.expect("GitRepository");
    }
    wait_ready(&client, &ns, "tag", "True", &format!("'v1.0.0@sha1:{v1}'")).await;
    wait_ready(&client, &ns, "semver", "True", &format!("'v1.2.0@sha1:{v12}'")).await;
    wait_ready(&client, &ns, "ssh", "True", &format!("'v1.2.0@sha1:{v12}'")).await;

    // Another host key for the same server: refused.
    let wrong_hosts: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ssh-wrong-host"},
        "stringData": {
            "identity": std::fs::read_to_string(servers.var("SSH_KEY_FILE")).expect("key"),
            "known_hosts": std::fs::read_to_string(servers.var("OTHER_KNOWN_HOSTS_FILE")).expect("known_hosts")
        }
    }))
    .expect("secret");
    secrets.create(&PostParams::default(), &wrong_hosts).await.expect("secret");
    let object: GitRepository = serde_json::from_value(json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "ssh-wrong-host"},
        "spec": {"interval": "1m", "url": repo.ssh_url(), "ref": {"branch": "main"}, "secretRef": {"name": "ssh-wrong-host"}}
    }))
    .expect("object");
    repos.create(&PostParams::default(), &object).await.expect("GitRepository");
    let failed = wait_ready(&client, &ns, "ssh-wrong-host", "False", "").await;
    let ready = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).expect("Ready");
    assert!(ready.message.contains("host key"), "{}", ready.message);
    assert!(failed.metadata.finalizers.unwrap_or_default().contains(&"finalizers.fluxcd.io".to_owned()));
}

#[tokio::test]
async fn deleting_the_repository_deletes_its_artifacts() {
    let (client, ns) = setup("gitrepo-delete").await;
    let repo = TestRepo::new(&format!("{ns}-delete"));
    let commit = repo.commit(&[("deployment.yaml", DEPLOYMENT)], "Add deployment");
    create_tutorial_repo(&client, &ns, &repo.http_url()).await;
    let ready = wait_ready(&client, &ns, "hello-world-flask", "True", &commit).await;
    let url = ready.status.and_then(|s| s.artifact).expect("artifact").url;
    assert!(reqwest::get(&url).await.expect("GET").status().is_success());

    let repos: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    repos.delete("hello-world-flask", &Default::default()).await.expect("delete");
    support::wait_for(Duration::from_secs(20), || {
        let repos = repos.clone();
        async move { repos.get_opt("hello-world-flask").await.ok().flatten().is_none() }
    })
    .await
    .expect("the finalizer lets the object go");
    assert_eq!(reqwest::get(&url).await.expect("GET").status().as_u16(), 404, "artifact still served after deletion");
}
