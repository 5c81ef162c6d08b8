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

/// How many cases `tests/kustomize/` holds.
const CASES: usize = 240;

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
    // Every case folder, exactly: a case that disappears (or one added without counting it here)
    // fails the guard.
    assert_eq!(all.len(), CASES, "the conformance suite has {} cases, this guard counts {CASES}", all.len());
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
        write_tree(&dir, &[("kustomization.yaml", kustomization.as_str()), ("local.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: local}\n")]);
        let objects = ferroflux::kustomize::build(&dir, &dir, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap" && o["data"]["version"].is_string()).expect("the remote ConfigMap");
        assert_eq!(config_map["data"]["version"], *version, "{name}: the ref's version of the file");
        // The remote base's own name prefix and its base elsewhere in the repository.
        assert!(objects.iter().any(|o| o["kind"] == "ServiceAccount" && o["metadata"]["name"].as_str().is_some_and(|n| n.ends_with("r-sa"))), "{name}");
        if kubectl {
            let expected = kubectl_kustomize(&dir).unwrap_or_else(|e| panic!("{name}: kubectl kustomize failed: {e}"));
            let ours = documents(&ferroflux::kustomize::to_yaml(&objects));
            assert_eq!(
                ours,
                documents(&expected),
                "{name}: differs from kubectl kustomize\n--- ours\n{}\n--- kubectl\n{expected}",
                ferroflux::kustomize::to_yaml(&objects)
            );
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

// Hostile trees: whatever a Git author pushes, a build ends with objects or an error, in bounded
// time, memory and stack, and an error never quotes a file outside the build root.

/// Builds `dir` on a thread with the stack of a tokio worker (2 MiB), as the controller does: a
/// recursion too deep for it aborts the whole test process, and a hang fails after a minute.
fn build_bounded(dir: &Path) -> Result<Vec<Value>, String> {
    let dir = dir.to_owned();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let built = ferroflux::kustomize::build(&dir, &dir, &Default::default()).map_err(|e| e.to_string());
            let _ = done.send(built);
        })
        .expect("a thread");
    // Not a performance threshold: kubectl takes well under a second on each of these trees, and
    // this only tells a hang (an exponential matcher never returns) from an answer.
    result.recv_timeout(std::time::Duration::from_secs(60)).expect("the build hung")
}

/// A kustomization of `cm.yaml` with one inline JSON 6902 patch of `operations` (flow mappings).
fn json6902_kustomization(operations: &[String]) -> String {
    let list: String = operations.iter().map(|op| format!("    - {op}\n")).collect();
    format!("resources: [cm.yaml]\npatches:\n- target: {{kind: ConfigMap}}\n  patch: |-\n{list}")
}

const CONFIG_MAP_A40: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}\n";

#[test]
fn hostile_exponential_target_patterns_finish() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let dir = scratch.path();
    write_tree(
        dir,
        &[
            ("cm.yaml", CONFIG_MAP_A40),
            ("kustomization.yaml", "resources: [cm.yaml]\npatches:\n- target: {name: \"(a|a)*b\"}\n  patch: |-\n    - {op: add, path: /data, value: {x: y}}\n"),
        ],
    );
    let objects = build_bounded(dir).expect("builds");
    assert!(objects[0].get("data").is_none(), "the pattern matches nothing");
    // An invalid pattern fails the build, as in kustomize.
    write_tree(
        dir,
        &[("kustomization.yaml", "resources: [cm.yaml]\npatches:\n- target: {name: \"(a\"}\n  patch: |-\n    - {op: add, path: /data, value: {x: y}}\n")],
    );
    let error = build_bounded(dir).expect_err("an invalid pattern");
    assert!(error.contains("error parsing regexp"), "{error}");
}

#[test]
fn hostile_long_image_names_do_not_overflow_the_stack() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let dir = scratch.path();
    let image = format!("nginx:{}", "a".repeat(20_000));
    let deployment = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  template:\n    spec:\n      containers: [{{name: web, image: \"{image}\"}}]\n"
    );
    write_tree(dir, &[("d.yaml", &deployment), ("kustomization.yaml", "resources: [d.yaml]\nimages: [{name: nginx, newTag: \"1.25\"}]\n")]);
    let objects = build_bounded(dir).expect("builds");
    assert_eq!(objects[0]["spec"]["template"]["spec"]["containers"][0]["image"], "nginx:1.25");
}

#[test]
fn hostile_deep_values_are_refused_with_a_clear_error() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let dir = scratch.path();
    let deep = format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: deep}}\nlist: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    write_tree(dir, &[("cm.yaml", &deep), ("kustomization.yaml", "resources: [cm.yaml]\n")]);
    let error = build_bounded(dir).expect_err("too deep");
    assert!(error.contains("cm.yaml") && error.contains("recursion limit exceeded"), "{error}");

    // A replacement that creates a path of 100,000 levels.
    let path = vec!["a"; 100_000].join(".");
    write_tree(
        dir,
        &[
            ("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {v: x}\n"),
            (
                "kustomization.yaml",
                &format!(
                    "resources: [cm.yaml]\nreplacements:\n- source: {{kind: ConfigMap, name: cm, fieldPath: data.v}}\n  targets:\n  - select: {{kind: ConfigMap}}\n    fieldPaths: [\"{path}\"]\n    options: {{create: true}}\n"
                ),
            ),
        ],
    );
    let error = build_bounded(dir).expect_err("too deep");
    assert!(error.contains("more than"), "{error}");

    // A JSON 6902 patch nesting a copy of the object into itself, level after level.
    let operations: Vec<String> = (0..300).map(|_| "{op: copy, from: /data, path: /data/d}".to_owned()).collect();
    write_tree(dir, &[("kustomization.yaml", &json6902_kustomization(&operations))]);
    let error = build_bounded(dir).expect_err("a copy bomb");
    assert!(error.contains("budget") || error.contains("levels deep"), "{error}");
}

