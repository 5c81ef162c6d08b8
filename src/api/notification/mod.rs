//! `Receiver` in group `notification.toolkit.fluxcd.io`: Flux's incoming webhook.

pub mod v1;

pub const GROUP: &str = "notification.toolkit.fluxcd.io";

/// The prefix of every `status.webhookPath`.
pub const WEBHOOK_PATH_PREFIX: &str = "/hook/";

/// Condition reasons of the notification controller (Flux's `notification-controller/api/v1`).
pub mod condition {
    /// The Secret named by `spec.secretRef` is missing or has no `token` key.
    pub const TOKEN_NOT_FOUND: &str = "TokenNotFound";
    /// A webhook call whose signature or token did not verify.
    pub const VALIDATION_FAILED: &str = "ValidationFailed";
}
