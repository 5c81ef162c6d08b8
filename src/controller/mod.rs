//! The reconcilers and what they share.

pub mod conditions;
pub mod health;
pub mod substitute;
