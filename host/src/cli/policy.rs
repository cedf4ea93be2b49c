//! `scalegate policy inspect FILE`: load a component like the store would
//! and print what it is — name, version, digest, world, exports, parameter
//! schema — and how loading went.

use super::common::{EX_DATAERR, Failure, runtime_config};
use crate::policy::Runtime;
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Load a policy and print its name, version, digest, world and exports as JSON.
    Inspect {
        /// Path to the component (.wasm).
        file: PathBuf,
    },
    /// Publish a policy to an OCI registry (the Wasm artifact layout: one `application/wasm` layer), after checking it loads.
    Push {
        /// Path to the component (.wasm).
        file: PathBuf,
        /// Where: `oci://REGISTRY/REPOSITORY:TAG`.
        reference: String,
        /// Registry (`host:port`) spoken to over plain HTTP; repeatable.
        #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
        insecure: Vec<String>,
        /// Docker config file with credentials [default: none, anonymous].
        #[arg(long, env = "SCALEGATE_OCI_DOCKER_CONFIG")]
        docker_config: Option<PathBuf>,
    },
}

/// `scalegate compile-policy` (hidden): the child the host compiles in, see
/// `policy::CompileBudget`.
#[derive(Debug, clap::Args)]
pub struct CompileArgs {
    /// The component to compile.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the precompiled artifact (atomically).
    #[arg(long)]
    pub output: PathBuf,
    /// CPU-time limit of this process, in seconds.
    #[arg(long)]
    pub cpu_seconds: u64,
    /// Address-space limit of this process, in bytes.
    #[arg(long)]
    pub memory_bytes: u64,
}

pub fn compile(args: &CompileArgs) -> Result<(), Failure> {
    crate::policy::compile_here(&args.input, &args.output, args.cpu_seconds, args.memory_bytes)
        .map_err(|message| Failure { code: EX_DATAERR, message })
}

pub fn run(command: PolicyCommand, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    match command {
        PolicyCommand::Inspect { file } => inspect(&file, cache_dir),
        PolicyCommand::Push { file, reference, insecure, docker_config } => {
            push(&file, &reference, insecure, docker_config, cache_dir)
        }
    }
}

fn push(
    file: &Path,
    reference: &str,
    insecure: Vec<String>,
    docker_config: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
) -> Result<(), Failure> {
    let oci = crate::policy::OciRef::parse(reference).map_err(Failure::usage)?;
    if oci.is_pinned() {
        return Err(Failure::usage(format!("{reference}: push to a tag; the registry gives the digest")));
    }
    let runtime = Runtime::new(runtime_config(cache_dir.clone(), 8))?;
    let (policy, _) = runtime.load_file(file).map_err(Failure::bad_policy)?;
    let bytes = std::fs::read(file).map_err(|e| Failure::usage(format!("{}: {e}", file.display())))?;
    let config = crate::policy_store::OciConfig {
        insecure,
        docker_config,
        cache_dir: cache_dir.unwrap_or_else(|| std::env::temp_dir().join("scalegate")),
    };
    let registry = crate::policy_store::Registry::new(&config, runtime.config().compile.max_component_bytes)
        .map_err(Failure::usage)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::internal(e.to_string()))?;
    let url = tokio.block_on(registry.push(&oci, bytes)).map_err(|e| Failure { code: 69, message: e })?;
    println!("pushed {} (sha256:{}) to {url}", policy.id(), policy.digest());
    Ok(())
}

fn inspect(file: &Path, cache_dir: Option<PathBuf>) -> Result<(), Failure> {
    let runtime = Runtime::new(runtime_config(cache_dir, 8))?;
    let (policy, stats) = runtime.load_file(file).map_err(Failure::bad_policy)?;
    let report = serde_json::json!({
        "file": file,
        "name": policy.info().name,
        "version": policy.info().version,
        "description": policy.info().description,
        "digest": format!("sha256:{}", policy.digest()),
        "size_bytes": policy.size_bytes(),
        "world": policy.contract().world(),
        "contract": policy.contract().version(),
        "exports": ["metadata", "evaluate"],
        "reads": policy.info().reads,
        "params_schema": serde_json::from_str::<serde_json::Value>(&policy.info().params_schema).unwrap_or(serde_json::Value::Null),
        "load": stats,
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    Ok(())
}
