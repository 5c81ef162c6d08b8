//! End-to-end tests of the source library against real Git servers on loopback (nginx +
//! git-http-backend over HTTPS with basic auth and a custom CA, plain HTTP, HTTP with a bearer
//! token, and sshd), started per test by `hack/git-servers.sh`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferroflux::source::artifact::{self, IgnoreRules, UnpackLimits};
use ferroflux::source::git::{self, Credentials, FailureReason, GitError, GitRefSpec};
use ferroflux::source::server::ArtifactServer;
use ferroflux::source::storage::{ObjectKey, Storage};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Servers started by the script; stopped on drop.
struct GitServers {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl GitServers {
    fn start() -> Option<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/git-servers.sh");
        let dir = tempfile::tempdir().ok()?;
        let output = Command::new("bash").arg(&script).arg("start").arg(dir.path()).output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                support::skip(&format!("hack/git-servers.sh could not start the Git servers: {}", String::from_utf8_lossy(&out.stderr)));
                return None;
            }
            Err(e) => {
                support::skip(&format!("cannot run hack/git-servers.sh: {e}"));
                return None;
            }
        }
        let text = fs::read_to_string(dir.path().join("env")).expect("hack/git-servers.sh wrote no env file");
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Some(GitServers { dir, env })
    }

    fn var(&self, key: &str) -> String {
        self.env.get(key).cloned().unwrap_or_else(|| panic!("{key} missing from git-servers env"))
    }

    fn file(&self, key: &str) -> Vec<u8> {
        fs::read(self.var(key)).unwrap()
    }

    /// A new bare repository `<name>.git` with a work clone to commit from.
    fn repo(&self, name: &str) -> TestRepo {
        let bare = PathBuf::from(self.var("REPO_ROOT")).join(format!("{name}.git"));
        git(&["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()], self.dir.path());
        let work = self.dir.path().join(format!("work-{name}"));
        git(&["init", "-q", "-b", "main", work.to_str().unwrap()], self.dir.path());
        git(&["remote", "add", "origin", bare.to_str().unwrap()], &work);
        TestRepo { name: name.to_owned(), work }
    }

    fn http_url(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.var("HTTP_URL_BASE"), repo.name)
    }

    fn https_url(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.var("HTTPS_URL_BASE"), repo.name)
    }

    fn ssh_url(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.var("SSH_URL_BASE"), repo.name)
    }

    fn https_creds(&self, password: &str, ca_key: Option<&str>) -> Credentials {
        let mut data = BTreeMap::new();
        data.insert("username".to_owned(), self.var("USERNAME").into_bytes());
        data.insert("password".to_owned(), password.as_bytes().to_vec());
        if let Some(ca_key) = ca_key {
            data.insert("ca.crt".to_owned(), self.file(ca_key));
        }
        Credentials::from_secret_data(&data).unwrap()
    }

    fn ssh_creds(&self, key_file: &str, passphrase: Option<&str>, known_hosts_key: &str) -> Credentials {
        let mut data = BTreeMap::new();
        data.insert("identity".to_owned(), self.file(key_file));
        data.insert("known_hosts".to_owned(), self.file(known_hosts_key));
        if let Some(passphrase) = passphrase {
            data.insert("password".to_owned(), passphrase.as_bytes().to_vec());
        }
        Credentials::from_secret_data(&data).unwrap()
    }

    /// Lines of an nginx access log that are ref advertisements for upload-pack.
    fn upload_pack_advertisements(&self, log_key: &str) -> Vec<String> {
        // nginx writes the line when the response is done; give it a moment.
        std::thread::sleep(Duration::from_millis(150));
        fs::read_to_string(self.var(log_key))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/info/refs?service=git-upload-pack"))
            .map(str::to_owned)
            .collect()
    }

    fn access_log_lines(&self, log_key: &str) -> usize {
        std::thread::sleep(Duration::from_millis(150));
        fs::read_to_string(self.var(log_key)).unwrap_or_default().lines().count()
    }
}

