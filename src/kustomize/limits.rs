//! Bounds on what one build may do with what Git holds: how deep a value nests (every walk over
//! an object recurses), and how many YAML nodes a build may read or make in total (a build runs
//! inside a shared controller, so a tree of many files or an amplifying patch must fail cleanly
//! instead of exhausting its memory).
//!
//! The node budget is per build and per thread: [`Budget::install`] starts one for the build on
//! the current thread, and parsing and the operations that copy values charge it. Outside a build
//! (a library call parsing one file) nothing is charged.

use std::cell::Cell;

use serde_json::Value;

/// How deep a value may nest (mappings and lists). Kubernetes objects nest a few dozen levels,
/// CRD schemas under a hundred; every walk over a value is bounded by this.
pub const MAX_DEPTH: usize = 200;

/// How many YAML nodes (scalars, mappings, lists) one build may read and make, in total. A
/// node costs about 100 bytes in memory, so this is a few hundred megabytes; the largest real
/// trees (CRD bundles, kube-prometheus) hold well under a million.
pub const MAX_BUILD_NODES: usize = 4_000_000;

/// How many kustomizations may nest (a base of a base of ...): real trees nest a handful.
pub const MAX_NESTING: usize = 64;

thread_local! {
    static REMAINING: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A build's node budget on this thread; dropping it ends the budget.
pub struct Budget {
    previous: Option<usize>,
}

impl Budget {
    /// Starts a budget of [`MAX_BUILD_NODES`] unless one runs already (a nested build, such as
    /// a remote base, shares its parent's).
    pub fn install() -> Budget {
        let previous = REMAINING.with(Cell::get);
        if previous.is_none() {
            REMAINING.with(|r| r.set(Some(MAX_BUILD_NODES)));
        }
        Budget { previous }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        if self.previous.is_none() {
            REMAINING.with(|r| r.set(None));
        }
    }
}

/// What is left of the current build's budget (`None`: no build running).
pub fn remaining() -> Option<usize> {
    REMAINING.with(Cell::get)
}

/// Charges `nodes` to the current build; an error when that exceeds its budget.
pub fn charge(nodes: usize) -> Result<(), String> {
    REMAINING.with(|r| match r.get() {
        None => Ok(()),
        Some(left) if nodes <= left => {
            r.set(Some(left - nodes));
            Ok(())
        }
        Some(_) => {
            r.set(Some(0));
            Err(format!("the build exceeds its budget of {MAX_BUILD_NODES} YAML nodes (values read from files and made by patches and replacements)"))
        }
    })
}

/// The number of nodes of a value, counted without recursion; a long string counts one node
/// per 64 bytes, about what a node costs, so that the budget bounds memory.
pub fn nodes(value: &Value) -> usize {
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        count += 1;
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.values()),
            Value::String(text) => count += text.len() / 64,
            _ => {}
        }
    }
    count
}

/// How deeply a value nests (a scalar: 0), counted without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0)];
    while let Some((value, level)) = pending.pop() {
        deepest = deepest.max(level);
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|v| (v, level + 1))),
            Value::Object(map) => pending.extend(map.values().map(|v| (v, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// An error when `value` nests deeper than [`MAX_DEPTH`].
pub fn check_depth(value: &Value, what: &str) -> Result<(), String> {
    let found = depth(value);
    if found > MAX_DEPTH { Err(format!("{what} nests {found} levels deep; at most {MAX_DEPTH} are allowed")) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn depth_and_nodes_are_counted_without_recursion() {
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [{"b": 1}]})), 3);
        assert_eq!(nodes(&json!({"a": [1, 2], "b": "x"})), 5);
        assert_eq!(nodes(&json!("x".repeat(640))), 11);
        // Deeper than any stack would take recursively.
        let mut deep = json!(0);
        for _ in 0..100_000 {
            deep = Value::Array(vec![deep]);
        }
        assert_eq!(depth(&deep), 100_000);
        assert!(check_depth(&deep, "the value").is_err());
        // serde_json drops nested values recursively: unwind it by hand.
        while let Value::Array(mut items) = deep {
            deep = items.pop().unwrap_or(Value::Null);
        }
    }

    #[test]
    fn the_budget_is_per_build() {
        assert!(charge(usize::MAX).is_ok(), "no build, no budget");
        {
            let _budget = Budget::install();
            assert!(charge(MAX_BUILD_NODES - 1).is_ok());
            {
                let _nested = Budget::install();
                assert!(charge(2).is_err(), "a nested build shares its parent's budget");
            }
            assert_eq!(remaining(), Some(0));
        }
        assert_eq!(remaining(), None);
    }
}
