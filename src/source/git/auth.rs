//! Credentials from a Kubernetes secret's data, and the host checks they configure: SSH
//! `known_hosts` matching and HTTPS verification against a secret's own `ca.crt`.
//! Pure logic: parsing and verification, no network.

use std::collections::BTreeMap;
use std::fmt;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use super::GitError;

/// What a `GitRepository`'s `secretRef` provides. `Debug` never shows secret values.
#[derive(Clone, Default)]
pub struct Credentials {
    pub basic_auth: Option<BasicAuth>,
    pub bearer_token: Option<String>,
    /// PEM bundle whose certificates are the only trust anchors for HTTPS when set.
    pub ca_pem: Option<Vec<u8>>,
    pub ssh: Option<SshCredentials>,
    /// Not from the secret: the controller's `--allow-insecure-http-credentials`. Without it,
    /// basic auth and bearer tokens are refused over plain `http://`, as in Flux's Git library.
    pub allow_insecure_http: bool,
}

#[derive(Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: String,
}

#[derive(Clone)]
pub struct SshCredentials {
    /// Private key in PEM or OpenSSH format.
    pub identity: String,
    pub passphrase: Option<String>,
    /// Contents of a `known_hosts` file; required, as in Flux.
    pub known_hosts: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("basic_auth", &self.basic_auth.as_ref().map(|b| &b.username))
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("ssh", &self.ssh.as_ref().map(|_| "<redacted>"))
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Errors in a secret's content. Messages name keys, never values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    #[error("secret key '{0}' is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("secret key '{0}' holds a line break or another control character")]
    ControlCharacter(&'static str),
    #[error("secret has '{present}' but not '{missing}'")]
    Incomplete { present: &'static str, missing: &'static str },
    #[error("secret has both username/password and bearerToken: use one")]
    ConflictingHttpAuth,
    #[error(
        "TLS client certificates ('tls.crt'/'tls.key') are not supported by this Git \
         implementation (libgit2 has no client-certificate option)"
    )]
    ClientCertificateUnsupported,
    #[error("secret key 'ca.crt' holds no PEM certificate")]
    NoCaCertificate,
    #[error("secret has an SSH 'identity' but no 'known_hosts': host keys must be pinned")]
    MissingKnownHosts,
}

const KEY_USERNAME: &str = "username";
const KEY_PASSWORD: &str = "password";
const KEY_BEARER: &str = "bearerToken";
const KEY_CA: &str = "ca.crt";
const KEY_CA_LEGACY: &str = "caFile";
const KEY_TLS_CERT: &str = "tls.crt";
const KEY_TLS_KEY: &str = "tls.key";
const KEY_IDENTITY: &str = "identity";
const KEY_KNOWN_HOSTS: &str = "known_hosts";

