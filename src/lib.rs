//! ferroflux: a GitOps controller for Kubernetes, a drop-in for the core of FluxCD.

pub mod api;
pub mod apply;
pub mod cli;
pub mod controller;
pub mod deploy;
pub mod kustomize;
pub mod receiver;
pub mod sops;
pub mod source;
