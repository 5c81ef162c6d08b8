//! SOPS decryption, as Flux's kustomize-controller does it, without Kubernetes: files encrypted
//! by the `sops` CLI (YAML, JSON, dotenv, INI and binary) are verified and decrypted with age
//! identities or OpenPGP private keys.
//!
//! A file is trusted only after everything checks out: the data key is unwrapped by one of the
//! keys (age: the `age` crate; PGP: `pgp`, rpgp), every encrypted value decrypts with AES-256-GCM
//! under its path as additional data, and the MAC — a SHA-512 over all values in document order
//! (or only the encrypted ones, `mac_only_encrypted`), itself encrypted under the data key — matches.
//! Errors name the recipients a file was encrypted for, never a key or a value.
//!
//! Not supported, refused with an error saying so: cloud KMS and Vault keys, several key groups
//! (Shamir secret sharing), `encrypted_comment_regex`/`unencrypted_comment_regex`.

mod cipher;
pub mod cluster;
pub mod hook;
mod keys;
mod metadata;
mod stores;
mod tree;

use sha2::{Digest, Sha512};

pub use hook::Decryptor;
pub use keys::Keys;
pub use metadata::Metadata;
pub use tree::Value;

/// A file larger than this is not decrypted (Flux's limit).
pub const MAX_FILE_SIZE: usize = 5 << 20;

/// The 32 bytes a `mac_only_encrypted` MAC starts with (SHA-256 of "sops"), so that it differs
/// from a MAC over all values.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad,
    0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid SOPS metadata: {message}")]
    InvalidMetadata { message: String },
    #[error("cannot parse the {format} document: {message}")]
    Parse { format: &'static str, message: String },
    #[error("no SOPS metadata found")]
    NoMetadata,
    #[error("the file is larger than {MAX_FILE_SIZE} bytes")]
    TooLarge,
    #[error("none of the given keys can decrypt the data key; the file was encrypted for {recipients}{tried}")]
    NoMatchingKey { recipients: String, tried: String },
    #[error("several key groups (Shamir secret sharing) are not supported by ferroflux; the file was encrypted for {recipients}")]
    KeyGroups { recipients: String },
    #[error("value at '{path}': {message}")]
    Value { path: String, message: String },
    #[error("MAC mismatch: the file was changed after it was encrypted (its values do not match the MAC sealed by the data key)")]
    MacMismatch,
    #[error("invalid key: {message}")]
    InvalidKey { message: String },
    #[error("cannot read the decryption Secret '{secret}': {message}")]
    KeySecret { secret: String, message: String },
    #[error("decryption Secret '{secret}', entry '{entry}': {message}")]
    KeyEntry { secret: String, entry: String, message: String },
    #[error("{object}: {message}")]
    Object { object: String, message: String },
    #[error("cannot write the decrypted {format} document: {message}")]
    Emit { format: &'static str, message: String },
}

/// The formats of the `sops` CLI, chosen as it does: by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Ini,
    Binary,
}

impl Format {
    /// SOPS' `FormatForPath`: `.yaml`/`.yml`, `.json`, `.env`, `.ini`, anything else binary.
    pub fn for_path(path: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if lower.ends_with(".json") || lower.ends_with(".dockerconfigjson") {
            // Flux reads `.dockerconfigjson` keys as JSON too.
            Format::Json
        } else if lower.ends_with(".env") {
            Format::Dotenv
        } else if lower.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
            Format::Dotenv => "dotenv",
            Format::Ini => "INI",
            Format::Binary => "binary",
        }
    }

    /// Whether `bytes` look SOPS-encrypted in this format (Flux's marker bytes).
    pub fn looks_encrypted(self, bytes: &[u8]) -> bool {
        let marker: &[u8] = match self {
            Format::Yaml => b"mac: ENC[",
            Format::Json | Format::Binary => b"\"mac\": \"ENC[",
            Format::Dotenv => b"sops_mac=ENC[",
            Format::Ini => b"[sops]",
        };
        bytes.windows(marker.len()).any(|w| w == marker)
    }
}

/// A parsed encrypted document: its branches (one per YAML document) and its metadata.
pub struct Document {
    pub branches: Vec<Vec<(String, Value)>>,
    pub metadata: Metadata,
}

impl Document {
    pub fn parse(bytes: &[u8], format: Format) -> Result<Document, Error> {
        if bytes.len() > MAX_FILE_SIZE {
            return Err(Error::TooLarge);
        }
        let (branches, metadata) = stores::load(bytes, format)?;
        Ok(Document { branches, metadata: Metadata::from_tree(&metadata)? })
    }

    /// A document from already parsed YAML/JSON documents (the first one holds the metadata).
    pub fn from_documents(documents: Vec<Value>) -> Result<Document, Error> {
        let (branches, metadata) = stores::split_metadata(documents)?;
        Ok(Document { branches, metadata: Metadata::from_tree(&metadata)? })
    }

