//! `scalegate run` as a process: started against a directory holding
//! `config.yaml` and `kubeconfig`, its admin address read from its log.
#![allow(dead_code)]

use super::shared_cache;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
