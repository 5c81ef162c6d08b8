//! The source controller's library: Git access, artifact packing, artifact storage and the
//! HTTP server that serves artifacts to other controllers.
//!
//! A `GitRepository` reconcile is, in order (the Git calls block: run them on a blocking thread):
//! 1. [`git::Credentials::from_secret_data`] on the `secretRef`'s data;
//! 2. [`git::resolve_remote`] (one ref listing) → [`git::ResolvedRef`]; its `revision()` is
//!    Flux's revision string;
//! 3. if the status already has that revision and [`storage::Storage::exists`] for its commit,
//!    stop here (a no-change poll is one request to the Git server);
//! 4. else [`git::fetch`] into an empty directory, [`artifact::IgnoreRules::load`] with
//!    `spec.ignore`, [`storage::Storage::store_tree`], then
//!    [`storage::Storage::garbage_collect`];
//! 5. on deletion, [`storage::Storage::delete_all`].
//!
//! Errors carry a Flux condition reason through [`git::GitError::reason`].

pub mod artifact;
pub mod git;
pub mod server;
pub mod storage;
