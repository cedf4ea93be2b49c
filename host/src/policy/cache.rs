//! Precompiled components on disk, keyed by the sha256 digest of the
//! component bytes and by the engine's compatibility hash, so an artifact is
//! reused across restarts and never loaded by an engine configured
//! differently (another wasmtime version, other compiler settings).
//!
//! Trust: loading a precompiled artifact is `unsafe` in wasmtime because its
//! machine code is executed as is. The cache directory therefore belongs to
//! scalegate alone (created 0700, artifacts written to a temporary file and
//! renamed into place, never partially visible). Whoever can write there can
//! run code as scalegate; `docs/SECURITY.md` says so.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<ArtifactCache> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache { dir: dir.to_path_buf(), engine_key: format!("{:016x}", hasher.finish()) })
    }

    /// Where the artifact of `digest` is kept.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cached component for `digest`, if there is a usable one. A file
    /// wasmtime refuses (truncated, other engine) is removed and reported as
    /// a miss.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.is_file() {
            return None;
        }
        let loaded = load_artifact(engine, &path);
        match loaded {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "discarding unusable precompiled policy");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a freshly compiled component. Failures only cost a recompile
    /// next time, so they are logged, not returned.
    pub fn store(&self, component: &Component, digest: &str) {
        let result = component.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            let mut file = tempfile::NamedTempFile::new_in(&self.dir).map_err(|e| e.to_string())?;
            file.write_all(&bytes).map_err(|e| e.to_string())?;
            file.as_file().sync_all().map_err(|e| e.to_string())?;
            file.persist(self.path(digest)).map_err(|e| e.to_string())?;
            Ok(())
        });
        if let Err(error) = result {
            tracing::warn!(digest, error, "could not cache precompiled policy");
        }
    }
}

/// Loads a precompiled artifact written by this program: the cache, or the
/// compiler child (`policy::compiler`) for a runtime without a cache.
pub fn load_artifact(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: the file was produced by `Component::serialize` or
    // `Engine::precompile_component` of this engine configuration (in the
    // cache, the name carries its compatibility hash, and wasmtime checks it
    // again) and written atomically into a directory only scalegate can
    // write; see the module documentation for the trust assumption.
    #[allow(unsafe_code)]
    unsafe {
        Component::deserialize_file(engine, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(opt: wasmtime::OptLevel) -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).cranelift_opt_level(opt);
        Engine::new(&config).unwrap()
    }

    #[test]
    fn artifacts_of_another_engine_configuration_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let fast = ArtifactCache::open(dir.path(), &engine(wasmtime::OptLevel::Speed)).unwrap();
        let small = ArtifactCache::open(dir.path(), &engine(wasmtime::OptLevel::SpeedAndSize)).unwrap();
        assert_ne!(fast.path("abc"), small.path("abc"), "the engine's compatibility hash is part of the key");
        // an artifact stored by one is a miss for the other
        let component = Component::new(&engine(wasmtime::OptLevel::Speed), b"\0asm\x0d\x00\x01\x00").unwrap();
        fast.store(&component, "abc");
        assert!(fast.load(&engine(wasmtime::OptLevel::Speed), "abc").is_some());
        assert!(small.load(&engine(wasmtime::OptLevel::SpeedAndSize), "abc").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn cache_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache");
        ArtifactCache::open(&path, &engine(wasmtime::OptLevel::Speed)).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
