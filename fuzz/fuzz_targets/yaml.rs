//! YAML reading as the engine reads every file from Git: any bytes end in objects or an error,
//! never a panic or a stack overflow; what parses prints back and parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(objects) = ferroflux::kustomize::parse_objects(text, std::path::Path::new("fuzz.yaml")) {
        let printed = ferroflux::kustomize::to_yaml(&objects);
        let _ = ferroflux::kustomize::parse_objects(&printed, std::path::Path::new("printed.yaml"));
    }
});
