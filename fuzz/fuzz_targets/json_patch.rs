//! RFC 6902 operations (JSON after a line `%%`) applied to an object (YAML before it), inside a
//! build's node budget as every patch of a build is: any input ends in a patched object or an
//! error, never a panic, a stack overflow or unbounded memory (a copy into its own subtree
//! doubles the object per operation).
#![no_main]

use ferroflux::kustomize::{json6902, limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((object, operations)) = text.split_once("\n%%\n") else { return };
    let _budget = limits::Budget::install();
    let Ok(objects) = ferroflux::kustomize::parse_objects(object, std::path::Path::new("fuzz.yaml")) else { return };
    let Some(mut target) = objects.into_iter().next() else { return };
    let Ok(operations) = serde_json::from_str::<serde_json::Value>(operations) else { return };
    let _ = json6902::apply(&mut target, &operations);
});
