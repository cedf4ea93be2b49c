//! `scalegate run` as a process: started against a directory holding
//! `config.yaml` and `kubeconfig`, its admin address read from its log.
#![allow(dead_code)]

use super::shared_cache;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A directory for [`Daemon::start`]: `config.yaml` (its `POLICIES` replaced
/// by the policy directory), a `kubeconfig` and a `policies/` store holding
/// the built policies given as (name in the store, path under target/policies).
pub fn workdir(kubeconfig: &str, config: &str, policies: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("policies");
    std::fs::create_dir(&store).unwrap();
    for (name, built) in policies {
        std::fs::write(store.join(name), super::policy_bytes(built)).unwrap();
    }
    std::fs::write(dir.path().join("config.yaml"), config.replace("POLICIES", store.to_str().unwrap())).unwrap();
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    dir
}

/// A `scalegate run` process.
pub struct Daemon {
    pub child: Child,
    /// `host:port` of its admin API.
    pub admin: String,
    /// Everything it logged so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `scalegate run` and waits for its admin address.
    pub fn start(dir: &Path, extra: &[&str]) -> Daemon {
        Daemon::start_with(Command::new(env!("CARGO_BIN_EXE_scalegate")), dir, extra)
    }

    /// [`Daemon::start`] with a command prepared by the caller (environment).
    pub fn start_with(mut command: Command, dir: &Path, extra: &[&str]) -> Daemon {
        let mut child = command
            .args(["run", "--config"])
            .arg(dir.join("config.yaml"))
            .arg("--kubeconfig")
            .arg(dir.join("kubeconfig"))
            .args(["--admin-listen", "127.0.0.1:0", "--log-level", "scalegate=info"])
            .args(extra)
            .env("SCALEGATE_CACHE_DIR", shared_cache())
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            while let Some(Ok(line)) = lines.next() {
                if let Some((_, addr)) = line.split_once("admin API on http://") {
                    let _ = tx.send(addr.trim().to_string());
                }
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let admin = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("scalegate run did not start: {}", stderr.lock().unwrap()));
        Daemon { child, admin, stderr }
    }

    /// A handle that only talks to the admin API at `admin` (for other threads).
    pub fn client(admin: &str) -> Client {
        Client { admin: admin.to_string() }
    }

    /// One request; the status and the body.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
        Daemon::client(&self.admin).request(method, path, token, body)
    }

    /// Resident memory of the process, in MiB.
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    pub fn get(&self, path: &str) -> String {
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }

    pub fn signal(&self, signal: &str) {
        assert!(Command::new("kill").args([signal, &self.child.id().to_string()]).status().unwrap().success());
    }

    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < timeout, "did not exit within {timeout:?}: {}", self.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Talks to a daemon's admin API.
pub struct Client {
    admin: String,
}

impl Client {
    /// One request; the status and the body.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
        let mut stream = std::net::TcpStream::connect(&self.admin).unwrap();
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .unwrap();
        let _ = stream.write_all(body);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    }
}