impl Drop for GitServers {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/git-servers.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).status();
    }
}

macro_rules! servers_or_skip {
    () => {
        match GitServers::start() {
            Some(servers) => servers,
            None => return,
        }
    };
}

struct TestRepo {
    name: String,
    work: PathBuf,
}

impl TestRepo {
    /// Writes files, commits, pushes `main`; returns the commit id.
    fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let full = self.work.join(path);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, content).unwrap();
        }
        git(&["add", "-A"], &self.work);
        git(&["commit", "-q", "--allow-empty", "-m", message], &self.work);
        git(&["push", "-q", "-f", "origin", "main"], &self.work);
        self.head()
    }

    fn head(&self) -> String {
        git(&["rev-parse", "HEAD"], &self.work)
    }
}

fn git(args: &[&str], cwd: &Path) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false"])
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn branch(name: &str) -> GitRefSpec {
    GitRefSpec { branch: Some(name.to_owned()), ..GitRefSpec::default() }
}

/// Fetches the resolved ref into a fresh directory and packs it; returns (revision, digest, dir).
fn fetch_and_pack(url: &str, creds: &Credentials, spec: &GitRefSpec) -> (String, String, tempfile::TempDir) {
    let resolved = git::resolve_remote(url, creds, spec, TIMEOUT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let fetched = git::fetch(url, creds, &resolved, TIMEOUT, &tree).unwrap();
    assert_eq!(fetched.revision, resolved.revision());
    assert!(!tree.join(".git").exists(), "the checkout must not keep .git");
    let rules = IgnoreRules::load(&tree, None).unwrap();
    let summary = artifact::pack(&tree, &rules, std::io::sink()).unwrap();
    (fetched.revision, summary.digest, dir)
}

#[test]
fn http_poll_detects_new_commits_and_force_pushes() {
    let servers = servers_or_skip!();
    let repo = servers.repo("cycle");
    let first = repo.commit(&[("deploy/app.yaml", "replicas: 1\n"), ("logo.png", "img")], "first");
    let url = servers.http_url(&repo);
    let creds = Credentials::default();

    let (revision1, digest1, dir1) = fetch_and_pack(&url, &creds, &branch("main"));
    assert_eq!(revision1, format!("main@sha1:{first}"));
    assert_eq!(fs::read_to_string(dir1.path().join("tree/deploy/app.yaml")).unwrap(), "replicas: 1\n");

    // Unchanged: a poll is exactly one request to the server, and the revision is the same.
    let before = servers.upload_pack_advertisements("HTTP_ACCESS_LOG").len();
    let all_before = servers.access_log_lines("HTTP_ACCESS_LOG");
    let polled = git::resolve_remote(&url, &creds, &branch("main"), TIMEOUT).unwrap();
    assert_eq!(polled.revision(), revision1);
    assert_eq!(servers.upload_pack_advertisements("HTTP_ACCESS_LOG").len(), before + 1);
    assert_eq!(servers.access_log_lines("HTTP_ACCESS_LOG"), all_before + 1, "a no-change poll is one request");
    // Fetching the same commit again gives the same artifact digest.
    let (_, digest_again, _) = fetch_and_pack(&url, &creds, &branch("main"));
    assert_eq!(digest_again, digest1);

    // New commit: new head, new digest.
    let second = repo.commit(&[("deploy/app.yaml", "replicas: 2\n")], "second");
    let (revision2, digest2, _) = fetch_and_pack(&url, &creds, &branch("main"));
    assert_eq!(revision2, format!("main@sha1:{second}"));
    assert_ne!(digest2, digest1);

    // Force-push back to the first commit: the artifact is the first one again.
    git(&["reset", "-q", "--hard", &first], &repo.work);
    git(&["push", "-q", "-f", "origin", "main"], &repo.work);
    let (revision3, digest3, _) = fetch_and_pack(&url, &creds, &branch("main"));
    assert_eq!(revision3, revision1);
    assert_eq!(digest3, digest1);

    // Missing branch: Flux's message.
    let err = git::resolve_remote(&url, &creds, &branch("nope"), TIMEOUT).unwrap_err();
    assert_eq!(err.to_string(), format!("unable to clone '{url}': couldn't find remote ref 'refs/heads/nope'"));
    assert_eq!(err.reason(), FailureReason::GitOperationFailed);
}

#[test]
fn tags_semver_name_and_commit_refs() {
    let servers = servers_or_skip!();
    let repo = servers.repo("tags");
    let c1 = repo.commit(&[("v.txt", "1.0.0")], "one");
    git(&["tag", "-a", "v1.0.0", "-m", "annotated"], &repo.work);
    let c2 = repo.commit(&[("v.txt", "1.1.0")], "two");
    git(&["tag", "v1.1.0"], &repo.work);
    let c3 = repo.commit(&[("v.txt", "2.0.0-rc.1")], "three");
    git(&["tag", "2.0.0-rc.1"], &repo.work);
    git(&["push", "-q", "origin", "--tags"], &repo.work);
    let url = servers.http_url(&repo);
    let creds = Credentials::default();

    let tag = GitRefSpec { tag: Some("v1.0.0".into()), ..GitRefSpec::default() };
    let (revision, _, dir) = fetch_and_pack(&url, &creds, &tag);
    assert_eq!(revision, format!("v1.0.0@sha1:{c1}"), "annotated tag peeled to its commit");
    assert_eq!(fs::read_to_string(dir.path().join("tree/v.txt")).unwrap(), "1.0.0");

    let semver = GitRefSpec { semver: Some(">=1.0.0 <2.0.0".into()), ..GitRefSpec::default() };
    let (revision, _, _) = fetch_and_pack(&url, &creds, &semver);
    assert_eq!(revision, format!("v1.1.0@sha1:{c2}"));
    let pre = GitRefSpec { semver: Some(">=2.0.0-rc.0".into()), ..GitRefSpec::default() };
    assert_eq!(fetch_and_pack(&url, &creds, &pre).0, format!("2.0.0-rc.1@sha1:{c3}"));
    let none = GitRefSpec { semver: Some(">=3".into()), ..GitRefSpec::default() };
    assert!(matches!(git::resolve_remote(&url, &creds, &none, TIMEOUT), Err(GitError::NoSemverMatch { .. })));

    let name = GitRefSpec { name: Some("refs/tags/v1.1.0".into()), ..GitRefSpec::default() };
    assert_eq!(fetch_and_pack(&url, &creds, &name).0, format!("refs/tags/v1.1.0@sha1:{c2}"));

    // A commit deep in the branch's history (not a tip): needs the history fetch.
    let deep = GitRefSpec { branch: Some("main".into()), commit: Some(c1.clone()), ..GitRefSpec::default() };
    let (revision, _, dir) = fetch_and_pack(&url, &creds, &deep);
    assert_eq!(revision, format!("main@sha1:{c1}"));
    assert_eq!(fs::read_to_string(dir.path().join("tree/v.txt")).unwrap(), "1.0.0");
    let bare = GitRefSpec { commit: Some(c2.clone()), ..GitRefSpec::default() };
    assert_eq!(fetch_and_pack(&url, &creds, &bare).0, format!("sha1:{c2}"));
    let missing = GitRefSpec { commit: Some("0".repeat(40)), ..GitRefSpec::default() };
    let resolved = git::resolve_remote(&url, &creds, &missing, TIMEOUT).unwrap();
    let err = git::fetch(&url, &creds, &resolved, TIMEOUT, &tempfile::tempdir().unwrap().path().join("t")).unwrap_err();
    assert!(matches!(err, GitError::CommitNotFound { .. }), "{err}");

    // A pinned commit that was the branch tip when polled; the branch moves before the fetch:
    // the fetch still yields exactly the pinned commit.
    let pinned = GitRefSpec { branch: Some("main".into()), commit: Some(c3.clone()), ..GitRefSpec::default() };
    let resolved = git::resolve_remote(&url, &creds, &pinned, TIMEOUT).unwrap();
    assert!(matches!(resolved.fetch_plan, git::FetchPlan::ShallowRef(_)), "{resolved:?}");
    repo.commit(&[("v.txt", "moved on")], "four");
    let dir = tempfile::tempdir().unwrap();
    let fetched = git::fetch(&url, &creds, &resolved, TIMEOUT, &dir.path().join("t")).unwrap();
    assert_eq!(fetched.commit, c3);
    assert_eq!(fs::read_to_string(dir.path().join("t/v.txt")).unwrap(), "2.0.0-rc.1");

    // Empty repository.
    let empty = servers.repo("empty");
    let err = git::resolve_remote(&servers.http_url(&empty), &creds, &branch("main"), TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::EmptyRepository { .. }), "{err}");
}

