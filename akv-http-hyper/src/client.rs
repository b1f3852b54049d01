//! The async high-level client: the `akv-proto` driver loop over a [`Transport`].

use std::sync::Arc;
use std::time::Instant;

use akv_local::{ClientParts, Gate};
use akv_proto::{
    CertificateBundle, EncryptAlgorithm, KeyBundle, KeyCall, KeyId, OperationConfig, Output, Poll,
    SignAlgorithm, TypedCall,
};

use crate::tokens::TokenProvider;
use crate::transport::Transport;

/// Why a client call failed.
pub type ClientError = akv_proto::Error;

/// A Key Vault keys client for tokio: cheap to clone, safe to share between tasks. Clones
/// share the connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct KeyClient(ClientParts<Transport, TokenProvider>);

impl KeyClient {
    /// A client over `transport` taking tokens from `tokens`.
    pub fn new(transport: Transport, tokens: Arc<TokenProvider>, config: OperationConfig) -> Self {
        KeyClient(ClientParts::new(transport, tokens, config))
    }

    /// A client sharing a blocking client's token supply and circuit breakers (from its
    /// `token_supply()` and `breakers()`): one token and one view of each vault per process.
    pub fn sharing(
        transport: Transport,
        supply: Arc<akv_local::SharedSupply>,
        breakers: Arc<akv_local::Breakers>,
        config: OperationConfig,
    ) -> Self {
        KeyClient(ClientParts::sharing_breakers(
            transport,
            Arc::new(TokenProvider::sharing(supply)),
            breakers,
            config,
        ))
    }

    /// Tells `observer` of each change of a vault's circuit breaker (for the log).
    pub fn on_breaker_transition(&self, observer: akv_local::BreakerObserver) {
        self.0.breakers.observe(observer);
    }

    /// Runs any key operation to completion.
    pub async fn run(&self, key: &KeyId, call: KeyCall) -> Result<Output, ClientError> {
        let mut op = self.0.start(key, call, Instant::now());
        loop {
            match op.poll(Instant::now()) {
                Poll::Token(need) => {
                    let token = self.0.tokens.token(&need, &self.0.transport).await;
                    op.handle_token(token, Instant::now());
                }
                Poll::Send(t) => {
                    let breakers = &self.0.breakers;
                    let Gate::Send(timeout) = breakers.gate(&mut op, t.timeout, Instant::now())
                    else {
                        continue;
                    };
                    match self.0.transport.send(t.request, timeout).await {
                        Ok(response) => {
                            breakers.record(&op, Ok(()), Instant::now());
                            op.handle_response(response, Instant::now())
                        }
                        Err(e) => {
                            breakers.record(&op, Err(&e), Instant::now());
                            op.handle_transport_error(e, Instant::now())
                        }
                    }
                }
                Poll::Wait(d) => tokio::time::sleep(d).await,
                Poll::Done(result) => return result,
            }
        }
    }

    /// Runs a typed call (`KeyCall::sign(..)`, `KeyCall::verify(..)`, ...) and reads its
    /// result.
    pub async fn call<T>(&self, key: &KeyId, call: TypedCall<T>) -> Result<T, ClientError> {
        let (call, read) = call.into_parts();
        self.run(key, call).await.and_then(read)
    }

    /// Fetches the key's public part and attributes.
    pub async fn get_key(&self, key: &KeyId) -> Result<KeyBundle, ClientError> {
        self.call(key, KeyCall::get_key()).await
    }

    /// Fetches the certificate of the key's name (Key Vault only).
    pub async fn get_certificate(&self, key: &KeyId) -> Result<CertificateBundle, ClientError> {
        self.call(key, KeyCall::get_certificate()).await
    }

    /// Signs a digest; returns the signature as Key Vault sends it (raw `r||s` for ECDSA).
    pub async fn sign(
        &self,
        key: &KeyId,
        alg: SignAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.call(key, KeyCall::sign(alg, digest)).await
    }

    /// Decrypts.
    pub async fn decrypt(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.call(key, KeyCall::decrypt(alg, data)).await
    }
}
