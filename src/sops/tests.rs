//! Against fixtures made by tests/sops/encrypt.py (an independent encryptor using the real
//! `age` and `gpg`), with the throwaway keys checked in beside them.

use super::*;

const AGE1: &str = include_str!("../../tests/sops/keys/age1.agekey");
const AGE2: &str = include_str!("../../tests/sops/keys/age2.agekey");
const WRONG: &str = include_str!("../../tests/sops/keys/wrong.agekey");
const PGP: &str = include_str!("../../tests/sops/keys/pgp.asc");

const STRINGDATA: &str = include_str!("../../tests/sops/encrypted/secret-stringdata.age.yaml");
const DATA_PGP: &str = include_str!("../../tests/sops/encrypted/secret-data.pgp.yaml");
const DATA_TWO: &str = include_str!("../../tests/sops/encrypted/secret-data.two.yaml");
const ENV: &str = include_str!("../../tests/sops/encrypted/app.env");
const BLOB: &[u8] = include_bytes!("../../tests/sops/encrypted/blob.bin");
const BLOB_PLAIN: &[u8] = include_bytes!("../../tests/sops/plain/blob.bin");
const CONFIG: &str = include_str!("../../tests/sops/encrypted/config.yaml");
const SETTINGS: &str = include_str!("../../tests/sops/encrypted/settings.json");

fn age(text: &str) -> Keys {
    let mut keys = Keys::default();
    keys.add_age_identities(text).expect("age identity");
    keys
}

fn pgp() -> Keys {
    let mut keys = Keys::default();
    keys.add_pgp_keys(PGP).expect("pgp key");
    keys
}

fn yaml(bytes: &[u8]) -> serde_json::Value {
    serde_saphyr::from_slice(bytes).expect("yaml")
}

