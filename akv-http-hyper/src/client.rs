//! The async high-level client: the `akv-proto` driver loop over a [`Transport`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use akv_proto::{
    ClientRequestId, EncryptAlgorithm, KeyBundle, KeyCall, KeyId, Operation, OperationConfig,
    Output, Poll, SignAlgorithm,
};

use crate::tokens::TokenProvider;
use crate::transport::Transport;

/// Why a client call failed.
pub type ClientError = akv_proto::Error;

/// A Key Vault keys client for tokio: cheap to clone, safe to share between tasks. Clones share the
/// connection pool and the token cache.
#[derive(Debug, Clone)]
pub struct KeyClient {
    transport: Transport,
    tokens: Arc<TokenProvider>,
    config: OperationConfig,
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A request id unique in this process and, with the pid and time mixed in, across processes.
fn next_request_id() -> ClientRequestId {
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed) as u128;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let pid = std::process::id() as u128;
    ClientRequestId::from_u128((nanos << 40) ^ (pid << 20) ^ n ^ (n << 96))
}

impl KeyClient {
    /// A client over `transport` taking tokens from `tokens`.
    pub fn new(
        transport: Transport,
        tokens: Arc<TokenProvider>,
        config: OperationConfig,
    ) -> KeyClient {
        KeyClient {
            transport,
            tokens,
            config,
        }
    }

    /// The token provider.
    pub fn tokens(&self) -> &Arc<TokenProvider> {
        &self.tokens
    }

    /// Runs any key operation to completion.
    pub async fn run(&self, key: &KeyId, call: KeyCall) -> Result<Output, ClientError> {
        let mut op = Operation::new(
            key.clone(),
            call,
            self.config.clone(),
            next_request_id(),
            Instant::now(),
        );
        loop {
            match op.poll(Instant::now()) {
                Poll::Token(need) => {
                    let token = self.tokens.token(&need, &self.transport).await;
                    op.handle_token(token, Instant::now());
                }
                Poll::Send(t) => match self.transport.send(t.request, t.timeout).await {
                    Ok(response) => op.handle_response(response, Instant::now()),
                    Err(e) => op.handle_transport_error(e, Instant::now()),
                },
                Poll::Wait(d) => tokio::time::sleep(d).await,
                Poll::Done(result) => return result,
            }
        }
    }

    /// Fetches the key's public part and attributes.
    pub async fn get_key(&self, key: &KeyId) -> Result<KeyBundle, ClientError> {
        let output = self.run(key, KeyCall::GetKey).await?;
        Ok(output.into_key().expect("GetKey yields a key"))
    }

    /// Signs a digest; returns the signature as Key Vault sends it (raw `r||s` for ECDSA).
    pub async fn sign(
        &self,
        key: &KeyId,
        alg: SignAlgorithm,
        digest: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.value(
            key,
            KeyCall::Sign {
                alg,
                digest: digest.to_vec(),
            },
        )
        .await
    }

    /// Verifies a signature remotely.
    pub async fn verify(
        &self,
        key: &KeyId,
        alg: SignAlgorithm,
        digest: &[u8],
        signature: &[u8],
    ) -> Result<bool, ClientError> {
        let call = KeyCall::Verify {
            alg,
            digest: digest.to_vec(),
            signature: signature.to_vec(),
        };
        match self.run(key, call).await? {
            Output::Verified(ok) => Ok(ok),
            _ => unreachable!("Verify yields a verdict"),
        }
    }

    /// Decrypts.
    pub async fn decrypt(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.value(
            key,
            KeyCall::Decrypt {
                alg,
                ciphertext: ciphertext.to_vec(),
            },
        )
        .await
    }

    /// Encrypts remotely.
    pub async fn encrypt(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.value(
            key,
            KeyCall::Encrypt {
                alg,
                plaintext: plaintext.to_vec(),
            },
        )
        .await
    }

    /// Wraps a key.
    pub async fn wrap_key(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        plain_key: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.value(
            key,
            KeyCall::WrapKey {
                alg,
                key: plain_key.to_vec(),
            },
        )
        .await
    }

    /// Unwraps a key.
    pub async fn unwrap_key(
        &self,
        key: &KeyId,
        alg: EncryptAlgorithm,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        self.value(
            key,
            KeyCall::UnwrapKey {
                alg,
                wrapped: wrapped.to_vec(),
            },
        )
        .await
    }

    async fn value(&self, key: &KeyId, call: KeyCall) -> Result<Vec<u8>, ClientError> {
        let output = self.run(key, call).await?;
        Ok(output.into_value().expect("this call yields a value"))
    }
}
