//! Applying one stage: skip what is unchanged since the last apply, dry-run every other object
//! (all must pass, or nothing of the stage is written), then write only what differs.

use std::collections::HashMap;

use futures::{StreamExt, stream};
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::Value;

use super::plan::{Plan, same_content};
use super::policy::Policy;
use super::state::manifest_digest;
use super::{Action, AppliedState, Applier, ApplyError, ApplyOptions, CONCURRENCY, Change, FIELD_MANAGER, Resolved, managed_fields};

impl Applier {
    pub(super) async fn apply_stage(
        &self,
        stage: Vec<Resolved>,
        opts: &ApplyOptions,
        previous: &AppliedState,
        state: &mut AppliedState,
    ) -> Result<Vec<Change>, ApplyError> {
        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER).force() };
        let params = PatchParams::apply(FIELD_MANAGER).force();

        // Excluded in Git (`ssa: Ignore`, `reconcile: disabled`): no request at all.
        let mut changes = Vec::with_capacity(stage.len());
        let (excluded, stage): (Vec<Resolved>, Vec<Resolved>) = stage.into_iter().partition(|r| Policy::of_manifest(&r.object) == Policy::Exclude);
        changes.extend(excluded.into_iter().map(|r| Change { id: r.id, version: r.version, action: Action::Skipped, live: None }));

        let digests: Vec<String> = stage.iter().map(|r| manifest_digest(&r.object)).collect();
        let unchanged = if previous.is_empty() { HashMap::new() } else { self.unchanged_since(&stage, &digests, previous, opts).await? };
        let mut todo = Vec::with_capacity(stage.len());
        for (r, digest) in stage.into_iter().zip(digests) {
            match unchanged.get(&r.id) {
                Some(version) => {
                    state.entries.insert(r.id.clone(), (digest, version.clone()));
                    changes.push(Change { id: r.id, version: r.version, action: Action::Unchanged, live: None });
                }
                None => todo.push((r, digest)),
            }
        }
        let (stage, digests): (Vec<Resolved>, Vec<String>) = todo.into_iter().unzip();

        // Dry-run everything first (requests in parallel, results in order), and only then write.
        // (Collected first: a stream over a borrowing closure trips the compiler's Send check.)
        let planning: Vec<_> = stage.iter().map(|r| self.plan(r, opts, &dry_run)).collect();
        let planned: Vec<Result<Plan, ApplyError>> = stream::iter(planning).buffered(CONCURRENCY).collect().await;
        let mut plans = Vec::with_capacity(planned.len());
        let mut failures = Vec::new();
        for (r, plan) in stage.iter().zip(planned) {
            let plan = plan?;
            if let Some(message) = &plan.failure {
                failures.push((r.id.clone(), message.clone()));
            }
            plans.push(plan);
        }
        if !failures.is_empty() {
            return Err(ApplyError::DryRunFailed(failures));
        }

        let writing: Vec<_> = stage.iter().zip(plans).map(|(r, plan)| self.write(r, plan, opts, &params)).collect();
        let outcomes: Vec<Result<Written, ApplyError>> = stream::iter(writing).buffered(CONCURRENCY).collect().await;
        for ((r, outcome), digest) in stage.iter().zip(outcomes).zip(digests) {
            let Written { action, object } = outcome?;
            if let Some(version) = object.as_ref().and_then(|o| o.metadata.resource_version.clone()) {
                state.entries.insert(r.id.clone(), (digest, version));
            }
            let live = object.and_then(|o| serde_json::to_value(o).ok());
            changes.push(Change { id: r.id.clone(), version: r.version.clone(), action, live });
        }
        Ok(changes)
    }

    /// Writes one planned object when it differs; returns what happened and the object as it is
    /// now in the cluster.
    async fn write(&self, r: &Resolved, plan: Plan, opts: &ApplyOptions, params: &PatchParams) -> Result<Written, ApplyError> {
        let Plan { live, dry, skip, .. } = plan;
        if skip {
            // Recorded with the live resourceVersion: until the manifest or the live object (its
            // annotations included) changes, the next reconcile needs no request for it.
            return Ok(Written { action: Action::Skipped, object: live });
        }
        let api = self.api(r);
        let mut took_over = false;
        if let Some(live) = &live {
            // Fields set by kubectl or by Flux belong to us from now on, so that removing them
            // from Git removes them from the cluster.
            if let Some(patch) = managed_fields::takeover_patch(live, FIELD_MANAGER) {
                api.patch(&r.id.name, &PatchParams::default(), &Patch::<Value>::Json(patch))
                    .await
                    .map_err(|e| ApplyError::Api { context: format!("taking over fields of {}", r.id), source: e })?;
                took_over = true;
            }
        }
        let recreate = dry.is_none() && live.is_some();
        if let (Some(live), Some(dry)) = (&live, &dry) {
            if !took_over && same_content(live, dry) {
                return Ok(Written { action: Action::Unchanged, object: Some(live.clone()) });
            }
        }
        if let Some(live) = live.as_ref().filter(|_| recreate) {
            // An immutable field changed and force is set: delete, then create again. Its
            // dependents (a Deployment's ReplicaSets) are collected in the background.
            api.delete(&r.id.name, &DeleteParams::background()).await.map_err(|e| ApplyError::Api { context: format!("recreating {}", r.id), source: e })?;
            self.wait_gone(&api, live, &r.id, opts.wait_timeout).await?;
        }
        let applied = api.patch(&r.id.name, params, &Patch::Apply(&r.object)).await.map_err(|e| match e {
            kube::Error::Api(status) => ApplyError::ApplyFailed { id: r.id.clone(), message: status.message },
            other => ApplyError::Api { context: format!("applying {}", r.id), source: other },
        })?;
        let action = match (&live, &dry) {
            (None, _) => Action::Created,
            (Some(_), None) => Action::Configured,
            // The dry-run predicted a change.
            (Some(live), Some(dry)) if !same_content(live, dry) => Action::Configured,
            // Only the takeover: the apply may still have removed fields another manager held,
            // which the dry-run (made before the takeover) kept.
            (Some(_), Some(dry)) if same_content(dry, &applied) => Action::Unchanged,
            (Some(_), Some(_)) => Action::Configured,
        };
        Ok(Written { action, object: Some(applied) })
    }
}

/// What writing one object did, and the object as the cluster has it afterwards (`None` only
/// for an object that was skipped and does not exist).
struct Written {
    action: Action,
    object: Option<kube::api::DynamicObject>,
}