impl Credentials {
    /// A digest of everything these credentials are: GitRepositories share Git work (one ref
    /// listing, one fetch) only when theirs are equal, so none gets what its own secret would not
    /// reach. Used as a map key only; never shown.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        let mut field = |bytes: Option<&[u8]>| match bytes {
            // Length-prefixed, so no two different sets of fields hash alike.
            Some(bytes) => {
                digest.update([1]);
                digest.update((bytes.len() as u64).to_be_bytes());
                digest.update(bytes);
            }
            None => digest.update([0]),
        };
        field(self.basic_auth.as_ref().map(|b| b.username.as_bytes()));
        field(self.basic_auth.as_ref().map(|b| b.password.as_bytes()));
        field(self.bearer_token.as_deref().map(str::as_bytes));
        field(self.ca_pem.as_deref());
        field(self.ssh.as_ref().map(|s| s.identity.as_bytes()));
        field(self.ssh.as_ref().and_then(|s| s.passphrase.as_deref()).map(str::as_bytes));
        field(self.ssh.as_ref().map(|s| s.known_hosts.as_bytes()));
        field(Some(&[u8::from(self.allow_insecure_http)]));
        digest.finalize().into()
    }

    /// Reads the keys Flux's source-controller reads from a Git secret. For an SSH identity,
    /// `password` is the key's passphrase, as in Flux.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, CredentialsError> {
        let text = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| CredentialsError::NotUtf8(key)),
            }
        };
        // These go into an HTTP header: a line break would add headers of the secret author's
        // choosing, and a NUL byte cannot be passed to libgit2 at all.
        let header_value = |key: &'static str| -> Result<Option<String>, CredentialsError> {
            match text(key)? {
                Some(v) if v.chars().any(char::is_control) => Err(CredentialsError::ControlCharacter(key)),
                other => Ok(other),
            }
        };
        if data.contains_key(KEY_TLS_CERT) || data.contains_key(KEY_TLS_KEY) {
            return Err(CredentialsError::ClientCertificateUnsupported);
        }
        let mut creds = Credentials::default();
        let identity = text(KEY_IDENTITY)?.filter(|s| !s.trim().is_empty());
        let username = header_value(KEY_USERNAME)?;
        let password = if identity.is_some() { text(KEY_PASSWORD)? } else { header_value(KEY_PASSWORD)? };
        if let Some(identity) = identity {
            let known_hosts = text(KEY_KNOWN_HOSTS)?.ok_or(CredentialsError::MissingKnownHosts)?;
            creds.ssh = Some(SshCredentials { identity, passphrase: password.filter(|p| !p.is_empty()), known_hosts });
        } else {
            match (username, password) {
                (Some(username), Some(password)) => creds.basic_auth = Some(BasicAuth { username, password }),
                (Some(_), None) => {
                    return Err(CredentialsError::Incomplete { present: KEY_USERNAME, missing: KEY_PASSWORD });
                }
                (None, Some(_)) => {
                    return Err(CredentialsError::Incomplete { present: KEY_PASSWORD, missing: KEY_USERNAME });
                }
                (None, None) => {}
            }
        }
        creds.bearer_token = header_value(KEY_BEARER)?.filter(|t| !t.is_empty());
        if creds.bearer_token.is_some() && creds.basic_auth.is_some() {
            return Err(CredentialsError::ConflictingHttpAuth);
        }
        let ca = data.get(KEY_CA).or_else(|| data.get(KEY_CA_LEGACY));
        if let Some(ca) = ca {
            if parse_ca_bundle(ca).is_empty() {
                return Err(CredentialsError::NoCaCertificate);
            }
            creds.ca_pem = Some(ca.clone());
        }
        Ok(creds)
    }
}

fn parse_ca_bundle(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem).filter_map(Result::ok).collect()
}

/// Verifies a server's leaf certificate (DER, as libgit2 hands it over) against the CA bundle
/// alone, for `host` (a DNS name or IP address). libgit2 gives only the leaf, so intermediates
/// must be in the bundle too; every certificate in it is treated as a trust anchor.
pub fn verify_server_cert(ca_pem: &[u8], leaf_der: &[u8], host: &str) -> Result<(), String> {
    let ca_certs = parse_ca_bundle(ca_pem);
    let anchors: Vec<_> = ca_certs.iter().filter_map(|der| webpki::anchor_from_trusted_cert(der).ok()).collect();
    if anchors.is_empty() {
        return Err("ca.crt holds no usable certificate".to_owned());
    }
    let leaf = CertificateDer::from(leaf_der);
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("bad server certificate: {e}"))?;
    end_entity
        .verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &[], UnixTime::now(), webpki::KeyUsage::server_auth(), None, None)
        .map_err(|e| format!("certificate is not signed by the CA in ca.crt: {e}"))?;
    let name = ServerName::try_from(host).map_err(|_| format!("'{host}' is not a valid server name"))?;
    end_entity.verify_is_valid_for_subject_name(&name).map_err(|e| format!("certificate is not valid for '{host}': {e}"))
}

/// The `known_hosts` host pattern OpenSSH uses for a host and port.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

/// Outcome of looking a presented host key up in `known_hosts`.
#[derive(Debug, PartialEq, Eq)]
pub enum HostKeyCheck {
    Trusted,
    /// The host is listed but with other keys: possibly an attack, always refused.
    Mismatch,
    /// The host is not listed at all.
    Unknown,
}

