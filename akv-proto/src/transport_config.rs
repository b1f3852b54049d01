//! What every HTTP backend is configured with. Plain data, defined once so that both
//! backends take the same settings and behave the same.

use std::path::PathBuf;
use std::time::Duration;

/// How to reach the network.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ProxySetting {
    /// `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` and `NO_PROXY`, like curl.
    #[default]
    FromEnv,
    /// Never use a proxy.
    Direct,
    /// Always this HTTP CONNECT proxy (e.g. `http://proxy:3128`), whatever `NO_PROXY` says.
    Url(String),
}

/// Settings of a backend's transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// A PEM file of extra trusted CA certificates (a private CA, the emulator's test CA).
    pub extra_ca_file: Option<PathBuf>,
    /// The same certificates already read (PEM); wins over `extra_ca_file`. Lets a process
    /// read the file before it forks or drops privileges (nginx workers run as another user).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Trust the platform's roots (and `SSL_CERT_FILE` / `SSL_CERT_DIR`) besides the extra
    /// CA file.
    pub platform_roots: bool,
    /// Largest response body accepted; a larger one is an error, not a truncation.
    pub max_body_bytes: u64,
    /// Idle connections kept per host.
    pub max_idle_per_host: usize,
    /// Proxy.
    pub proxy: ProxySetting,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_secs(3),
            extra_ca_file: None,
            extra_ca_pem: None,
            platform_roots: true,
            max_body_bytes: 4 * 1024 * 1024,
            max_idle_per_host: 16,
            proxy: ProxySetting::FromEnv,
        }
    }
}
