//! SOPS decryption through the real controller on the real API server, with files encrypted by
//! tests/sops/encrypt.py (an encryptor independent of ferroflux's decryptor, using the real `age`
//! and `gpg`) and the throwaway keys in tests/sops/keys/: age and PGP, Secrets with `stringData`
//! and `data`, an env file and a binary file in a secretGenerator of a base, two recipients, a
//! tampered file, a wrong key, a KMS entry, the `--sops-age-secret` fallback. The live Secrets
//! hold the plaintext; no plaintext reaches status, events or the controller's log.

mod support;

use std::time::Duration;

use ferroflux::api::Kustomization;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use support::{TestRepo, setup};

const STRINGDATA: &str = include_str!("sops/encrypted/secret-stringdata.age.yaml");
const DATA_PGP: &str = include_str!("sops/encrypted/secret-data.pgp.yaml");
const DATA_TWO: &str = include_str!("sops/encrypted/secret-data.two.yaml");
const ENV: &str = include_str!("sops/encrypted/app.env");
const BLOB: &str = include_str!("sops/encrypted/blob.bin");
const BLOB_PLAIN: &[u8] = include_bytes!("sops/plain/blob.bin");
const AGE1: &str = include_str!("sops/keys/age1.agekey");
const AGE2: &str = include_str!("sops/keys/age2.agekey");
const WRONG: &str = include_str!("sops/keys/wrong.agekey");
const PGP: &str = include_str!("sops/keys/pgp.asc");

/// Every plaintext value of the fixtures: none may appear outside the applied Secrets.
const PLAINTEXTS: &[&str] = &["s3cr3t-stringdata-pw", "cGxhaW50ZXh0LWRhdGEtdG9rZW4=", "plaintext-data-token", "env-file-password-42", "binary-blob-secret"];

const ROOT_KUSTOMIZATION: &str = "resources:\n- secret-stringdata.yaml\n- secret-data.yaml\n- base\n";
const BASE_KUSTOMIZATION: &str =
    "generatorOptions:\n  disableNameSuffixHash: true\nsecretGenerator:\n- name: app-env\n  envs:\n  - app.env\n- name: blob\n  files:\n  - blob.bin\n";

async fn key_secret(client: &Client, ns: &str, name: &str, entries: &[(&str, &str)]) {
    let data: serde_json::Map<String, serde_json::Value> = entries.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    let secret: Secret =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data})).expect("a Secret");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    secrets.create(&PostParams::default(), &secret).await.expect("key Secret");
}

async fn git_repository(client: &Client, ns: &str, repo: &TestRepo, labels: serde_json::Value) {
    support::create_object(
        client,
        ns,
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository", "metadata": {"name": "secrets", "labels": labels},
               "spec": {"interval": "1s", "url": repo.http_url(), "ref": {"branch": "main"}}}),
    )
    .await
    .expect("GitRepository");
}

async fn kustomization(client: &Client, ns: &str, name: &str, path: &str, prefix: &str, decryption: serde_json::Value, labels: serde_json::Value) {
    let mut spec = json!({"interval": "1m", "path": path, "prune": true, "targetNamespace": ns,
                          "sourceRef": {"kind": "GitRepository", "name": "secrets"}});
    if !prefix.is_empty() {
        spec["namePrefix"] = json!(prefix);
    }
    if !decryption.is_null() {
        spec["decryption"] = decryption;
    }
    support::create_object(
        client,
        ns,
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": name, "labels": labels}, "spec": spec}),
    )
    .await
    .expect("Kustomization");
}

async fn wait_ks(client: &Client, ns: &str, name: &str, status: &str, message_contains: &str) -> Kustomization {
    let api: Api<Kustomization> = Api::namespaced(client.clone(), ns);
    support::wait_ready(&api, name, status, message_contains, Duration::from_secs(120), |o| o.status.as_ref().map(|s| &s.conditions)).await
}

fn ready_reason(ks: &Kustomization) -> String {
    ks.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).map(|c| c.reason.clone()).unwrap_or_default()
}

fn data(secret: &Secret, key: &str) -> Vec<u8> {
    secret.data.as_ref().and_then(|d| d.get(key)).map(|v| v.0.clone()).unwrap_or_default()
}

