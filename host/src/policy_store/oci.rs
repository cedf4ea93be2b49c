//! Policies from OCI registries, in the Wasm artifact layout `wkg` and Spin
//! use (manifest `application/vnd.oci.image.manifest.v1+json`, config
//! `application/vnd.wasm.config.v0+json`, one layer `application/wasm`),
//! through `oci-client` / `oci-wasm`.
//!
//! - References: `oci://REGISTRY/REPO:TAG` or `oci://REGISTRY/REPO@sha256:…`.
//! - Every pull is verified: the manifest against a digest reference, the
//!   layer's bytes against the digest the manifest gives (sha256), its size
//!   against the component limit before it is downloaded.
//! - Components are cached by layer digest (`<cache>/oci/<hex>.wasm`) with an
//!   index of what each reference last resolved to, so a restart while the
//!   registry is down still has the version that ran.
//! - Credentials: a docker config (`~/.docker/config.json`, or the
//!   `.dockerconfigjson` key of a mounted `kubernetes.io/dockerconfigjson`
//!   Secret): `auths.<registry>.auth` (base64 `user:password`) or
//!   `username`/`password`; anonymous otherwise.

use crate::policy::OciRef;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_wasm::{WasmClient, WasmConfig};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How the daemon reaches registries.
#[derive(Debug, Clone, Default)]
pub struct OciConfig {
    /// Registries (`host:port`) spoken to over plain HTTP (tests, a local mirror).
    pub insecure: Vec<String>,
    /// A docker config file with credentials.
    pub docker_config: Option<PathBuf>,
    /// Where pulled components are cached (by digest).
    pub cache_dir: PathBuf,
}

/// A component pulled (or read back from the cache).
#[derive(Debug, Clone)]
pub struct Pulled {
    pub bytes: Vec<u8>,
    /// `sha256:…` of the manifest the reference resolved to.
    pub manifest_digest: String,
    /// `sha256:…` of the component (the layer).
    pub layer_digest: String,
}

/// What the cache index remembers per reference.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Resolved {
    manifest_digest: String,
    layer_digest: String,
}

pub struct Registry {
    client: WasmClient,
    auths: BTreeMap<String, RegistryAuth>,
    cache: PathBuf,
    max_bytes: usize,
}

impl Registry {
    pub fn new(config: &OciConfig, max_bytes: usize) -> Result<Registry, String> {
        let protocol = if config.insecure.is_empty() {
            ClientProtocol::Https
        } else {
            ClientProtocol::HttpsExcept(config.insecure.clone())
        };
        let client = Client::new(ClientConfig { protocol, ..ClientConfig::default() });
        let auths = match &config.docker_config {
            Some(path) => docker_auths(path)?,
            None => BTreeMap::new(),
        };
        let cache = config.cache_dir.join("oci");
        std::fs::create_dir_all(&cache).map_err(|e| format!("OCI cache {}: {e}", cache.display()))?;
        Ok(Registry { client: WasmClient::new(client), auths, cache, max_bytes })
    }

    fn auth(&self, reference: &Reference) -> RegistryAuth {
        let registry = reference.resolve_registry();
        self.auths
            .get(registry)
            .or_else(|| self.auths.get(reference.registry()))
            .cloned()
            .unwrap_or(RegistryAuth::Anonymous)
    }

    /// The manifest digest a reference resolves to now (a HEAD request).
    pub async fn manifest_digest(&self, oci: &OciRef) -> Result<String, String> {
        if let Some(digest) = oci.reference.digest() {
            return Ok(digest.to_string());
        }
        let auth = self.auth(&oci.reference);
        self.client.fetch_manifest_digest(&oci.reference, &auth).await.map_err(|e| format!("{}: {e}", oci.text))
    }

