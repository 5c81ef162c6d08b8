//! SOPS' value envelopes, `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]`: AES-256-GCM (the
//! `aes-gcm` crate) with the IV as the nonce (32 bytes as SOPS writes them) and the value's path
//! as additional data, so that a value moved elsewhere in the file does not decrypt.

use aes_gcm::aead::consts::{U12, U32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{AesGcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::Error;
use super::tree::Value;

struct Envelope<'a> {
    data: &'a str,
    iv: &'a str,
    tag: &'a str,
    kind: &'a str,
}

/// Splits an envelope; `None` when the text is not one (SOPS' `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`).
fn parse(text: &str) -> Option<Envelope<'_>> {
    let inner = text.strip_prefix("ENC[AES256_GCM,data:")?;
    let end = inner.rfind(']')?;
    let inner = &inner[..end];
    let (data, rest) = inner.split_once(",iv:")?;
    let (iv, rest) = rest.split_once(",tag:")?;
    let (tag, kind) = rest.split_once(",type:")?;
    if data.is_empty() || iv.is_empty() || tag.is_empty() || kind.is_empty() {
        return None;
    }
    Some(Envelope { data, iv, tag, kind })
}

/// Decrypts one envelope found at `path` (`a:b:`); the error never holds the value.
pub fn decrypt(text: &str, key: &[u8], path: &str) -> Result<Value, Error> {
    if text.is_empty() {
        // SOPS leaves empty strings as they are.
        return Ok(Value::Str(String::new()));
    }
    let failed = |why: &str| Error::Value { path: display_path(path), message: why.to_owned() };
    let envelope = parse(text).ok_or_else(|| failed("the value is not in SOPS' ENC[AES256_GCM,...] format, though the file's rules say it is encrypted"))?;
    let decode = |part: &str| STANDARD.decode(part).map_err(|_| failed("invalid base64 in the encrypted value"));
    let (mut data, iv, tag) = (decode(envelope.data)?, decode(envelope.iv)?, decode(envelope.tag)?);
    data.extend_from_slice(&tag);
    let payload = Payload { msg: &data, aad: path.as_bytes() };
    let wrong = |_| failed("the value does not decrypt with the file's data key (changed, or moved from another place)");
    let plain = match iv.len() {
        32 => AesGcm::<Aes256, U32>::new_from_slice(key)
            .map_err(|_| failed("invalid data key"))?
            .decrypt(Nonce::<U32>::from_slice(&iv), payload)
            .map_err(wrong)?,
        12 => AesGcm::<Aes256, U12>::new_from_slice(key)
            .map_err(|_| failed("invalid data key"))?
            .decrypt(Nonce::<U12>::from_slice(&iv), payload)
            .map_err(wrong)?,
        _ => return Err(failed("unsupported IV length")),
    };
    let text = || std::str::from_utf8(&plain).map(str::to_owned).map_err(|_| failed("the decrypted value is not UTF-8"));
    let typed = |why: &str| failed(&format!("the decrypted value is not a valid {why}"));
    let value = match envelope.kind {
        // Go strings hold any bytes: the binary store's value is a `str` of the file's bytes.
        "str" => match String::from_utf8(plain) {
            Ok(text) => Value::Str(text),
            Err(e) => Value::Bytes(e.into_bytes()),
        },
        "int" => Value::Int(text()?.parse().map_err(|_| typed("int"))?),
        "float" => Value::Float(text()?.parse().map_err(|_| typed("float"))?),
        "bool" => Value::Bool(go_parse_bool(&text()?).ok_or_else(|| typed("bool"))?),
        "bytes" => Value::Bytes(plain),
        // Go's time.Time round-trips through its RFC 3339 text: kept as that text.
        "time" => Value::Str(text()?),
        // Comments live in YAML comments and dotenv `#` lines, which are not read (nor hashed).
        "comment" => Value::Str(text()?),
        _ => return Err(failed("unknown value type in the encrypted value")),
    };
    Ok(value)
}

/// Go's `strconv.ParseBool`.
fn go_parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `a:b:` as `a.b` for messages.
fn display_path(path: &str) -> String {
    path.trim_end_matches(':').replace(':', ".")
}
