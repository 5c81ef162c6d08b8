//! ferroflux: a GitOps controller for Kubernetes, a drop-in for the core of FluxCD.

pub mod api;
pub mod cli;
pub mod apply;
pub mod controller;
