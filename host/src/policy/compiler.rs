//! Compiling a component under a budget.
//!
//! Cranelift cannot be interrupted, and a small pathological component (one
//! function of deeply nested loops over thousands of locals) can take minutes
//! of CPU and gigabytes to compile. So compilation runs in a child process —
//! this same program, `scalegate compile-policy` (hidden) — that limits its
//! own CPU time and address space before it reads the input, and that the
//! host kills when the wall-clock budget runs out. The child writes the
//! precompiled artifact (into the cache directory when there is one, where
//! the host then loads it like any cached artifact); the host never compiles
//! in its own address space, so a compile bomb costs it nothing but waiting.
//!
//! Without a child program ([`CompileBudget::child`] `None`: library use,
//! unit tests) compilation runs in-process with only the size limit.

use super::Error;
use super::RuntimeConfig;
use super::cache::{self, ArtifactCache};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

/// What compiling one component may cost.
#[derive(Debug, Clone)]
pub struct CompileBudget {
    /// Largest component accepted, checked before anything is read or
    /// compiled (default 64 MiB; the bundled Python policy is 18 MB).
    pub max_component_bytes: usize,
    /// The program to compile in (this `scalegate` binary); `None` compiles
    /// in-process, unbounded.
    pub child: Option<PathBuf>,
    /// Wall-clock budget; the child is killed after it (default 60 s; the
    /// bundled Python and JavaScript policies compile in ~5 s on 2 cores).
    pub timeout: Duration,
    /// CPU-time budget of the child, all its threads (default 120 s).
    pub cpu_seconds: u64,
    /// Address-space budget of the child (default 1 GiB; compiling the
    /// bundled Python policy needs less than 512 MiB of address space and
    /// peaks at 350 MB resident).
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    fn default() -> Self {
        CompileBudget {
            max_component_bytes: 64 << 20,
            child: None,
            timeout: Duration::from_secs(60),
            cpu_seconds: 120,
            memory_bytes: 1 << 30,
        }
    }
}

impl CompileBudget {
    /// The default budget, compiling in a child running the current executable.
    pub fn in_child_process() -> CompileBudget {
        CompileBudget { child: std::env::current_exe().ok(), ..CompileBudget::default() }
    }

    /// Refuses a component over the size limit.
    pub fn check_size(&self, bytes: usize) -> Result<(), Error> {
        if bytes > self.max_component_bytes {
            return Err(Error::OverBudget(format!(
                "the component is {bytes} bytes, the limit is {} (--max-policy-bytes)",
                self.max_component_bytes
            )));
        }
        Ok(())
    }
}

/// The engine's configuration. Compilation settings (and with them the
/// artifacts' compatibility) do not depend on `pooled`: the compiler child
/// builds an engine without the pooling allocator (which reserves address
/// space for every instance slot) and its artifacts load here.
pub(super) fn engine_config(config: &RuntimeConfig, pooled: bool) -> Config {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true);
    wasm.epoch_interruption(true);
    wasm.cranelift_opt_level(OptLevel::Speed);
    if pooled {
        let instances = config.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // Python and JS components hold a dozen core instances and tables each.
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(8))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(8))
            .total_stacks(instances)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(64)
            .max_memory_size(config.memory_limit_bytes)
            .table_elements(100_000)
            .max_core_instance_size(4 << 20)
            .max_component_instance_size(4 << 20);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    wasm
}

/// Compiles `bytes` (whose sha256 is `digest`) within `budget`, storing the
/// artifact in `cache` when there is one.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    digest: &str,
    budget: &CompileBudget,
    cache: Option<&ArtifactCache>,
) -> Result<Component, Error> {
    budget.check_size(bytes.len())?;
    let Some(program) = &budget.child else {
        let component = Component::new(engine, bytes).map_err(|e| Error::Compile(format!("{e:#}")))?;
        if let Some(cache) = cache {
            cache.store(&component, digest);
        }
        return Ok(component);
    };
    let work = match cache {
        Some(cache) => tempfile::tempdir_in(cache.dir()),
        None => tempfile::tempdir(),
    }
    .map_err(|e| Error::Io(format!("cannot create a compile directory: {e}")))?;
    let input = work.path().join("input.wasm");
    std::fs::write(&input, bytes).map_err(|e| Error::Io(format!("cannot write {}: {e}", input.display())))?;
    let output = match cache {
        Some(cache) => cache.path(digest),
        None => work.path().join("output.cwasm"),
    };
    run_child(program, &input, &output, work.path(), budget)?;
    match cache {
        Some(cache) => cache
            .load(engine, digest)
            .ok_or_else(|| Error::Compile("the compiler's artifact could not be loaded".into())),
        None => cache::load_artifact(engine, &output).map_err(|e| Error::Compile(format!("{e:#}"))),
    }
}

