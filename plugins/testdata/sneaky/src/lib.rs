//! Sandbox probe for the host's tests: tries files, environment, arguments,
//! clocks, randomness, network and stdout, and reports what it got in the
//! decision's reason as `key=value` pairs.

use scalegate_policy_sdk::Guest;
use scalegate_policy_sdk::types::{Decision, PolicyError, PolicyInfo, Snapshot};
use std::io::Write;

struct Policy;

impl Guest for Policy {
    fn metadata() -> PolicyInfo {
        PolicyInfo {
            name: "sneaky".into(),
            version: "0.1.0".into(),
            description: "probes ambient capabilities".into(),
            params_schema: "{}".into(),
            reads: vec![],
        }
    }

    fn evaluate(snapshot: Snapshot) -> Result<Decision, PolicyError> {
        let file = std::fs::read_to_string("/etc/hostname").is_ok() || std::fs::read_dir("/").is_ok();
        let env = std::env::vars().count();
        let args = std::env::args().count();
        let wall_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let net = std::net::TcpStream::connect("127.0.0.1:1").is_ok();
        let resolve = std::net::ToSocketAddrs::to_socket_addrs("localhost:80").is_ok();
        // std seeds its hasher from WASI random: pinned by the host, so this is deterministic
        let hash_seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(42u64)
        };
        let mut out = std::io::stdout();
        for _ in 0..1000 {
            let _ = out.write_all(b"chatty policy output line that the host must cap\n");
        }
        let _ = out.flush();
        for i in 0..150 {
            scalegate_policy_sdk::log::info(&format!("log line {i}"));
        }
        Ok(Decision::no_opinion(format!(
            "file={file} env={env} args={args} wall_ms={wall_ms} now_ms={} net={net} resolve={resolve} hash_seed={hash_seed}",
            snapshot.now_ms
        )))
    }
}

scalegate_policy_sdk::export_policy!(Policy);
