//! Executes requests: on our own HTTP/1.1 exchange over kept connections (`h1.rs`), or
//! through ureq when a proxy is configured (CONNECT tunnels are ureq's). Either way: rustls
//! with an explicit crypto provider, the platform's roots plus an optional extra CA file,
//! timeouts, no redirects, capped bodies, and names looked up only when a connection is
//! opened (`resolver.rs`).

use std::sync::Arc;
use std::time::Duration;

use akv_proto::{
    HttpRequest, HttpResponse, ProxySetting, TransportConfig, TransportError, TransportErrorKind,
};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use crate::h1::Direct;
use crate::resolver::CachingResolver;

/// Executes HTTP requests for `akv-proto`.
#[derive(Debug, Clone)]
pub struct Transport {
    route: Route,
    resolver: Arc<CachingResolver>,
}

#[derive(Debug, Clone)]
enum Route {
    Direct(Arc<Direct>),
    Proxy {
        agent: ureq::Agent,
        max_body_bytes: u64,
    },
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
        let resolver = Arc::new(CachingResolver::default());
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
        let route = match proxy {
            None => Route::Direct(Arc::new(Direct::new(
                akv_local::tls_client_config(config)?,
                resolver.clone(),
                config.connect_timeout,
                config.max_idle_per_host,
                config.max_body_bytes,
            ))),
            Some(proxy) => Route::Proxy {
                agent: proxy_agent(config, proxy, resolver.clone())?,
                max_body_bytes: config.max_body_bytes,
            },
        };
        Ok(Transport { route, resolver })
    }

    /// Sends one request and reads the whole response, within `timeout`.
    pub fn send(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        // Kept for the error path; cloning a Uri shares its bytes.
        let uri = request.uri().clone();
        let result = match &self.route {
            Route::Direct(direct) => direct.send(request, timeout),
            Route::Proxy {
                agent,
                max_body_bytes,
            } => send_via_ureq(agent, request, timeout, *max_body_bytes),
        };
        result.inspect_err(|error| {
            if matches!(
                error.kind,
                TransportErrorKind::Connect | TransportErrorKind::Timeout | TransportErrorKind::Io
            ) && let Some(host) = uri.host()
            {
                // The addresses may be what failed (a failover moved the vault): look again.
                self.resolver.forget(host);
            }
        })
    }
}

/// The ureq agent for requests through a proxy.
fn proxy_agent(
    config: &TransportConfig,
    proxy: ureq::Proxy,
    resolver: Arc<CachingResolver>,
) -> Result<ureq::Agent, TransportError> {
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
    let agent_config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_connect(Some(config.connect_timeout))
        .max_idle_connections(config.max_idle_per_host.max(1) * 4)
        .max_idle_connections_per_host(config.max_idle_per_host.max(1))
        .max_idle_age(Duration::from_secs(60))
        .tls_config(tls)
        .proxy(Some(proxy))
        .user_agent(concat!("e_akv/", env!("CARGO_PKG_VERSION")))
        .accept_encoding("identity")
        .build();
    Ok(ureq::Agent::with_parts(
        agent_config,
        DefaultConnector::default(),
        SharedResolver(resolver),
    ))
}

fn send_via_ureq(
    agent: &ureq::Agent,
    request: HttpRequest,
    timeout: Duration,
    max_body_bytes: u64,
) -> Result<HttpResponse, TransportError> {
    let request = agent
        .configure_request(request)
        .timeout_global(Some(timeout))
        .build();
    let exchange = agent.run(request).and_then(|response| {
        let (parts, mut body) = response.into_parts();
        let bytes = body.with_config().limit(max_body_bytes).read_to_vec()?;
        Ok(HttpResponse::from_parts(parts, bytes))
    });
    exchange.map_err(map_error)
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
