//! `crds/` must hold exactly what `ferroflux crds` generates from the Rust types.

use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn crds_folder_matches_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("crds/ exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let name = path.file_name().expect("file name").to_string_lossy().into_owned();
            on_disk.insert(name, std::fs::read_to_string(&path).expect("readable"));
        }
    }
    let mut generated = BTreeMap::new();
    for crd in ferroflux::api::crd::all().expect("CRDs merge") {
        generated.insert(ferroflux::api::crd::file_name(&crd), ferroflux::api::crd::to_yaml(&crd).expect("YAML"));
    }
    assert_eq!(on_disk.keys().collect::<Vec<_>>(), generated.keys().collect::<Vec<_>>(), "crds/ has other files than `ferroflux crds --dir crds` writes");
    for (name, yaml) in &generated {
        assert!(on_disk[name] == *yaml, "crds/{name} differs from the Rust types: run `cargo run -- crds --dir crds`");
    }
}