#[test]
fn https_basic_auth_and_custom_ca() {
    let servers = servers_or_skip!();
    let repo = servers.repo("secure");
    let commit = repo.commit(&[("a.yaml", "a: 1\n")], "first");
    let url = servers.https_url(&repo);
    let password = servers.var("PASSWORD");

    let good = servers.https_creds(&password, Some("CA_FILE"));
    let (revision, _, _) = fetch_and_pack(&url, &good, &branch("main"));
    assert_eq!(revision, format!("main@sha1:{commit}"));
    // Credentials go with the first request: a poll is one request, answered 200.
    let before = servers.access_log_lines("HTTPS_ACCESS_LOG");
    git::resolve_remote(&url, &good, &branch("main"), TIMEOUT).unwrap();
    let log = fs::read_to_string(servers.var("HTTPS_ACCESS_LOG")).unwrap();
    assert_eq!(servers.access_log_lines("HTTPS_ACCESS_LOG"), before + 1);
    assert!(log.lines().last().unwrap().contains("\" 200 "), "{log}");

    // Wrong password: authentication failure, and the password appears nowhere.
    let wrong_password = "wrong-password-7f3a";
    let err = git::ls_remote(&url, &servers.https_creds(wrong_password, Some("CA_FILE")), TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::AuthenticationFailed, "{err}");
    assert!(!err.to_string().contains(wrong_password) && !format!("{err:?}").contains(wrong_password));
    let err = git::fetch(
        &url,
        &servers.https_creds(wrong_password, Some("CA_FILE")),
        &git::resolve(&[], &git::RefSelector::Commit { sha: commit.clone(), branch: None }, &url).unwrap(),
        TIMEOUT,
        &tempfile::tempdir().unwrap().path().join("t"),
    )
    .unwrap_err();
    assert_eq!(err.reason(), FailureReason::AuthenticationFailed, "{err}");
    assert!(!err.to_string().contains(wrong_password));

    // No credentials at all.
    let err = git::ls_remote(&url, &Credentials { ca_pem: Some(servers.file("CA_FILE")), ..Credentials::default() }, TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::AuthenticationFailed, "{err}");

    // The server's CA is not in the system store: refused without ca.crt, and with another CA.
    let err = git::ls_remote(&url, &servers.https_creds(&password, None), TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::CertificateRejected { .. }), "{err}");
    let err = git::ls_remote(&url, &servers.https_creds(&password, Some("OTHER_CA_FILE")), TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::CertificateRejected { .. }), "{err}");
    assert!(!err.to_string().contains(&password));
}