#[test]
fn age_secret_with_string_data() {
    let plain = decrypt(STRINGDATA.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect("decrypts");
    let object = yaml(&plain);
    assert_eq!(object["stringData"]["password"], "s3cr3t-stringdata-pw");
    assert_eq!(object["stringData"]["port"], "5432");
    assert_eq!(object["metadata"]["name"], "db-credentials");
    assert!(object.get("sops").is_none());
}

#[test]
fn pgp_secret_with_data() {
    let plain = decrypt(DATA_PGP.as_bytes(), Format::Yaml, Format::Json, &pgp()).expect("decrypts");
    let object: serde_json::Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(object["data"]["token"], "cGxhaW50ZXh0LWRhdGEtdG9rZW4=");
    assert_eq!(object["metadata"]["labels"]["app"], "api");
}

#[test]
fn either_of_two_recipients_decrypts() {
    for keys in [age(AGE2), pgp()] {
        let plain = decrypt(DATA_TWO.as_bytes(), Format::Yaml, Format::Json, &keys).expect("decrypts");
        assert!(String::from_utf8_lossy(&plain).contains("cGxhaW50ZXh0LWRhdGEtdG9rZW4="));
    }
}

#[test]
fn wrong_key_names_the_recipients_and_nothing_secret() {
    let error = decrypt(STRINGDATA.as_bytes(), Format::Yaml, Format::Yaml, &age(WRONG)).expect_err("refused").to_string();
    assert!(error.contains("age recipient age1sqsxpgzvpkftl6zadd3rdny7yfkux0007zg43n9fflsf3zy9py3sr3rt92"), "{error}");
    assert!(!error.contains("AGE-SECRET-KEY") && !error.contains("s3cr3t"), "{error}");
    let error = decrypt(DATA_TWO.as_bytes(), Format::Yaml, Format::Yaml, &Keys::default()).expect_err("refused").to_string();
    assert!(error.contains("PGP key C9AD2D58C1AD6EB03E08EA195ACDD23DBBBFF212") && error.contains("no keys were given"), "{error}");
}

#[test]
fn a_changed_plain_value_fails_the_mac() {
    let tampered = STRINGDATA.replace("name: db-credentials", "name: db-credential5");
    let error = decrypt(tampered.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect_err("refused");
    assert!(matches!(error, Error::MacMismatch), "{error}");
}

#[test]
fn a_changed_or_moved_encrypted_value_is_refused() {
    let object = yaml(STRINGDATA.as_bytes());
    let password = object["stringData"]["password"].as_str().expect("enc").to_owned();
    let username = object["stringData"]["username"].as_str().expect("enc").to_owned();
    // The password's ciphertext in the username's place: its path (additional data) differs.
    let moved = STRINGDATA.replace(&username, &password);
    let error = decrypt(moved.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect_err("refused").to_string();
    assert!(error.contains("stringData.username") && !error.contains("s3cr3t"), "{error}");
    // A plain value where the rules say encrypted.
    let plain = STRINGDATA.replace(&username, "admin");
    assert!(decrypt(plain.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).is_err());
}

#[test]
fn mac_only_encrypted_ignores_plain_values() {
    // secret-data.two.yaml has mac_only_encrypted: a changed label is not covered by the MAC.
    let changed = DATA_TWO.replace("app: api", "app: other");
    let plain = decrypt(changed.as_bytes(), Format::Yaml, Format::Json, &age(AGE2)).expect("decrypts");
    assert!(String::from_utf8_lossy(&plain).contains("other"));
}

#[test]
fn dotenv_with_two_age_recipients() {
    for keys in [age(AGE1), age(AGE2)] {
        let plain = decrypt(ENV.as_bytes(), Format::Dotenv, Format::Dotenv, &keys).expect("decrypts");
        assert_eq!(String::from_utf8_lossy(&plain), "DB_USER=envuser\nDB_PASSWORD=env-file-password-42\n");
    }
    // Lines swapped: each value still decrypts under its key, but the MAC covers the order.
    let mut lines: Vec<&str> = ENV.lines().collect();
    lines.swap(0, 1);
    let swapped = lines.join("\n");
    assert!(matches!(decrypt(swapped.as_bytes(), Format::Dotenv, Format::Dotenv, &age(AGE1)), Err(Error::MacMismatch)));
    // A value under another key does not decrypt (its path is the additional data).
    let renamed = ENV.replace("DB_USER=", "DB_USERX=");
    let error = decrypt(renamed.as_bytes(), Format::Dotenv, Format::Dotenv, &age(AGE1)).expect_err("refused").to_string();
    assert!(error.contains("DB_USERX") && !error.contains("envuser"), "{error}");
}

#[test]
fn binary_file_round_trips_its_bytes() {
    let plain = decrypt(BLOB, Format::Binary, Format::Binary, &pgp()).expect("decrypts");
    assert_eq!(plain, BLOB_PLAIN);
}

#[test]
fn typed_yaml_values_and_key_order() {
    let plain = decrypt(CONFIG.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect("decrypts");
    let text = String::from_utf8(plain).expect("utf-8");
    let object = yaml(text.as_bytes());
    assert_eq!(object["replicas"], 3);
    assert_eq!(object["ratio"], 0.75);
    assert_eq!(object["enabled"], true);
    assert_eq!(object["nested"]["list"][1], 2);
    assert_eq!(object["nested"]["public_unencrypted"], "visible");
    let order: Vec<usize> = ["replicas:", "ratio:", "enabled:", "name:", "nested:"].iter().map(|k| text.find(k).expect("key")).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn json_with_an_unencrypted_regex() {
    let plain = decrypt(SETTINGS.as_bytes(), Format::Json, Format::Json, &age(AGE2)).expect("decrypts");
    let object: serde_json::Value = serde_json::from_slice(&plain).expect("json");
    assert_eq!(object["apiKey"], "json-file-api-key");
    assert_eq!(object["retries"], 5);
    assert_eq!(object["debug"], false);
    assert_eq!(object["servers"], serde_json::json!(["a", "b"]));
    let text = String::from_utf8_lossy(&plain).into_owned();
    assert!(text.find("apiKey") < text.find("retries") && text.find("retries") < text.find("debug"), "{text}");
}

#[test]
fn keys_are_validated_without_echoing_them() {
    let mut keys = Keys::default();
    let error = keys.add_age_identities("AGE-SECRET-KEY-1NOTAKEY").expect_err("invalid").to_string();
    assert!(!error.contains("NOTAKEY"), "{error}");
    assert!(keys.add_age_identities("# only a comment\n").is_err());
    assert!(keys.add_pgp_keys("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n-----END PGP PRIVATE KEY BLOCK-----\n").is_err());
    let mut two = Keys::default();
    assert_eq!(two.add_age_identities(&format!("{AGE1}\n{AGE2}")).expect("two"), 2);
    assert!(!format!("{two:?}").contains("AGE-SECRET-KEY"));
}

#[test]
fn lastmodified_as_go_formats_it() {
    assert_eq!(go_rfc3339("2024-01-02T03:04:05Z"), "2024-01-02T03:04:05Z");
    assert_eq!(go_rfc3339("2024-01-02T03:04:05.123456Z"), "2024-01-02T03:04:05Z");
    assert_eq!(go_rfc3339("2024-01-02T03:04:05+02:00"), "2024-01-02T03:04:05+02:00");
    assert_eq!(go_rfc3339("2024-01-02T03:04:05+00:00"), "2024-01-02T03:04:05Z");
}

#[test]
fn flattened_metadata_unflattens() {
    let entries = vec![
        ("age__list_0__map_recipient".to_owned(), Value::Str("r0".into())),
        ("age__list_1__map_recipient".to_owned(), Value::Str("r1".into())),
        ("mac".to_owned(), Value::Str("m".into())),
    ];
    let tree = metadata::unflatten(&entries).expect("unflattens");
    let Some(Value::Seq(age)) = tree.get("age") else { panic!("{tree:?}") };
    assert_eq!(age[1].get("recipient"), Some(&Value::Str("r1".into())));
    assert!(metadata::unflatten(&[("age__list_99999999__map_x".to_owned(), Value::Null)]).is_err());
}

#[test]
fn unsupported_settings_are_refused_by_name() {
    let two_rules = STRINGDATA.replace("  version: 3.9.4", "  version: 3.9.4\n  unencrypted_suffix: _plain");
    let error = decrypt(two_rules.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect_err("refused").to_string();
    assert!(error.contains("more than one"), "{error}");
    let comments = STRINGDATA.replace("  version: 3.9.4", "  version: 3.9.4\n  encrypted_comment_regex: x");
    let error = decrypt(comments.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect_err("refused").to_string();
    assert!(error.contains("encrypted_comment_regex"), "{error}");
    let kms = "a: ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:str]\nsops:\n  kms:\n  - arn: arn:aws:kms:eu-west-1:1:key/x\n    enc: AQ==\n  lastmodified: '2024-01-01T00:00:00Z'\n  mac: x\n  version: 3.9.4\n";
    let error = decrypt(kms.as_bytes(), Format::Yaml, Format::Yaml, &age(AGE1)).expect_err("refused").to_string();
    assert!(error.contains("AWS KMS key arn:aws:kms:eu-west-1:1:key/x (not supported"), "{error}");
}

#[test]
fn finish_decrypts_secret_data_holding_whole_files_and_refuses_leftovers() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut objects = vec![
        serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"app.env": b64(ENV.as_bytes()), "plain": b64(b"x")}}),
    ];
    hook::finish(&mut objects, Some(&Decryptor::new(age(AGE2)))).expect("decrypts");
    assert_eq!(objects[0]["data"]["app.env"], b64(b"DB_USER=envuser\nDB_PASSWORD=env-file-password-42\n"));
    assert_eq!(objects[0]["data"]["plain"], b64(b"x"));
    let mut encrypted = vec![serde_json::json!({"kind": "Secret", "metadata": {"name": "s"}, "sops": {"mac": "ENC[...]"}})];
    assert!(hook::finish(&mut encrypted, None).is_ok(), "without keys (the CLI) objects stay as they are");
    let error = hook::refuse_encrypted(&encrypted).expect_err("refused").to_string();
    assert!(error.contains("Secret/s") && error.contains("spec.decryption"), "{error}");
}

#[test]
fn hook_decrypts_documents_and_respects_the_opt_out() {
    let decryptor = Decryptor::new(age(AGE1));
    let plain_doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: plain\n";
    let file = format!("{plain_doc}---\n{STRINGDATA}");
    let out = decryptor.decrypt_manifests(file.as_bytes(), Format::Yaml).expect("decrypts").expect("changed");
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(std::str::from_utf8(&out).expect("utf-8")).expect("yaml");
    assert_eq!(documents.len(), 2);
    assert_eq!(documents[0]["metadata"]["name"], "plain");
    assert_eq!(documents[1]["stringData"]["username"], "admin");
    // Not encrypted: untouched.
    assert!(decryptor.decrypt_manifests(plain_doc.as_bytes(), Format::Yaml).expect("ok").is_none());
    // Opted out: left encrypted, and no key needed.
    let disabled = STRINGDATA.replace("  name: db-credentials", "  name: db-credentials\n  annotations:\n    kustomize.toolkit.fluxcd.io/decrypt: disabled");
    let out = Decryptor::default().decrypt_manifests(disabled.as_bytes(), Format::Yaml).expect("ok").expect("emitted");
    assert!(String::from_utf8_lossy(&out).contains("ENC[AES256_GCM"));
}
