//! Hostile repositories and tenants (issue #11), outside the kustomize engine: each test is an
//! attack tried the way a tenant or a Git author would, through the real controller on the real
//! API server and the real Git servers where the path goes through them, and each failed before
//! its fix.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroflux::api::{GitRepository, Kustomization};
use ferroflux::source::git::{self, Credentials};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use support::{TestRepo, setup};

const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: b\n";

async fn wait_repo(client: &Client, ns: &str, name: &str, status: &str, message_contains: &str) -> GitRepository {
    let api: Api<GitRepository> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, status, message_contains, Duration::from_secs(60), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

async fn wait_ks(client: &Client, ns: &str, name: &str, status: &str, message_contains: &str) -> Kustomization {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, status, message_contains, Duration::from_secs(60), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

async fn create_secret(client: &Client, ns: &str, name: &str, data: BTreeMap<&str, String>) {
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data,
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), ns).create(&PostParams::default(), &secret).await.expect("creating the secret");
}

/// Every Event message about `name` in `ns`, joined.
async fn event_messages(client: &Client, ns: &str, name: &str) -> String {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await.expect("events");
    list.items.into_iter().filter_map(|e| e.message).collect::<Vec<_>>().join("\n")
}

/// Finding 11.10: a bearer token (or basic auth) is not sent over plain `http://` unless the
/// controller was started with `--allow-insecure-http-credentials` (Flux's Git library refuses
/// it the same way). Before, the token went to the server in clear and the fetch succeeded.
#[tokio::test]
async fn credentials_are_not_sent_over_plain_http() {
    let (client, ns) = setup("sec-http-creds").await;
    let servers = support::git_servers();
    let repo = TestRepo::new(&format!("{ns}-bearer"));
    repo.commit(&[("cm.yaml", CONFIG_MAP)], "first");
    let token = servers.var("BEARER_TOKEN").to_owned();
    create_secret(&client, &ns, "token", BTreeMap::from([("bearerToken", token.clone())])).await;
    let url = format!("{}/{}.git", servers.var("BEARER_URL_BASE"), repo.name);
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "bearer"},
            "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": "token"}}
        }),
    )
    .await
    .expect("GitRepository");
    let failed = wait_repo(&client, &ns, "bearer", "False", "bearer token cannot be sent over HTTP").await;
    let status = serde_json::to_string(&failed.status).expect("status");
    assert!(status.contains("AuthenticationFailed"), "{status}");
    assert!(status.contains("--allow-insecure-http-credentials"), "the message says how to opt in: {status}");
    assert!(!status.contains(&token), "the token leaked into status: {status}");
    assert!(!event_messages(&client, &ns, "bearer").await.contains(&token));

    // Opted in, the same object works.
    let opted_in = support::spawn_controller(&["--allow-insecure-http-credentials", "--watch-label-selector", &format!("{}=sec-http", support::SHARD_LABEL)]);
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
            "metadata": {"name": "bearer-opted-in", "labels": {support::SHARD_LABEL: "sec-http"}},
            "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}, "secretRef": {"name": "token"}}
        }),
    )
    .await
    .expect("GitRepository");
    let api: Api<GitRepository> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ready = api.get("bearer-opted-in").await.ok().and_then(|o| o.status).and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"));
        if ready.as_ref().is_some_and(|c| c.status == "True") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never Ready with the opt-in: {ready:?}\n{}", opted_in.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Finding 11.9: a `known_hosts` line with 60 stars and a tail that cannot match took hours in
/// the recursive matcher, inside libgit2's certificate callback (the reconcile never ended).
/// The real host line after it must still be found, at once.
#[tokio::test]
async fn a_known_hosts_wildcard_bomb_does_not_hang_the_fetch() {
    let (client, ns) = setup("sec-known-hosts").await;
    let servers = support::git_servers();
    let repo = TestRepo::new(&format!("{ns}-ssh"));
    let commit = repo.commit(&[("cm.yaml", CONFIG_MAP)], "first");
    let real = std::fs::read_to_string(servers.var("KNOWN_HOSTS_FILE")).expect("known_hosts");
    let bomb = format!("{}Z ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFake\n", "*".repeat(60));
    create_secret(
        &client,
        &ns,
        "ssh",
        BTreeMap::from([
            ("identity", std::fs::read_to_string(servers.var("SSH_KEY_FILE")).expect("key")),
            ("known_hosts", format!("{}{real}", bomb.repeat(20))),
        ]),
    )
    .await;
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "ssh"},
            "spec": {"interval": "1m", "url": repo.ssh_url(), "ref": {"branch": "main"}, "secretRef": {"name": "ssh"}}
        }),
    )
    .await
    .expect("GitRepository");
    wait_repo(&client, &ns, "ssh", "True", &format!("main@sha1:{commit}")).await;
}

