//! A local Azure Key Vault: the keys REST API of PROTOCOL.md with real cryptography and the
//! real response shapes, an IMDS-compatible token endpoint whose tokens it checks, HTTPS with
//! a test CA (or plain HTTP), fault injection and counters. Used by every end-to-end test,
//! the benchmarks and the demo; it listens on loopback only.

mod keys;
mod server;
mod tls;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use keys::{KeySpec, KeyStore, OpError};
use serde::{Deserialize, Serialize};
pub use tls::TlsFiles;

/// How to run the emulator.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where keys, public PEMs and TLS files live across restarts.
    pub state_dir: PathBuf,
    /// Listen address; must be loopback. Port 0 picks a free one.
    pub listen: SocketAddr,
    /// HTTPS with the test CA (default) or plain HTTP.
    pub tls: bool,
    /// Keys to make sure exist (generated once, then loaded).
    pub keys: Vec<(String, KeySpec)>,
    /// Lifetime of issued tokens.
    pub token_lifetime: Duration,
    /// Answer repeated identical sign requests from a cache (benchmarks: measures the
    /// client, not the emulator's RSA).
    pub cache_signatures: bool,
    /// The `resource` of the 401 challenge.
    pub challenge_resource: String,
    /// Report keys as `RSA-HSM` / `EC-HSM`.
    pub hsm: bool,
    /// Keys that also have a certificate of the same name (`GET /certificates/NAME`), as
    /// when the certificate was created in the vault: self-signed by the key, issued to
    /// `localhost` and `127.0.0.1`, one per key version, kept in the state folder.
    pub certificates: Vec<String>,
    /// Tokens accepted besides the ones the IMDS endpoint issues (for tests of token
    /// sources that do not go through the emulator: Azure CLI, static tokens).
    pub accept_tokens: Vec<String>,
    /// Entra ID client credentials accepted at `POST /{tenant}/oauth2/v2.0/token`:
    /// (client id, client secret or federated assertion).
    pub entra_clients: Vec<(String, String)>,
}

impl EmulatorConfig {
    /// Defaults: loopback, HTTPS, one-hour tokens, no keys.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        EmulatorConfig {
            state_dir: state_dir.into(),
            listen: "127.0.0.1:0".parse().expect("address"),
            tls: true,
            keys: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            cache_signatures: false,
            challenge_resource: "https://vault.azure.net".into(),
            hsm: false,
            accept_tokens: Vec::new(),
            entra_clients: Vec::new(),
            certificates: Vec::new(),
        }
    }

    /// Every key type: `rsa2048`, `rsa3072`, `rsa4096`, `p256`, `p384`, `p521`, `p256k`,
    /// each named after its spec.
    pub fn with_all_key_types(mut self) -> Self {
        for name in [
            "rsa2048", "rsa3072", "rsa4096", "p256", "p384", "p521", "p256k",
        ] {
            self.keys
                .push((name.to_owned(), name.parse().expect("spec")));
        }
        self
    }
}

/// One injected fault, applied to the next authenticated key request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this status and Key Vault's error body (429 gets `Throttled`).
    Status {
        /// Status.
        status: u16,
        /// `Retry-After` seconds, if any.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Close the connection without answering.
    Drop,
}

/// Faults applied to authenticated key requests.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Delay before answering every key request.
    pub latency_ms: u64,
    /// Faults for the next requests, in order.
    pub next: VecDeque<Fault>,
    /// Every Nth key request gets 429 (0 = never).
    pub throttle_every: u64,
    /// `Retry-After` of those 429s (seconds; none when absent).
    pub throttle_retry_after: Option<u64>,
    /// Every Nth key request gets 503 (0 = never).
    pub unavailable_every: u64,
    /// Every Nth key request has its connection dropped (0 = never).
    pub drop_every: u64,
}

/// Counters, for tests to assert connection reuse and token caching.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests per route (`get_key`, `sign`, `decrypt`, ..., `token`, `unauthorized`).
    pub requests: BTreeMap<String, u64>,
    /// Tokens issued.
    pub token_requests: u64,
    /// TCP connections accepted.
    pub connections: u64,
    /// Faults injected.
    pub faults_injected: u64,
}

impl Stats {
    /// Requests seen on a route.
    pub fn route(&self, name: &str) -> u64 {
        self.requests.get(name).copied().unwrap_or(0)
    }
}

/// Signatures by (key version, algorithm, digest), for `cache_signatures`.
pub(crate) type SignatureCache = std::collections::HashMap<(String, String, Vec<u8>), Vec<u8>>;

pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) keys: Mutex<KeyStore>,
    pub(crate) tokens: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) stats: Mutex<Stats>,
    pub(crate) key_requests: std::sync::atomic::AtomicU64,
    pub(crate) signature_cache: Mutex<SignatureCache>,
    pub(crate) base_url: Mutex<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running emulator (on its own thread and runtime). Stops when dropped.
pub struct Emulator {
    addr: SocketAddr,
    tls: Option<TlsFiles>,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Emulator {
    /// Starts an emulator; returns once it accepts connections.
    pub fn start(config: EmulatorConfig) -> std::io::Result<Emulator> {
        let prepared = server::prepare(config)?;
        let addr = prepared.addr;
        let tls = prepared.tls_files.clone();
        let shared = prepared.shared.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("akv-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(server::serve(prepared, async {
                    let _ = rx.await;
                }));
            })?;
        Ok(Emulator {
            addr,
            tls,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT` (or `http://`).
    pub fn base_url(&self) -> String {
        lock(&self.shared.base_url).clone()
    }

    /// `127.0.0.1:PORT`, as an allowed-hosts entry.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }

    /// The CA certificate to trust (HTTPS only).
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca_cert.as_path())
    }

    /// The PEM public key of a key's latest version.
    pub fn public_key_pem(&self, name: &str) -> PathBuf {
        lock(&self.shared.keys).public_pem_path(name)
    }

    /// The latest version of a key.
    pub fn latest_version(&self, name: &str) -> Option<String> {
        lock(&self.shared.keys)
            .find(name, None)
            .ok()
            .map(|(_, v)| v.version.clone())
    }

    /// Adds a new version of a key (rotation); returns it.
    pub fn rotate(&self, name: &str, spec: KeySpec) -> std::io::Result<String> {
        lock(&self.shared.keys).create_version(name, spec)
    }

    /// Enables or disables a key.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> std::io::Result<bool> {
        lock(&self.shared.keys).set_enabled(name, enabled)
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        lock(&self.shared.stats).clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        *lock(&self.shared.stats) = Stats::default();
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
        self.shared
            .key_requests
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every token issued and not yet revoked (for tests that prove tokens never leak).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.shared.tokens).keys().cloned().collect()
    }

    /// Forgets every issued token (as if they were revoked).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// Stops serving and waits for the server thread.
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}

pub use server::{Prepared, prepare, serve};
