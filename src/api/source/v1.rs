//! `source.toolkit.fluxcd.io/v1` GitRepository: the served and stored version.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GitRepositoryInclude, GitRepositoryRef};
use crate::api::meta::{Artifact, LocalObjectReference};
use crate::api::source::v1beta2::{GitImplementation, NamespaceSelectors};

// kube's derive repeats `type_` per printcolumn, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
/// GitRepositorySpec specifies the Git repository to fetch, and how.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1",
    kind = "GitRepository",
    plural = "gitrepositories",
    doc = "GitRepository is the Schema for the gitrepositories API.",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    category = "flux",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].message")
)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositorySpec {
    /// The repository URL, an HTTP/S or SSH address.
    #[schemars(pattern(r"^(http|https|ssh)://.*$"))]
    pub url: String,
    /// Secret in the same namespace with authentication credentials: `username`/`password` or
    /// `bearerToken` (+ `ca.crt`, `tls.crt`/`tls.key`) for HTTPS, `identity` + `known_hosts`
    /// (+ `password`) for SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
    /// OIDC provider for authentication; `generic` (the default) uses `secretRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<GitProvider>,
    /// ServiceAccount used for workload-identity authentication (provider `azure` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// How often to check the repository for new commits.
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// Timeout for Git operations like cloning, defaults to 60s.
    #[serde(default = "default_timeout", skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(\.[0-9]+)?(ms|s|m))+$"))]
    pub timeout: Option<String>,
    /// The Git reference to resolve and watch; defaults to the `master` branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<GitRepositoryRef>,
    /// OpenPGP signature verification of the commit or tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<GitRepositoryVerification>,
    /// Secret with the proxy settings (`address`, `username`, `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_secret_ref: Option<LocalObjectReference>,
    /// Ignore overrides the default set of excluded patterns, in `.gitignore` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Stop reconciling this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// Clone submodules too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurse_submodules: Option<bool>,
    /// Other GitRepositories whose artifacts are included in this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<GitRepositoryInclude>>,
    /// Directories to check out, instead of the whole tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sparse_checkout: Option<Vec<String>>,
    /// Deprecated (`v1beta2`): kept in the stored schema so objects created as `v1beta2` keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_implementation: Option<GitImplementation>,
    /// Deprecated (`v1beta2`): kept in the stored schema so objects created as `v1beta2` keep it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<NamespaceSelectors>,
}

fn default_timeout() -> Option<String> {
    Some("60s".to_owned())
}

/// OIDC providers for Git authentication.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GitProvider {
    Generic,
    Azure,
    Github,
}

/// What to verify with OpenPGP.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryVerification {
    /// What to verify: `HEAD` (the commit), `Tag`, or `TagAndHEAD`.
    #[serde(default = "default_verification_mode", skip_serializing_if = "Option::is_none")]
    pub mode: Option<GitVerificationMode>,
    /// Secret with the trusted public keys.
    pub secret_ref: LocalObjectReference,
}

fn default_verification_mode() -> Option<GitVerificationMode> {
    Some(GitVerificationMode::Head)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GitVerificationMode {
    /// Accepted for compatibility with `v1beta2`; means `HEAD`.
    #[serde(rename = "head")]
    LegacyHead,
    #[serde(rename = "HEAD")]
    Head,
    #[serde(rename = "Tag")]
    Tag,
    #[serde(rename = "TagAndHEAD")]
    TagAndHead,
}

/// GitRepositoryStatus records the observed state of a Git repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    /// The last generation of the spec the controller acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready`, `Reconciling`, `Stalled`, `ArtifactInStorage`, `FetchFailed`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The last successfully stored artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    /// Artifacts of the included repositories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_artifacts: Option<Vec<Artifact>>,
    /// The `spec.ignore` the artifact was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ignore: Option<String>,
    /// The `spec.recurseSubmodules` the artifact was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_recurse_submodules: Option<bool>,
    /// The `spec.include` the artifact was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_include: Option<Vec<GitRepositoryInclude>>,
    /// The `spec.sparseCheckout` the artifact was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_sparse_checkout: Option<Vec<String>>,
    /// The verification mode of the last verified source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_verification_mode: Option<String>,
    /// The last handled `reconcile.fluxcd.io/requestedAt` annotation value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
