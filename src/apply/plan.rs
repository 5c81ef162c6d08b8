//! The dry-run side of an apply: one object's server-side dry-run next to the live object it was
//! computed on (the plan a stage is validated with before anything is written), and the
//! comparison that decides whether applying would change anything.

use futures::{StreamExt, stream};
use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::policy::{Policy, skips_existing};
use super::{Applier, ApplyError, ApplyOptions, CONCURRENCY, FIELD_MANAGER, ObjectId, Resolved};

/// One object's dry-run outcome.
pub(super) struct Plan {
    pub(super) live: Option<DynamicObject>,
    pub(super) dry: Option<DynamicObject>,
    /// The API server's rejection of the dry-run.
    pub(super) failure: Option<String>,
    /// The object exists and its annotations say to leave it alone ([`super::policy`]).
    pub(super) skip: bool,
}

/// One object's server-side dry-run next to the live object.
#[derive(Clone, Debug)]
pub struct DryRun {
    pub id: ObjectId,
    /// The live object; `None` when it does not exist yet.
    pub live: Option<Value>,
    /// The object as applying would leave it, or why the API server refused.
    pub result: Result<Value, String>,
}

impl Applier {
    /// Server-side dry-runs of every object, applied as ferroflux applies them (field manager
    /// `ferroflux`, forced), with nothing written: what `ferroflux diff` compares with the live
    /// objects. A kind the server does not know, or a dry-run the server rejects, is reported for
    /// that object alone.
    pub async fn dry_run_all(&self, objects: Vec<Value>) -> Result<Vec<DryRun>, ApplyError> {
        let dry_run = PatchParams { dry_run: true, ..PatchParams::apply(FIELD_MANAGER).force() };
        // Without `force`, an immutable field change is reported, not planned as a re-creation.
        let opts = ApplyOptions::default();
        let mut results = Vec::with_capacity(objects.len());
        let mut resolved = Vec::with_capacity(objects.len());
        for (index, object) in objects.into_iter().enumerate() {
            let (id, _) = ObjectId::of(&object, index)?;
            // Excluded in Git: applying would not touch it, so there is nothing to compare.
            if Policy::of_manifest(&object) == Policy::Exclude {
                continue;
            }
            match self.resolve(index, object).await {
                Ok(r) => resolved.push(r),
                Err(e) => results.push(DryRun { id, live: None, result: Err(e.to_string()) }),
            }
        }
        let planning: Vec<_> = resolved.iter().map(|r| self.plan(r, &opts, &dry_run)).collect();
        let planned: Vec<Result<Plan, ApplyError>> = stream::iter(planning).buffered(CONCURRENCY).collect().await;
        for (r, plan) in resolved.iter().zip(planned) {
            let Plan { live, dry, failure, skip } = plan?;
            let to_value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
            let result = match (dry, failure) {
                // Left alone: applying would leave the live object as it is.
                _ if skip => Ok(live.clone().map(to_value).unwrap_or(Value::Null)),
                (Some(dry), _) => Ok(to_value(dry)),
                (None, failure) => Err(failure.unwrap_or_else(|| "the dry-run returned nothing".to_owned())),
            };
            results.push(DryRun { id: r.id.clone(), live: live.map(to_value), result });
        }
        Ok(results)
    }

    /// The dry-run of one object and the live object it was computed on. The live object is read
    /// after the dry-run: when both carry the same resourceVersion, the dry-run was computed on
    /// exactly that object, so comparing them is exact even while other controllers write (a
    /// Deployment's status, its revision annotation).
    ///
    /// An existing object whose annotations (or its manifest's `ssa: IfNotPresent`) say to leave
    /// it alone is planned as skipped, even when its dry-run fails: applying would not touch it.
    pub(super) async fn plan(&self, r: &Resolved, opts: &ApplyOptions, dry_run: &PatchParams) -> Result<Plan, ApplyError> {
        let api = self.api(r);
        let manifest = Policy::of_manifest(&r.object);
        let read = |e| ApplyError::Api { context: format!("reading {}", r.id), source: e };
        if manifest == Policy::IfNotPresent {
            // Existence decides, so read first: an existing object costs no dry-run.
            if let Some(live) = api.get_opt(&r.id.name).await.map_err(read)? {
                return Ok(Plan { live: Some(live), dry: None, failure: None, skip: true });
            }
        }
        let mut attempts = 0;
        // Not a poll: the pair is taken again (at most three times, with no sleep) only when
        // another writer changed the object between the dry-run and the read.
        loop {
            attempts += 1;
            let dry = api.patch(&r.id.name, dry_run, &Patch::Apply(&r.object)).await;
            if let Ok(result) = &dry {
                // A dry-run create carries no resourceVersion: the object does not exist yet,
                // and there is nothing to read.
                if result.metadata.resource_version.as_deref().unwrap_or("").is_empty() {
                    return Ok(Plan { live: None, dry: dry.ok(), failure: None, skip: false });
                }
            }
            let live = api.get_opt(&r.id.name).await.map_err(read)?;
            if live.as_ref().is_some_and(|l| skips_existing(manifest, Policy::of_annotations(l.metadata.annotations.as_ref()))) {
                return Ok(Plan { live, dry: None, failure: None, skip: true });
            }
            match dry {
                Ok(result) => {
                    let consistent = live.as_ref().is_none_or(|l| l.metadata.resource_version == result.metadata.resource_version);
                    if consistent || attempts >= 3 {
                        return Ok(Plan { live, dry: Some(result), failure: None, skip: false });
                    }
                }
                // With force, an object whose immutable fields changed is recreated.
                Err(kube::Error::Api(status)) if opts.force && is_immutable_field_error(&status.message) && live.is_some() => {
                    return Ok(Plan { live, dry: None, failure: None, skip: false });
                }
                Err(kube::Error::Api(status)) => return Ok(Plan { live, dry: None, failure: Some(status.message), skip: false }),
                Err(e) => return Err(ApplyError::Api { context: format!("dry-run of {}", r.id), source: e }),
            }
        }
    }
}

pub(super) fn is_immutable_field_error(message: &str) -> bool {
    message.contains("field is immutable") || message.contains("may not change once set")
}

/// Whether a dry-run (or apply) result equals the live object, ignoring bookkeeping the server
/// changes on every write and `status`, which controllers write concurrently and we never apply.
pub(super) fn same_content(live: &DynamicObject, dry_run: &DynamicObject) -> bool {
    let value = |o: &DynamicObject| comparable(serde_json::to_value(o).unwrap_or(Value::Null));
    value(live) == value(dry_run)
}

/// An object without what the server manages on every write (`managedFields`,
/// `resourceVersion`, `generation`, `creationTimestamp`, `uid`, `selfLink`) and without `status`:
/// what is left is what applying can change.
pub fn comparable(mut value: Value) -> Value {
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid", "selfLink"] {
            meta.remove(key);
        }
    }
    value
}
