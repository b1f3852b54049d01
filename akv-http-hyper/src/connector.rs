//! TCP connections, directly or through an HTTP CONNECT proxy chosen per destination by
//! `HTTPS_PROXY` / `NO_PROXY` rules. TLS is layered on top by hyper-rustls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connects directly or tunnels through a proxy.
#[derive(Clone)]
pub(crate) struct ProxyConnector {
    http: HttpConnector,
    proxy: Option<Arc<Matcher>>,
}

impl ProxyConnector {
    pub(crate) fn new(http: HttpConnector, proxy: Option<Matcher>) -> Self {
        ProxyConnector {
            http,
            proxy: proxy.map(Arc::new),
        }
    }
}

impl Service<Uri> for ProxyConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Only https destinations are tunnelled: plain http is used for loopback test
        // servers alone, which NO_PROXY normally covers anyway.
        let intercept = match dst.scheme_str() {
            Some("https") => self.proxy.as_ref().and_then(|m| m.intercept(&dst)),
            _ => None,
        };
        match intercept {
            Some(intercept) => {
                let mut tunnel = Tunnel::new(intercept.uri().clone(), self.http.clone());
                if let Some(auth) = intercept.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move { tunnel.call(dst).await.map_err(Into::into) })
            }
            None => {
                let fut = self.http.call(dst);
                Box::pin(async move { fut.await.map_err(Into::into) })
            }
        }
    }
}