#[test]
fn bearer_token() {
    let servers = servers_or_skip!();
    let repo = servers.repo("bearer");
    repo.commit(&[("a.yaml", "a\n")], "first");
    let url = format!("{}/{}.git", servers.var("BEARER_URL_BASE"), repo.name);
    // This server is plain HTTP: credentials go there only when the user opted in.
    let with_token = |token: &str| {
        let mut data = BTreeMap::new();
        data.insert("bearerToken".to_owned(), token.as_bytes().to_vec());
        Credentials { allow_insecure_http: true, ..Credentials::from_secret_data(&data).unwrap() }
    };
    let good = with_token(&servers.var("BEARER_TOKEN"));
    let not_opted_in = Credentials { allow_insecure_http: false, ..good.clone() };
    let err = git::ls_remote(&url, &not_opted_in, TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::InsecureCredentials { .. }), "{err}");
    assert!(err.to_string().contains("bearer token cannot be sent over HTTP"), "{err}");
    assert!(!err.to_string().contains(&servers.var("BEARER_TOKEN")));
    let (revision, _, _) = fetch_and_pack(&url, &good, &branch("main"));
    assert_eq!(revision, format!("main@sha1:{}", repo.head()));
    let err = git::ls_remote(&url, &with_token("not-the-token-91c2"), TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::AuthenticationFailed, "{err}");
    assert!(!err.to_string().contains("not-the-token-91c2"));
}

