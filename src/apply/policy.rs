//! Flux's per-object apply annotations, decided without I/O:
//! - `kustomize.toolkit.fluxcd.io/reconcile: disabled` and `kustomize.toolkit.fluxcd.io/ssa: Ignore`
//!   exclude an object: not created, not updated. Either one counts on the manifest from Git or on
//!   the object in the cluster (someone may annotate a live object to stop us touching it).
//! - `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` on the manifest: created when missing, never
//!   updated once it exists.
//!
//! Values compare case-insensitively, as Flux's selectors do (its docs write `Ignore`, its diff
//! code `ignore`).

use std::collections::BTreeMap;

use serde_json::Value;

/// Flux's annotation that stops reconciling one object.
pub const RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// Flux's server-side apply policy of one object: `Override` (the default), `Merge`, `Ignore`,
/// `IfNotPresent`.
pub const SSA_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/ssa";

/// What one object's annotations ask of the apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Apply as usual.
    Apply,
    /// Leave the object alone.
    Exclude,
    /// Create when missing; leave alone once it exists.
    IfNotPresent,
}

impl Policy {
    fn from_annotation(get: impl Fn(&str) -> Option<String>) -> Policy {
        let is = |key: &str, value: &str| get(key).is_some_and(|v| v.eq_ignore_ascii_case(value));
        if is(RECONCILE_ANNOTATION, "disabled") || is(SSA_ANNOTATION, "ignore") {
            Policy::Exclude
        } else if is(SSA_ANNOTATION, "ifnotpresent") {
            Policy::IfNotPresent
        } else {
            Policy::Apply
        }
    }

    /// The policy of a manifest (`metadata.annotations` of a JSON object).
    pub fn of_manifest(object: &Value) -> Policy {
        let annotations = object.pointer("/metadata/annotations");
        Policy::from_annotation(|key| annotations.and_then(|a| a.get(key)).and_then(Value::as_str).map(str::to_owned))
    }

    /// The policy of a live object, from its annotations.
    pub fn of_annotations(annotations: Option<&BTreeMap<String, String>>) -> Policy {
        Policy::from_annotation(|key| annotations.and_then(|a| a.get(key)).cloned())
    }
}

/// Whether an object that exists in the cluster with `live` annotations is left alone, given the
/// manifest's policy.
pub fn skips_existing(manifest: Policy, live: Policy) -> bool {
    manifest != Policy::Apply || live == Policy::Exclude
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(annotations: Value) -> Policy {
        Policy::of_manifest(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "annotations": annotations}}))
    }

    #[test]
    fn annotations_map_to_policies_case_insensitively() {
        assert_eq!(manifest(json!({})), Policy::Apply);
        assert_eq!(Policy::of_manifest(&json!({"metadata": {"name": "a"}})), Policy::Apply);
        assert_eq!(manifest(json!({SSA_ANNOTATION: "Ignore"})), Policy::Exclude);
        assert_eq!(manifest(json!({SSA_ANNOTATION: "ignore"})), Policy::Exclude);
        assert_eq!(manifest(json!({RECONCILE_ANNOTATION: "Disabled"})), Policy::Exclude);
        assert_eq!(manifest(json!({SSA_ANNOTATION: "IfNotPresent"})), Policy::IfNotPresent);
        assert_eq!(manifest(json!({SSA_ANNOTATION: "Merge"})), Policy::Apply);
        assert_eq!(manifest(json!({SSA_ANNOTATION: "Override"})), Policy::Apply);
        assert_eq!(manifest(json!({RECONCILE_ANNOTATION: "enabled"})), Policy::Apply);
        // A non-string value (a YAML number) is no policy.
        assert_eq!(manifest(json!({SSA_ANNOTATION: 1})), Policy::Apply);
        // Exclusion wins over IfNotPresent.
        assert_eq!(manifest(json!({SSA_ANNOTATION: "IfNotPresent", RECONCILE_ANNOTATION: "disabled"})), Policy::Exclude);
        let live = BTreeMap::from([(SSA_ANNOTATION.to_owned(), "IGNORE".to_owned())]);
        assert_eq!(Policy::of_annotations(Some(&live)), Policy::Exclude);
        assert_eq!(Policy::of_annotations(None), Policy::Apply);
    }

    #[test]
    fn existing_objects_are_skipped_when_either_side_says_so() {
        assert!(!skips_existing(Policy::Apply, Policy::Apply));
        assert!(skips_existing(Policy::IfNotPresent, Policy::Apply));
        assert!(skips_existing(Policy::Exclude, Policy::Apply));
        assert!(skips_existing(Policy::Apply, Policy::Exclude));
        // IfNotPresent counts on the manifest only: a live object carrying it, with a manifest
        // that no longer does, is applied again.
        assert!(!skips_existing(Policy::Apply, Policy::IfNotPresent));
    }
}
