//! One ureq agent: a keep-alive pool, rustls with an explicit crypto provider, the
//! platform's roots plus an optional extra CA file, timeouts, no redirects, capped bodies.

use std::sync::Arc;
use std::time::Duration;

use akv_proto::{
    HttpRequest, HttpResponse, ProxySetting, TransportConfig, TransportError, TransportErrorKind,
};
use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};

/// Executes HTTP requests for `akv-proto`.
#[derive(Debug, Clone)]
pub struct Transport {
    agent: ureq::Agent,
    max_body_bytes: u64,
}

fn config_error(message: String) -> TransportError {
    TransportError::new(TransportErrorKind::Tls, message)
}

impl Transport {
    /// Builds a transport. Fails when the extra CA file cannot be read or holds no
    /// certificate, or when no trust root at all is left.
    pub fn new(config: &TransportConfig) -> Result<Transport, TransportError> {
        let mut roots: Vec<Certificate<'static>> = Vec::new();
        if config.platform_roots {
            // Honours SSL_CERT_FILE and SSL_CERT_DIR as OpenSSL does.
            let found = rustls_native_certs::load_native_certs();
            roots.extend(
                found
                    .certs
                    .iter()
                    .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
            );
        }
        if let Some((pem, source)) = extra_ca(config)? {
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                    roots.push(cert);
                }
            }
            if roots.len() == before {
                return Err(config_error(format!("{source} holds no PEM certificate")));
            }
        }
        if roots.is_empty() {
            return Err(config_error(
                "no trusted CA certificates: install ca-certificates, set SSL_CERT_FILE, or configure a CA file".into(),
            ));
        }
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
        let agent: ureq::Agent = ureq::Agent::config_builder()
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
            .build()
            .into();
        Ok(Transport {
            agent,
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
        let response = self.agent.run(request).map_err(map_error)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body
            .with_config()
            .limit(self.max_body_bytes)
            .read_to_vec()
            .map_err(map_error)?;
        Ok(HttpResponse::from_parts(parts, bytes))
    }
}

/// The extra CA certificates (PEM) and where they came from, for messages.
fn extra_ca(config: &TransportConfig) -> Result<Option<(Vec<u8>, String)>, TransportError> {
    match (&config.extra_ca_pem, &config.extra_ca_file) {
        (Some(pem), _) => Ok(Some((pem.clone(), "the configured CA certificates".into()))),
        (None, Some(path)) => std::fs::read(path)
            .map(|pem| Some((pem, format!("the CA file {}", path.display()))))
            .map_err(|e| config_error(format!("cannot read the CA file {}: {e}", path.display()))),
        (None, None) => Ok(None),
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
