//! Key operations with their result types: [`KeyCall`] says what to ask, [`TypedCall`] adds
//! how the driver's [`Output`] reads, so that a client's `sign` returns bytes and its
//! `get_key` a [`KeyBundle`] without each backend writing the conversions again.

use crate::algorithm::{EncryptAlgorithm, SignAlgorithm};
use crate::driver::{Error, Output};
use crate::request::KeyCall;
use crate::response::{CertificateBundle, KeyBundle};

/// A [`KeyCall`] that yields a `T`: [`TypedCall::into_parts`] gives the call to run through
/// the driver and the reader of its output.
#[derive(Clone)]
#[must_use]
pub struct TypedCall<T> {
    call: KeyCall,
    read: fn(Output) -> Option<T>,
}

impl<T> std::fmt::Debug for TypedCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.call.fmt(f)
    }
}

impl<T> TypedCall<T> {
    /// The call and the reader of its output, apart.
    pub fn into_parts(self) -> (KeyCall, impl Fn(Output) -> Result<T, Error>) {
        let read = self.read;
        (self.call, move |output| {
            read(output).ok_or(Error::Misuse(
                "the driver answered with another kind of output",
            ))
        })
    }
}

fn value(output: Output) -> Option<Vec<u8>> {
    output.into_value()
}

fn verdict(output: Output) -> Option<bool> {
    match output {
        Output::Verified(ok) => Some(ok),
        _ => None,
    }
}

impl KeyCall {
    /// Fetch the key's public part and attributes.
    pub fn get_key() -> TypedCall<KeyBundle> {
        TypedCall {
            call: KeyCall::GetKey,
            read: Output::into_key,
        }
    }

    /// Fetch the certificate of the key's name.
    pub fn get_certificate() -> TypedCall<CertificateBundle> {
        TypedCall {
            call: KeyCall::GetCertificate,
            read: Output::into_certificate,
        }
    }

    /// Sign a digest; the signature comes as Key Vault sends it (raw `r||s` for ECDSA).
    pub fn sign(alg: SignAlgorithm, digest: &[u8]) -> TypedCall<Vec<u8>> {
        TypedCall {
            call: KeyCall::Sign {
                alg,
                digest: digest.to_vec(),
            },
            read: value,
        }
    }

    /// Verify a signature remotely.
    pub fn verify(alg: SignAlgorithm, digest: &[u8], signature: &[u8]) -> TypedCall<bool> {
        TypedCall {
            call: KeyCall::Verify {
                alg,
                digest: digest.to_vec(),
                signature: signature.to_vec(),
            },
            read: verdict,
        }
    }

    /// Decrypt.
    pub fn decrypt(alg: EncryptAlgorithm, ciphertext: &[u8]) -> TypedCall<Vec<u8>> {
        TypedCall {
            call: KeyCall::Decrypt {
                alg,
                ciphertext: ciphertext.to_vec(),
            },
            read: value,
        }
    }

    /// Encrypt remotely (the engine encrypts locally).
    pub fn encrypt(alg: EncryptAlgorithm, plaintext: &[u8]) -> TypedCall<Vec<u8>> {
        TypedCall {
            call: KeyCall::Encrypt {
                alg,
                plaintext: plaintext.to_vec(),
            },
            read: value,
        }
    }

    /// Wrap a key.
    pub fn wrap_key(alg: EncryptAlgorithm, key: &[u8]) -> TypedCall<Vec<u8>> {
        TypedCall {
            call: KeyCall::WrapKey {
                alg,
                key: key.to_vec(),
            },
            read: value,
        }
    }

    /// Unwrap a key.
    pub fn unwrap_key(alg: EncryptAlgorithm, wrapped: &[u8]) -> TypedCall<Vec<u8>> {
        TypedCall {
            call: KeyCall::UnwrapKey {
                alg,
                wrapped: wrapped.to_vec(),
            },
            read: value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::KeyOpResult;

    #[test]
    fn outputs_read_as_their_call_promises() {
        let kid = "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef";
        let result = || {
            Output::Value(KeyOpResult {
                kid: Some(kid.into()),
                value: vec![1, 2],
            })
        };
        let (call, read) = KeyCall::sign(SignAlgorithm::ES256, &[9; 32]).into_parts();
        assert!(matches!(call, KeyCall::Sign { digest, .. } if digest == [9; 32]));
        assert_eq!(read(result()).unwrap(), [1, 2]);
        let (_, read) = KeyCall::verify(SignAlgorithm::ES256, &[1], &[2]).into_parts();
        assert_eq!(read(Output::Verified(true)), Ok(true));
        // A mismatch is an error, never a panic: it would cross the C boundary in the engine.
        assert!(matches!(read(result()), Err(Error::Misuse(_))));
        let (_, read) = KeyCall::get_key().into_parts();
        assert!(matches!(read(result()), Err(Error::Misuse(_))));
    }
}
