//! One hyper client: a keep-alive pool, rustls with an explicit crypto provider, the
//! platform's roots plus an optional extra CA file, timeouts, no redirects, capped bodies.

use std::time::Duration;

use akv_proto::{
    HttpRequest, HttpResponse, ProxySetting, TransportConfig, TransportError, TransportErrorKind,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::connector::ProxyConnector;

/// Executes HTTP requests for `akv-proto`. Must be used inside a tokio runtime.
#[derive(Clone)]
pub struct Transport {
    client: Client<HttpsConnector<ProxyConnector>, Full<Bytes>>,
    max_body_bytes: u64,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("max_body_bytes", &self.max_body_bytes)
            .finish()
    }
}

impl Transport {
    /// Builds a transport (no connection is made yet).
    pub fn new(config: &TransportConfig) -> Result<Transport, TransportError> {
        let tls = akv_local::tls_client_config(config)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        let proxy = match &config.proxy {
            ProxySetting::FromEnv => Some(Matcher::from_env()),
            ProxySetting::Direct => None,
            ProxySetting::Url(url) => Some(Matcher::builder().all(url.clone()).build()),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(ProxyConnector::new(http, proxy));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(config.max_idle_per_host.max(1))
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Transport {
            client,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// Sends one request and reads the whole response, within `timeout`.
    pub async fn send(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let exchange = async {
            let (parts, body) = request.into_parts();
            let mut request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
            request.headers_mut().insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_static(concat!("e_akv/", env!("CARGO_PKG_VERSION"))),
            );
            let response = self
                .client
                .request(request)
                .await
                .map_err(map_client_error)?;
            let (mut parts, body) = response.into_parts();
            // The blocking codec makes only the headers the protocol reads; so does this.
            parts.headers = akv_proto::read_headers::keep_read(std::mem::take(&mut parts.headers));
            let limit = usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX);
            let bytes = Limited::new(body, limit)
                .collect()
                .await
                .map_err(map_body_error)?
                .to_bytes();
            Ok(HttpResponse::from_parts(parts, bytes.to_vec()))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::new(
                TransportErrorKind::Timeout,
                format!("no complete answer within {timeout:?}"),
            )),
        }
    }
}

/// Finds the most telling cause in an error chain.
fn classify(error: &(dyn std::error::Error + 'static)) -> Option<TransportErrorKind> {
    use std::io::ErrorKind;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return Some(TransportErrorKind::Tls);
        }
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return Some(TransportErrorKind::BodyTooLarge);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            // rustls reports TLS alerts and certificate failures as InvalidData I/O errors.
            if io.kind() == ErrorKind::InvalidData
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
            {
                return Some(TransportErrorKind::Tls);
            }
            return Some(match io.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::AddrNotAvailable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::HostUnreachable => TransportErrorKind::Connect,
                ErrorKind::TimedOut => TransportErrorKind::Timeout,
                _ => TransportErrorKind::Io,
            });
        }
        current = e.source();
    }
    None
}

fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

fn map_client_error(error: hyper_util::client::legacy::Error) -> TransportError {
    let kind = classify(&error).unwrap_or(if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    });
    let kind = if error.is_connect() && kind == TransportErrorKind::Io {
        TransportErrorKind::Connect
    } else {
        kind
    };
    TransportError::new(kind, describe(&error))
}

fn map_body_error(error: Box<dyn std::error::Error + Send + Sync>) -> TransportError {
    let kind = classify(error.as_ref()).unwrap_or(TransportErrorKind::Io);
    TransportError::new(kind, describe(error.as_ref()))
}