fn assert_no_plaintext(what: &str, text: &str) {
    for plain in PLAINTEXTS {
        assert!(!text.contains(plain), "{what} holds the plaintext {plain:?}:\n{text}");
    }
}

#[tokio::test]
async fn encrypted_secrets_are_applied_decrypted_and_failures_are_decryption_failed() {
    let (client, ns) = setup("sops").await;
    let repo = TestRepo::new(&format!("{ns}-sops"));
    let tampered = STRINGDATA.replace("name: db-credentials", "name: db-credentials-x");
    let first = repo.commit(
        &[
            ("secrets/kustomization.yaml", ROOT_KUSTOMIZATION),
            ("secrets/secret-stringdata.yaml", STRINGDATA),
            ("secrets/secret-data.yaml", DATA_PGP),
            ("secrets/base/kustomization.yaml", BASE_KUSTOMIZATION),
            ("secrets/base/app.env", ENV),
            ("secrets/base/blob.bin", BLOB),
            ("two/secret.yaml", DATA_TWO),
            ("tampered/secret.yaml", &tampered),
        ],
        "encrypted secrets",
    );
    key_secret(&client, &ns, "sops-keys", &[("identity.agekey", AGE1), ("private.asc", PGP)]).await;
    key_secret(&client, &ns, "wrong-keys", &[("wrong.agekey", WRONG)]).await;
    key_secret(&client, &ns, "age2-keys", &[("age2.agekey", AGE2)]).await;
    key_secret(&client, &ns, "kms-keys", &[("identity.agekey", AGE1), ("sops.aws-kms", "aws_access_key_id: x\n")]).await;
    git_repository(&client, &ns, &repo, json!({})).await;
    let sops = |secret: &str| json!({"provider": "sops", "secretRef": {"name": secret}});
    kustomization(&client, &ns, "secrets", "./secrets", "", sops("sops-keys"), json!({})).await;
    kustomization(&client, &ns, "two", "./two", "two-", sops("age2-keys"), json!({})).await;
    kustomization(&client, &ns, "wrong", "./secrets", "wrong-", sops("wrong-keys"), json!({})).await;
    kustomization(&client, &ns, "tampered", "./tampered", "tampered-", sops("sops-keys"), json!({})).await;
    kustomization(&client, &ns, "kms", "./two", "kms-", sops("kms-keys"), json!({})).await;
    kustomization(&client, &ns, "nokeys", "./two", "nokeys-", serde_json::Value::Null, json!({})).await;

    // Decrypted and applied: age (stringData), PGP (data), an env file and a binary file in a
    // base's secretGenerator, and a file for two recipients opened by the second age key.
    wait_ks(&client, &ns, "secrets", "True", &format!("main@sha1:{first}")).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let credentials = secrets.get("db-credentials").await.expect("db-credentials");
    assert_eq!(data(&credentials, "password"), b"s3cr3t-stringdata-pw");
    assert_eq!(data(&credentials, "username"), b"admin");
    assert_eq!(data(&secrets.get("api-token").await.expect("api-token"), "token"), b"plaintext-data-token");
    assert_eq!(data(&secrets.get("app-env").await.expect("app-env"), "DB_PASSWORD"), b"env-file-password-42");
    assert_eq!(data(&secrets.get("blob").await.expect("blob"), "blob.bin"), BLOB_PLAIN);
    wait_ks(&client, &ns, "two", "True", &format!("main@sha1:{first}")).await;
    assert_eq!(data(&secrets.get("two-api-token").await.expect("two-api-token"), "token"), b"plaintext-data-token");

    // A wrong key: DecryptionFailed naming the file and its recipients; nothing applied.
    let wrong = wait_ks(&client, &ns, "wrong", "False", "age recipient age1sqsxpgzvpkftl6zadd3rdny7yfkux0007zg43n9fflsf3zy9py3sr3rt92").await;
    assert_eq!(ready_reason(&wrong), "DecryptionFailed");
    let message = wrong.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).map(|c| c.message.clone()).unwrap_or_default();
    assert!(message.contains("secret-stringdata.yaml"), "{message}");
    assert!(!message.contains("/tmp/"), "paths are the artifact's: {message}");
    assert!(secrets.get_opt("wrong-db-credentials").await.expect("get").is_none());
    assert!(secrets.get_opt("wrong-app-env").await.expect("get").is_none());

    // A tampered file (a plain value changed): the MAC does not match; nothing applied.
    let tampered_ks = wait_ks(&client, &ns, "tampered", "False", "MAC mismatch").await;
    assert_eq!(ready_reason(&tampered_ks), "DecryptionFailed");
    assert!(secrets.get_opt("tampered-db-credentials-x").await.expect("get").is_none());

    // KMS credentials are refused by name; an encrypted object without spec.decryption too.
    let kms = wait_ks(&client, &ns, "kms", "False", "sops.aws-kms").await;
    assert_eq!(ready_reason(&kms), "DecryptionFailed");
    let nokeys = wait_ks(&client, &ns, "nokeys", "False", "sets no spec.decryption").await;
    assert_eq!(ready_reason(&nokeys), "DecryptionFailed");

    // A tampered commit to an applied Kustomization: refused, the last good revision stays.
    let bad = repo.commit(&[("secrets/secret-stringdata.yaml", &STRINGDATA.replace("type: Opaque", "type: Opaqu3"))], "tamper");
    let failed = wait_ks(&client, &ns, "secrets", "False", "MAC mismatch").await;
    let status = failed.status.clone().expect("status");
    assert_eq!(status.last_applied_revision.as_deref(), Some(format!("main@sha1:{first}").as_str()));
    assert_eq!(status.last_attempted_revision.as_deref(), Some(format!("main@sha1:{bad}").as_str()));
    assert_eq!(data(&secrets.get("db-credentials").await.expect("kept"), "password"), b"s3cr3t-stringdata-pw");
    assert_eq!(secrets.get("db-credentials").await.expect("kept").type_.as_deref(), Some("Opaque"));

    // No plaintext in any status, Event or the controller's log.
    let all: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    for ks in all.list(&Default::default()).await.expect("list").items {
        assert_no_plaintext("a Kustomization's status", &serde_json::to_string(&ks.status).expect("json"));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let notes: Vec<String> = events.list(&Default::default()).await.expect("events").items.into_iter().filter_map(|e| e.message).collect();
    assert!(notes.iter().any(|n| n.contains("MAC mismatch")), "{notes:?}");
    assert_no_plaintext("the Events", &notes.join("\n"));
    assert_no_plaintext("the controller log", &std::fs::read_to_string(&support::controller().log).unwrap_or_default());
}

