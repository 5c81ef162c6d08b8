//! The `sops` metadata of a file: who can unwrap the data key, which values are encrypted, the
//! encrypted MAC and the time it was made for.

use super::Error;
use super::tree::Value;

/// An age recipient and the data key wrapped for it (an armored age file).
#[derive(Debug, Clone)]
pub struct AgeStanza {
    pub recipient: String,
    pub enc: String,
}

/// A PGP key (by fingerprint) and the data key encrypted for it (an armored PGP message).
#[derive(Debug, Clone)]
pub struct PgpStanza {
    pub fingerprint: String,
    pub enc: String,
}

/// One key group: any one of its keys recovers the data key.
#[derive(Debug, Clone, Default)]
pub struct KeyGroup {
    pub age: Vec<AgeStanza>,
    pub pgp: Vec<PgpStanza>,
    /// Keys ferroflux cannot use (cloud KMS, Vault), described for error messages.
    pub unsupported: Vec<String>,
}

/// Which values a file has encrypted (SOPS allows at most one rule; none means
/// `unencrypted_suffix: _unencrypted`).
#[derive(Debug, Clone)]
pub enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    /// SOPS' `shouldBeEncrypted` for a value at `path` (the mapping keys above it).
    pub fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(suffix) => !path.iter().any(|p| p.ends_with(suffix.as_str())),
            Rule::EncryptedSuffix(suffix) => path.iter().any(|p| p.ends_with(suffix.as_str())),
            Rule::UnencryptedRegex(re) => !path.iter().any(|p| re.is_match(p)),
            Rule::EncryptedRegex(re) => path.iter().any(|p| re.is_match(p)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metadata {
    pub groups: Vec<KeyGroup>,
    pub last_modified: String,
    pub mac: String,
    pub rule: Rule,
    pub mac_only_encrypted: bool,
}

impl Metadata {
    /// Everyone the file was encrypted for, for error messages: age recipients and PGP
    /// fingerprints are public, never key material.
    pub fn recipients(&self) -> String {
        let mut parts = Vec::new();
        for group in &self.groups {
            parts.extend(group.age.iter().map(|a| format!("age recipient {}", a.recipient)));
            parts.extend(group.pgp.iter().map(|p| format!("PGP key {}", p.fingerprint)));
            parts.extend(group.unsupported.iter().cloned());
        }
        if parts.is_empty() { "no recipients".to_owned() } else { parts.join(", ") }
    }

    pub fn from_tree(sops: &Value) -> Result<Metadata, Error> {
        let invalid = |message: String| Error::InvalidMetadata { message };
        if !matches!(sops, Value::Map(_)) {
            return Err(invalid("the 'sops' entry is not a mapping".into()));
        }
        let text = |key: &str| -> String { sops.get(key).map(Value::to_plain_string).unwrap_or_default() };
        for unsupported in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if !text(unsupported).is_empty() {
                return Err(invalid(format!("'{unsupported}' is not supported by ferroflux (values chosen by comments)")));
            }
        }
        let mut rules = Vec::new();
        for key in ["unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex"] {
            let value = text(key);
            if !value.is_empty() {
                rules.push((key, value));
            }
        }
        if rules.len() > 1 {
            return Err(invalid(
                "cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex or unencrypted_regex in the same file".into(),
            ));
        }
        let regex = |pattern: &str| {
            // Patterns come from Git: bounded size, and the regex crate matches in linear time.
            regex::RegexBuilder::new(pattern).size_limit(1 << 20).build().map_err(|e| invalid(format!("invalid regular expression: {e}")))
        };
        let rule = match rules.pop() {
            None => Rule::UnencryptedSuffix("_unencrypted".into()),
            Some(("unencrypted_suffix", s)) => Rule::UnencryptedSuffix(s),
            Some(("encrypted_suffix", s)) => Rule::EncryptedSuffix(s),
            Some(("unencrypted_regex", s)) => Rule::UnencryptedRegex(regex(&s)?),
            Some((_, s)) => Rule::EncryptedRegex(regex(&s)?),
        };
        let mut groups = Vec::new();
        let top = key_group(sops);
        if !top.age.is_empty() || !top.pgp.is_empty() || !top.unsupported.is_empty() {
            groups.push(top);
        } else if let Some(Value::Seq(list)) = sops.get("key_groups") {
            groups.extend(list.iter().map(key_group));
        }
        if groups.is_empty() {
            return Err(invalid("no keys found in the file".into()));
        }
        let mac_only_encrypted = match sops.get("mac_only_encrypted") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Str(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        Ok(Metadata { groups, last_modified: text("lastmodified"), mac: text("mac"), rule, mac_only_encrypted })
    }
}

fn key_group(group: &Value) -> KeyGroup {
    let list = |key: &str| -> Vec<&Value> {
        match group.get(key) {
            Some(Value::Seq(items)) => items.iter().collect(),
            _ => Vec::new(),
        }
    };
    let field = |entry: &Value, key: &str| entry.get(key).map(Value::to_plain_string).unwrap_or_default();
    let mut out = KeyGroup {
        age: list("age").into_iter().map(|e| AgeStanza { recipient: field(e, "recipient"), enc: field(e, "enc") }).collect(),
        pgp: list("pgp").into_iter().map(|e| PgpStanza { fingerprint: field(e, "fp"), enc: field(e, "enc") }).collect(),
        unsupported: Vec::new(),
    };
    for (key, name, id) in [
        ("kms", "AWS KMS key", "arn"),
        ("gcp_kms", "GCP KMS key", "resource_id"),
        ("azure_kv", "Azure Key Vault key", "name"),
        ("hc_vault", "Vault transit key", "key_name"),
        ("hckms", "HuaweiCloud KMS key", "key_id"),
    ] {
        out.unsupported.extend(list(key).into_iter().map(|e| format!("{name} {} (not supported by ferroflux)", field(e, id))));
    }
    out
}

/// SOPS' flattened metadata of dotenv and INI files (`age__list_0__map_enc`) as a tree.
pub fn unflatten(entries: &[(String, Value)]) -> Result<Value, Error> {
    let mut root = Value::Map(Vec::new());
    for (key, value) in entries {
        let tokens = tokenize(key);
        place(&mut root, &tokens, value.clone()).map_err(|message| Error::InvalidMetadata { message: format!("'{key}': {message}") })?;
    }
    Ok(root)
}

enum Token {
    Key(String),
    Index(usize),
}

fn tokenize(path: &str) -> Vec<Token> {
    const MAP: &str = "__map_";
    const LIST: &str = "__list_";
    let mut tokens = Vec::new();
    let mut rest = path;
    let mut current = Token::Key(String::new());
    let finish = |current: Token, text: &str| match current {
        Token::Key(_) => Token::Key(text.to_owned()),
        Token::Index(_) => Token::Index(text.parse().unwrap_or(0)),
    };
    loop {
        let next_map = rest.find(MAP);
        let next_list = rest.find(LIST);
        let (at, next, skip) = match (next_map, next_list) {
            (Some(m), Some(l)) if l < m => (l, Token::Index(0), LIST.len()),
            (Some(m), _) => (m, Token::Key(String::new()), MAP.len()),
            (None, Some(l)) => (l, Token::Index(0), LIST.len()),
            (None, None) => {
                tokens.push(finish(current, rest));
                return tokens;
            }
        };
        tokens.push(finish(current, &rest[..at]));
        current = next;
        rest = &rest[at + skip..];
    }
}

fn place(node: &mut Value, path: &[Token], value: Value) -> Result<(), String> {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    match first {
        Token::Key(key) => {
            if matches!(node, Value::Null) {
                *node = Value::Map(Vec::new());
            }
            let Value::Map(entries) = node else { return Err("type mismatch".into()) };
            let index = match entries.iter().position(|(k, _)| k == key) {
                Some(i) => i,
                None => {
                    entries.push((key.clone(), Value::Null));
                    entries.len() - 1
                }
            };
            place(&mut entries[index].1, rest, value)
        }
        Token::Index(position) => {
            if matches!(node, Value::Null) {
                *node = Value::Seq(Vec::new());
            }
            let Value::Seq(items) = node else { return Err("type mismatch".into()) };
            // Indices come from the file: bounded so that `__list_999999999` cannot allocate.
            if *position > items.len() + 1024 {
                return Err("list index out of range".into());
            }
            if items.len() <= *position {
                items.resize(*position + 1, Value::Null);
            }
            place(&mut items[*position], rest, value)
        }
    }
}