/// Looks `key_blob` (the SSH wire-format public key the server presented) up for `host:port`.
/// Plain and `[host]:port` patterns, comma lists, `*`/`?` wildcards, `!` negation, hashed
/// (`|1|...`) names and `@revoked` markers are honoured; `@cert-authority` lines are skipped
/// (libgit2 exposes no host certificates).
pub fn check_host_key(known_hosts: &str, host: &str, port: u16, key_blob: &[u8]) -> HostKeyCheck {
    let wanted = known_hosts_name(host, port);
    let mut host_listed = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let mut revoked = false;
        if first.starts_with('@') {
            if first == "@revoked" {
                revoked = true;
            } else {
                continue;
            }
            first = fields.next().unwrap_or_default();
        }
        let (Some(_key_type), Some(key_b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !host_patterns_match(first, &wanted) {
            continue;
        }
        let Some(blob) = base64_decode(key_b64) else {
            continue;
        };
        if revoked {
            if blob == key_blob {
                return HostKeyCheck::Mismatch;
            }
            continue;
        }
        host_listed = true;
        if blob == key_blob {
            return HostKeyCheck::Trusted;
        }
    }
    if host_listed { HostKeyCheck::Mismatch } else { HostKeyCheck::Unknown }
}

fn host_patterns_match(patterns: &str, wanted: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        return hashed_host_matches(hashed, wanted);
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, wanted) {
                return false;
            }
        } else if wildcard_match(pattern, wanted) {
            matched = true;
        }
    }
    matched
}

/// OpenSSH hashed names are `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`. SHA-1 here only
/// matches names (it is how OpenSSH hashes them), it decides no trust; `ring` is already linked
/// for TLS and verifies the MAC in constant time.
fn hashed_host_matches(hashed: &str, wanted: &str) -> bool {
    let Some((salt_b64, mac_b64)) = hashed.split_once('|') else {
        return false;
    };
    let (Some(salt), Some(mac)) = (base64_decode(salt_b64), base64_decode(mac_b64)) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
    ring::hmac::verify(&key, wanted.as_bytes(), &mac).is_ok()
}

