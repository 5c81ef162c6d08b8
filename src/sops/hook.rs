//! SOPS decryption inside a kustomize build, as Flux decrypts: SOPS-encrypted resources (any
//! object with `sops.mac`, unless annotated `kustomize.toolkit.fluxcd.io/decrypt: Disabled`),
//! `patches` files, and the `files`/`envs` a `secretGenerator` reads — in bases and components
//! too, because the engine calls this for every such file it reads.
//!
//! Resources are decrypted as they are read, before any transformer runs, so the MAC is checked
//! over the file exactly as it was encrypted (Flux decrypts after the build and therefore skips
//! the MAC check).

use std::path::Path;

use super::tree::Value;
use super::{Document, Error, Format, Keys, MAX_FILE_SIZE};
use crate::kustomize::{FileFilter, FileUse};

/// Flux's opt-out annotation.
pub const DECRYPT_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/decrypt";

/// The build hook: decrypts with its keys what is SOPS-encrypted, passes everything else on.
#[derive(Debug, Clone, Default)]
pub struct Decryptor {
    keys: Keys,
}

impl Decryptor {
    pub fn new(keys: Keys) -> Decryptor {
        Decryptor { keys }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// A resource or patch file: every document with SOPS metadata decrypted (a file the `sops`
    /// CLI encrypted as a whole has its metadata in the first document and one MAC over all).
    pub fn decrypt_manifests(&self, bytes: &[u8], format: Format) -> Result<Option<Vec<u8>>, Error> {
        if !Format::Yaml.looks_encrypted(bytes) && !Format::Json.looks_encrypted(bytes) {
            return Ok(None);
        }
        if bytes.len() > MAX_FILE_SIZE {
            return Err(Error::TooLarge);
        }
        let documents = super::stores::load_documents(bytes, format)?;
        let has_metadata: Vec<bool> = documents.iter().map(|d| d.get("sops").is_some()).collect();
        if !has_metadata.iter().any(|&m| m) {
            return Ok(None);
        }
        let whole_file =
            documents.len() > 1 && has_metadata[0] && documents.iter().skip(1).all(|d| d.get("sops").is_none_or(|s| Some(s) == documents[0].get("sops")));
        let mut out: Vec<Value> = Vec::with_capacity(documents.len());
        if whole_file && !documents.iter().any(decryption_disabled) {
            let mut document = Document::from_documents(documents)?;
            document.decrypt(&self.keys)?;
            out.extend(document.branches.into_iter().map(Value::Map));
        } else {
            for (value, has) in documents.into_iter().zip(has_metadata) {
                if !has || decryption_disabled(&value) {
                    out.push(value);
                    continue;
                }
                let mut document = Document::from_documents(vec![value])?;
                document.decrypt(&self.keys)?;
                out.extend(document.branches.into_iter().map(Value::Map));
            }
        }
        let mut text = Vec::new();
        for (i, value) in out.iter().enumerate() {
            if i > 0 {
                text.extend_from_slice(b"\n---\n");
            }
            // JSON is YAML: what the build parses next.
            text.extend(serde_json::to_vec(value).map_err(|e| Error::Emit { format: "JSON", message: e.to_string() })?);
        }
        text.push(b'\n');
        Ok(Some(text))
    }

    /// A secretGenerator source in `format`, decrypted into the same format when it is encrypted.
    pub fn decrypt_source(&self, bytes: &[u8], format: Format) -> Result<Option<Vec<u8>>, Error> {
        if !format.looks_encrypted(bytes) {
            return Ok(None);
        }
        super::decrypt(bytes, format, format, &self.keys).map(Some)
    }
}

fn decryption_disabled(document: &Value) -> bool {
    document
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(DECRYPT_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

impl FileFilter for Decryptor {
    fn filter(&self, path: &Path, usage: FileUse<'_>, bytes: Vec<u8>) -> Result<Vec<u8>, String> {
        let name = path.to_string_lossy();
        let result = match usage {
            FileUse::Resource | FileUse::Patch => {
                let format = if Format::for_path(&name) == Format::Json { Format::Json } else { Format::Yaml };
                self.decrypt_manifests(&bytes, format)
            }
            FileUse::SecretFile { key } => self.decrypt_source(&bytes, Format::for_path(key)),
            FileUse::SecretEnv => {
                let format = match Format::for_path(&name) {
                    Format::Binary => Format::Dotenv,
                    other => other,
                };
                self.decrypt_source(&bytes, format)
            }
        };
        match result {
            Ok(Some(plain)) => Ok(plain),
            Ok(None) => Ok(bytes),
            Err(e) => Err(format!("{DECRYPTION_FAILED_PREFIX}{e}")),
        }
    }
}

/// The controller's check for a Kustomization without `spec.decryption`: an encrypted object
/// would be applied with its ciphertext, so it is refused.
pub fn refuse_encrypted(objects: &[serde_json::Value]) -> Result<(), Error> {
    match objects.iter().find(|o| !object_disabled(o) && super::is_encrypted_object(o)) {
        Some(object) => {
            Err(Error::Object { object: object_name(object), message: "the object is SOPS-encrypted, but the Kustomization sets no spec.decryption".into() })
        }
        None => Ok(()),
    }
}

/// How a decryption error starts in a build error, so that callers can tell it from others.
pub const DECRYPTION_FAILED_PREFIX: &str = "SOPS decryption failed: ";

fn object_name(object: &serde_json::Value) -> String {
    let field = |path: &[&str]| {
        let mut value = object;
        for key in path {
            value = value.get(key).unwrap_or(&serde_json::Value::Null);
        }
        value.as_str().unwrap_or("").to_owned()
    };
    let namespace = field(&["metadata", "namespace"]);
    let name = field(&["metadata", "name"]);
    let kind = field(&["kind"]);
    if namespace.is_empty() { format!("{kind}/{name}") } else { format!("{kind}/{namespace}/{name}") }
}

fn object_disabled(object: &serde_json::Value) -> bool {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DECRYPT_ANNOTATION))
        .and_then(serde_json::Value::as_str)
        .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

/// After a build with keys: Secret `data` entries that hold a whole SOPS file (base64) are
/// decrypted, in the format their key names, as Flux does; an object that still carries SOPS
/// metadata is refused. Without keys (`ferroflux build ks` without `--decrypt`) nothing changes.
pub fn finish(objects: &mut [serde_json::Value], decryptor: Option<&Decryptor>) -> Result<(), Error> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let Some(decryptor) = decryptor else { return Ok(()) };
    for object in objects.iter_mut() {
        if object_disabled(object) {
            continue;
        }
        if super::is_encrypted_object(object) {
            return Err(Error::Object { object: object_name(object), message: "the object still holds SOPS metadata after decryption".into() });
        }
        if object.get("kind").and_then(serde_json::Value::as_str) != Some("Secret") {
            continue;
        }
        let name = object_name(object);
        let Some(data) = object.get_mut("data").and_then(serde_json::Value::as_object_mut) else { continue };
        for (key, value) in data.iter_mut() {
            let Some(bytes) = value.as_str().and_then(|v| STANDARD.decode(v).ok()) else { continue };
            let Some(input) = [Format::Yaml, Format::Dotenv, Format::Ini, Format::Json].into_iter().find(|f| f.looks_encrypted(&bytes)) else { continue };
            let output = Format::for_path(key);
            let plain = super::decrypt(&bytes, input, output, &decryptor.keys)
                .map_err(|e| Error::Object { object: name.clone(), message: format!("{DECRYPTION_FAILED_PREFIX}data '{key}': {e}") })?;
            *value = serde_json::Value::String(STANDARD.encode(plain));
        }
    }
    Ok(())
}
