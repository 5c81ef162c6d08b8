//! metav1.Condition bookkeeping as Flux's controllers do it (`fluxcd/pkg/runtime/conditions`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `True`, `False` or `Unknown`, as written in a condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

/// Sets (adds or updates) a condition. `lastTransitionTime` moves only when the status changes,
/// as the API conventions require; reason, message and generation always take the new values.
pub fn set(conditions: &mut Vec<Condition>, type_: &str, status: Status, reason: &str, message: &str, generation: Option<i64>, now: &Time) {
    let status_str = status.as_str();
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        if existing.status != status_str {
            existing.status = status_str.to_owned();
            existing.last_transition_time = now.clone();
        }
        existing.reason = reason.to_owned();
        existing.message = message.to_owned();
        existing.observed_generation = generation;
    } else {
        conditions.push(Condition {
            type_: type_.to_owned(),
            status: status_str.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: generation,
            last_transition_time: now.clone(),
        });
    }
    sort(conditions);
}

/// Removes a condition when present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The status of the condition `type_` (`True`, `False`, `Unknown`), `Unknown` when absent.
pub fn status_of<'a>(conditions: &'a [Condition], type_: &str) -> &'a str {
    conditions.iter().find(|c| c.type_ == type_).map_or("Unknown", |c| c.status.as_str())
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// Flux keeps `Ready` first, then the other summary conditions, then the rest by type, so that
/// `kubectl describe` reads the same on every reconcile.
fn sort(conditions: &mut [Condition]) {
    fn rank(type_: &str) -> u8 {
        match type_ {
            "Ready" => 0,
            "Reconciling" => 1,
            "Stalled" => 2,
            _ => 3,
        }
    }
    conditions.sort_by(|a, b| rank(&a.type_).cmp(&rank(&b.type_)).then_with(|| a.type_.cmp(&b.type_)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: &str) -> Time {
        Time(s.parse().expect("timestamp"))
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let mut conditions = Vec::new();
        set(&mut conditions, "Ready", Status::False, "Failed", "boom", Some(1), &time("2026-01-01T00:00:00Z"));
        set(&mut conditions, "Ready", Status::False, "Failed", "boom again", Some(2), &time("2026-01-01T00:01:00Z"));
        assert_eq!(conditions[0].last_transition_time, time("2026-01-01T00:00:00Z"));
        assert_eq!(conditions[0].message, "boom again");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(&mut conditions, "Ready", Status::True, "Succeeded", "ok", Some(2), &time("2026-01-01T00:02:00Z"));
        assert_eq!(conditions[0].last_transition_time, time("2026-01-01T00:02:00Z"));
        assert!(is_true(&conditions, "Ready"));
    }

    #[test]
    fn ready_comes_first_and_remove_removes() {
        let now = time("2026-01-01T00:00:00Z");
        let mut conditions = Vec::new();
        set(&mut conditions, "ArtifactInStorage", Status::True, "Succeeded", "", None, &now);
        set(&mut conditions, "Reconciling", Status::True, "Progressing", "", None, &now);
        set(&mut conditions, "Ready", Status::Unknown, "Progressing", "", None, &now);
        let types: Vec<_> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Reconciling", "ArtifactInStorage"]);
        remove(&mut conditions, "Reconciling");
        assert!(get(&conditions, "Reconciling").is_none());
        assert!(!is_true(&conditions, "Ready"));
    }
}
