//! The reconcilers and what they share.

pub mod conditions;
