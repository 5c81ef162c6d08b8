//! RFC 6902 operations (JSON after a line `%%`) applied to an object (YAML before it).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Some((object, operations)) = text.split_once("\n%%\n") else { return };
    let Ok(objects) = ferroflux::kustomize::parse_objects(object, std::path::Path::new("fuzz.yaml")) else { return };
    let Some(mut target) = objects.into_iter().next() else { return };
    let Ok(operations) = serde_json::from_str::<serde_json::Value>(operations) else { return };
    let _ = ferroflux::kustomize::patch::json6902(&mut target, &operations);
});
