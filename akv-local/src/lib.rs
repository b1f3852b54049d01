//! `akv-local`: the synchronous pieces the blocking and the async backend take from the
//! machine in exactly the same way: reading a small file with a size cap, the trust roots
//! (platform store plus the configured CA file) and the TLS settings built on them, the wall
//! clock in Unix seconds, and unique request ids; the circuit breakers and the token supply a
//! process's clients share. Written once so that the two backends cannot drift apart.
//!
//! It must stay small and synchronous: no HTTP, no runtime, no protocol decisions (those
//! belong to `akv-proto`). The async backend calls the file reads on a blocking thread.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use akv_proto::{
    Admit, Breaker, BreakerPolicy, ClientRequestId, KeyCall, KeyId, Operation, OperationConfig,
    Outcome, Transition, TransportConfig, TransportError, TransportErrorKind,
};
use rustls_pki_types::CertificateDer;

mod shared_tokens;
use rustls_pki_types::pem::PemObject;
pub use shared_tokens::SharedSupply;

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

/// The TLS client settings both backends use: the [`trust_roots`] (certificates rustls cannot
/// parse are skipped), ring as the crypto provider, no client certificate. The provider is
/// named explicitly: a process-wide default may not exist, or be another one.
pub fn tls_client_config(config: &TransportConfig) -> Result<rustls::ClientConfig, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(trust_roots(config)?);
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| config_error(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth())
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

/// Told of each change of a vault's circuit (for the log), with the vault's origin.
pub type BreakerObserver = Arc<dyn Fn(&str, &Transition) + Send + Sync>;

/// One circuit breaker per vault host, shared by every clone of a client (so by every
/// thread of a process that shares it).
pub struct Breakers {
    policy: Option<BreakerPolicy>,
    /// A process talks to a vault or a few: a list searched by host costs less than hashing
    /// the host (SipHash) twice per request.
    by_host: Mutex<Vec<(String, Breaker)>>,
    observer: Mutex<Option<BreakerObserver>>,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Whether a request may go, as the client loops use it.
pub enum Gate {
    /// Send, with this timeout (a probe's is capped).
    Send(Duration),
    /// The operation was ended: the vault's circuit is open.
    Refused,
}

impl Breakers {
    /// Breakers following `policy` (`None`: every request goes).
    pub fn new(policy: Option<BreakerPolicy>) -> Breakers {
        Breakers {
            policy,
            by_host: Mutex::new(Vec::new()),
            observer: Mutex::new(None),
        }
    }

    /// Sets who is told of each change of a circuit.
    pub fn observe(&self, observer: BreakerObserver) {
        *self.observer.lock().unwrap_or_else(|p| p.into_inner()) = Some(observer);
    }

    fn tell(&self, op: &Operation, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        let observer = self
            .observer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(observer) = observer {
            observer(&op.key().endpoint().origin(), &transition);
        }
    }

    /// Asks the vault's breaker before sending `op`'s request with `timeout`; when the
    /// circuit is open, ends the operation (it then polls `Done`).
    pub fn gate(&self, op: &mut Operation, timeout: Duration, now: Instant) -> Gate {
        let Some(policy) = &self.policy else {
            return Gate::Send(timeout);
        };
        let (admit, transition) = self.with_breaker(op, policy, |b| b.admit(now));
        self.tell(op, transition);
        match admit {
            Admit::Go => Gate::Send(timeout),
            Admit::Probe { timeout: cap } => Gate::Send(timeout.min(cap)),
            Admit::FailFast { retry_in, cause } => {
                op.handle_circuit_open(retry_in, cause);
                Gate::Refused
            }
        }
    }

    /// Reports how `op`'s exchange went: `Ok` for any HTTP answer.
    pub fn record(&self, op: &Operation, result: Result<(), &TransportError>, now: Instant) {
        let Some(policy) = &self.policy else {
            return;
        };
        let outcome = match result {
            Ok(()) => Outcome::Reached,
            Err(e) => match e.outcome() {
                Some(o) => o,
                None => return,
            },
        };
        let transition = self.with_breaker(op, policy, |b| b.record(outcome, now));
        self.tell(op, transition);
    }

    /// Runs `f` on the breaker of `op`'s vault. Looked up by host, without allocating:
    /// this runs for every request.
    fn with_breaker<R>(
        &self,
        op: &Operation,
        policy: &BreakerPolicy,
        f: impl FnOnce(&mut Breaker) -> R,
    ) -> R {
        let host = op.key().endpoint().host();
        let mut hosts = self.by_host.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, breaker)) = hosts.iter_mut().find(|(h, _)| h == host) {
            return f(breaker);
        }
        hosts.push((host.to_owned(), Breaker::new(policy.clone())));
        let (_, breaker) = hosts.last_mut().expect("just pushed");
        f(breaker)
    }
}

/// What a keys client holds whichever way it waits: its transport `T`, its token provider
/// `P`, the operation settings and the vaults' circuit breakers. Each backend's `KeyClient`
/// wraps one.
#[derive(Debug)]
pub struct ClientParts<T, P> {
    /// Sends requests.
    pub transport: T,
    /// Gives tokens; shared by every clone.
    pub tokens: Arc<P>,
    /// One circuit breaker per vault; shared by every clone.
    pub breakers: Arc<Breakers>,
    config: OperationConfig,
}

