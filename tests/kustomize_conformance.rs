//! Conformance of ferroflux's kustomize engine with `kubectl kustomize` (kustomize v5.5.0).
//!
//! Each folder under `tests/kustomize/` is a case: a tree built with our engine and compared
//! object for object, in order, with `kubectl kustomize` when kubectl is installed, and with the
//! checked-in `expected.yaml` (made by kubectl) otherwise. `build-dir.txt` names the folder to
//! build (default: the case folder), `root-dir.txt` the build root (default: the case folder);
//! `expect-error.txt` holds text the error must contain (kubectl must fail too).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kustomize");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir).expect("tests/kustomize").filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    cases.sort();
    cases
}

fn setting(case: &Path, file: &str) -> PathBuf {
    match std::fs::read_to_string(case.join(file)) {
        Ok(text) => case.join(text.trim()),
        Err(_) => case.to_path_buf(),
    }
}

fn has_kubectl() -> bool {
    Command::new("kubectl").args(["version", "--client"]).output().is_ok_and(|o| o.status.success())
}

fn kubectl_kustomize(dir: &Path) -> Result<String, String> {
    let out = Command::new("kubectl").arg("kustomize").arg(dir).output().map_err(|e| e.to_string())?;
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).into_owned()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

/// Parsed documents, compared as values: kustomize may write a scalar differently.
fn documents(yaml: &str) -> Vec<Value> {
    ferroflux::kustomize::parse_objects(yaml, Path::new("output")).expect("valid YAML output")
}

#[test]
fn every_case_matches_kubectl_kustomize() {
    let kubectl = has_kubectl();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 40, "the conformance suite lost its cases");
    for case in &all {
        let name = case.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = setting(case, "build-dir.txt");
        let root = setting(case, "root-dir.txt");
        let ours = ferroflux::kustomize::build(&root, &dir, &Default::default());
        if let Ok(expected_error) = std::fs::read_to_string(case.join("expect-error.txt")) {
            match ours {
                Ok(_) => failures.push(format!("{name}: built, but should fail with {:?}", expected_error.trim())),
                Err(e) if !e.to_string().contains(expected_error.trim()) => {
                    failures.push(format!("{name}: error {e:?} does not contain {:?}", expected_error.trim()))
                }
                Err(_) => {}
            }
            if kubectl && kubectl_kustomize(&dir).is_ok() {
                failures.push(format!("{name}: kubectl kustomize builds it, so the case is wrong"));
            }
            continue;
        }
        let expected = if kubectl {
            match kubectl_kustomize(&dir) {
                Ok(text) => text,
                Err(e) => {
                    failures.push(format!("{name}: kubectl kustomize failed: {e}"));
                    continue;
                }
            }
        } else {
            std::fs::read_to_string(case.join("expected.yaml")).expect("expected.yaml")
        };
        match ours {
            Err(e) => failures.push(format!("{name}: build failed: {e}")),
            Ok(objects) => {
                let ours = documents(&ferroflux::kustomize::to_yaml(&objects));
                let theirs = documents(&expected);
                if ours != theirs {
                    failures.push(format!(
                        "{name}: differs from kubectl kustomize\n--- ours\n{}\n--- kubectl\n{}",
                        ferroflux::kustomize::to_yaml(&ours),
                        ferroflux::kustomize::to_yaml(&theirs)
                    ));
                }
                // The checked-in expectation must stay what kubectl says.
                if kubectl {
                    let checked_in = std::fs::read_to_string(case.join("expected.yaml")).unwrap_or_default();
                    if documents(&checked_in) != theirs {
                        failures.push(format!("{name}: expected.yaml is stale: regenerate it with kubectl kustomize"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), all.len(), failures.join("\n\n"));
}
