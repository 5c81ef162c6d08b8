//! ferroflux: a GitOps controller for Kubernetes, a drop-in for the core of FluxCD.

// No unsafe code, but for one documented local allow (libgit2's socket timeouts in
// source/git/remote.rs, which git2 can only set through an unsafe fn).
#![deny(unsafe_code)]

pub mod api;
pub mod apply;
pub mod cli;
pub mod controller;
pub mod deploy;
pub mod kustomize;
pub mod receiver;
pub mod sops;
pub mod source;