/// Finding 11.5: a remote base's clone is bounded by its own `?timeout=`: a server that accepts
/// and never answers ends the build within it, with a message, and the controller goes on. Before,
/// the clone waited for libgit2's process-wide socket timeout, whatever a GitRepository last set.
#[tokio::test]
async fn a_silent_remote_base_fails_within_its_own_timeout() {
    let (client, ns) = setup("sec-remote-timeout").await;
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    let repo = TestRepo::new(&format!("{ns}-remote"));
    let kustomization = format!("resources:\n- cm.yaml\n- http://127.0.0.1:{port}/org/repo.git//base?timeout=3s\n");
    repo.commit(&[("kustomization.yaml", &kustomization), ("cm.yaml", CONFIG_MAP)], "a remote base that never answers");
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app"},
            "spec": {"interval": "1m", "url": repo.http_url(), "ref": {"branch": "main"}}
        }),
    )
    .await
    .expect("GitRepository");
    support::create_object(
        &client,
        &ns,
        json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "app"},
            "spec": {"interval": "1m", "retryInterval": "1m", "timeout": "50s", "path": "./", "prune": true, "targetNamespace": ns,
                     "sourceRef": {"kind": "GitRepository", "name": "app"}}
        }),
    )
    .await
    .expect("Kustomization");
    // The deadline of the wait (60s) is above the Kustomization's timeout, below the 60s
    // process-wide read timeout plus the rest: only the clone's own 3s ends it in time.
    let failed = wait_ks(&client, &ns, "app", "False", "timed out").await;
    let message = failed.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.message).unwrap_or_default();
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    drop(silent);
}

/// A server that accepts, waits `delay`, then relays to `upstream` (a real Git server).
fn slow_proxy(upstream: String, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                let Ok(server) = TcpStream::connect(&upstream) else { return };
                let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone()) else { return };
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_read, mut client_write) = (server, client);
                let _ = std::io::copy(&mut server_read, &mut client_write);
            });
        }
    });
    port
}

/// Finding 11.5: libgit2's timeouts are process-wide, and every call used to set them from its
/// own timeout, so a tenant polling with `timeout: 1ms` made another tenant's slow (but well
/// within its 20s) server time out. Here one thread keeps making 1ms calls while another
/// lists a server that answers after 400ms.
#[test]
fn one_callers_tiny_timeout_does_not_shorten_anothers() {
    let servers = support::git_servers();
    let repo = TestRepo::new("sec-shared-timeouts");
    repo.commit(&[("cm.yaml", CONFIG_MAP)], "first");
    let base = servers.var("HTTP_URL_BASE").to_owned();
    let upstream = base.trim_start_matches("http://").split('/').next().expect("host:port").to_owned();
    let port = slow_proxy(upstream, Duration::from_millis(400));
    let path = repo.http_url().trim_start_matches(&base).to_owned();
    let slow_url = format!("http://127.0.0.1:{port}{path}");
    let impatient_url = repo.http_url();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let impatient = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = git::ls_remote(&impatient_url, &Credentials::default(), Duration::from_millis(1));
            }
        })
    };
    let results: Vec<Result<usize, String>> =
        (0..5).map(|_| git::ls_remote(&slow_url, &Credentials::default(), Duration::from_secs(20)).map(|refs| refs.len()).map_err(|e| e.to_string())).collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = impatient.join();
    for result in results {
        assert!(result.as_ref().is_ok_and(|n| *n > 0), "the patient call failed: {result:?}");
    }
}

