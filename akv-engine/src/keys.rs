//! Loading a vault key into an `EVP_PKEY`: fetched once and pinned by
//! [`akv_frontend::remote::load_key`], built here as an RSA or EC key whose public half is
//! real, remembered as backed by the vault key, and bound to the engine so OpenSSL (>= 3.0.14
//! too) routes private-key operations to us.

use std::collections::HashMap;
use std::ffi::c_int;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::remote::VaultKey;
use akv_proto::{Curve, PublicKey};

use crate::ffi;

/// Vault keys by the address of their `RSA` / `EC_KEY` object. Looked up by object address
/// rather than kept in ex_data: OpenSSL copies ex_data pointers when it duplicates a key,
/// which would free ours twice.
static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

type Registry = HashMap<usize, Arc<VaultKey>, BuildHasherDefault<AddressHasher>>;

/// Hashes an object's address for the registry, which looks one up for every operation:
/// SipHash, the default, guards against keys an attacker picks, which addresses are not,
/// and cost about 100 instructions a lookup. A multiply spreads the address's bits upwards,
/// the shift brings them back down to the low bits the map indexes with (allocations are
/// aligned: an address's own low bits hardly vary).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The map hashes addresses (`write_usize`); anything else would still hash.
        for b in bytes {
            self.write_usize((self.0 as usize).rotate_left(8) ^ usize::from(*b));
        }
    }

    fn write_usize(&mut self, address: usize) {
        let spread = (address as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = spread ^ (spread >> 29);
    }
}

/// Registers the vault key of an object.
pub fn register(object: *const std::ffi::c_void, data: Arc<VaultKey>) {
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::default)
        .insert(object as usize, data);
}

/// The vault key of an object, if it is one of ours.
pub fn lookup(object: *const std::ffi::c_void) -> Option<Arc<VaultKey>> {
    if object.is_null() {
        return None;
    }
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&(object as usize))
        .cloned()
}

/// Forgets an object (its `finish` callback).
pub fn forget(object: *const std::ffi::c_void) {
    let mut registry = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(map) = registry.as_mut() {
        map.remove(&(object as usize));
        if map.is_empty() {
            // Release the table itself, so nothing of ours outlives the last key.
            *registry = None;
        }
    }
}

/// Loads a vault key as an `EVP_PKEY` bound to `engine`.
pub fn load(engine: *mut ffi::ENGINE, text: &str) -> Result<*mut ffi::EVP_PKEY, Failure> {
    let loaded = Arc::new(akv_frontend::remote::load_key(text)?);
    match &loaded.public {
        // SAFETY: engine is the live ENGINE OpenSSL handed to load_privkey.
        PublicKey::Rsa { n, e } => unsafe { build_rsa(engine, n, e, loaded.clone()) },
        // SAFETY: as above.
        PublicKey::Ec { curve, x, y } => unsafe { build_ec(engine, *curve, x, y, loaded.clone()) },
        PublicKey::Unsupported { reason } => Err(Failure::new(
            Reason::UnusableKey,
            format!("{}: {reason}", loaded.key),
        )),
    }
}

struct Owned<T>(*mut T, unsafe fn(*mut T));

impl<T> Owned<T> {
    fn release(mut self) -> *mut T {
        std::mem::replace(&mut self.0, std::ptr::null_mut())
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from the matching allocator and was not released.
            unsafe { (self.1)(self.0) }
        }
    }
}

unsafe fn free_rsa(p: *mut ffi::RSA) {
    unsafe { ffi::RSA_free(p) }
}
unsafe fn free_ec(p: *mut ffi::EC_KEY) {
    unsafe { ffi::EC_KEY_free(p) }
}
unsafe fn free_pkey(p: *mut ffi::EVP_PKEY) {
    unsafe { ffi::EVP_PKEY_free(p) }
}
unsafe fn free_bn(p: *mut ffi::BIGNUM) {
    unsafe { ffi::BN_free(p) }
}
unsafe fn free_group(p: *mut ffi::EC_GROUP) {
    unsafe { ffi::EC_GROUP_free(p) }
}

fn openssl_failed(what: &str) -> Failure {
    Failure::new(Reason::Internal, format!("OpenSSL could not {what}"))
}

fn bignum(bytes: &[u8]) -> Result<Owned<ffi::BIGNUM>, Failure> {
    // SAFETY: pointer and length describe `bytes`.
    let bn = unsafe { ffi::BN_bin2bn(bytes.as_ptr(), bytes.len() as c_int, std::ptr::null_mut()) };
    if bn.is_null() {
        Err(openssl_failed("allocate a number"))
    } else {
        Ok(Owned(bn, free_bn))
    }
}

