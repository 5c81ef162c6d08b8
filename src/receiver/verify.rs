//! Verifying a webhook call the way Flux's notification-controller does for each Receiver type
//! (pure: headers and body in, the event type or a refusal out). Every comparison of secret
//! material is constant-time: HMACs with `hmac`'s `verify_slice`, tokens with `subtle`.

use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;

use crate::api::notification::v1::ReceiverType;

/// Why a call was refused. The messages never contain the token or a computed signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing signature header {0}")]
    MissingSignature(&'static str),
    #[error("the {header} header is not '<algorithm>=<hex digest>' with sha1, sha256 or sha512")]
    MalformedSignature { header: &'static str },
    #[error("the {header} signature does not match the payload")]
    BadSignature { header: &'static str },
    #[error("the X-Gitlab-Token header value does not match the receiver token")]
    BadToken,
    #[error("the {sender} event {event:?} is not authorised (spec.events: {allowed})")]
    EventNotAllowed { sender: &'static str, event: String, allowed: String },
}

/// A header lookup, so the logic does not depend on one HTTP library.
pub trait Headers {
    fn header(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Checks one call against a Receiver of type `kind` with `token`, allowing only `events` when
/// that list is not empty. Returns the sender's event type (e.g. `push`), when it names one.
pub fn verify(kind: ReceiverType, token: &str, events: &[String], headers: &dyn Headers, body: &[u8]) -> Result<Option<String>, VerifyError> {
    let event = match kind {
        // The unguessable path is the only credential, as in Flux.
        ReceiverType::Generic => return Ok(None),
        ReceiverType::GenericHmac => {
            check_hub_signature(headers, &["X-Signature"], token, body)?;
            return Ok(None);
        }
        ReceiverType::Github => {
            check_hub_signature(headers, &["X-Hub-Signature-256", "X-Hub-Signature"], token, body)?;
            ("GitHub", headers.header("X-GitHub-Event"))
        }
        ReceiverType::Bitbucket => {
            // Bitbucket Server signs like GitHub, in X-Hub-Signature.
            check_hub_signature(headers, &["X-Hub-Signature-256", "X-Hub-Signature"], token, body)?;
            ("Bitbucket server", headers.header("X-Event-Key"))
        }
        ReceiverType::Gitlab => {
            let sent = headers.header("X-Gitlab-Token").unwrap_or_default();
            if !bool::from(sent.as_bytes().ct_eq(token.as_bytes())) {
                return Err(VerifyError::BadToken);
            }
            ("GitLab", headers.header("X-Gitlab-Event"))
        }
    };
    let (sender, event) = (event.0, event.1.unwrap_or_default().to_owned());
    if !events.is_empty() && !events.iter().any(|allowed| allowed.eq_ignore_ascii_case(&event)) {
        return Err(VerifyError::EventNotAllowed { sender, event, allowed: events.join(", ") });
    }
    Ok(Some(event))
}

/// `sha256=<hex>` (or sha1, sha512) in the first of `names` that is present: an HMAC of the body
/// with the token, as GitHub (`X-Hub-Signature-256`, legacy `X-Hub-Signature`) and Flux's
/// generic-hmac (`X-Signature`) send it.
fn check_hub_signature(headers: &dyn Headers, names: &[&'static str], token: &str, body: &[u8]) -> Result<(), VerifyError> {
    let Some((header, value)) = names.iter().find_map(|name| headers.header(name).map(|v| (*name, v))) else {
        return Err(VerifyError::MissingSignature(names[0]));
    };
    let malformed = VerifyError::MalformedSignature { header };
    let (algorithm, digest) = value.trim().split_once('=').ok_or(malformed.clone())?;
    let digest = hex::decode(digest).map_err(|_| malformed.clone())?;
    let valid = match algorithm {
        "sha1" => hmac_matches::<Hmac<sha1::Sha1>>(token, body, &digest),
        "sha256" => hmac_matches::<Hmac<sha2::Sha256>>(token, body, &digest),
        "sha512" => hmac_matches::<Hmac<sha2::Sha512>>(token, body, &digest),
        _ => return Err(malformed),
    };
    if valid { Ok(()) } else { Err(VerifyError::BadSignature { header }) }
}

fn hmac_matches<M: Mac + KeyInit>(token: &str, body: &[u8], digest: &[u8]) -> bool {
    let Ok(mut mac) = <M as KeyInit>::new_from_slice(token.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(digest).is_ok()
}

/// The `sha256=<hex>` signature GitHub would send for `body` with `token` (for tests, benches
/// and the test Git server's hook).
pub fn github_signature(token: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(token.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Map(HashMap<&'static str, String>);
    impl Headers for Map {
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
        }
    }
    fn headers(pairs: &[(&'static str, &str)]) -> Map {
        Map(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect())
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn github_accepts_its_sha256_signature_and_refuses_others() {
        let good = github_signature("s3cret", BODY);
        let ok = verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature-256", &good), ("X-GitHub-Event", "push")]), BODY);
        assert_eq!(ok, Ok(Some("push".into())));
        let wrong_key = github_signature("other", BODY);
        assert_eq!(
            verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature-256", &wrong_key)]), BODY),
            Err(VerifyError::BadSignature { header: "X-Hub-Signature-256" })
        );
        // The signature of another body.
        assert!(verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature-256", &good)]), b"{}").is_err());
        assert_eq!(verify(ReceiverType::Github, "s3cret", &[], &headers(&[]), BODY), Err(VerifyError::MissingSignature("X-Hub-Signature-256")));
        assert!(matches!(
            verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature-256", "md5=00")]), BODY),
            Err(VerifyError::MalformedSignature { .. })
        ));
        assert!(matches!(
            verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature-256", "sha256=zz")]), BODY),
            Err(VerifyError::MalformedSignature { .. })
        ));
    }

    #[test]
    fn github_legacy_sha1_header_is_accepted() {
        let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"s3cret").expect("key");
        mac.update(BODY);
        let sha1 = format!("sha1={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify(ReceiverType::Github, "s3cret", &[], &headers(&[("X-Hub-Signature", &sha1)]), BODY).is_ok());
    }

    #[test]
    fn events_are_filtered_case_insensitively() {
        let good = github_signature("t", BODY);
        let events = vec!["Push".to_owned()];
        assert!(verify(ReceiverType::Github, "t", &events, &headers(&[("X-Hub-Signature-256", &good), ("X-GitHub-Event", "push")]), BODY).is_ok());
        assert!(matches!(
            verify(ReceiverType::Github, "t", &events, &headers(&[("X-Hub-Signature-256", &good), ("X-GitHub-Event", "ping")]), BODY),
            Err(VerifyError::EventNotAllowed { .. })
        ));
        let gitlab = vec!["Push Hook".to_owned()];
        assert!(verify(ReceiverType::Gitlab, "t", &gitlab, &headers(&[("X-Gitlab-Token", "t"), ("X-Gitlab-Event", "Push Hook")]), BODY).is_ok());
        assert!(verify(ReceiverType::Gitlab, "t", &gitlab, &headers(&[("X-Gitlab-Token", "t"), ("X-Gitlab-Event", "Tag Push Hook")]), BODY).is_err());
    }

    #[test]
    fn gitlab_compares_the_token() {
        assert!(verify(ReceiverType::Gitlab, "t0ken", &[], &headers(&[("X-Gitlab-Token", "t0ken")]), BODY).is_ok());
        assert_eq!(verify(ReceiverType::Gitlab, "t0ken", &[], &headers(&[("X-Gitlab-Token", "t0ke")]), BODY), Err(VerifyError::BadToken));
        assert_eq!(verify(ReceiverType::Gitlab, "t0ken", &[], &headers(&[]), BODY), Err(VerifyError::BadToken));
        // A GitHub signature sent to a GitLab receiver is no token.
        let signature = github_signature("t0ken", BODY);
        assert_eq!(verify(ReceiverType::Gitlab, "t0ken", &[], &headers(&[("X-Hub-Signature-256", &signature)]), BODY), Err(VerifyError::BadToken));
    }

    #[test]
    fn generic_hmac_reads_x_signature_and_bitbucket_the_hub_header() {
        let good = github_signature("k", BODY);
        assert!(verify(ReceiverType::GenericHmac, "k", &[], &headers(&[("X-Signature", &good)]), BODY).is_ok());
        // The GitHub header is not what generic-hmac reads.
        assert_eq!(
            verify(ReceiverType::GenericHmac, "k", &[], &headers(&[("X-Hub-Signature-256", &good)]), BODY),
            Err(VerifyError::MissingSignature("X-Signature"))
        );
        assert_eq!(
            verify(ReceiverType::Bitbucket, "k", &[], &headers(&[("X-Hub-Signature", &good), ("X-Event-Key", "repo:refs_changed")]), BODY),
            Ok(Some("repo:refs_changed".into()))
        );
        assert!(verify(ReceiverType::Generic, "k", &[], &headers(&[]), BODY).is_ok());
    }

    #[test]
    fn errors_never_show_the_token() {
        let error = verify(ReceiverType::Gitlab, "very-secret-token", &[], &headers(&[("X-Gitlab-Token", "nope")]), BODY).unwrap_err();
        assert!(!error.to_string().contains("very-secret-token"));
    }
}