/// Reads one HTTP request head from `stream`.
fn read_request_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Finding 11.10: libgit2 sends custom headers with every request, so a server that redirects
/// got the `Authorization` header to whatever host it named. Now, with credentials, no redirect
/// to another host is followed, and the other host never sees them.
#[test]
fn credentials_do_not_follow_a_redirect_to_another_host() {
    let other = TcpListener::bind("127.0.0.2:0").expect("a second loopback address");
    let other_port = other.local_addr().expect("address").port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for mut stream in other.incoming().flatten() {
                let head = read_request_head(&mut stream);
                seen.lock().expect("lock").push(head);
                let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
    }
    let redirecting = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = redirecting.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for mut stream in redirecting.incoming().flatten() {
            let head = read_request_head(&mut stream);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let response = format!("HTTP/1.1 302 Found\r\nLocation: http://127.0.0.2:{other_port}{path}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(response.as_bytes());
        }
    });
    let creds = Credentials {
        allow_insecure_http: true,
        ..Credentials::from_secret_data(&BTreeMap::from([("bearerToken".to_owned(), b"sec-redirect-token".to_vec())])).expect("credentials")
    };
    let err = git::ls_remote(&format!("http://127.0.0.1:{port}/org/repo.git"), &creds, Duration::from_secs(10)).expect_err("a redirect elsewhere");
    assert!(!err.to_string().contains("sec-redirect-token"), "{err}");
    let seen = seen.lock().expect("lock");
    assert!(seen.iter().all(|head| !head.to_ascii_lowercase().contains("authorization")), "the other host got the credentials: {seen:?}");
}

/// The Ready condition's message, empty when there is none.
fn ready_message(ks: Kustomization) -> String {
    ks.status.and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready")).map(|c| c.message).unwrap_or_default()
}

/// As [`wait_ks`], for an object of a controller of the test's own (its log in the panic).
async fn wait_shard_ks(api: &Api<Kustomization>, controller: &support::SpawnedController, name: &str, status: &str, message: &str) -> Kustomization {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ks = api.get(name).await.ok();
        let ready = ks.as_ref().and_then(|k| k.status.as_ref()).and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).cloned();
        if let Some(ks) = ks.filter(|_| ready.as_ref().is_some_and(|c| c.status == status && c.message.contains(message))) {
            return ks;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} never Ready={status} with {message:?}: {ready:?}\n{}", controller.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Finding 11.1: with `--default-service-account`, a Kustomization that says
/// `serviceAccountName: ""` is applied as the default ServiceAccount, exactly like one that does
/// not name an account. Before, the empty name was taken as "given", then dropped as empty, and
/// the objects were applied with the controller's own (cluster-admin) rights: the Service below
/// was created.
#[tokio::test]
async fn an_empty_service_account_name_does_not_switch_restricted_mode_off() {
    let (client, ns) = setup("sec-empty-sa").await;
    // The default account may manage ConfigMaps in its namespace, and nothing else.
    support::configmap_only_service_account(&client, &ns, "deployer").await;
    // A controller in restricted mode of this test's own.
    let restricted = support::spawn_controller(&["--default-service-account", "deployer", "--watch-label-selector", &format!("{}={ns}", support::SHARD_LABEL)]);
    let labels = json!({support::SHARD_LABEL: ns});

    let repo = TestRepo::new(&format!("{ns}-empty-sa"));
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: denied\nspec:\n  ports:\n  - port: 80\n    protocol: TCP\n";
    let commit = repo.commit(&[("allowed/cm.yaml", CONFIG_MAP), ("denied/service.yaml", service)], "a configmap and a service");
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app", "labels": labels},
               "spec": {"interval": "1m", "url": repo.http_url(), "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository");
    // (name, path, serviceAccountName): "" and absent must behave the same.
    let cases = [("allowed-empty", "./allowed", Some("")), ("denied-empty", "./denied", Some("")), ("denied-absent", "./denied", None)];
    let mut relaxed_crd = false;
    for (name, path, account) in cases {
        let mut spec = json!({"interval": "10m", "retryInterval": "1m", "prune": true, "path": path, "targetNamespace": ns,
                              "sourceRef": {"kind": "GitRepository", "name": "app"}});
        if let Some(account) = account {
            spec["serviceAccountName"] = json!(account);
        }
        let manifest =
            json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name, "labels": labels}, "spec": spec});
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match support::create_object(&client, &ns, manifest.clone()).await {
                Ok(_) => break,
                Err(kube::Error::Api(e))
                    if e.code == 422 && e.message.contains(r#"must be of type string: "null""#) && tokio::time::Instant::now() < deadline =>
                {
                    if !relaxed_crd {
                        set_service_account_name_nullable(&client, true).await;
                        relaxed_crd = true;
                    }
                    // The API server takes a moment to serve the changed schema.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("creating Kustomization {name}: {e}"),
            }
        }
    }
    let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let stored = api.get("denied-empty").await.expect("get");
    assert_eq!(stored.spec.service_account_name.as_deref(), Some(""), "the API server must hold the empty name as it is");
    // What the default account may do is applied (impersonation works at all)...
    wait_shard_ks(&api, &restricted, "allowed-empty", "True", &commit).await;
    let configs: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &ns);
    assert!(configs.get_opt("app").await.expect("get").is_some());
    // ...and what it may not is refused, as that account, for "" as for no name.
    let user = format!("system:serviceaccount:{ns}:deployer");
    for name in ["denied-empty", "denied-absent"] {
        let message = ready_message(wait_shard_ks(&api, &restricted, name, "False", "forbidden").await);
        assert!(message.contains(&user), "{name} was not refused as {user}: {message}");
    }
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), &ns);
    assert!(services.get_opt("denied").await.expect("get").is_none(), "the Service was applied with the controller's own rights");
    drop(restricted);
    if relaxed_crd {
        set_service_account_name_nullable(&client, false).await;
    }
}

