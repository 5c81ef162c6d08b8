//! `configMapGenerator` and `secretGenerator`, and the content hash kustomize appends to the
//! names of generated objects.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::file::{Generator, GeneratorOptions};

/// Which generator an entry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratedKind {
    ConfigMap,
    Secret,
}

/// The data a generator collected, before it becomes an object.
#[derive(Debug, Default)]
pub struct Collected {
    /// Text values (ConfigMap `data`; a Secret base64-encodes them).
    pub text: BTreeMap<String, String>,
    /// Values that are not UTF-8 (ConfigMap `binaryData`).
    pub binary: BTreeMap<String, Vec<u8>>,
}

/// Reads a file named by a generator, relative to the kustomization (checked against the root).
pub type ReadFile<'a> = dyn FnMut(&str) -> Result<Vec<u8>, String> + 'a;

impl Collected {
    fn insert(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        // kustomize v5.5 does not check key names (its validator accepts any): the API server
        // does, at apply time. Only an empty key is refused here.
        if key.is_empty() {
            return Err("invalid key name \"\": a key must not be empty".into());
        }
        if self.text.contains_key(&key) || self.binary.contains_key(&key) {
            return Err(format!("cannot add key {key}, another key by that name already exists"));
        }
        match String::from_utf8(value) {
            Ok(text) => self.text.insert(key, text),
            Err(bytes) => self.binary.insert(key, bytes.into_bytes()).map(|_| String::new()),
        };
        Ok(())
    }
}

/// `key=value`, the value's surrounding quotes removed, as kustomize reads literals.
fn literal(source: &str) -> Result<(String, String), String> {
    let (key, value) = source.split_once('=').filter(|(k, _)| !k.is_empty()).ok_or_else(|| format!("invalid literal source {source}, expected key=value"))?;
    let quoted = value.len() > 1 && ((value.starts_with('"') && value.ends_with('"')) || (value.starts_with('\'') && value.ends_with('\'')));
    let value = if quoted { &value[1..value.len() - 1] } else { value };
    Ok((key.to_owned(), value.to_owned()))
}

/// The `KEY=value` lines of an env file; blank lines and `#` comments are skipped.
fn env_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = if number == 0 { line.trim_start_matches('\u{feff}') } else { line };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Any key, as kustomize (`export A=1` gives the key `export A`). A line without `=` is
        // the key with an empty value: kustomize would take the value from its own process
        // environment, which a controller must not leak into objects.
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Collects a generator's literals, files and env files.
pub fn collect(generator: &Generator, read: &mut ReadFile<'_>) -> Result<Collected, String> {
    let mut collected = Collected::default();
    for env in generator.env.iter().chain(&generator.envs) {
        let bytes = read(env)?;
        let text = String::from_utf8(bytes).map_err(|_| format!("env file {env} is not UTF-8"))?;
        for (key, value) in env_lines(&text).map_err(|e| format!("{env}: {e}"))? {
            collected.insert(key, value.into_bytes())?;
        }
    }
    for source in &generator.literals {
        let (key, value) = literal(source)?;
        collected.insert(key, value.into_bytes())?;
    }
    for source in &generator.files {
        let (key, path) = match source.split_once('=') {
            Some((key, path)) => (key.to_owned(), path),
            None => (source.rsplit('/').next().unwrap_or(source).to_owned(), source.as_str()),
        };
        let bytes = read(path)?;
        collected.insert(key, bytes)?;
    }
    Ok(collected)
}

/// The generated object; `options` are the kustomization's `generatorOptions`, which the
/// generator's own `options` override.
pub fn object(kind: GeneratedKind, generator: &Generator, global: Option<&GeneratorOptions>, collected: Collected) -> (Value, bool) {
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut disable_hash = false;
    let mut immutable = false;
    for options in global.into_iter().chain(generator.options.as_ref()) {
        labels.extend(options.labels.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))));
        annotations.extend(options.annotations.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))));
        // kustomize merges the flags with "or": a generator's `false` does not undo a global `true`.
        disable_hash |= options.disable_name_suffix_hash.unwrap_or(false);
        immutable |= options.immutable.unwrap_or(false);
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(generator.name.clone()));
    if let Some(namespace) = &generator.namespace {
        metadata.insert("namespace".into(), Value::String(namespace.clone()));
    }
    if !labels.is_empty() {
        metadata.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        metadata.insert("annotations".into(), Value::Object(annotations));
    }
    let base64 = |bytes: &[u8]| Value::String(base64_lines(bytes));
    let mut object = match kind {
        GeneratedKind::ConfigMap => {
            let mut object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
            if !collected.text.is_empty() {
                object["data"] = collected.text.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<Map<_, _>>().into();
            }
            if !collected.binary.is_empty() {
                object["binaryData"] = collected.binary.iter().map(|(k, v)| (k.clone(), base64(v))).collect::<Map<_, _>>().into();
            }
            object
        }
        GeneratedKind::Secret => {
            let secret_type = generator.secret_type.clone().unwrap_or_else(|| "Opaque".into());
            let mut object = json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": secret_type});
            let data: Map<String, Value> = collected
                .text
                .iter()
                .map(|(k, v)| (k.clone(), base64(v.as_bytes())))
                .chain(collected.binary.iter().map(|(k, v)| (k.clone(), base64(v))))
                .collect();
            if !data.is_empty() {
                object["data"] = data.into();
            }
            object
        }
    };
    if immutable {
        object["immutable"] = Value::Bool(true);
    }
    (object, !disable_hash)
}

