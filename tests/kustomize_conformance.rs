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

/// Writes `files` (path, content) under `dir`.
fn write_tree(dir: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("folders");
        std::fs::write(path, content).expect("file");
    }
}

/// Commits the whole work tree of `repo` on its current branch.
fn commit_all(repo: &git2::Repository, message: &str) -> git2::Oid {
    let mut index = repo.index().expect("index");
    index.add_all(["*"], git2::IndexAddOption::DEFAULT, None).expect("add");
    index.write().expect("index written");
    let tree = repo.find_tree(index.write_tree().expect("tree")).expect("tree");
    let signature = git2::Signature::now("test", "test@example.com").expect("signature");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &parents).expect("commit")
}

/// A bare repository served over `file://`: tag `v1` (and the returned commit) holds the first
/// version of the bases, branch `main` a later one.
fn remote_repository(dir: &Path) -> (String, String) {
    let work = dir.join("work");
    let repo = git2::Repository::init(&work).expect("init");
    repo.set_head("refs/heads/main").expect("main");
    write_tree(
        &work,
        &[
            ("app/kustomization.yaml", "resources: [cm.yaml, ../shared]\nnamePrefix: r-\nconfigMapGenerator: [{name: gen, literals: [a=b]}]\n"),
            ("shared/kustomization.yaml", "resources: [sa.yaml]\n"),
            ("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {version: one}\n"),
            ("shared/sa.yaml", "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n"),
            ("comp/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\ncommonAnnotations: {from: component}\n"),
            ("kustomization.yaml", "resources: [app]\nnamespace: remote\n"),
            ("escape/kustomization.yaml", "resources: [../../outside.yaml]\n"),
        ],
    );
    let first = commit_all(&repo, "first");
    repo.tag_lightweight("v1", &repo.find_object(first, None).expect("commit"), false).expect("tag");
    write_tree(&work, &[("app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {version: two}\n")]);
    commit_all(&repo, "second");
    let bare = dir.join("repo.git");
    git2::build::RepoBuilder::new().bare(true).clone(&format!("file://{}", work.display()), &bare).expect("bare clone");
    (format!("file://{}", bare.display()), first.to_string())
}

#[test]
fn remote_git_bases_build_like_kubectl_kustomize() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let (url, first_commit) = remote_repository(scratch.path());
    let kubectl = has_kubectl();
    let options = ferroflux::kustomize::BuildOptions { enable_remote: true };
    let overlays = [
        (
            "tag-and-component",
            format!(
                "resources:\n- {url}//app?ref=v1&timeout=30s\n- local.yaml\ncomponents:\n- {url}//comp?ref=main&submodules=false\nnamePrefix: o-\nbuildMetadata: [originAnnotations, transformerAnnotations]\n"
            ),
            "one",
        ),
        ("branch-and-git-prefix", format!("resources:\n- git::{url}//app?ref=main\n"), "two"),
        ("repository-root-and-head", format!("resources:\n- {url}\n"), "two"),
        ("commit-id", format!("resources:\n- {url}//app?version={first_commit}\nbuildMetadata: [originAnnotations]\n"), "one"),
    ];
    for (name, kustomization, version) in &overlays {
        let dir = scratch.path().join(name);
        write_tree(
            &dir,
            &[("kustomization.yaml", kustomization.as_str()), ("local.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: local}\n")],
        );
        let objects = ferroflux::kustomize::build(&dir, &dir, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["data"]["version"].is_string()).expect("the remote ConfigMap");
        assert_eq!(config_map["data"]["version"], *version, "{name}: the ref's version of the file");
        // The remote base's own name prefix and its base elsewhere in the repository.
        assert!(objects.iter().any(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("r-sa"))), "{name}");
        if kubectl {
            let expected = kubectl_kustomize(&dir).unwrap_or_else(|e| panic!("{name}: kubectl kustomize failed: {e}"));
            let ours = documents(&ferroflux::kustomize::to_yaml(&objects));
            assert_eq!(ours, documents(&expected), "{name}: differs from kubectl kustomize\n--- ours\n{}\n--- kubectl\n{expected}", ferroflux::kustomize::to_yaml(&objects));
        }
    }

    // The clone is the build root of the remote base: nothing outside it is read.
    std::fs::write(scratch.path().join("outside.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: outside}\n").expect("file");
    let dir = scratch.path().join("escape");
    write_tree(&dir, &[("kustomization.yaml", &format!("resources:\n- {url}//escape?ref=v1\n"))]);
    let error = ferroflux::kustomize::build(&dir, &dir, &options).expect_err("escapes the clone").to_string();
    assert!(error.contains("no such file") || error.contains("is not in or below"), "{error}");
    if kubectl {
        assert!(kubectl_kustomize(&dir).is_err(), "kubectl kustomize reads outside the clone");
    }

    // A ref that does not exist, and remote bases when they are not enabled.
    let dir = scratch.path().join("missing-ref");
    write_tree(&dir, &[("kustomization.yaml", &format!("resources:\n- {url}//app?ref=nope\n"))]);
    let error = ferroflux::kustomize::build(&dir, &dir, &options).expect_err("no such ref").to_string();
    assert!(error.contains("ref 'nope' not found"), "{error}");
    let dir = scratch.path().join("branch-and-git-prefix");
    let error = ferroflux::kustomize::build(&dir, &dir, &Default::default()).expect_err("not enabled").to_string();
    assert!(error.contains("remote resources are not enabled"), "{error}");
}