/// OpenSSH's `*` (any run, also empty) and `?` (one character) host pattern, ASCII
/// case-insensitive. OpenSSH matches these recursively, which is exponential in the number of
/// stars (a tenant's `known_hosts` with 60 stars ran for hours inside libgit2's certificate
/// callback). This is the usual greedy matcher that only ever backtracks to the last star:
/// O(pattern × name) steps, and names are at most a few hundred bytes. Hand-written because the
/// `regex` crate would need the pattern escaped and compiled per line, per connection.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where the last `*` was, and the text position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ti += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last star swallow one more character and retry from just after it.
                Some((star_pi, star_ti)) => {
                    pi = star_pi + 1;
                    ti = star_ti + 1;
                    star = Some((star_pi, star_ti + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Standard base64 (with or without padding). `None` on any invalid character.
pub fn base64_decode(input: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.decode(input.trim_end_matches('=')).ok()
}

/// SHA-256 fingerprint in OpenSSH's display form, for error messages about host keys.
pub fn ssh_fingerprint(key_blob: &[u8]) -> String {
    use base64::Engine;
    let digest = Sha256::digest(key_blob);
    format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
}

impl From<CredentialsError> for GitError {
    fn from(e: CredentialsError) -> Self {
        GitError::InvalidCredentials(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn secret_parsing() {
        let c = Credentials::from_secret_data(&data(&[("username", "u"), ("password", "hunter2")])).unwrap();
        assert_eq!(c.basic_auth.as_ref().map(|b| b.username.as_str()), Some("u"));
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            Credentials::from_secret_data(&data(&[("username", "u")])).unwrap_err(),
            CredentialsError::Incomplete { present: "username", missing: "password" }
        );
        assert_eq!(Credentials::from_secret_data(&data(&[("tls.crt", "x"), ("tls.key", "y")])).unwrap_err(), CredentialsError::ClientCertificateUnsupported);
        assert_eq!(Credentials::from_secret_data(&data(&[("identity", "k")])).unwrap_err(), CredentialsError::MissingKnownHosts);
        let ssh = Credentials::from_secret_data(&data(&[("identity", "k"), ("known_hosts", "h"), ("password", "p")])).unwrap();
        assert_eq!(ssh.ssh.as_ref().and_then(|s| s.passphrase.as_deref()), Some("p"));
        assert!(ssh.basic_auth.is_none());
        assert_eq!(Credentials::from_secret_data(&data(&[("ca.crt", "not pem")])).unwrap_err(), CredentialsError::NoCaCertificate);
        assert_eq!(
            Credentials::from_secret_data(&data(&[("username", "u"), ("password", "p"), ("bearerToken", "t")])).unwrap_err(),
            CredentialsError::ConflictingHttpAuth
        );
        // Header injection and NUL bytes (git2 would panic on the latter).
        for (key, value) in [("bearerToken", "t\r\nX-Evil: 1"), ("bearerToken", "t\0"), ("password", "p\nq")] {
            let mut pairs = vec![(key, value)];
            if key == "password" {
                pairs.push(("username", "u"));
            }
            let err = Credentials::from_secret_data(&data(&pairs)).unwrap_err();
            assert_eq!(err, CredentialsError::ControlCharacter(key));
            assert!(!err.to_string().contains(value));
        }
    }

    fn hmac_sha1(key: &[u8], message: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        ring::hmac::sign(&key, message).as_ref().to_vec()
    }

    #[test]
    fn base64_and_hashed_names() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("a*"), None);
        // RFC 2202 test case 2.
        assert_eq!(hex::encode(hmac_sha1(b"Jefe", b"what do ya want for nothing?")), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        // `ssh-keygen -lf` of an all-zero blob's SHA-256 is unpadded base64.
        let fingerprint = ssh_fingerprint(b"");
        assert_eq!(fingerprint, "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
    }

    #[test]
    fn wildcards() {
        for (pattern, name, expected) in [
            ("*", "", true),
            ("*", "github.com", true),
            ("*.example.org", "git.example.org", true),
            ("*.example.org", "example.org", false),
            ("g?thub.com", "github.com", true),
            ("g?thub.com", "gthub.com", false),
            ("GitHub.COM", "github.com", true),
            ("[127.0.0.1]:*", "[127.0.0.1]:2222", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("**a", "bba", true),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(wildcard_match(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    /// Finding 11.9: 60 stars and a non-matching tail ran for hours with the recursive matcher;
    /// here it is O(pattern × name) steps, a handful of microseconds. No timing assertion (the
    /// machine is shared): the test simply would not end before.
    #[test]
    fn many_stars_do_not_blow_up() {
        let pattern = format!("{}Z", "*".repeat(60));
        let name = "a".repeat(253);
        assert!(!wildcard_match(&pattern, &name));
        let long_pattern = "*a".repeat(100_000);
        assert!(!wildcard_match(&long_pattern, &"a".repeat(300)));
        let key = b"k";
        let known_hosts = format!("{pattern} ssh-ed25519 aw==\n").repeat(1000);
        assert_eq!(check_host_key(&known_hosts, &name, 22, key), HostKeyCheck::Unknown);
    }

    #[test]
    fn known_hosts_matching() {
        let key = b"\x00\x00\x00\x0bssh-ed25519 fake key";
        let other = b"another key";
        let b64 = "AAAAC3NzaC1lZDI1NTE5IGZha2Uga2V5";
        assert_eq!(base64_decode(b64).unwrap(), key);
        let kh = format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {b64}\ngithub.com,*.example.org ssh-ed25519 {b64}\n");
        assert_eq!(check_host_key(&kh, "127.0.0.1", 2222, key), HostKeyCheck::Trusted);
        assert_eq!(check_host_key(&kh, "127.0.0.1", 2222, other), HostKeyCheck::Mismatch);
        assert_eq!(check_host_key(&kh, "127.0.0.1", 22, key), HostKeyCheck::Unknown);
        assert_eq!(check_host_key(&kh, "git.example.org", 22, key), HostKeyCheck::Trusted);
        let revoked = format!("@revoked * ssh-ed25519 {b64}\n{kh}");
        assert_eq!(check_host_key(&revoked, "github.com", 22, key), HostKeyCheck::Mismatch);
        // `|1|` + base64(salt) + `|` + base64(HMAC-SHA1(salt, "[127.0.0.1]:2222")), made with ssh-keygen -H.
        let salt = b"0123456789abcdef0123";
        let mac = hmac_sha1(salt, b"[127.0.0.1]:2222");
        let hashed = format!("|1|{}|{} ssh-ed25519 {b64}", std_b64(salt), std_b64(&mac));
        assert_eq!(check_host_key(&hashed, "127.0.0.1", 2222, key), HostKeyCheck::Trusted);
        assert_eq!(check_host_key(&hashed, "127.0.0.2", 2222, key), HostKeyCheck::Unknown);
    }

    fn std_b64(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}
