//! Side-by-side timing of the source library against the `git` CLI, on real loopback servers
//! started by `hack/git-servers.sh`:
//!   (a) a no-change poll: `ls_remote` vs `git ls-remote` (HTTP, and HTTPS with basic auth);
//!   (b) fetch + pack of a repository with 5,000 files and 1,000 commits vs
//!       `git clone --depth 1` + `tar czf`.
//! Run through `hack/bench-source.sh` (a `harness = false` bench target).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferroflux::source::artifact::{self, IgnoreRules};
use ferroflux::source::git::{self, Credentials, GitRefSpec};

const TIMEOUT: Duration = Duration::from_secs(120);
const POLLS: usize = 30;
const FETCHES: usize = 3;
const FILES: usize = 5_000;
const COMMITS: usize = 1_000;

fn main() {
    let work = std::env::temp_dir().join(format!("ferroflux-bench-{}", std::process::id()));
    fs::create_dir_all(&work).expect("creating bench dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/git-servers.sh");
    let servers = work.join("servers");
    let status = Command::new("bash").arg(&script).arg("start").arg(&servers).status().expect("running git-servers.sh");
    assert!(status.success(), "git-servers.sh start failed");
    let result = std::panic::catch_unwind(|| run(&work, &servers));
    let _ = Command::new("bash").arg(&script).arg("stop").arg(&servers).status();
    let _ = fs::remove_dir_all(&work);
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run(work: &Path, servers: &Path) {
    let env: BTreeMap<String, String> = fs::read_to_string(servers.join("env"))
        .expect("reading env")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let var = |k: &str| env.get(k).cloned().unwrap_or_default();
    let bare = PathBuf::from(var("REPO_ROOT")).join("big.git");
    let started = Instant::now();
    generate_repo(&bare);
    eprintln!("generated {FILES} files / {COMMITS} commits in {:?}", started.elapsed());

    let http_url = format!("{}/big.git", var("HTTP_URL_BASE"));
    let https_url = format!("{}/big.git", var("HTTPS_URL_BASE"));
    let mut secret = BTreeMap::new();
    secret.insert("username".to_owned(), var("USERNAME").into_bytes());
    secret.insert("password".to_owned(), var("PASSWORD").into_bytes());
    secret.insert("ca.crt".to_owned(), fs::read(var("CA_FILE")).expect("reading CA"));
    let https_creds = Credentials::from_secret_data(&secret).expect("secret");
    let https_cli_url = https_url.replacen("https://", &format!("https://{}:{}@", var("USERNAME"), var("PASSWORD")), 1);
    let none = Credentials::default();
    let main = GitRefSpec { branch: Some("main".into()), ..GitRefSpec::default() };

    println!("== (a) no-change poll, median of {POLLS} ==");
    for (label, url, creds, cli_url) in [("http", &http_url, &none, http_url.clone()), ("https+basic", &https_url, &https_creds, https_cli_url.clone())] {
        let ours = median(POLLS, || {
            git::resolve_remote(url, creds, &main, TIMEOUT).expect("resolve_remote");
        });
        let cli = median(POLLS, || {
            let out =
                Command::new("git").args(["ls-remote", &cli_url, "refs/heads/main"]).env("GIT_SSL_CAINFO", var("CA_FILE")).output().expect("git ls-remote");
            assert!(out.status.success());
        });
        report(&format!("poll {label}: ferroflux ls_remote vs git ls-remote"), ours, cli);
    }

    let ssh_url = format!("{}/big.git", var("SSH_URL_BASE"));
    let mut ssh_secret = BTreeMap::new();
    ssh_secret.insert("identity".to_owned(), fs::read(var("SSH_KEY_FILE")).expect("reading key"));
    ssh_secret.insert("known_hosts".to_owned(), fs::read(var("KNOWN_HOSTS_FILE")).expect("reading known_hosts"));
    let ssh_creds = Credentials::from_secret_data(&ssh_secret).expect("ssh secret");
    let ours = median(POLLS, || {
        git::resolve_remote(&ssh_url, &ssh_creds, &main, TIMEOUT).expect("resolve_remote over ssh");
    });
    let ssh_command = format!("ssh -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes", var("SSH_KEY_FILE"), var("KNOWN_HOSTS_FILE"));
    let cli = median(POLLS, || {
        let out =
            Command::new("git").args(["ls-remote", &ssh_url, "refs/heads/main"]).env("GIT_SSH_COMMAND", &ssh_command).output().expect("git ls-remote over ssh");
        assert!(out.status.success());
    });
    report("poll ssh: ferroflux ls_remote vs git ls-remote", ours, cli);

    println!("== (b) fetch + pack, {FILES} files / {COMMITS} commits, median of {FETCHES} ==");
    let mut run_index = 0;
    let mut pack_times = Vec::new();
    let ours = median(FETCHES, || {
        run_index += 1;
        let dir = work.join(format!("ours-{run_index}"));
        let resolved = git::resolve_remote(&http_url, &none, &main, TIMEOUT).expect("resolve");
        git::fetch(&http_url, &none, &resolved, TIMEOUT, &dir.join("tree")).expect("fetch");
        let pack_started = Instant::now();
        let rules = IgnoreRules::load(&dir.join("tree"), None).expect("rules");
        let out = fs::File::create(dir.join("artifact.tar.gz")).expect("create");
        artifact::pack(&dir.join("tree"), &rules, std::io::BufWriter::new(out)).expect("pack");
        pack_times.push(pack_started.elapsed());
        let _ = fs::remove_dir_all(&dir);
    });
    let cli = median(FETCHES, || {
        run_index += 1;
        let dir = work.join(format!("cli-{run_index}"));
        let tree = dir.join("tree");
        let ok = Command::new("git")
            .args(["clone", "-q", "--depth", "1", "--single-branch", "-b", "main", &http_url])
            .arg(&tree)
            .status()
            .expect("git clone")
            .success();
        assert!(ok);
        let ok = Command::new("tar")
            .arg("czf")
            .arg(dir.join("artifact.tar.gz"))
            .arg("--exclude=.git")
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status()
            .expect("tar")
            .success();
        assert!(ok);
        let _ = fs::remove_dir_all(&dir);
    });
    report("fetch+pack: ferroflux vs git clone --depth 1 + tar czf", ours, cli);
    pack_times.sort();
    println!("  of which ferroflux ignore rules + pack: {:.1} ms (median)", pack_times[pack_times.len() / 2].as_secs_f64() * 1e3);
}

fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up, not counted
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn report(label: &str, ours: Duration, cli: Duration) {
    println!(
        "{label}: {:.1} ms vs {:.1} ms, ratio ours/git = {:.2}",
        ours.as_secs_f64() * 1e3,
        cli.as_secs_f64() * 1e3,
        ours.as_secs_f64() / cli.as_secs_f64()
    );
}

/// A bare repository whose first commit adds FILES files and each later commit changes a few,
/// written with `git fast-import` (seconds instead of minutes).
fn generate_repo(bare: &Path) {
    let ok = Command::new("git").args(["init", "-q", "--bare", "-b", "main"]).arg(bare).status().expect("git init").success();
    assert!(ok);
    let mut child = Command::new("git").args(["fast-import", "--quiet"]).env("GIT_DIR", bare).stdin(Stdio::piped()).spawn().expect("git fast-import");
    let mut stdin = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    let mut stream = |s: &str| stdin.write_all(s.as_bytes()).expect("writing fast-import stream");
    for commit in 0..COMMITS {
        let message = format!("commit {commit}");
        stream(&format!("commit refs/heads/main\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{}\n", 1_700_000_000 + commit, message.len(), message));
        let touched: Vec<usize> = if commit == 0 { (0..FILES).collect() } else { (0..5).map(|i| (commit * 7 + i * 997) % FILES).collect() };
        for file in touched {
            let content = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{file}\n  namespace: bench\ndata:\n  revision: \"{commit}\"\n  payload: \"{}\"\n",
                "x".repeat(64 + file % 200)
            );
            stream(&format!("M 100644 inline dir-{}/file-{file}.yaml\ndata {}\n{content}\n", file % 50, content.len()));
        }
    }
    // into_inner flushes and reports a failed write, which drop would swallow.
    drop(stdin.into_inner().expect("flushing fast-import stream"));
    assert!(child.wait().expect("fast-import").success());
}