fn run_child(program: &Path, input: &Path, output: &Path, work: &Path, budget: &CompileBudget) -> Result<(), Error> {
    let log = work.join("stderr");
    let stderr = std::fs::File::create(&log).map_err(|e| Error::Io(format!("cannot create {}: {e}", log.display())))?;
    let mut child = std::process::Command::new(program)
        .arg("compile-policy")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .arg("--cpu-seconds")
        .arg(budget.cpu_seconds.to_string())
        .arg("--memory-bytes")
        .arg(budget.memory_bytes.to_string())
        .env("SCALEGATE_LOG", "error")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .map_err(|e| Error::Io(format!("cannot start the compiler {}: {e}", program.display())))?;
    let status = match wait_timeout::ChildExt::wait_timeout(&mut child, budget.timeout) {
        Ok(Some(status)) => status,
        Ok(None) | Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::OverBudget(format!(
                "compiling took longer than {:?} (the compile timeout); the component is refused",
                budget.timeout
            )));
        }
    };
    if status.success() {
        return Ok(());
    }
    let said = tail(&log, 2048);
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        // RLIMIT_CPU sends SIGXCPU at the soft limit (SIGKILL a second later)
        if status.signal() == Some(libc::SIGXCPU) {
            return Err(Error::OverBudget(format!(
                "compiling used more than {} s of CPU (the compile CPU budget); the component is refused",
                budget.cpu_seconds
            )));
        }
        // the child volunteers first for the OOM killer (oom_score_adj 1000)
        if status.signal() == Some(libc::SIGKILL) {
            return Err(Error::OverBudget(
                "the compiler was killed (out of memory in this container?); the component is refused".into(),
            ));
        }
    }
    let out_of_memory = ["memory allocation of", "Cannot allocate memory", "out of memory", "failed to mmap"];
    if out_of_memory.iter().any(|needle| said.contains(needle)) {
        return Err(Error::OverBudget(format!(
            "compiling needed more than {} MiB of address space (the compile memory budget); the component is refused",
            budget.memory_bytes >> 20
        )));
    }
    let said = said.trim().trim_start_matches("error: ");
    Err(Error::Compile(if said.is_empty() { format!("the compiler failed ({status})") } else { said.to_string() }))
}

/// The last `max` bytes of a file, as text.
fn tail(path: &Path, max: u64) -> String {
    let mut text = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let skip = file.metadata().map(|m| m.len().saturating_sub(max)).unwrap_or(0);
        let mut file = file;
        let _ = std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(skip));
        let _ = file.take(max).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// The child's side (`scalegate compile-policy`): limit this process, then
/// compile `input` and write the artifact to `output` atomically.
pub fn compile_here(input: &Path, output: &Path, cpu_seconds: u64, memory_bytes: u64) -> Result<(), String> {
    #[cfg(unix)]
    {
        use rlimit::Resource;
        let set = |resource: Resource, soft: u64, hard: u64| {
            rlimit::setrlimit(resource, soft, hard).map_err(|e| format!("cannot limit {resource:?}: {e}"))
        };
        set(Resource::CORE, 0, 0)?;
        set(Resource::CPU, cpu_seconds, cpu_seconds.saturating_add(1))?;
        set(Resource::AS, memory_bytes, memory_bytes)?;
    }
    // if the container runs out of memory, the kernel kills this process, not the daemon
    #[cfg(target_os = "linux")]
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    let bytes = std::fs::read(input).map_err(|e| format!("cannot read {}: {e}", input.display()))?;
    let engine = Engine::new(&engine_config(&RuntimeConfig::default(), false))
        .map_err(|e| format!("cannot create the engine: {e:#}"))?;
    let artifact = engine.precompile_component(&bytes).map_err(|e| format!("{e:#}"))?;
    let dir = output.parent().unwrap_or(Path::new("."));
    let mut file =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    std::io::Write::write_all(&mut file, &artifact).map_err(|e| format!("cannot write the artifact: {e}"))?;
    file.as_file().sync_all().map_err(|e| format!("cannot write the artifact: {e}"))?;
    file.persist(output).map_err(|e| format!("cannot write {}: {}", output.display(), e.error))?;
    Ok(())
}