#[tokio::test]
async fn the_global_age_secret_serves_kustomizations_without_a_secret_ref() {
    let (client, ns) = setup("sops-global").await;
    // A controller of its own, for a shard: it has the global age key.
    let shard = format!("{ns}-shard");
    let controller =
        support::spawn_controller(&["--watch-label-selector", &format!("{}={shard}", support::SHARD_LABEL), "--sops-age-secret", &format!("{ns}/global-age")]);
    let labels = json!({support::SHARD_LABEL: shard});
    let repo = TestRepo::new(&format!("{ns}-sops"));
    let first = repo.commit(&[("app/secret.yaml", STRINGDATA)], "encrypted");
    key_secret(&client, &ns, "global-age", &[("global.agekey", AGE1)]).await;
    git_repository(&client, &ns, &repo, labels.clone()).await;
    kustomization(&client, &ns, "app", "./app", "", json!({"provider": "sops"}), labels).await;
    let api: Api<Kustomization> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ks = api.get("app").await.expect("ks");
        let ready = ks.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).cloned();
        if ready.as_ref().is_some_and(|c| c.status == "True" && c.message.contains(&first)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never Ready: {ready:?}\n{}", std::fs::read_to_string(&controller.log).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let password = data(&secrets.get("db-credentials").await.expect("applied"), "password");
    assert_eq!(password, b"s3cr3t-stringdata-pw");
    assert_no_plaintext("the shard controller log", &std::fs::read_to_string(&controller.log).unwrap_or_default());
}
