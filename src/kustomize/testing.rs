//! Helpers of the unit tests that build kustomizations (here and in the controller's render).

/// Writes `files` (relative path, content) under a fresh temporary folder.
pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary folder");
    for (path, content) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(path, content).expect("file");
    }
    dir
}

/// The smallest resource file.
pub(crate) const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n";
