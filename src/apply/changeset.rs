//! What an apply did, object by object: Flux's change set (`Deployment/default/app configured`).

use std::fmt;

use super::ObjectId;

/// What applying did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Deleted,
    /// Left alone. On apply: excluded by Flux's `ssa: Ignore` / `reconcile: disabled`, or
    /// `ssa: IfNotPresent` and already there ([`super::policy`]). On prune: not ours, or annotated
    /// `kustomize.toolkit.fluxcd.io/prune: disabled`.
    Skipped,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Deleted => "deleted",
            Action::Skipped => "skipped",
        })
    }
}

/// One line of a change set, printed as Flux prints it: `Deployment/default/app configured`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub id: ObjectId,
    pub version: String,
    pub action: Action,
    /// The object as the API server returned it from this apply (or the live object read for
    /// its dry-run): a first health look needs no GET. `None` when no request was made for it.
    pub live: Option<serde_json::Value>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.action)
    }
}
