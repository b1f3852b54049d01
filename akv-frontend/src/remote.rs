//! The calls a front end makes to the vault, each turning a client error into a failure
//! that names the key and algorithm. Loading runs on a thread with enough stack; the
//! private-key operations are futures, run in place on the blocking client (with enough
//! stack) or as a task on the async client inside an OpenSSL ASYNC job (see [`Via`]).

use std::ffi::{CStr, c_char};

use akv_proto::{
    Curve, EncryptAlgorithm, KeyId, PublicKey, RsaDecryptParams, RsaSignParams, SignAlgorithm,
};

use crate::failure::{Failure, Reason};
use crate::stack::with_enough_stack;
use crate::{log, runtime};

/// What kind of key a vault key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA with this modulus size.
    Rsa {
        /// Bits.
        bits: usize,
    },
    /// EC on this curve.
    Ec {
        /// Curve.
        curve: Curve,
    },
}

/// A vault key, loaded: pinned to the version fetched, with its public half.
#[derive(Debug)]
pub struct VaultKey {
    /// The key string it was loaded from, as named (a key reference file records it).
    pub named: String,
    /// The key, pinned to the version that was loaded, so every signature matches the
    /// public key loaded now.
    pub key: KeyId,
    /// RSA or EC.
    pub kind: KeyKind,
    /// The public key.
    pub public: PublicKey,
    /// Whether the key's `key_ops` allow signing.
    pub can_sign: bool,
    /// Whether they allow decrypting.
    pub can_decrypt: bool,
}

/// Longest key string looked at, so that absurd input cannot cost time or memory.
const MAX_INPUT: usize = 4096;

/// Reads a key string OpenSSL passes.
///
/// # Safety
/// `id` is NULL or a NUL-terminated string that outlives the result.
pub unsafe fn key_string<'a>(id: *const c_char) -> Result<&'a str, Failure> {
    if id.is_null() {
        return Err(Failure::new(
            Reason::InvalidKeyId,
            "no key identifier given: expected vault:NAME:KEY or managedHsm:NAME:KEY",
        ));
    }
    // SAFETY: the caller promises a C string.
    let bytes = unsafe { CStr::from_ptr(id) }.to_bytes();
    key_text(bytes)
}

/// Checks a key string's length and encoding.
pub fn key_text(bytes: &[u8]) -> Result<&str, Failure> {
    if bytes.len() > MAX_INPUT {
        return Err(Failure::new(
            Reason::InvalidKeyId,
            format!("key identifier of {} bytes is too long", bytes.len()),
        ));
    }
    std::str::from_utf8(bytes)
        .map_err(|_| Failure::new(Reason::InvalidKeyId, "key identifier is not valid UTF-8"))
}

/// Parses a key string, fetches the key once and checks that it can be used here.
pub fn load_key(text: &str) -> Result<VaultKey, Failure> {
    let started = log::Stopwatch::start(log::Level::Info);
    let (key, bundle) = with_enough_stack(|| {
        let runtime = runtime::runtime()?;
        let key = KeyId::parse(text, &runtime.policy)
            .map_err(|e| Failure::new(Reason::InvalidKeyId, e.to_string()))?;
        let bundle = runtime
            .client
            .get_key(&key)
            .map_err(|e| Failure::new(Reason::KeyFetch, format!("{key}: {e}")))?;
        Ok((key, bundle))
    })?;
    bundle
        .attributes
        .check_usable(akv_local::unix_now() as i64)
        .map_err(|e| Failure::new(Reason::UnusableKey, format!("{key}: {e}")))?;
    let pinned = key.pinned_from_kid(&bundle.kid).map_err(|e| {
        Failure::new(
            Reason::KeyFetch,
            format!("{key}: the service returned an unexpected key id: {e}"),
        )
    })?;
    let (can_sign, can_decrypt) = (bundle.allows("sign"), bundle.allows("decrypt"));
    let kind = match &bundle.public_key {
        PublicKey::Rsa { .. } => {
            if !(can_sign || can_decrypt) {
                return Err(Failure::new(
                    Reason::UnusableKey,
                    format!("{key}: key_ops allow neither sign nor decrypt"),
                ));
            }
            KeyKind::Rsa {
                bits: bundle.public_key.rsa_bits().unwrap_or(0),
            }
        }
        PublicKey::Ec { curve, .. } => {
            if !can_sign {
                return Err(Failure::new(
                    Reason::UnusableKey,
                    format!("{key}: key_ops do not allow sign"),
                ));
            }
            KeyKind::Ec { curve: *curve }
        }
        PublicKey::Unsupported { reason } => {
            return Err(Failure::new(
                Reason::UnusableKey,
                format!("{key}: {reason}"),
            ));
        }
    };
    log::info(format_args!(
        "loaded {pinned} ({}) in {started}",
        bundle.kty
    ));
    Ok(VaultKey {
        named: text.to_string(),
        key: pinned,
        kind,
        public: bundle.public_key,
        can_sign,
        can_decrypt,
    })
}

