//! Strategic merge of a patch into an object (both YAML, separated by a `---` line), with
//! Kubernetes' merge keys and without.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(objects) = ferroflux::kustomize::parse_objects(text, std::path::Path::new("fuzz.yaml")) else { return };
    let [base, patch, ..] = objects.as_slice() else { return };
    let mut merged = base.clone();
    ferroflux::kustomize::patch::strategic_merge_kubernetes(&mut merged, patch);
    let mut plain = base.clone();
    ferroflux::kustomize::patch::strategic_merge(&mut plain, patch);
});
