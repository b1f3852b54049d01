//! The blocking high-level client: the `akv-proto` driver loop over a [`Transport`].

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

/// A Key Vault keys client: cheap to clone, safe to share between threads. Clones share the
/// connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct KeyClient(ClientParts<Transport, TokenProvider>);

impl KeyClient {
    /// A client over `transport` taking tokens from `tokens`.
    pub fn new(transport: Transport, tokens: Arc<TokenProvider>, config: OperationConfig) -> Self {
        KeyClient(ClientParts::new(transport, tokens, config))
    }

    /// Tells `observer` of each change of a vault's circuit breaker (for the log).
    pub fn on_breaker_transition(&self, observer: akv_local::BreakerObserver) {
        self.0.breakers.observe(observer);
    }

    /// The token supply, for an async client of the same process to share.
    pub fn token_supply(&self) -> Arc<akv_local::SharedSupply> {
        self.0.tokens.supply()
    }

    /// The vaults' circuit breakers, for an async client of the same process to share.
    pub fn breakers(&self) -> Arc<akv_local::Breakers> {
        self.0.breakers.clone()
    }

    /// Runs any key operation to completion.
    pub fn run(&self, key: &KeyId, call: KeyCall) -> Result<Output, ClientError> {
        // The clock is read once after each step that may block (a token fetch, the
        // exchange, a backoff), not at every call: a read costs tens of nanoseconds in a VM.
        let mut now = Instant::now();
        let mut op = self.0.start(key, call, now);
        loop {
            match op.poll(now) {
                Poll::Token(need) => {
                    let token = self.0.tokens.token(&need, &self.0.transport);
                    now = Instant::now();
                    op.handle_token(token, now);
                }
                Poll::Send(t) => {
                    let breakers = &self.0.breakers;
                    let Gate::Send(timeout) = breakers.gate(&mut op, t.timeout, now) else {
                        continue;
                    };
                    let sent = self.0.transport.send(t.request, timeout);
                    now = Instant::now();
                    match sent {
                        Ok(response) => {
                            breakers.record(&op, Ok(()), now);
                            op.handle_response(response, now)
                        }
                        Err(e) => {
                            breakers.record(&op, Err(&e), now);
                            op.handle_transport_error(e, now)
                        }
                    }
                }
                Poll::Wait(d) => {
                    std::thread::sleep(d);
                    now = Instant::now();
                }
                Poll::Done(result) => return result,
            }
        }
    }

    /// Runs a typed call (`KeyCall::sign(..)`, `KeyCall::verify(..)`, ...) and reads its
    /// result.
    pub fn call<T>(&self, key: &KeyId, call: TypedCall<T>) -> Result<T, ClientError> {
        let (call, read) = call.into_parts();
        self.run(key, call).and_then(read)
    }

    /// Fetches the key's public part and attributes.
    pub fn get_key(&self, key: &KeyId) -> Result<KeyBundle, ClientError> {
        self.call(key, KeyCall::get_key())
    }

    /// Fetches the certificate of the key's name (Key Vault only).
    pub fn get_certificate(&self, key: &KeyId) -> Result<CertificateBundle, ClientError> {
        self.call(key, KeyCall::get_certificate())
    }

    /// Signs a digest; returns the signature as Key Vault sends it (raw `r||s` for ECDSA).
    pub fn sign(
        &self,
        key: &KeyId,
        alg: SignAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.call(key, KeyCall::sign(alg, digest))
    }

    /// Decrypts.
    pub fn decrypt(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        data: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.call(key, KeyCall::decrypt(alg, data))
    }
}
