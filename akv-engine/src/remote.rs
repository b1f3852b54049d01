//! The three calls the engine makes to the vault, each on a thread with enough stack and
//! each turning a client error into an engine error that names the key and algorithm.

use akv_proto::{EncryptAlgorithm, KeyBundle, KeyId, SignAlgorithm};

use crate::errors::{EngineError, Reason};
use crate::stack::with_enough_stack;
use crate::{log, state};

/// Parses a key string and fetches the key.
pub fn get_key(text: &str) -> Result<(KeyId, KeyBundle), EngineError> {
    with_enough_stack(|| {
        let runtime = state::runtime()?;
        let key = KeyId::parse(text, &runtime.policy)
            .map_err(|e| EngineError::new(Reason::InvalidKeyId, e.to_string()))?;
        let bundle = runtime
            .client
            .get_key(&key)
            .map_err(|e| EngineError::new(Reason::KeyFetch, format!("{key}: {e}")))?;
        Ok((key, bundle))
    })
}

/// Signs a digest; returns the signature as the vault sends it.
pub fn sign(key: &KeyId, alg: SignAlgorithm, digest: &[u8]) -> Result<Vec<u8>, EngineError> {
    let started = std::time::Instant::now();
    let signature = with_enough_stack(|| {
        let runtime = state::runtime()?;
        runtime
            .client
            .sign(key, alg, digest)
            .map_err(|e| EngineError::new(Reason::Sign, format!("{key} {}: {e}", alg.as_str())))
    })?;
    log::debug(format_args!(
        "signed with {key} {} in {:?}",
        alg.as_str(),
        started.elapsed()
    ));
    Ok(signature)
}

/// Decrypts.
pub fn decrypt(
    key: &KeyId,
    alg: EncryptAlgorithm,
    ciphertext: &[u8],
) -> Result<Vec<u8>, EngineError> {
    let started = std::time::Instant::now();
    let plaintext = with_enough_stack(|| {
        let runtime = state::runtime()?;
        runtime
            .client
            .decrypt(key, alg, ciphertext)
            .map_err(|e| EngineError::new(Reason::Decrypt, format!("{key} {}: {e}", alg.as_str())))
    })?;
    log::debug(format_args!(
        "decrypted with {key} {} in {:?}",
        alg.as_str(),
        started.elapsed()
    ));
    Ok(plaintext)
}