impl<T: Clone, P> Clone for ClientParts<T, P> {
    fn clone(&self) -> Self {
        ClientParts {
            transport: self.transport.clone(),
            tokens: Arc::clone(&self.tokens),
            breakers: Arc::clone(&self.breakers),
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
            breakers: Arc::new(Breakers::new(config.breaker.clone())),
            config,
        }
    }

    /// The parts of a client that shares another client's circuit breakers (a process's
    /// blocking and async clients see the same vaults).
    pub fn sharing_breakers(
        transport: T,
        tokens: Arc<P>,
        breakers: Arc<Breakers>,
        config: OperationConfig,
    ) -> Self {
        ClientParts {
            transport,
            tokens,
            breakers,
            config,
        }
    }

    /// A new operation on `key`, with its own request id, started at `now`.
    pub fn start(&self, key: &KeyId, call: KeyCall, now: Instant) -> Operation {
        Operation::new(
            key.clone(),
            call,
            self.config.clone(),
            next_request_id(),
            now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_vault_host_has_its_own_circuit() {
        let breakers = Breakers::new(Some(BreakerPolicy {
            failures_to_open: 1,
            ..BreakerPolicy::default()
        }));
        let now = Instant::now();
        let policy = akv_proto::EndpointPolicy::new(akv_proto::Cloud::Public);
        let op_on = |vault: &str| {
            let key = KeyId::parse(&format!("vault:{vault}:k"), &policy).unwrap();
            let config = OperationConfig::default();
            Operation::new(key, KeyCall::GetKey, config, next_request_id(), now)
        };
        let (mut a, mut b, mut a_again) = (op_on("vaulta"), op_on("vaultb"), op_on("vaulta"));
        let refused = TransportError::new(TransportErrorKind::Connect, "connection refused");
        breakers.record(&a, Err(&refused), now);
        let timeout = Duration::from_secs(1);
        assert!(matches!(
            breakers.gate(&mut a_again, timeout, now),
            Gate::Refused
        ));
        assert!(matches!(breakers.gate(&mut b, timeout, now), Gate::Send(_)));
        // A request that reached vault B does not close vault A's circuit.
        breakers.record(&b, Ok(()), now);
        assert!(matches!(breakers.gate(&mut a, timeout, now), Gate::Refused));
    }

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

    fn sign_op(now: Instant) -> Operation {
        let policy = akv_proto::EndpointPolicy::new(akv_proto::Cloud::Public);
        let key = KeyId::parse("vault:myvault:k", &policy).unwrap();
        let call = KeyCall::Sign {
            alg: akv_proto::SignAlgorithm::ES256,
            digest: vec![1; 32],
        };
        let mut op = Operation::new(
            key,
            call,
            OperationConfig::default(),
            next_request_id(),
            now,
        );
        // Past the token step, to the request.
        match op.poll(now) {
            akv_proto::Poll::Token(_) => op.handle_token(
                Ok(akv_proto::AccessToken::new(
                    "t",
                    now + Duration::from_secs(3600),
                )),
                now,
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(op.poll(now), akv_proto::Poll::Send(_)));
        op
    }

    #[test]
    fn breakers_refuse_after_timeouts_cap_probes_and_report_each_change_once() {
        let breakers = Breakers::new(Some(BreakerPolicy::default()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        breakers.observe(Arc::new(move |origin, t| {
            sink.lock().unwrap().push(format!("{origin} {t:?}"))
        }));
        let t0 = Instant::now();
        let timeout = TransportError::new(TransportErrorKind::Timeout, "no answer");
        for _ in 0..2 {
            let op = sign_op(t0);
            breakers.record(&op, Err(&timeout), t0);
        }
        // Open: the next operation ends at once, saying why and when the probe comes.
        let mut op = sign_op(t0);
        assert!(matches!(
            breakers.gate(&mut op, Duration::from_secs(5), t0 + Duration::from_secs(1)),
            Gate::Refused
        ));
        let akv_proto::Poll::Done(Err(e)) = op.poll(t0) else {
            panic!("the operation ends")
        };
        let text = e.to_string();
        assert!(
            text.starts_with("vault https://myvault.vault.azure.net unreachable (timed out: no answer); failing fast, next probe in 1.0 s"),
            "{text}"
        );
        // After the cool-down: one probe, its timeout capped at 1 s; its answer closes.
        let mut probe = sign_op(t0);
        let later = t0 + Duration::from_secs(2);
        assert!(matches!(
            breakers.gate(&mut probe, Duration::from_secs(5), later),
            Gate::Send(d) if d == Duration::from_secs(1)
        ));
        breakers.record(&probe, Ok(()), later);
        let mut next = sign_op(t0);
        assert!(matches!(
            breakers.gate(&mut next, Duration::from_secs(5), later),
            Gate::Send(d) if d == Duration::from_secs(5)
        ));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(
            seen[0].contains("Opened") && seen[1].contains("Probing") && seen[2].contains("Closed")
        );
        assert!(
            seen.iter()
                .all(|l| l.starts_with("https://myvault.vault.azure.net "))
        );
    }

    #[test]
    fn without_a_policy_every_request_goes() {
        let breakers = Breakers::new(None);
        let t0 = Instant::now();
        let timeout = TransportError::new(TransportErrorKind::Timeout, "no answer");
        for _ in 0..10 {
            let mut op = sign_op(t0);
            breakers.record(&op, Err(&timeout), t0);
            assert!(matches!(
                breakers.gate(&mut op, Duration::from_secs(5), t0),
                Gate::Send(_)
            ));
        }
    }

    #[test]
    fn request_ids_differ() {
        assert_ne!(next_request_id(), next_request_id());
    }
}
