//! `notification.toolkit.fluxcd.io/v1` Receiver, field for field as Flux's.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::meta::LocalObjectReference;

// kube's derive repeats `type_` per printcolumn, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
/// ReceiverSpec: who may call the webhook (`type`, `secretRef`) and what it reconciles
/// (`resources`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "notification.toolkit.fluxcd.io",
    version = "v1",
    kind = "Receiver",
    plural = "receivers",
    doc = "Receiver is the Schema for the receivers API.",
    namespaced,
    status = "ReceiverStatus",
    category = "flux",
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message")
)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSpec {
    /// Type of webhook sender, used to determine the validation procedure and payload
    /// deserialization.
    pub r#type: ReceiverType,
    /// Interval at which to reconcile the Receiver with its Secret references.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: Option<String>,
    /// Events specifies the list of event types to handle, e.g. 'push' for GitHub or 'Push Hook'
    /// for GitLab.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// A list of resources to be notified about changes.
    pub resources: Vec<ReceiverResource>,
    /// A CEL expression evaluated for each resource (not supported by ferroflux: a Receiver
    /// setting it is not Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_filter: Option<String>,
    /// SecretRef specifies the Secret containing the token used to validate the payload
    /// authenticity. The Secret must contain a 'token' key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// Suspend tells the controller to suspend subsequent events handling for this receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
}

/// The senders ferroflux verifies. Flux's other types (harbor, quay, gcr, ...) are not accepted
/// by the schema, so a Receiver of such a type is refused at `kubectl apply`, not silently
/// ignored.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ReceiverType {
    #[serde(rename = "generic")]
    Generic,
    #[serde(rename = "generic-hmac")]
    GenericHmac,
    #[serde(rename = "github")]
    Github,
    #[serde(rename = "gitlab")]
    Gitlab,
    #[serde(rename = "bitbucket")]
    Bitbucket,
}

impl ReceiverType {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverType::Generic => "generic",
            ReceiverType::GenericHmac => "generic-hmac",
            ReceiverType::Github => "github",
            ReceiverType::Gitlab => "gitlab",
            ReceiverType::Bitbucket => "bitbucket",
        }
    }
}

/// A resource to reconcile: by name, or every object of the kind with `matchLabels` when
/// `name` is `*`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverResource {
    /// API version of the referent (default: Flux's version of the kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Kind of the referent.
    pub kind: String,
    /// Name of the referent; `*` with `matchLabels` selects by labels.
    pub name: String,
    /// Namespace of the referent (default: the Receiver's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels the referents must carry when `name` is `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
    /// A CEL expression (not supported by ferroflux: a Receiver setting it is not Ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// ReceiverStatus defines the observed state of the Receiver.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverStatus {
    /// The last handled `reconcile.fluxcd.io/requestedAt` annotation value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// Conditions holds the conditions for the Receiver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// WebhookPath is the generated incoming webhook address in the format of
    /// '/hook/sha256sum(token+name+namespace)'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// ObservedGeneration is the last observed generation of the Receiver object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Flux's webhook path: `/hook/` + hex(sha256(token + name + namespace)).
pub fn webhook_path(token: &str, name: &str, namespace: &str) -> String {
    let digest = Sha256::digest(format!("{token}{name}{namespace}").as_bytes());
    format!("{}{}", super::WEBHOOK_PATH_PREFIX, hex::encode(digest))
}

/// The API version Flux assumes for a kind a resource names without one.
pub fn default_api_version(kind: &str) -> Option<&'static str> {
    match kind {
        "GitRepository" | "Bucket" | "HelmChart" | "HelmRepository" | "OCIRepository" => Some("source.toolkit.fluxcd.io/v1"),
        "ImageRepository" => Some("image.toolkit.fluxcd.io/v1"),
        "ArtifactGenerator" => Some("source.extensions.fluxcd.io/v1beta1"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_path_is_flux_s() {
        // sha256("tokenreceiverflux-system"), as `printf %s tokenreceiverflux-system | sha256sum`.
        let path = webhook_path("token", "receiver", "flux-system");
        let expected = hex::encode(Sha256::digest(b"tokenreceiverflux-system"));
        assert_eq!(path, format!("/hook/{expected}"));
        assert_eq!(path.len(), "/hook/".len() + 64);
    }

    #[test]
    fn types_are_spelled_as_in_flux() {
        for (text, kind) in [("\"generic-hmac\"", ReceiverType::GenericHmac), ("\"github\"", ReceiverType::Github), ("\"bitbucket\"", ReceiverType::Bitbucket)]
        {
            assert_eq!(serde_json::from_str::<ReceiverType>(text).ok(), Some(kind));
            assert_eq!(format!("\"{}\"", kind.as_str()), text);
        }
        assert!(serde_json::from_str::<ReceiverType>("\"harbor\"").is_err());
    }
}
