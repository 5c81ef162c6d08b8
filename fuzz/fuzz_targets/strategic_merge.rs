//! Strategic merge of a patch into an object (both YAML, separated by a `---` line) as a build
//! applies it (kustomize's builtin merge keys, depth checks), inside a build's node budget.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _budget = ferroflux::kustomize::limits::Budget::install();
    let Ok(objects) = ferroflux::kustomize::parse_objects(text, std::path::Path::new("fuzz.yaml")) else { return };
    let [base, patch, ..] = objects.as_slice() else { return };
    let mut merged = base.clone();
    let _ = ferroflux::kustomize::patch::strategic_merge_with_schema(&mut merged, patch, None);
});