/// Kubernetes 1.20's schema validation, built with Go 1.16 or newer, takes every zero value
/// (`""`) for null and refuses it in a field that is not nullable (kubernetes/kubernetes#99804,
/// fixed in 1.21): the test cluster's API server cannot store `serviceAccountName: ""`, which
/// every fixed API server stores as it is. Marking the field nullable in the test cluster's
/// Kustomization CRD lets the object a real cluster would hold reach the controller; the
/// stored value is still `""`. The test undoes it at its end (a failed run leaves the field
/// nullable, which only lets through what a fixed API server takes anyway).
async fn set_service_account_name_nullable(client: &Client, nullable: bool) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "kustomizations.kustomize.toolkit.fluxcd.io";
    for _attempt in 0..10 {
        let mut crd = crds.get(name).await.expect("the Kustomization CRD");
        for version in &mut crd.spec.versions {
            let field = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .and_then(|s| s.properties.as_mut())
                .and_then(|p| p.get_mut("spec"))
                .and_then(|s| s.properties.as_mut())
                .and_then(|p| p.get_mut("serviceAccountName"));
            if let Some(field) = field {
                field.nullable = nullable.then_some(true);
            }
        }
        match crds.replace(name, &PostParams::default(), &crd).await {
            Ok(_) => return,
            Err(kube::Error::Api(e)) if e.code == 409 => continue,
            Err(e) => panic!("updating the Kustomization CRD: {e}"),
        }
    }
    panic!("the Kustomization CRD kept changing under the update");
}

/// Finding 11.3: `kubeConfig.secretRef` naming a key that holds something else (here a
/// password) fails with a message that names the Secret, the key and the problem. Before, the
/// YAML parser's error quoted the value, and the password went into the status and the Events.
#[tokio::test]
async fn a_kube_config_key_holding_a_password_is_named_never_quoted() {
    let (client, ns) = setup("sec-kubeconfig-password").await;
    // Unique, and shares no word with any message ("password" is the key, not the value).
    let password = "Tr0ub4dor-3-horse-b4ttery-9e1c";
    create_secret(&client, &ns, "db", BTreeMap::from([("password", password.to_owned())])).await;
    let repo = TestRepo::new(&format!("{ns}-kubeconfig"));
    repo.commit(&[("cm.yaml", CONFIG_MAP)], "first");
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "app"},
               "spec": {"interval": "1m", "url": repo.http_url(), "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository");
    support::create_object(
        &client,
        &ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "remote"},
               "spec": {"interval": "10m", "retryInterval": "2s", "prune": true, "targetNamespace": ns,
                        "kubeConfig": {"secretRef": {"name": "db", "key": "password"}},
                        "sourceRef": {"kind": "GitRepository", "name": "app"}}}),
    )
    .await
    .expect("Kustomization");
    let failed = wait_ks(&client, &ns, "remote", "False", "not a kubeconfig").await;
    let status = serde_json::to_string(&failed.status).expect("status");
    let message = ready_message(failed);
    assert!(message.contains(&format!("kubeconfig secret '{ns}/db' key 'password'")), "the message names the Secret and the key: {message}");
    assert!(!status.contains(password), "the password leaked into status: {status}");
    // The Event of the failure exists (so the check below is not vacuous) and quotes nothing.
    let events = support::wait_for(Duration::from_secs(30), || {
        let client = client.clone();
        let ns = ns.clone();
        async move { event_messages(&client, &ns, "remote").await.contains("not a kubeconfig") }
    })
    .await;
    let messages = event_messages(&client, &ns, "remote").await;
    assert!(events.is_some(), "no Event for the failure: {messages}");
    assert!(!messages.contains(password), "the password leaked into an Event: {messages}");
    let log = std::fs::read_to_string(&support::controller().log).expect("controller log");
    assert!(!log.contains(password), "the password leaked into the controller's log");
}
