//! One ureq agent: a keep-alive pool, rustls with an explicit crypto provider, the
//! platform's roots plus an optional extra CA file, timeouts, no redirects, capped bodies;
//! with our own resolver and TCP layer, so that a request on a kept-alive connection costs
//! no thread, no name lookup and no socket option (see `resolver.rs` and `tcp.rs`).

use std::sync::Arc;
use std::time::Duration;

use akv_proto::{
    HttpRequest, HttpResponse, ProxySetting, TransportConfig, TransportError, TransportErrorKind,
};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    ConnectProxyConnector, Connector, NextTimeout, RustlsConnector,
};

use crate::resolver::CachingResolver;
use crate::tcp::LeanTcpConnector;

/// Executes HTTP requests for `akv-proto`.
#[derive(Debug, Clone)]
pub struct Transport {
    agent: ureq::Agent,
    resolver: Arc<CachingResolver>,
    max_body_bytes: u64,
}

/// The agent's handle on the resolver the transport also keeps (to forget addresses).
#[derive(Debug)]
struct SharedResolver(Arc<CachingResolver>);

impl Resolver for SharedResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.0.resolve(uri, config, timeout)
    }
}

impl Transport {
    /// Builds a transport. Fails when the extra CA file cannot be read or holds no
    /// certificate, or when no trust root at all is left (see [`akv_local::trust_roots`]).
    pub fn new(config: &TransportConfig) -> Result<Transport, TransportError> {
        let roots: Vec<Certificate<'static>> = akv_local::trust_roots(config)?
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            // Explicit provider: a process-wide default may not exist, or be another one.
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let proxy = match &config.proxy {
            ProxySetting::FromEnv => ureq::Proxy::try_from_env(),
            ProxySetting::Direct => None,
            ProxySetting::Url(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Other,
                    format!("invalid proxy {url}: {e}"),
                )
            })?),
        };
        let agent_config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .max_idle_connections(config.max_idle_per_host.max(1) * 4)
            .max_idle_connections_per_host(config.max_idle_per_host.max(1))
            .max_idle_age(Duration::from_secs(60))
            .tls_config(tls)
            .proxy(proxy)
            .user_agent(concat!("e_akv/", env!("CARGO_PKG_VERSION")))
            .accept_encoding("identity")
            .build();
        // ureq's default chain, with our TCP layer in place of its own.
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(LeanTcpConnector)
                .chain(RustlsConnector::default());
        let resolver = Arc::new(CachingResolver::default());
        let agent =
            ureq::Agent::with_parts(agent_config, connector, SharedResolver(resolver.clone()));
        Ok(Transport {
            agent,
            resolver,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Sends one request and reads the whole response, within `timeout`.
    pub fn send(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .build();
        // Kept for the error path; cloning a Uri shares its bytes.
        let uri = request.uri().clone();
        let exchange = self.agent.run(request).and_then(|response| {
            let (parts, mut body) = response.into_parts();
            let bytes = body
                .with_config()
                .limit(self.max_body_bytes)
                .read_to_vec()?;
            Ok(HttpResponse::from_parts(parts, bytes))
        });
        exchange.map_err(|e| {
            let error = map_error(e);
            if matches!(
                error.kind,
                TransportErrorKind::Connect | TransportErrorKind::Timeout | TransportErrorKind::Io
            ) && let Some(host) = uri.host()
            {
                // The addresses may be what failed (a failover moved the vault): look again.
                self.resolver.forget(host);
            }
            error
        })
    }
}

fn map_error(error: ureq::Error) -> TransportError {
    use std::io::ErrorKind;
    let kind = match &error {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed => TransportErrorKind::Connect,
        ureq::Error::Io(e) => match e.kind() {
            ErrorKind::ConnectionRefused
            | ErrorKind::AddrNotAvailable
            | ErrorKind::NetworkUnreachable
            | ErrorKind::HostUnreachable => TransportErrorKind::Connect,
            ErrorKind::TimedOut | ErrorKind::WouldBlock => TransportErrorKind::Timeout,
            _ => TransportErrorKind::Io,
        },
        ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::TlsRequired => TransportErrorKind::Tls,
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::BodyTooLarge,
        ureq::Error::Protocol(_) | ureq::Error::BodyStalled => TransportErrorKind::Io,
        ureq::Error::ConnectProxyFailed(_) | ureq::Error::InvalidProxyUrl => {
            TransportErrorKind::Connect
        }
        _ => TransportErrorKind::Other,
    };
    TransportError::new(kind, error.to_string())
}