#[test]
fn ssh_with_known_hosts() {
    let servers = servers_or_skip!();
    let repo = servers.repo("ssh");
    let commit = repo.commit(&[("k.yaml", "k\n")], "first");
    let url = servers.ssh_url(&repo);

    let creds = servers.ssh_creds("SSH_KEY_FILE", None, "KNOWN_HOSTS_FILE");
    let (revision, _, dir) = fetch_and_pack(&url, &creds, &branch("main"));
    assert_eq!(revision, format!("main@sha1:{commit}"));
    assert_eq!(fs::read_to_string(dir.path().join("tree/k.yaml")).unwrap(), "k\n");

    let passphrase = servers.var("SSH_KEY_PASSPHRASE");
    let with_passphrase = servers.ssh_creds("SSH_KEY_WITH_PASSPHRASE_FILE", Some(&passphrase), "KNOWN_HOSTS_FILE");
    assert!(git::ls_remote(&url, &with_passphrase, TIMEOUT).is_ok());
    let wrong_passphrase = servers.ssh_creds("SSH_KEY_WITH_PASSPHRASE_FILE", Some("wrong-phrase-55"), "KNOWN_HOSTS_FILE");
    let err = git::ls_remote(&url, &wrong_passphrase, TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::AuthenticationFailed, "{err}");
    assert!(!err.to_string().contains("wrong-phrase-55") && !err.to_string().contains(&passphrase));

    // known_hosts pins another key for this host: refused.
    let err = git::ls_remote(&url, &servers.ssh_creds("SSH_KEY_FILE", None, "OTHER_KNOWN_HOSTS_FILE"), TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::HostKeyRejected { .. }), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    // Host not listed at all: refused.
    let mut unknown = servers.ssh_creds("SSH_KEY_FILE", None, "KNOWN_HOSTS_FILE");
    if let Some(ssh) = unknown.ssh.as_mut() {
        ssh.known_hosts = "other.example.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n".into();
    }
    let err = git::ls_remote(&url, &unknown, TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::HostKeyRejected { .. }), "{err}");
    // No secret at all: no known_hosts, so the host key cannot be trusted.
    let err = git::ls_remote(&url, &Credentials::default(), TIMEOUT).unwrap_err();
    assert!(matches!(err, GitError::HostKeyRejected { .. }), "{err}");
}