    /// Decrypts every value and checks the MAC; the branches then hold the plaintext.
    pub fn decrypt(&mut self, keys: &Keys) -> Result<(), Error> {
        let data_key = data_key(&self.metadata, keys)?;
        let mut mac = Sha512::new();
        if self.metadata.mac_only_encrypted {
            mac.update(MAC_ONLY_ENCRYPTED_INIT);
        }
        let mut path = Vec::new();
        for branch in &mut self.branches {
            for (key, value) in branch.iter_mut() {
                path.push(key.clone());
                walk(value, &mut path, &self.metadata, &data_key, &mut mac)?;
                path.pop();
            }
        }
        let computed = hex::encode_upper(mac.finalize());
        let sealed = cipher::decrypt(&self.metadata.mac, &data_key, &go_rfc3339(&self.metadata.last_modified)).map_err(|_| Error::MacMismatch)?;
        match sealed {
            Value::Str(stored) if stored == computed => Ok(()),
            _ => Err(Error::MacMismatch),
        }
    }

    /// The plaintext in `format` (the input format, or JSON for objects handed to a build).
    pub fn emit(&self, format: Format) -> Result<Vec<u8>, Error> {
        stores::emit(&self.branches, format)
    }
}

/// Verifies and decrypts a SOPS file, returning its plaintext in `output` format.
pub fn decrypt(bytes: &[u8], input: Format, output: Format, keys: &Keys) -> Result<Vec<u8>, Error> {
    let mut document = Document::parse(bytes, input)?;
    document.decrypt(keys)?;
    document.emit(output)
}

/// The data key, from the first stanza one of the keys unwraps (age first, then PGP, SOPS'
/// default order).
fn data_key(metadata: &Metadata, keys: &Keys) -> Result<Vec<u8>, Error> {
    let recipients = metadata.recipients();
    if metadata.groups.len() > 1 {
        return Err(Error::KeyGroups { recipients });
    }
    let group = metadata.groups.first().ok_or(Error::NoMetadata)?;
    let found = group.age.iter().find_map(|stanza| keys.unwrap_age(stanza)).or_else(|| group.pgp.iter().find_map(|stanza| keys.unwrap_pgp(stanza)));
    match found {
        Some(key) if key.len() == 32 => Ok(key),
        Some(_) => Err(Error::InvalidMetadata { message: "the unwrapped data key is not 32 bytes".into() }),
        None => {
            let (age, pgp) = keys.counts();
            let tried = if age + pgp == 0 { " (no keys were given)".to_owned() } else { format!(" (tried {age} age identities and {pgp} PGP keys)") };
            Err(Error::NoMatchingKey { recipients, tried })
        }
    }
}

/// SOPS' tree walk: sequences keep their parent's path, `null`s are neither decrypted nor hashed.
fn walk(value: &mut Value, path: &mut Vec<String>, metadata: &Metadata, key: &[u8], mac: &mut Sha512) -> Result<(), Error> {
    match value {
        Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                path.push(k.clone());
                walk(v, path, metadata, key, mac)?;
                path.pop();
            }
            Ok(())
        }
        Value::Seq(items) => items.iter_mut().try_for_each(|item| walk(item, path, metadata, key, mac)),
        Value::Null => Ok(()),
        scalar => {
            let encrypted = metadata.rule.encrypts(path);
            if encrypted {
                let Value::Str(text) = &*scalar else {
                    return Err(Error::Value { path: path.join("."), message: "expected an encrypted value (a string), found a plain one".into() });
                };
                let additional_data: String = path.iter().map(|p| format!("{p}:")).collect();
                *scalar = cipher::decrypt(text, key, &additional_data)?;
            }
            if (!metadata.mac_only_encrypted || encrypted)
                && let Some(bytes) = scalar.mac_bytes()
            {
                mac.update(&bytes);
            }
            Ok(())
        }
    }
}

/// `lastmodified` as Go's `time.Parse(RFC3339)` then `Format(RFC3339)` writes it: the MAC's
/// additional data. Fractional seconds go, a zero offset becomes `Z`.
fn go_rfc3339(text: &str) -> String {
    let (main, zone) = match text.find(['Z', 'z']) {
        Some(i) => (&text[..i], "Z".to_owned()),
        None => match text.rfind(['+', '-']).filter(|&i| i > 10) {
            Some(i) => (&text[..i], if &text[i..] == "+00:00" || &text[i..] == "-00:00" { "Z".to_owned() } else { text[i..].to_owned() }),
            None => (text, String::new()),
        },
    };
    let main = main.split('.').next().unwrap_or(main);
    format!("{main}{zone}")
}

/// Whether a YAML/JSON object (a build's resource) carries SOPS metadata with a MAC.
pub fn is_encrypted_object(object: &serde_json::Value) -> bool {
    object.get("sops").and_then(|s| s.get("mac")).is_some_and(|m| !m.is_null() && m.as_str() != Some(""))
}

#[cfg(test)]
mod tests;
