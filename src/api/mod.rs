//! The Kubernetes API of ferroflux: Flux's `GitRepository` and `Kustomization` custom resources,
//! field for field, in the versions Flux users have manifests for (`v1`, stored, and the deprecated
//! `v1beta2`).
//!
//! There is no conversion webhook: the API server converts between versions by rewriting
//! `apiVersion` only. So the stored `v1` schema also carries the fields that only `v1beta2` had
//! (`gitImplementation`, `patchesStrategicMerge`, ...): without them the server would prune those
//! fields from objects created as `v1beta2`, and the controllers could not honour them.

pub mod crd;
pub mod kustomize;
pub mod meta;
pub mod notification;
pub mod source;

pub use kustomize::v1::{Kustomization, KustomizationSpec, KustomizationStatus};
pub use source::v1::{GitRepository, GitRepositorySpec, GitRepositoryStatus};
