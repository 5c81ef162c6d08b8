//! Fault injection for tests/faults.rs: controller processes that are killed and restarted on
//! the same ports and storage, a control plane of a test's own whose kube-apiserver is stopped
//! and started again with the same flags, and a TCP server that accepts and never answers.
#![allow(dead_code)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{cleanup_on_exit, repo_root};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Sends `signal` (e.g. `-KILL`, `-TERM`) to a process.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("running kill");
    assert!(status.success(), "kill {signal} {pid} failed");
}

/// A `ferroflux controller` that can be killed and started again: every start uses the same
/// ports, storage folder and flags, as a restarted Pod would (same Service, same volume).
pub struct Controller {
    kubeconfig: PathBuf,
    flags: Vec<String>,
    pub dir: tempfile::TempDir,
    storage_port: u16,
    health_port: u16,
    metrics_port: u16,
    /// Each controller its own webhook Receiver port: two on the default :9292 cannot both start.
    receiver_port: u16,
    child: Option<Child>,
    starts: usize,
}

impl Controller {
    /// Starts a controller against `kubeconfig` with `flags` besides the addresses.
    pub fn start(kubeconfig: &Path, flags: &[&str]) -> Controller {
        let dir = tempfile::Builder::new().prefix("ferroflux-fault-controller-").tempdir().expect("temp dir");
        cleanup_on_exit(&format!("rm -rf '{}'", dir.path().display()));
        let mut controller = Controller {
            kubeconfig: kubeconfig.to_owned(),
            flags: flags.iter().map(|f| (*f).to_owned()).collect(),
            dir,
            storage_port: free_port(),
            health_port: free_port(),
            metrics_port: free_port(),
            receiver_port: free_port(),
            child: None,
            starts: 0,
        };
        controller.restart();
        controller
    }

    /// Starts the process again (after [`Controller::kill`] or an exit).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the controller is still running");
        self.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_ferroflux"))
            .arg("controller")
            .arg("--storage-path")
            .arg(self.dir.path().join("storage"))
            .arg("--storage-addr")
            .arg(format!("127.0.0.1:{}", self.storage_port))
            .arg("--health-addr")
            .arg(format!("127.0.0.1:{}", self.health_port))
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .arg("--receiver-addr")
            .arg(format!("127.0.0.1:{}", self.receiver_port))
            .args(&self.flags)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,ferroflux=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting ferroflux controller");
        cleanup_on_exit(&format!("kill -9 {} 2>/dev/null", child.id()));
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("the controller is running")
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; then waits up to `within` for the process to exit. Returns its exit status and
    /// how long it took, or `None` (the process is then killed) when it did not exit.
    pub fn terminate(&mut self, within: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let mut child = self.child.take()?;
        let started = Instant::now();
        signal(child.id(), "-TERM");
        while started.elapsed() < within {
            if let Ok(Some(status)) = child.try_wait() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn storage_base(&self) -> String {
        format!("http://127.0.0.1:{}", self.storage_port)
    }

    pub fn readyz_url(&self) -> String {
        format!("http://127.0.0.1:{}/readyz", self.health_port)
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("controller.log")
    }

    /// The last lines of the log (of every start), for assertion messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET url`: the status code and body, or `None` when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().ok()?;
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.unwrap_or_default()))
}

/// How many reconciles of one object a controller's `/metrics` reports
/// (`gotk_reconcile_duration_seconds_count`); 0 when none yet.
pub async fn reconcile_count(metrics_url: &str, kind: &str, namespace: &str, name: &str) -> u64 {
    let Some((_, text)) = http_get(metrics_url).await else { return 0 };
    text.lines()
        .filter(|l| l.starts_with("gotk_reconcile_duration_seconds_count{"))
        .filter(|l| l.contains(&format!("kind=\"{kind}\"")) && l.contains(&format!("name=\"{name}\"")) && l.contains(&format!("namespace=\"{namespace}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// A TCP server on loopback that accepts every connection and never answers: a Git remote (or
/// any server) that hangs. Counts the connections it accepted.
pub struct BlackHole {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    // Held open until the test ends, so the clients wait instead of seeing a reset.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the black hole");
        let port = listener.local_addr().expect("address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (accepted.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                // Read (and drop) what the client sends, so its writes never block; answer nothing.
                if let Ok(mut reader) = stream.try_clone() {
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 4096];
                        while matches!(reader.read(&mut buffer), Ok(n) if n > 0) {}
                    });
                }
                if let Ok(mut held) = keep.lock() {
                    held.push(stream);
                }
            }
        });
        BlackHole { port, accepted, _held: held }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A control plane of a test's own (`hack/k8s-up.sh` in a temporary folder), so the test may
/// stop and start its kube-apiserver without disturbing the other tests.
pub struct OwnControlPlane {
    pub dir: tempfile::TempDir,
    /// The kube-apiserver's command line and working folder, as `hack/k8s-up.sh` started it.
    apiserver_argv: Vec<String>,
}

impl OwnControlPlane {
    pub fn start() -> OwnControlPlane {
        let dir = tempfile::Builder::new().prefix("ferroflux-fault-k8s-").tempdir().expect("temp dir");
        let out = Command::new("bash")
            .arg(repo_root().join("hack/k8s-up.sh"))
            .arg(dir.path())
            .arg("--watch-pid")
            .arg(std::process::id().to_string())
            .output()
            .expect("running hack/k8s-up.sh");
        assert!(out.status.success(), "hack/k8s-up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        cleanup_on_exit(&format!("'{0}/down.sh'; rm -rf '{0}'", dir.path().display()));
        let pid = Self::read_pid(dir.path());
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the kube-apiserver's command line");
        let apiserver_argv = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        OwnControlPlane { dir, apiserver_argv }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn read_pid(dir: &Path) -> u32 {
        std::fs::read_to_string(dir.join("apiserver.pid")).expect("apiserver.pid").trim().parse().expect("a pid")
    }

    /// Kills the kube-apiserver (SIGKILL) and waits until it is gone; etcd and the controller
    /// manager keep running.
    pub fn stop_apiserver(&self) {
        let pid = Self::read_pid(self.dir.path());
        signal(pid, "-KILL");
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            !Path::new(&format!("/proc/{pid}")).exists() || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "kube-apiserver {pid} did not stop");
    }

    /// Starts the kube-apiserver again with the same flags and waits until it is ready.
    pub fn start_apiserver(&self) {
        let log = std::fs::OpenOptions::new().append(true).create(true).open(self.dir.path().join("apiserver.log")).expect("apiserver.log");
        let child = Command::new(&self.apiserver_argv[0])
            .args(&self.apiserver_argv[1..])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restarting kube-apiserver");
        // down.sh stops whatever apiserver.pid names.
        std::fs::write(self.dir.path().join("apiserver.pid"), child.id().to_string()).expect("apiserver.pid");
        std::mem::forget(child);
        let flag = |name: &str| self.apiserver_argv.iter().position(|a| a == name).and_then(|i| self.apiserver_argv.get(i + 1)).cloned();
        let port = flag("--secure-port").expect("--secure-port");
        let address = flag("--bind-address").unwrap_or_else(|| "127.0.0.1".into());
        let ready = (0..240).any(|_| {
            std::thread::sleep(Duration::from_millis(250));
            Command::new("curl")
                .args(["-skf", "-H", "Authorization: Bearer admintoken", &format!("https://{address}:{port}/readyz")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(ready, "kube-apiserver did not become ready again");
    }
}
