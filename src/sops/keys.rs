//! Private keys that unwrap a file's data key: age X25519 identities (the `age` crate) and
//! OpenPGP secret keys (`pgp`, rpgp). Nothing here prints key material: `Debug` shows counts.

use std::io::Read;

use pgp::composed::{Deserializable, Message, SignedSecretKey};
use pgp::types::Password;

use super::Error;
use super::metadata::{AgeStanza, PgpStanza};

/// The data key is 32 bytes; anything bigger in an unwrapped stanza is refused.
const MAX_DATA_KEY: u64 = 64;

#[derive(Clone, Default)]
pub struct Keys {
    age: Vec<age::x25519::Identity>,
    pgp: Vec<SignedSecretKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("age_identities", &self.age.len()).field("pgp_keys", &self.pgp.len()).finish()
    }
}

impl Keys {
    pub fn is_empty(&self) -> bool {
        self.age.is_empty() && self.pgp.is_empty()
    }

    /// Adds the age identities of an identity file (`AGE-SECRET-KEY-1…` lines, `#` comments),
    /// as `age-keygen` writes it and Flux reads a `*.agekey` entry.
    pub fn add_age_identities(&mut self, text: &str) -> Result<usize, Error> {
        let mut added = 0;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The parse error would not say more than this; the line itself is a secret.
            let identity: age::x25519::Identity =
                line.parse().map_err(|_| Error::InvalidKey { message: format!("line {} is not an age identity (AGE-SECRET-KEY-1...)", number + 1) })?;
            self.age.push(identity);
            added += 1;
        }
        if added == 0 {
            return Err(Error::InvalidKey { message: "no age identity (AGE-SECRET-KEY-1...) found".into() });
        }
        Ok(added)
    }

    /// Adds the armored OpenPGP secret keys of a `*.asc` entry (one or more keys, not protected
    /// by a passphrase, as Flux imports them).
    pub fn add_pgp_keys(&mut self, armored: &str) -> Result<usize, Error> {
        let invalid = |e: pgp::errors::Error| Error::InvalidKey { message: format!("not an armored OpenPGP private key: {}", redact(&e.to_string())) };
        let (keys, _) = SignedSecretKey::from_string_many(armored).map_err(invalid)?;
        let mut added = 0;
        for key in keys {
            self.pgp.push(key.map_err(invalid)?);
            added += 1;
        }
        if added == 0 {
            return Err(Error::InvalidKey { message: "no OpenPGP private key found".into() });
        }
        Ok(added)
    }

    pub fn extend(&mut self, other: &Keys) {
        self.age.extend(other.age.iter().cloned());
        self.pgp.extend(other.pgp.iter().cloned());
    }

    /// The data key from an age stanza, if one of our identities is its recipient.
    pub fn unwrap_age(&self, stanza: &AgeStanza) -> Option<Vec<u8>> {
        if self.age.is_empty() {
            return None;
        }
        let reader = age::armor::ArmoredReader::new(stanza.enc.as_bytes());
        let decryptor = age::Decryptor::new(reader).ok()?;
        let identities = self.age.iter().map(|i| i as &dyn age::Identity);
        let mut plain = Vec::new();
        decryptor.decrypt(identities).ok()?.take(MAX_DATA_KEY).read_to_end(&mut plain).ok()?;
        Some(plain)
    }

    /// The data key from a PGP stanza, if one of our keys can decrypt it.
    pub fn unwrap_pgp(&self, stanza: &PgpStanza) -> Option<Vec<u8>> {
        for key in &self.pgp {
            let Ok((message, _)) = Message::from_string(&stanza.enc) else { return None };
            let Ok(mut decrypted) = message.decrypt(&Password::empty(), key) else { continue };
            if decrypted.is_compressed() {
                let Ok(decompressed) = decrypted.decompress() else { continue };
                decrypted = decompressed;
            }
            let mut plain = Vec::new();
            if Read::take(&mut decrypted, MAX_DATA_KEY).read_to_end(&mut plain).is_ok() {
                return Some(plain);
            }
        }
        None
    }

    /// How many age identities and PGP keys there are.
    pub fn counts(&self) -> (usize, usize) {
        (self.age.len(), self.pgp.len())
    }
}

fn redact(message: &str) -> String {
    // rpgp's messages name packet types and positions, not key material; keep them short.
    message.chars().take(200).collect()
}
