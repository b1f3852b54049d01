//! `akv-local`: the synchronous pieces the blocking and the async backend take from the
//! machine in exactly the same way: reading a small file with a size cap, the trust roots
//! (platform store plus the configured CA file), the wall clock in Unix seconds, and unique
//! request ids. Written once so that the two backends cannot drift apart.
//!
//! It must stay small and synchronous: no HTTP, no runtime, no protocol decisions (those
//! belong to `akv-proto`). The async backend calls the file reads on a blocking thread.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use akv_proto::{
    ClientRequestId, KeyCall, KeyId, Operation, OperationConfig, TransportConfig, TransportError,
    TransportErrorKind,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Reads at most `max_len` bytes; a longer file is an error, not a truncated read.
pub fn read_file_capped(path: &Path, max_len: usize) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max_len as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() > max_len {
        return Err(format!("{} is larger than {max_len} bytes", path.display()));
    }
    Ok(bytes)
}

fn config_error(message: String) -> TransportError {
    TransportError::new(TransportErrorKind::Tls, message)
}

/// The certificates to trust: the platform's (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`
/// as OpenSSL does) when configured, plus the configured CA certificates. Fails when the CA
/// file cannot be read or holds no certificate, or when nothing at all is trusted.
pub fn trust_roots(
    config: &TransportConfig,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let mut roots = Vec::new();
    if config.platform_roots {
        roots.extend(rustls_native_certs::load_native_certs().certs);
    }
    let extra = match (&config.extra_ca_pem, &config.extra_ca_file) {
        (Some(pem), _) => Some((pem.clone(), "the configured CA certificates".to_owned())),
        (None, Some(path)) => Some((
            std::fs::read(path).map_err(|e| {
                config_error(format!("cannot read the CA file {}: {e}", path.display()))
            })?,
            format!("the CA file {}", path.display()),
        )),
        (None, None) => None,
    };
    if let Some((pem, source)) = extra {
        let before = roots.len();
        roots.extend(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        if roots.len() == before {
            return Err(config_error(format!("{source} holds no PEM certificate")));
        }
    }
    if roots.is_empty() {
        return Err(config_error(
            "no trusted CA certificates: install ca-certificates, set SSL_CERT_FILE, or configure a CA file".into(),
        ));
    }
    Ok(roots)
}

/// The wall clock in Unix seconds (0 if the clock is before 1970), for token expiry times.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);
static PID: OnceLock<u32> = OnceLock::new();

/// A request id unique in this process and, with the pid and time mixed in, across processes.
/// The pid is read once (`getpid` is a system call on every use): a forked child mixes in its
/// parent's, and its ids still differ by the time.
pub fn next_request_id() -> ClientRequestId {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let pid = *PID.get_or_init(std::process::id) as u128;
    ClientRequestId::from_u128((nanos << 40) ^ (pid << 20) ^ n ^ (n << 96))
}

/// What a keys client holds whichever way it waits: its transport `T`, its token provider
/// `P` and the operation settings. Each backend's `KeyClient` wraps one.
#[derive(Debug)]
pub struct ClientParts<T, P> {
    /// Sends requests.
    pub transport: T,
    /// Gives tokens; shared by every clone.
    pub tokens: Arc<P>,
    config: OperationConfig,
}

impl<T: Clone, P> Clone for ClientParts<T, P> {
    fn clone(&self) -> Self {
        ClientParts {
            transport: self.transport.clone(),
            tokens: Arc::clone(&self.tokens),
            config: self.config.clone(),
        }
    }
}

impl<T, P> ClientParts<T, P> {
    /// The parts of a client.
    pub fn new(transport: T, tokens: Arc<P>, config: OperationConfig) -> Self {
        ClientParts {
            transport,
            tokens,
            config,
        }
    }

    /// A new operation on `key`, with its own request id, started now.
    pub fn start(&self, key: &KeyId, call: KeyCall) -> Operation {
        Operation::new(
            key.clone(),
            call,
            self.config.clone(),
            next_request_id(),
            Instant::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_reads() {
        let dir = std::env::temp_dir().join(format!("akv-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_file_capped(&f, 5).unwrap(), b"12345");
        assert!(
            read_file_capped(&f, 4)
                .unwrap_err()
                .contains("larger than 4")
        );
        assert!(read_file_capped(&dir.join("missing"), 4).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn trust_roots_name_what_is_wrong() {
        let mut config = TransportConfig {
            platform_roots: false,
            ..TransportConfig::default()
        };
        let e = trust_roots(&config).unwrap_err().to_string();
        assert!(e.contains("no trusted CA certificates"), "{e}");
        config.extra_ca_pem = Some(b"not a certificate".to_vec());
        let e = trust_roots(&config).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        config.extra_ca_pem = None;
        config.extra_ca_file = Some("/nonexistent/ca.pem".into());
        let e = trust_roots(&config).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the CA file /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(next_request_id(), next_request_id());
    }
}