#[test]
fn unreachable_and_invalid_remotes() {
    // A port nobody listens on: connection refused.
    let closed_port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed_port}/repo.git");
    let err = git::ls_remote(&url, &Credentials::default(), TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::GitOperationFailed, "{err}");

    // A server that accepts and never answers: bounded by the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/repo.git", silent.local_addr().unwrap().port());
    let err = git::ls_remote(&url, &Credentials::default(), Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, GitError::Timeout { .. }), "{err}");
    drop(silent);

    let err = git::ls_remote("git@example.com:org/repo.git", &Credentials::default(), TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::UrlInvalid);
    let err = git::ls_remote("https://user:hunter22@:99999/r.git", &Credentials::default(), TIMEOUT).unwrap_err();
    assert_eq!(err.reason(), FailureReason::UrlInvalid);
    assert!(!err.to_string().contains("hunter22"));
}

/// A raw HTTP/1.1 request, so the path goes out exactly as written.
fn raw_http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, BTreeMap<String, String>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: artifacts\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let body = response[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
    (status, headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_server_serves_only_files_under_the_root() {
    let base = tempfile::tempdir().unwrap();
    let storage = Storage::new(base.path().join("storage")).unwrap();
    let key = ObjectKey::git_repository("flux-system", "podinfo").unwrap();
    let tree = base.path().join("tree");
    fs::create_dir_all(tree.join("deploy")).unwrap();
    fs::write(tree.join("deploy/app.yaml"), "kind: Deployment\n").unwrap();
    let rules = IgnoreRules::load(&tree, None).unwrap();
    let stored = storage.store_tree(&key, "abc123", &tree, &rules).unwrap();
    assert!(storage.exists(&key, "abc123"));
    // A symlink inside the root pointing outside it, and a secret file next to the root.
    fs::write(base.path().join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(base.path().join("secret.txt"), storage.object_dir(&key).join("escape.tar.gz")).unwrap();

    let server = ArtifactServer::bind(storage.root(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until(async move {
        let _ = stopped.await;
    }));

    let relative = format!("/{}", stored.relative_path);
    let results = tokio::task::spawn_blocking(move || {
        let get = raw_http(addr, "GET", &relative);
        let head = raw_http(addr, "HEAD", &relative);
        let refused: Vec<(String, u16)> = [
            "/../secret.txt",
            "/gitrepository/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/gitrepository/%2e%2e/%2e%2e/secret.txt",
            "/gitrepository/flux-system/podinfo/..%2f..%2f..%2fsecret.txt",
            "//etc/passwd",
            "/gitrepository/",
            "/gitrepository/flux-system/podinfo",
            "/gitrepository/flux-system/podinfo/escape.tar.gz",
            "/gitrepository/flux-system/podinfo/missing.tar.gz",
            "/",
        ]
        .iter()
        .map(|p| (p.to_string(), raw_http(addr, "GET", p).0))
        .collect();
        let post = raw_http(addr, "POST", &relative).0;
        (get, head, refused, post)
    })
    .await
    .unwrap();
    let _ = stop.send(());
    handle.await.unwrap().unwrap();

    let (get, head, refused, post) = results;
    let bytes = fs::read(&stored.path).unwrap();
    assert_eq!(get.0, 200);
    assert_eq!(get.1.get("content-type").map(String::as_str), Some("application/gzip"));
    assert_eq!(get.1.get("content-length"), Some(&bytes.len().to_string()));
    assert_eq!(get.2, bytes);
    assert_eq!(artifact::sha256_digest(&get.2), stored.digest);
    assert_eq!(head.0, 200);
    assert_eq!(head.1.get("content-length"), Some(&bytes.len().to_string()));
    assert!(head.2.is_empty());
    for (path, status) in refused {
        assert!(status == 400 || status == 404, "{path} answered {status}");
    }
    assert_eq!(post, 405);

    // What was served unpacks to the original tree.
    let out = base.path().join("unpacked");
    artifact::unpack(get.2.as_slice(), &out, UnpackLimits::default()).unwrap();
    assert_eq!(fs::read_to_string(out.join("deploy/app.yaml")).unwrap(), "kind: Deployment\n");
}
