//! A real OCI registry (the CNCF distribution registry, Debian's
//! `docker-registry`) on a free loopback port, with its storage in a
//! temporary directory the test can reach into.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Registry {
    pub port: u16,
    pub storage: tempfile::TempDir,
    child: Option<Child>,
    /// `auth:` section of the registry's config, if it asks for credentials.
    auth: String,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_with(String::new())
    }

    /// A registry that answers only `user`/`password` (basic auth, htpasswd).
    pub fn start_with_credentials(user: &str, password: &str) -> Registry {
        let hash = bcrypt::hash(password, 5).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
        std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
        Registry::start_with(format!("auth: {{htpasswd: {{realm: scalegate-tests, path: {}}}}}\n", file.display()))
    }

    fn start_with(auth: String) -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut registry = Registry { port, storage, child: None, auth };
        registry.restart();
        registry
    }

    /// `host:port`, what `--oci-insecure-registry` takes.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, repository_and_tag: &str) -> String {
        format!("oci://{}/{repository_and_tag}", self.host())
    }

    /// Starts it (again, on the same port and storage).
    pub fn restart(&mut self) {
        let config = self.storage.path().join("config.yml");
        let data = self.storage.path().join("data");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{}}}\n{}",
                data.display(),
                self.port,
                self.auth
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is not installed: run scripts/install-test-tools.sh");
        self.child = Some(child);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(20), "docker-registry did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The file holding a blob (`sha256:<hex>`) in the registry's storage.
    pub fn blob(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.path().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}
