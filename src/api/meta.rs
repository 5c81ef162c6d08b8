//! Types shared by the source and kustomize APIs, mirroring Flux's `fluxcd/pkg/apis/meta`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Go `time.Duration` strings as Flux's CRDs accept them for intervals, e.g. `5s`, `1m30s`, `1.5h`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// Flux's pattern for timeouts: like [`DURATION_PATTERN`] without hours.
pub const TIMEOUT_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$";

/// The annotation whose new value asks for a reconcile now (`flux reconcile` sets it).
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// Condition types and reasons used across Flux's controllers (`fluxcd/pkg/apis/meta`).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const RECONCILING: &str = "Reconciling";
    pub const STALLED: &str = "Stalled";
    pub const HEALTHY: &str = "Healthy";

    pub const SUCCEEDED: &str = "Succeeded";
    pub const FAILED: &str = "Failed";
    pub const PROGRESSING: &str = "Progressing";
    pub const PROGRESSING_WITH_RETRY: &str = "ProgressingWithRetry";
    pub const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
    pub const RECONCILIATION_SUCCEEDED: &str = "ReconciliationSucceeded";
    pub const RECONCILIATION_FAILED: &str = "ReconciliationFailed";
    pub const HEALTH_CHECK_FAILED: &str = "HealthCheckFailed";
    pub const INVALID_PATH: &str = "InvalidPath";
    pub const INVALID_URL: &str = "URLInvalid";
    /// A reference the controller's flags forbid (`--no-cross-namespace-refs`).
    pub const ACCESS_DENIED: &str = "AccessDenied";
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LocalObjectReference {
    /// Name of the referent.
    pub name: String,
}

/// A reference to an object in any namespace (the same one when `namespace` is empty).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NamespacedObjectReference {
    /// Name of the referent.
    pub name: String,
    /// Namespace of the referent, when different from the namespace of the referring object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A reference to a key in a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret, when not the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The output of a source reconciliation: a tarball served over HTTP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Path of the artifact relative to the root of the storage, e.g.
    /// `gitrepository/<namespace>/<name>/<commit>.tar.gz`.
    pub path: String,
    /// HTTP address of the artifact as served by the controller's storage server.
    pub url: String,
    /// Human-readable identifier of the source revision, e.g. `main@sha1:<hex>`.
    pub revision: String,
    /// Digest of the file, in the form `<algorithm>:<checksum>`.
    #[schemars(pattern(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$"))]
    pub digest: String,
    /// When the artifact was last updated.
    pub last_update_time: Time,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Additional information about the artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A Go `time.Duration` string that does not parse (the CRD pattern should have caught it).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {0:?}: expected a Go duration such as 30s, 5m or 1h30m")]
pub struct InvalidDuration(pub String);

/// Parses the Go `time.Duration` strings Flux's specs use (`5s`, `1m30s`, `1.5h`, `500ms`).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, InvalidDuration> {
    let invalid = || InvalidDuration(text.to_owned());
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number.parse().map_err(|_| invalid())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += value * seconds;
        rest = next;
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h45m"), Ok(Duration::from_secs(9900)));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in ["", "5", "s", "5 s", "1x", "-1s", "1m-"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