/// The certificate the vault holds under a key's name (a certificate made or imported in
/// the vault keeps its key under the same name): its DER, or `None` when there is none
/// (Key Vault answers 404). A Managed HSM keeps no certificates: asking one is an error.
pub fn load_certificate(text: &str) -> Result<Option<Vec<u8>>, Failure> {
    let started = log::Stopwatch::start(log::Level::Info);
    let fetched = with_enough_stack(|| {
        let runtime = runtime::runtime()?;
        let key = KeyId::parse(text, &runtime.policy)
            .map_err(|e| Failure::new(Reason::InvalidKeyId, e.to_string()))?;
        if key.is_managed_hsm() {
            return Err(Failure::new(
                Reason::Certificate,
                format!(
                    "{key}: a Managed HSM keeps no certificates; keep the certificate in a file or a Key Vault"
                ),
            ));
        }
        match runtime.client.get_certificate(&key) {
            Ok(bundle) => Ok((key, Some(bundle))),
            Err(akv_proto::Error::Service(e)) if e.status == 404 => Ok((key, None)),
            Err(e) => Err(Failure::new(
                Reason::Certificate,
                format!("certificate of {key}: {e}"),
            )),
        }
    })?;
    let (key, Some(bundle)) = fetched else {
        return Ok(None);
    };
    // A disabled certificate is refused, as the vault refuses its key. Outside its validity
    // it is still served, as a certificate file would be (the peers judge it), but said.
    match bundle.attributes.check_usable(akv_local::unix_now() as i64) {
        Err(akv_proto::KeyStateError::Disabled) => {
            return Err(Failure::new(
                Reason::Certificate,
                format!(
                    "certificate of {key}: it is disabled in the vault; enable it (az keyvault certificate set-attributes --enabled true) or name another version"
                ),
            ));
        }
        Err(other) => log::error(format_args!(
            "the certificate {} is used although {}",
            bundle.id,
            other.to_string().replacen("the key", "it", 1)
        )),
        Ok(()) => {}
    }
    log::info(format_args!(
        "loaded the certificate {} in {started}",
        bundle.id
    ));
    Ok(Some(bundle.der))
}

/// How a remote operation waits for the vault's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The calling thread waits, on the blocking client (the operation's future is ready
    /// the first time it is polled).
    Blocking,
    /// A task of the process's async runtime waits, on the async client: for the
    /// operations of OpenSSL ASYNC jobs (see `async_job`).
    Async,
}

/// Runs a call on the client `via` says.
async fn call<T: Send>(
    via: Via,
    key: &KeyId,
    call: akv_proto::TypedCall<T>,
) -> Result<Result<T, akv_proto::Error>, Failure> {
    Ok(match via {
        Via::Blocking => with_enough_stack(|| Ok(runtime::runtime()?.client.call(key, call)))?,
        Via::Async => {
            let side = runtime::async_side()?;
            let (client, in_flight) = (side.client.clone(), side.in_flight.clone());
            // Not held across the waits: the last holder of a replaced runtime must not be
            // one of its own tasks.
            drop(side);
            let _turn = in_flight.acquire_owned().await.map_err(|_| {
                Failure::new(Reason::Internal, "the async runtime is shutting down")
            })?;
            // Boxed: the caller's future stays small whichever way it runs.
            Box::pin(client.call(key, call)).await
        }
    })
}

/// Signs a digest; returns the signature as the vault sends it.
pub async fn sign(
    via: Via,
    key: &KeyId,
    alg: SignAlgorithm,
    digest: &[u8],
) -> Result<Vec<u8>, Failure> {
    let started = log::Stopwatch::start(log::Level::Debug);
    let signature = call(via, key, akv_proto::KeyCall::sign(alg, digest))
        .await?
        .map_err(|e| {
            Failure::of_operation(Reason::Sign, format!("{key} {}: {e}", alg.as_str()), &e)
        })?;
    log::debug(format_args!(
        "signed with {key} {} in {started}",
        alg.as_str()
    ));
    Ok(signature)
}

