//! The container image: `hack/image.sh` builds it from a static binary on `FROM scratch` (no
//! registry to pull a base from), and it runs. Where no Docker engine answers, the test says so
//! and passes: that is issue #6's rule for machines without Docker.

mod support;

use std::process::{Command, Output};

fn docker_works() -> bool {
    Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success())
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("running docker")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn image_builds_and_runs_as_nobody() {
    if !docker_works() {
        println!("no Docker engine answers `docker info`: the image is not built or tested here");
        return;
    }
    let version = env!("CARGO_PKG_VERSION");
    let tag = format!("ferroflux:{version}");
    let build = Command::new("bash").arg(support::repo_root().join("hack/image.sh")).output().expect("running hack/image.sh");
    assert!(build.status.success(), "hack/image.sh failed:\n{}{}", text(&build.stdout), text(&build.stderr));
    assert!(text(&build.stdout).contains("statically linked") || text(&build.stdout).contains("static-pie linked"), "{}", text(&build.stdout));

    let run = docker(&["run", "--rm", &tag, "version"]);
    assert!(run.status.success(), "docker run failed:\n{}", text(&run.stderr));
    assert_eq!(text(&run.stdout), format!("ferroflux {version}\n"));

    let user = docker(&["image", "inspect", "-f", "{{.Config.User}} {{json .Config.Entrypoint}}", &tag]);
    assert_eq!(text(&user.stdout).trim(), r#"65534:65534 ["/ferroflux"]"#);
    // What the Deployment runs under: any uid, read-only root, no capabilities.
    let locked_down = docker(&["run", "--rm", "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--user", "65534:65534", &tag, "version"]);
    assert!(locked_down.status.success(), "{}", text(&locked_down.stderr));
}

/// The image talks to a real API server by host name: the static binary resolves the name through
/// the image's /etc/hosts (glibc's resolver linked in, `hosts: files dns`) and speaks TLS with
/// rustls, then validates the install with a server-side dry-run.
#[test]
fn image_resolves_a_host_name_and_dry_runs_the_install_against_the_cluster() {
    if !docker_works() {
        println!("no Docker engine answers `docker info`: the image is not tested here");
        return;
    }
    let tag = format!("ferroflux:{}", env!("CARGO_PKG_VERSION"));
    if !docker(&["image", "inspect", &tag]).status.success() {
        let build = Command::new("bash").arg(support::repo_root().join("hack/image.sh")).output().expect("running hack/image.sh");
        assert!(build.status.success(), "hack/image.sh failed:\n{}{}", text(&build.stdout), text(&build.stderr));
    }
    // The same kubeconfig, with the API server's address replaced by a name only the container's
    // /etc/hosts knows.
    let kubeconfig = std::fs::read_to_string(support::kubeconfig()).expect("kubeconfig");
    let server = kubeconfig.lines().find_map(|l| l.trim().strip_prefix("server:")).expect("a server line").trim().to_owned();
    let host = server.trim_start_matches("https://").split(':').next().expect("host").to_owned();
    assert!(host.parse::<std::net::IpAddr>().is_ok(), "expected the test API server at an IP address, got {server}");
    let renamed = kubeconfig.replace(&server, &server.replace(&host, "apiserver.ferroflux.test"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, renamed).expect("writing kubeconfig");
    // The container runs as nobody: it must be able to read the file.
    let _ = Command::new("chmod").args(["-R", "a+rX"]).arg(dir.path()).status();

    let mount = format!("{}:/kubeconfig:ro", path.display());
    let add_host = format!("apiserver.ferroflux.test:{host}");
    let run = docker(&[
        "run", "--rm", "--network", "host", "--add-host", &add_host, "-v", &mount, "-e", "KUBECONFIG=/kubeconfig",
        &tag, "install", "--dry-run", "--namespace", "image-test-absent",
    ]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "ferroflux in the image failed:\n{stdout}{}", text(&run.stderr));
    assert!(stdout.contains("✔ CustomResourceDefinition/gitrepositories.source.toolkit.fluxcd.io valid (server dry run)"), "{stdout}");
}