#[test]
fn hostile_amplification_stops_within_the_build_budget() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let dir = scratch.path();
    // Each copy into a sibling doubles the object: 2^60 nodes unless stopped.
    let operations: Vec<String> = (0..60).map(|i| format!("{{op: copy, from: /data, path: /data/k{i}}}")).collect();
    write_tree(
        dir,
        &[("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {v: x}\n"), ("kustomization.yaml", &json6902_kustomization(&operations))],
    );
    let error = build_bounded(dir).expect_err("a doubling bomb");
    assert!(error.contains("budget"), "{error}");

    // A var used a hundred thousand times, each use a copy of a 100 kB value.
    let big = "x".repeat(100_000);
    let uses = "$(BIG)".repeat(100_000);
    write_tree(
        dir,
        &[
            ("cm.yaml", &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{v: {big}}}\n")),
            ("pod.yaml", &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: c, image: i, args: [\"{uses}\"]}}]\n")),
            (
                "kustomization.yaml",
                "resources: [cm.yaml, pod.yaml]\nvars:\n- name: BIG\n  objref: {kind: ConfigMap, name: cm, apiVersion: v1}\n  fieldref: {fieldpath: data.v}\n",
            ),
        ],
    );
    let error = build_bounded(dir).expect_err("a var bomb");
    assert!(error.contains("budget"), "{error}");
}

#[test]
fn hostile_symlinked_kustomization_files_are_refused_unread() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let outside = scratch.path().join("outside");
    write_tree(&outside, &[("passwd", "root:x:0:0:root:/root:/bin/bash\n")]);
    let dir = scratch.path().join("repo");
    std::fs::create_dir_all(&dir).expect("folder");
    std::os::unix::fs::symlink(outside.join("passwd"), dir.join("kustomization.yaml")).expect("symlink");
    let error = ferroflux::kustomize::build(&dir, &dir, &Default::default()).expect_err("escapes").to_string();
    assert!(error.contains("is not in or below"), "{error}");
    assert!(!error.contains("root:x"), "the error quotes a file outside the root: {error}");

    // The same for a base whose kustomization file links out of the root.
    let base = dir.join("base");
    std::fs::remove_file(dir.join("kustomization.yaml")).expect("removed");
    write_tree(&dir, &[("kustomization.yaml", "resources: [base]\n")]);
    std::fs::create_dir_all(&base).expect("folder");
    std::os::unix::fs::symlink(outside.join("passwd"), base.join("kustomization.yaml")).expect("symlink");
    let error = ferroflux::kustomize::build(&dir, &dir, &Default::default()).expect_err("escapes").to_string();
    assert!(error.contains("is not in or below") && !error.contains("root:x"), "{error}");
}

#[test]
fn hostile_paths_outside_the_root_do_not_tell_whether_they_exist() {
    let scratch = tempfile::tempdir().expect("temporary folder");
    let outside = scratch.path().join("outside");
    write_tree(&outside, &[("shadow", "secret\n")]);
    let dir = scratch.path().join("repo");
    write_tree(&dir, &[("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")]);
    std::os::unix::fs::symlink(&outside, dir.join("link")).expect("symlink");
    std::os::unix::fs::symlink(outside.join("missing"), dir.join("dangling")).expect("symlink");
    let error_for = |entry: String| {
        write_tree(&dir, &[("kustomization.yaml", &format!("resources: [cm.yaml, \"{entry}\"]\n"))]);
        let error = ferroflux::kustomize::build(&dir, &dir, &Default::default()).expect_err("refused").to_string();
        // The error names the entry; with the entry taken out, existing and missing read alike.
        error.replace(&entry, "ENTRY").replace("shadow", "NAME").replace("missing", "NAME")
    };
    let pairs = [
        (outside.join("shadow").display().to_string(), outside.join("missing").display().to_string()),
        ("../outside/shadow".to_owned(), "../outside/missing".to_owned()),
        ("link/shadow".to_owned(), "link/missing".to_owned()),
        ("link/shadow".to_owned(), "dangling".to_owned()),
    ];
    for (existing, missing) in pairs {
        let (a, b) = (error_for(existing.clone()), error_for(missing.clone()));
        assert!(a.contains("is not in or below"), "{existing}: {a}");
        assert!(b.contains("is not in or below"), "{missing}: {b}");
    }
    // Inside the root, a missing file is still reported as missing.
    let error = error_for("nope.yaml".to_owned());
    assert!(error.contains("no such file"), "{error}");
}

#[test]
fn hostile_many_files_build_in_linear_time() {
    // Thousands of resources in one kustomization: adding each used to rebuild the set of ids.
    let scratch = tempfile::tempdir().expect("temporary folder");
    let dir = scratch.path();
    let count = 5_000;
    let mut text = String::new();
    for i in 0..count {
        text.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\n"));
    }
    std::fs::write(dir.join("all.yaml"), &text).expect("file");
    let mut kustomization = String::from("resources:\n- all.yaml\n");
    for i in 0..1_000 {
        std::fs::write(dir.join(format!("f{i}.yaml")), format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s-{i}}}\n")).expect("file");
        kustomization.push_str(&format!("- f{i}.yaml\n"));
    }
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("file");
    let objects = build_bounded(dir).expect("builds");
    assert_eq!(objects.len(), count + 1_000);
}