    /// Pulls and verifies the component `oci` names (the layer from the
    /// cache when its digest is there).
    pub async fn pull(&self, oci: &OciRef) -> Result<Pulled, String> {
        let auth = self.auth(&oci.reference);
        let fail = |what: String| format!("{}: {what}", oci.text);
        let (manifest, _config, manifest_digest) =
            self.client.pull_manifest_and_config(&oci.reference, &auth).await.map_err(|e| fail(format!("{e:#}")))?;
        if let Some(wanted) = oci.reference.digest()
            && wanted != manifest_digest
        {
            return Err(fail(format!(
                "digest mismatch: asked for {wanted}, the registry's manifest is {manifest_digest}"
            )));
        }
        let layer = &manifest.layers[0];
        if layer.media_type != oci_wasm::WASM_LAYER_MEDIA_TYPE {
            return Err(fail(format!("the layer is {}, not {}", layer.media_type, oci_wasm::WASM_LAYER_MEDIA_TYPE)));
        }
        let size = usize::try_from(layer.size).unwrap_or(usize::MAX);
        if size > self.max_bytes {
            return Err(fail(format!("the component is {size} bytes, over the {} byte limit", self.max_bytes)));
        }
        let hex = layer
            .digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| fail(format!("unsupported layer digest {}", layer.digest)))?;
        let cached = self.cache.join(format!("{hex}.wasm"));
        let bytes = match std::fs::read(&cached) {
            Ok(bytes) if sha256_hex(&bytes) == hex => bytes,
            _ => {
                let mut bytes = Vec::with_capacity(size);
                self.client.pull_blob(&oci.reference, layer, &mut bytes).await.map_err(|e| fail(format!("{e}")))?;
                let got = sha256_hex(&bytes);
                if got != hex {
                    return Err(fail(format!(
                        "digest mismatch: the manifest gives the component as {}, the registry sent sha256:{got}",
                        layer.digest
                    )));
                }
                write_atomically(&cached, &bytes).map_err(|e| fail(format!("caching: {e}")))?;
                bytes
            }
        };
        let pulled = Pulled { bytes, manifest_digest, layer_digest: layer.digest.clone() };
        self.remember(oci, &pulled);
        Ok(pulled)
    }

    /// The component `oci` last resolved to, from the cache (registry down).
    pub fn cached(&self, oci: &OciRef) -> Option<Pulled> {
        let resolved = self.index().remove(&oci.text)?;
        let hex = resolved.layer_digest.strip_prefix("sha256:")?;
        let bytes = std::fs::read(self.cache.join(format!("{hex}.wasm"))).ok()?;
        if sha256_hex(&bytes) != hex {
            return None;
        }
        Some(Pulled { bytes, manifest_digest: resolved.manifest_digest, layer_digest: resolved.layer_digest })
    }

    fn index_path(&self) -> PathBuf {
        self.cache.join("references.json")
    }

    fn index(&self) -> BTreeMap<String, Resolved> {
        std::fs::read(self.index_path()).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    fn remember(&self, oci: &OciRef, pulled: &Pulled) {
        let mut index = self.index();
        let resolved =
            Resolved { manifest_digest: pulled.manifest_digest.clone(), layer_digest: pulled.layer_digest.clone() };
        if index.get(&oci.text) != Some(&resolved) {
            index.insert(oci.text.clone(), resolved);
            if let Ok(json) = serde_json::to_vec_pretty(&index)
                && let Err(error) = write_atomically(&self.index_path(), &json)
            {
                tracing::warn!(%error, "cannot write the OCI reference index");
            }
        }
    }

    /// Publishes a component; returns the manifest's URL.
    pub async fn push(&self, oci: &OciRef, bytes: Vec<u8>) -> Result<String, String> {
        let auth = self.auth(&oci.reference);
        let (config, layer) = WasmConfig::from_raw_component(bytes, None).map_err(|e| format!("{e:#}"))?;
        let response = self
            .client
            .push(&oci.reference, &auth, layer, config, None)
            .await
            .map_err(|e| format!("{}: {e:#}", oci.text))?;
        Ok(response.manifest_url)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Credentials by registry from a docker config file.
pub fn docker_auths(path: &Path) -> Result<BTreeMap<String, RegistryAuth>, String> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(default)]
        auths: BTreeMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let text = std::fs::read(path).map_err(|e| format!("docker config {}: {e}", path.display()))?;
    let file: File = serde_json::from_slice(&text).map_err(|e| format!("docker config {}: {e}", path.display()))?;
    let mut auths = BTreeMap::new();
    for (registry, entry) in file.auths {
        let (user, password) = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) => {
                use base64::Engine as _;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| format!("docker config {}: auths.{registry}.auth is not base64", path.display()))?;
                let (user, password) = decoded.split_once(':').ok_or_else(|| {
                    format!("docker config {}: auths.{registry}.auth is not user:password", path.display())
                })?;
                (user.to_string(), password.to_string())
            }
            (None, Some(user), Some(password)) => (user, password),
            _ => continue,
        };
        // "https://index.docker.io/v1/" and "registry:5000" alike: the host[:port]
        let host = registry.trim_start_matches("https://").trim_start_matches("http://");
        let host = host.split('/').next().unwrap_or(host).to_string();
        auths.insert(host, RegistryAuth::Basic(user, password));
    }
    Ok(auths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_credentials_by_registry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"registry.example:5000": {"auth": "dXNlcjpzM2NyZXQ="},
                          "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}"#,
        )
        .unwrap();
        let auths = docker_auths(&path).unwrap();
        assert!(matches!(&auths["registry.example:5000"], RegistryAuth::Basic(u, p) if u == "user" && p == "s3cret"));
        assert!(matches!(&auths["index.docker.io"], RegistryAuth::Basic(u, _) if u == "u"));
        std::fs::write(&path, r#"{"auths": {"r": {"auth": "***"}}}"#).unwrap();
        assert!(docker_auths(&path).unwrap_err().contains("auths.r.auth is not base64"));
    }
}