/// Base64 as kustomize writes generated data: an encoding of 70 characters or more is cut
/// into lines of 70, each ending in a newline (the value, and so the hash, holds them).
pub fn base64_lines(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let encoded = base64_encode(bytes);
    if encoded.len() < LINE {
        return encoded;
    }
    let mut out = String::with_capacity(encoded.len() + encoded.len() / LINE + 1);
    for chunk in encoded.as_bytes().chunks(LINE) {
        // Base64 is ASCII: every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Standard base64 with padding (what Secrets hold).
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A string as Go's `encoding/json` writes it (HTML-safe), since the hash is over Go's bytes.
fn go_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A string map in Go's JSON encoding (keys sorted, as Go sorts map keys).
fn go_json_map(map: Option<&Map<String, Value>>, out: &mut String) {
    let sorted: BTreeMap<&str, &str> = map.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str().unwrap_or(""))).collect();
    out.push('{');
    for (i, (key, value)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        go_json_string(key, out);
        out.push(':');
        go_json_string(value, out);
    }
    out.push('}');
}

/// kustomize's content hash of a ConfigMap or Secret: SHA-256 over a JSON encoding of its kind,
/// data and (Secrets) type, with an empty name; the first 10 hex digits, with the digits and
/// vowels that could spell words swapped for other letters, as kubectl's hash does.
pub fn content_hash(object: &Value) -> String {
    let field = |name: &str| object.get(name).and_then(Value::as_object).filter(|m| !m.is_empty());
    let mut encoded = String::new();
    if object.get("kind").and_then(Value::as_str) == Some("Secret") {
        encoded.push_str("{\"data\":");
        go_json_map(field("data"), &mut encoded);
        encoded.push_str(",\"kind\":\"Secret\",\"name\":\"\"");
        if let Some(string_data) = field("stringData") {
            encoded.push_str(",\"stringData\":");
            go_json_map(Some(string_data), &mut encoded);
        }
        encoded.push_str(",\"type\":");
        go_json_string(object.get("type").and_then(Value::as_str).unwrap_or(""), &mut encoded);
        encoded.push('}');
    } else {
        encoded.push('{');
        if let Some(binary) = field("binaryData") {
            encoded.push_str("\"binaryData\":");
            go_json_map(Some(binary), &mut encoded);
            encoded.push(',');
        }
        encoded.push_str("\"data\":");
        go_json_map(field("data"), &mut encoded);
        encoded.push_str(",\"kind\":\"ConfigMap\",\"name\":\"\"}");
    }
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_kubectl_kustomize() {
        // Names and hashes printed by kustomize v5.5.0 for these generators.
        assert_eq!(content_hash(&json!({"kind": "ConfigMap", "data": {"a": "1"}})), "h29d89cmmt");
        assert_eq!(content_hash(&json!({"kind": "ConfigMap", "data": {"a": "1", "b": "<&>"}})), "f986b78m9b");
        assert_eq!(content_hash(&json!({"kind": "Secret", "type": "Opaque", "data": {"a": "MQ=="}})), "25khgmg44c");
        assert_eq!(content_hash(&json!({"kind": "Secret", "type": "kubernetes.io/tls", "data": {"tls.crt": "eA==", "tls.key": "eQ=="}})), "f4c6k54dt5");
        assert_eq!(content_hash(&json!({"kind": "ConfigMap", "data": {"K": "v", "X": "1"}})), "492b7kf4fm");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"1"), "MQ==");
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0x00, 0x10]), "//4AEA==");
        // 52 bytes encode to exactly 72 characters: two lines, each ending in a newline.
        let long = base64_lines(&[b'a'; 52]);
        assert_eq!(long.lines().map(str::len).collect::<Vec<_>>(), vec![70, 2]);
        assert!(long.ends_with('\n'));
        assert!(!base64_lines(&[b'a'; 51]).contains('\n'));
    }

    #[test]
    fn literals_drop_quotes_and_keep_later_equals() {
        assert_eq!(literal("a=\"b=c\"").ok(), Some(("a".into(), "b=c".into())));
        assert_eq!(literal("a='x'").ok(), Some(("a".into(), "x".into())));
        assert!(literal("=x").is_err());
        assert!(literal("novalue").is_err());
    }

    #[test]
    fn env_files_skip_comments_and_blank_lines() {
        assert_eq!(env_lines("\u{feff}A=1\n\n  # c\nB=x=y\n").ok(), Some(vec![("A".into(), "1".into()), ("B".into(), "x=y".into())]));
        assert_eq!(
            env_lines("1A=x\nexport B=2\nC\n").ok(),
            Some(vec![("1A".into(), "x".into()), ("export B".into(), "2".into()), ("C".into(), String::new())])
        );
    }
}
