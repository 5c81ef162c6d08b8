//! A kustomize build of a generated tree: the input is split at lines `%%` into the files of a
//! small fixed layout (a root kustomization with a resource, a base folder with its own
//! kustomization and resource, a patch file). Any tree ends in objects or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

const LAYOUT: &[&str] = &["kustomization.yaml", "resource.yaml", "base/kustomization.yaml", "base/resource.yaml", "patch.yaml"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path();
    if std::fs::create_dir(root.join("base")).is_err() {
        return;
    }
    for (name, content) in LAYOUT.iter().zip(text.split("\n%%\n")) {
        if std::fs::write(root.join(name), content).is_err() {
            return;
        }
    }
    let options = ferroflux::kustomize::BuildOptions::default();
    if let Ok(objects) = ferroflux::kustomize::build(root, root, &options) {
        let _ = ferroflux::kustomize::to_yaml(&objects);
    }
});
