//! `source.toolkit.fluxcd.io/v1beta2` GitRepository: served and deprecated, so that manifests
//! written for older Flux releases (Flux 2.8 removed this version) apply unchanged.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{GitRepositoryInclude, GitRepositoryRef};
use crate::api::meta::{Artifact, LocalObjectReference};

// kube's derive repeats `type_` per printcolumn, which clippy takes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
/// GitRepositorySpec specifies the Git repository to fetch, and how.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "source.toolkit.fluxcd.io",
    version = "v1beta2",
    kind = "GitRepository",
    plural = "gitrepositories",
    doc = "GitRepository is the Schema for the gitrepositories API.",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    category = "flux",
    deprecated = "v1beta2 GitRepository is deprecated, upgrade to v1",
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
    /// Secret in the same namespace with authentication credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,
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
    /// OpenPGP signature verification of the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<GitRepositoryVerification>,
    /// Ignore overrides the default set of excluded patterns, in `.gitignore` format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore: Option<String>,
    /// Stop reconciling this repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// The Git client library; ferroflux has one implementation and accepts either value.
    #[serde(default = "default_git_implementation", skip_serializing_if = "Option::is_none")]
    pub git_implementation: Option<GitImplementation>,
    /// Clone submodules too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurse_submodules: Option<bool>,
    /// Other GitRepositories whose artifacts are included in this one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<GitRepositoryInclude>>,
    /// Namespaces allowed to refer to this object (an unused Flux feature, kept for compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_from: Option<NamespaceSelectors>,
}

fn default_timeout() -> Option<String> {
    Some("60s".to_owned())
}

fn default_git_implementation() -> Option<GitImplementation> {
    Some(GitImplementation::GoGit)
}

/// The Git client library Flux used; ignored by ferroflux, which has one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum GitImplementation {
    #[serde(rename = "go-git")]
    GoGit,
    #[serde(rename = "libgit2")]
    Libgit2,
}

/// Namespace selectors for cross-namespace access.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelectors {
    pub namespace_selectors: Vec<NamespaceSelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// What to verify with OpenPGP; `v1beta2` knows only `head`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryVerification {
    pub mode: LegacyVerificationMode,
    pub secret_ref: LocalObjectReference,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum LegacyVerificationMode {
    #[serde(rename = "head")]
    Head,
}

/// GitRepositoryStatus records the observed state of a Git repository.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Deprecated: the artifact's URL, use `artifact.url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<Artifact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub included_artifacts: Option<Vec<Artifact>>,
    /// Deprecated: a checksum of the content configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_config_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_ignore: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_recurse_submodules: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_include: Option<Vec<GitRepositoryInclude>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
}
