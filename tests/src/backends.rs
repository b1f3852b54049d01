//! Either backend behind one interface, so a suite runs the same scenario on both.

use std::sync::Arc;
use std::time::Duration;

use akv_proto::credential::CredentialSource;
use akv_proto::{Cloud, EndpointPolicy, Error, KeyCall, KeyId, OperationConfig, Output};

/// Which backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `akv-http-ureq`.
    Ureq,
    /// `akv-http-hyper`.
    Hyper,
}

/// Both, in the order suites run them.
pub const BACKENDS: [Backend; 2] = [Backend::Ureq, Backend::Hyper];

/// A client of either backend whose vault is `origin` (a loopback test server).
pub struct Client {
    runtime: tokio::runtime::Runtime,
    ureq: Option<akv_http_ureq::KeyClient>,
    hyper: Option<akv_http_hyper::KeyClient>,
    policy: EndpointPolicy,
}

impl Client {
    /// A client for `backend` sending vault requests to `origin` (`http(s)://127.0.0.1:PORT`)
    /// and taking tokens from `credential`. `ca` is the CA file for HTTPS origins.
    pub fn new(
        backend: Backend,
        origin: &str,
        config: OperationConfig,
        credential: CredentialSource,
        ca: Option<&std::path::Path>,
    ) -> Client {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let host = origin
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        let policy = EndpointPolicy::new(Cloud::Public)
            .allow_host(host)
            .expect("host")
            .with_endpoint_override(origin)
            .expect("origin");
        let budget = config.budget;
        let (mut ureq, mut hyper) = (None, None);
        match backend {
            Backend::Ureq => {
                let transport = akv_http_ureq::Transport::new(&akv_http_ureq::TransportConfig {
                    proxy: akv_http_ureq::ProxySetting::Direct,
                    max_body_bytes: 1024 * 1024,
                    extra_ca_file: ca.map(Into::into),
                    ..Default::default()
                })
                .expect("transport");
                let tokens = Arc::new(akv_http_ureq::TokenProvider::new(
                    credential,
                    budget.max(Duration::from_secs(1)),
                ));
                ureq = Some(akv_http_ureq::KeyClient::new(transport, tokens, config));
            }
            Backend::Hyper => {
                let _guard = runtime.enter();
                let transport = akv_http_hyper::Transport::new(&akv_http_hyper::TransportConfig {
                    proxy: akv_http_hyper::ProxySetting::Direct,
                    max_body_bytes: 1024 * 1024,
                    extra_ca_file: ca.map(Into::into),
                    ..Default::default()
                })
                .expect("transport");
                let tokens = Arc::new(akv_http_hyper::TokenProvider::new(
                    credential,
                    budget.max(Duration::from_secs(1)),
                ));
                hyper = Some(akv_http_hyper::KeyClient::new(transport, tokens, config));
            }
        }
        Client {
            runtime,
            ureq,
            hyper,
            policy,
        }
    }

    /// Runs one operation on the key named by `key` (e.g. `vault:myvault:k`).
    pub fn run(&self, key: &str, call: KeyCall) -> Result<Output, Error> {
        let key = KeyId::parse(key, &self.policy).expect("key id");
        match (&self.ureq, &self.hyper) {
            (Some(c), _) => c.run(&key, call),
            (_, Some(c)) => self.runtime.block_on(c.run(&key, call)),
            _ => unreachable!("one backend is set"),
        }
    }
}