/// Wraps a key object in an `EVP_PKEY` that carries the engine.
unsafe fn into_pkey(
    engine: *mut ffi::ENGINE,
    kind: c_int,
    object: *mut std::ffi::c_void,
    free_object: impl FnOnce(),
) -> Result<*mut ffi::EVP_PKEY, Failure> {
    // SAFETY: plain allocation.
    let pkey = Owned(unsafe { ffi::EVP_PKEY_new() }, free_pkey);
    if pkey.0.is_null() {
        free_object();
        return Err(openssl_failed("allocate a key"));
    }
    // SAFETY: pkey and object are valid; on success pkey owns object.
    if unsafe { ffi::EVP_PKEY_assign(pkey.0, kind, object) } != 1 {
        free_object();
        return Err(openssl_failed("assign the key"));
    }
    // SAFETY: valid pkey and engine. Without this, OpenSSL >= 3.0.14 would not route the
    // key's operations to us unless the application called ENGINE_set_default.
    if unsafe { ffi::EVP_PKEY_set1_engine(pkey.0, engine) } != 1 {
        return Err(openssl_failed("attach the engine to the key"));
    }
    Ok(pkey.release())
}

unsafe fn build_rsa(
    engine: *mut ffi::ENGINE,
    n: &[u8],
    e: &[u8],
    data: Arc<VaultKey>,
) -> Result<*mut ffi::EVP_PKEY, Failure> {
    // SAFETY: engine is valid; RSA_new_method takes its own reference on it.
    let rsa = Owned(unsafe { ffi::RSA_new_method(engine) }, free_rsa);
    if rsa.0.is_null() {
        return Err(openssl_failed("create an RSA key"));
    }
    let (bn_n, bn_e) = (bignum(n)?, bignum(e)?);
    // SAFETY: on success the RSA owns both numbers.
    if unsafe { ffi::RSA_set0_key(rsa.0, bn_n.0, bn_e.0, std::ptr::null_mut()) } != 1 {
        return Err(openssl_failed("set the RSA public key"));
    }
    bn_n.release();
    bn_e.release();
    register(rsa.0 as *const _, data);
    let raw = rsa.release();
    // SAFETY: raw is a valid RSA; on failure it is freed by the closure.
    unsafe { into_pkey(engine, ffi::EVP_PKEY_RSA, raw.cast(), || free_rsa(raw)) }
}

/// The OpenSSL curve NID of a curve.
pub fn curve_nid(curve: Curve) -> c_int {
    match curve {
        Curve::P256 => ffi::NID_X9_62_PRIME256V1,
        Curve::P384 => ffi::NID_SECP384R1,
        Curve::P521 => ffi::NID_SECP521R1,
        Curve::P256K => ffi::NID_SECP256K1,
    }
}

unsafe fn build_ec(
    engine: *mut ffi::ENGINE,
    curve: Curve,
    x: &[u8],
    y: &[u8],
    data: Arc<VaultKey>,
) -> Result<*mut ffi::EVP_PKEY, Failure> {
    // SAFETY: engine is valid; EC_KEY_new_method takes its own reference on it.
    let ec = Owned(unsafe { ffi::EC_KEY_new_method(engine) }, free_ec);
    if ec.0.is_null() {
        return Err(openssl_failed("create an EC key"));
    }
    // SAFETY: plain calls on valid objects.
    let group = Owned(
        unsafe { ffi::EC_GROUP_new_by_curve_name(curve_nid(curve)) },
        free_group,
    );
    if group.0.is_null() || unsafe { ffi::EC_KEY_set_group(ec.0, group.0) } != 1 {
        return Err(openssl_failed(&format!("use the curve {curve}")));
    }
    let (bx, by) = (bignum(x)?, bignum(y)?);
    // SAFETY: valid key and numbers (copied, not taken).
    if unsafe { ffi::EC_KEY_set_public_key_affine_coordinates(ec.0, bx.0, by.0) } != 1 {
        return Err(Failure::new(
            Reason::UnusableKey,
            format!("the vault's {curve} public key is not a point on the curve"),
        ));
    }
    register(ec.0 as *const _, data);
    let raw = ec.release();
    // SAFETY: raw is a valid EC_KEY; on failure it is freed by the closure.
    unsafe { into_pkey(engine, ffi::EVP_PKEY_EC, raw.cast(), || free_ec(raw)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_addresses_spread_over_the_low_bits() {
        // 64 objects 16 bytes apart, as an allocator places them: the map indexes a table of
        // 64 buckets with the hash's low 6 bits, which must not all be the same.
        let buckets: std::collections::HashSet<u64> = (0..64usize)
            .map(|i| {
                let mut h = AddressHasher::default();
                h.write_usize(0x5555_0000_1000 + 16 * i);
                h.finish() & 63
            })
            .collect();
        assert!(buckets.len() >= 32, "{} buckets of 64", buckets.len());
    }
}
