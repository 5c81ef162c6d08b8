//! `GitRepository` in group `source.toolkit.fluxcd.io`.

pub mod v1;
pub mod v1beta2;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::meta::LocalObjectReference;

pub const GROUP: &str = "source.toolkit.fluxcd.io";

/// Condition types and reasons of the source controller (Flux's `source-controller/api/v1`).
pub mod condition {
    pub const ARTIFACT_IN_STORAGE: &str = "ArtifactInStorage";
    pub const ARTIFACT_OUTDATED: &str = "ArtifactOutdated";
    pub const FETCH_FAILED: &str = "FetchFailed";
    pub const STORAGE_OPERATION_FAILED: &str = "StorageOperationFailed";
    pub const SOURCE_VERIFIED: &str = "SourceVerified";
    pub const INCLUDE_UNAVAILABLE: &str = "IncludeUnavailable";

    pub const GIT_OPERATION_FAILED: &str = "GitOperationFailed";
    pub const GIT_OPERATION_SUCCEEDED: &str = "GitOperationSucceed";
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const NEW_ARTIFACT: &str = "NewArtifact";
    pub const ARTIFACT_UP_TO_DATE: &str = "ArtifactUpToDate";
    pub const STAT_OPERATION_FAILED: &str = "StatOperationFailed";
    pub const ARCHIVE_OPERATION_FAILED: &str = "ArchiveOperationFailed";
    pub const SYMLINK_UPDATE_FAILED: &str = "SymlinkUpdateFailed";
    pub const INVALID_URL: &str = "URLInvalid";
}

/// The Git reference to check out. Precedence when several are set: `commit`, `name`, `semver`,
/// `tag`, `branch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct GitRepositoryRef {
    /// Branch to check out, defaults to `master` when no other field is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Tag to check out, takes precedence over `branch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// SemVer tag expression to check out, takes precedence over `tag`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Reference name to check out, e.g. `refs/heads/main` or `refs/pull/420/head`; takes precedence
    /// over `branch`, `tag` and `semver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Commit SHA to check out, takes precedence over all other fields; with `branch` it must be
    /// reachable from that branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// Another GitRepository whose artifact is copied into this one's.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryInclude {
    /// The GitRepository to include.
    pub repository: LocalObjectReference,
    /// Path to copy contents from, defaults to the root of the included repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_path: Option<String>,
    /// Path to copy contents to, defaults to the name of the included GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_path: Option<String>,
}