/// Decrypts.
pub async fn decrypt(
    via: Via,
    key: &KeyId,
    alg: EncryptAlgorithm,
    ciphertext: &[u8],
) -> Result<Vec<u8>, Failure> {
    let started = log::Stopwatch::start(log::Level::Debug);
    let plaintext = call(via, key, akv_proto::KeyCall::decrypt(alg, ciphertext))
        .await?
        .map_err(|e| {
            Failure::of_operation(Reason::Decrypt, format!("{key} {}: {e}", alg.as_str()), &e)
        })?;
    log::debug(format_args!(
        "decrypted with {key} {} in {started}",
        alg.as_str()
    ));
    Ok(plaintext)
}

/// Signs with an RSA vault key as OpenSSL asked (`params` says padding, digest, salt and
/// MGF1; `input` is the digest, or a DigestInfo for PKCS#1 without a digest set); returns a
/// signature of the modulus' width.
pub async fn sign_rsa(
    via: Via,
    key: &VaultKey,
    params: &RsaSignParams,
    input: &[u8],
) -> Result<Vec<u8>, Failure> {
    let (alg, hash) = akv_proto::rsa_sign(params, input)
        .map_err(|e| Failure::new(Reason::NotPossibleRemotely, format!("{}: {e}", key.key)))?;
    let size = params.modulus_bits.div_ceil(8);
    let signature = sign(via, &key.key, alg, hash).await?;
    if signature.len() > size {
        return Err(Failure::new(
            Reason::Sign,
            format!(
                "{}: the vault returned a {}-byte signature for a {size}-byte key",
                key.key,
                signature.len()
            ),
        ));
    }
    // Left-pad to the modulus size: RSA signatures are fixed-width.
    let mut padded = vec![0u8; size - signature.len()];
    padded.extend_from_slice(&signature);
    Ok(padded)
}

/// Signs a digest with an EC vault key (truncated or widened to the curve as ECDSA does);
/// returns the raw `r||s` and the curve.
pub async fn sign_ecdsa(
    via: Via,
    key: &VaultKey,
    digest: &[u8],
) -> Result<(Vec<u8>, Curve), Failure> {
    let KeyKind::Ec { curve } = key.kind else {
        return Err(Failure::new(
            Reason::Internal,
            format!("{}: an ECDSA signature was asked of an RSA key", key.key),
        ));
    };
    let (alg, hash) = akv_proto::ecdsa_sign(curve, digest)
        .map_err(|e| Failure::new(Reason::NotPossibleRemotely, format!("{}: {e}", key.key)))?;
    let raw = sign(via, &key.key, alg, &hash).await?;
    if raw.len() != 2 * curve.field_len() {
        return Err(Failure::new(
            Reason::Sign,
            format!(
                "{}: the vault returned a {}-byte ECDSA signature, {} expected",
                key.key,
                raw.len(),
                2 * curve.field_len()
            ),
        ));
    }
    Ok((raw, curve))
}

/// Decrypts with an RSA vault key as OpenSSL asked (`params` says padding and OAEP digests).
pub async fn decrypt_rsa(
    via: Via,
    key: &VaultKey,
    params: &RsaDecryptParams,
    ciphertext: &[u8],
) -> Result<Vec<u8>, Failure> {
    let alg = akv_proto::rsa_decrypt(params)
        .map_err(|e| Failure::new(Reason::NotPossibleRemotely, format!("{}: {e}", key.key)))?;
    decrypt(via, &key.key, alg, ciphertext).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_refuses_long_and_non_utf8_input() {
        assert_eq!(key_text(b"vault:v:k").unwrap(), "vault:v:k");
        let long = vec![b'a'; MAX_INPUT + 1];
        assert!(key_text(&long).unwrap_err().message.contains("too long"));
        assert!(
            key_text(b"vault:\xff")
                .unwrap_err()
                .message
                .contains("UTF-8")
        );
        // SAFETY: NULL is allowed.
        let none = unsafe { key_string(std::ptr::null()) }.unwrap_err();
        assert_eq!(none.reason, Reason::InvalidKeyId);
    }
}
