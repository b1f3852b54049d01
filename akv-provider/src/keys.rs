//! The provider's key objects (KEYMGMT "keydata"): a vault key loaded by the store, with
//! what OpenSSL asks of it. The private half never leaves the vault, so a key exports its
//! public half only and refuses any export that asks for the private one: OpenSSL would
//! otherwise hand the key to the default provider and fail there with "missing private key".

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::remote::{KeyKind, VaultKey};
use akv_proto::{Curve, PublicKey};

use crate::abi::{DISPATCH_END, entry};
use crate::abi::{
    OSSL_DISPATCH, OSSL_FUNC_KEYMGMT_EXPORT, OSSL_FUNC_KEYMGMT_EXPORT_TYPES,
    OSSL_FUNC_KEYMGMT_FREE, OSSL_FUNC_KEYMGMT_GET_PARAMS, OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS,
    OSSL_FUNC_KEYMGMT_HAS, OSSL_FUNC_KEYMGMT_LOAD, OSSL_FUNC_KEYMGMT_MATCH,
    OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, OSSL_KEYMGMT_SELECT_ALL_PARAMETERS,
    OSSL_KEYMGMT_SELECT_PRIVATE_KEY, OSSL_KEYMGMT_SELECT_PUBLIC_KEY, OSSL_OBJECT_PKEY,
    OSSL_OP_ASYM_CIPHER, OSSL_OP_SIGNATURE, OSSL_PARAM, OSSL_PARAM_INTEGER,
    OSSL_PARAM_OCTET_STRING, OSSL_PARAM_UNSIGNED_INTEGER, OSSL_PARAM_UTF8_STRING, ObjectCallback,
    names,
};
use crate::core::guard;
use crate::params::{self, END, template};

/// A key object: the vault key it stands for.
pub struct ProvKey {
    /// The vault key, shared with the store that loaded it.
    pub vault: Arc<VaultKey>,
}

impl ProvKey {
    /// The RSA modulus size in bits, or the EC order size.
    pub fn bits(&self) -> usize {
        match self.vault.kind {
            KeyKind::Rsa { bits } => bits,
            KeyKind::Ec { curve } => curve_bits(curve),
        }
    }

    /// The largest signature (or RSA output) in bytes.
    pub fn max_size(&self) -> usize {
        match self.vault.kind {
            KeyKind::Rsa { bits } => bits.div_ceil(8),
            KeyKind::Ec { curve } => ecdsa_der_max(curve),
        }
    }
}

/// Bits of a curve's order.
pub fn curve_bits(curve: Curve) -> usize {
    match curve {
        Curve::P256 | Curve::P256K => 256,
        Curve::P384 => 384,
        Curve::P521 => 521,
    }
}

/// OpenSSL's name of a curve.
pub fn group_name(curve: Curve) -> &'static str {
    match curve {
        Curve::P256 => "prime256v1",
        Curve::P384 => "secp384r1",
        Curve::P521 => "secp521r1",
        Curve::P256K => "secp256k1",
    }
}

/// The digest OpenSSL uses with a key when none is named.
pub fn default_digest(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Rsa { .. } => "SHA256",
        KeyKind::Ec { curve: Curve::P384 } => "SHA384",
        KeyKind::Ec { curve: Curve::P521 } => "SHA512",
        KeyKind::Ec { .. } => "SHA256",
    }
}

/// The longest DER ECDSA signature on a curve: a SEQUENCE of two INTEGERs, each at most one
/// byte longer than the order (a leading zero keeps it positive).
pub fn ecdsa_der_max(curve: Curve) -> usize {
    let int = curve_bits(curve) / 8 + 1;
    let body = 2 * (2 + int);
    if body < 128 { 2 + body } else { 3 + body }
}

/// Security strength in bits, as NIST SP 800-57 rates the key.
fn security_bits(kind: KeyKind) -> usize {
    match kind {
        KeyKind::Rsa { bits } => match bits {
            0..1024 => 0,
            1024..2048 => 80,
            2048..3072 => 112,
            3072..7680 => 128,
            7680..15360 => 192,
            _ => 256,
        },
        KeyKind::Ec { curve } => curve_bits(curve) / 2,
    }
}

/// The EC public point, uncompressed (`04 || X || Y`).
fn encoded_point(public: &PublicKey) -> Option<Vec<u8>> {
    match public {
        PublicKey::Ec { x, y, .. } => {
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(4);
            point.extend_from_slice(x);
            point.extend_from_slice(y);
            Some(point)
        }
        _ => None,
    }
}

/// Vault keys the store handed to OpenSSL by reference, until the store is closed. A
/// reference is a number in this table, never a pointer, so a forged one finds nothing.
static REFERENCES: Mutex<Option<HashMap<u64, Arc<VaultKey>>>> = Mutex::new(None);
static NEXT_REFERENCE: AtomicU64 = AtomicU64::new(1);

/// Registers a key for `keymgmt_load`; returns its reference.
pub fn lend(key: Arc<VaultKey>) -> u64 {
    let id = NEXT_REFERENCE.fetch_add(1, Ordering::Relaxed);
    REFERENCES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(id, key);
    id
}

/// Ends a reference (the store that made it closed).
pub fn take_back(id: u64) {
    let mut all = REFERENCES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(map) = all.as_mut() {
        map.remove(&id);
        if map.is_empty() {
            *all = None;
        }
    }
}

fn borrowed(id: u64) -> Option<Arc<VaultKey>> {
    REFERENCES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()?
        .get(&id)
        .cloned()
}

/// The key object behind a keydata pointer.
///
/// # Safety
/// `keydata` is NULL or a pointer this module returned from `load` and not yet freed.
pub unsafe fn key_of<'a>(keydata: *const c_void) -> Option<&'a ProvKey> {
    // SAFETY: per the contract.
    unsafe { (keydata as *const ProvKey).as_ref() }
}

/// What a reference is on the wire: a tag and the number. Sixteen bytes, so that it can never
/// be taken for the pointer-sized references of other providers' key management (which a
/// file store may hand it to), and a tag, so that theirs are never taken for ours.
const REFERENCE_TAG: [u8; 8] = *b"akv-ref1";
/// The reference size.
pub const REFERENCE_LEN: usize = 16;

/// The bytes of reference `id`.
pub fn reference_bytes(id: u64) -> [u8; REFERENCE_LEN] {
    let mut out = [0u8; REFERENCE_LEN];
    out[..8].copy_from_slice(&REFERENCE_TAG);
    out[8..].copy_from_slice(&id.to_ne_bytes());
    out
}

/// The id in reference bytes, if they are ours.
fn reference_id(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != REFERENCE_LEN || bytes[..8] != REFERENCE_TAG {
        return None;
    }
    Some(u64::from_ne_bytes(bytes[8..].try_into().ok()?))
}

unsafe extern "C" fn load(reference: *const c_void, size: usize) -> *mut c_void {
    guard(c"keymgmt_load", std::ptr::null_mut(), || {
        let not_ours = || Failure::new(Reason::Internal, "not a key reference of the akv provider");
        if reference.is_null() || size != REFERENCE_LEN {
            return Err(not_ours());
        }
        // SAFETY: reference holds size bytes.
        let bytes = unsafe { std::slice::from_raw_parts(reference as *const u8, size) };
        let id = reference_id(bytes).ok_or_else(not_ours)?;
        let vault = borrowed(id)
            .ok_or_else(|| Failure::new(Reason::Internal, "the akv key reference has expired"))?;
        Ok(Box::into_raw(Box::new(ProvKey { vault })) as *mut c_void)
    })
}

unsafe extern "C" fn free(keydata: *mut c_void) {
    if !keydata.is_null() {
        // SAFETY: a pointer `load` made with Box::into_raw, freed once by OpenSSL.
        drop(unsafe { Box::from_raw(keydata as *mut ProvKey) });
    }
}

unsafe extern "C" fn has(keydata: *const c_void, _selection: c_int) -> c_int {
    // Every part a selection can ask for exists: the public half here, the private half in
    // the vault, the curve in the key; RSA has no domain parameters, which counts as present.
    // SAFETY: keydata from `load`.
    c_int::from(unsafe { key_of(keydata) }.is_some())
}

unsafe extern "C" fn matches(a: *const c_void, b: *const c_void, selection: c_int) -> c_int {
    guard(c"keymgmt_match", 0, || {
        // SAFETY: both from `load`.
        let (Some(a), Some(b)) = (unsafe { key_of(a) }, unsafe { key_of(b) }) else {
            return Ok(0);
        };
        let same_public = a.vault.public == b.vault.public;
        let same_params = match (a.vault.kind, b.vault.kind) {
            (KeyKind::Ec { curve: x }, KeyKind::Ec { curve: y }) => x == y,
            (KeyKind::Rsa { .. }, KeyKind::Rsa { .. }) => true,
            _ => false,
        };
        let wants_key =
            selection & (OSSL_KEYMGMT_SELECT_PUBLIC_KEY | OSSL_KEYMGMT_SELECT_PRIVATE_KEY) != 0;
        Ok(c_int::from(same_params && (!wants_key || same_public)))
    })
}

/// What an export hands over: the public key and/or the domain parameters, as selected.
fn exported_params(key: &ProvKey, selection: c_int) -> params::Built {
    let public = selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY != 0;
    let domain = selection & OSSL_KEYMGMT_SELECT_ALL_PARAMETERS != 0;
    let mut built = params::Builder::default();
    match &key.vault.public {
        PublicKey::Rsa { n, e } if public => {
            built = built
                .big_unsigned(names::PKEY_RSA_N, n)
                .big_unsigned(names::PKEY_RSA_E, e);
        }
        point @ PublicKey::Ec { curve, .. } => {
            if domain || public {
                built = built.utf8(names::PKEY_GROUP_NAME, group_name(*curve));
            }
            if domain {
                built = built
                    .utf8(names::PKEY_EC_POINT_FORMAT, "uncompressed")
                    .utf8(names::PKEY_EC_ENCODING, "named_curve");
            }
            if public {
                built = built.octets(
                    names::PKEY_PUB_KEY,
                    &encoded_point(point).unwrap_or_default(),
                );
            }
        }
        _ => {}
    }
    built.build()
}

unsafe extern "C" fn export(
    keydata: *mut c_void,
    selection: c_int,
    callback: Option<ObjectCallback>,
    arg: *mut c_void,
) -> c_int {
    guard(c"keymgmt_export", 0, || {
        // SAFETY: keydata from `load`.
        let Some(key) = (unsafe { key_of(keydata) }) else {
            return Ok(0);
        };
        if selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY != 0 {
            // Not an error on the queue: OpenSSL asks, then uses this provider itself.
            return Ok(0);
        }
        let Some(callback) = callback else {
            return Ok(0);
        };
        let built = exported_params(key, selection);
        // SAFETY: a terminated array that outlives the call.
        Ok(unsafe { callback(built.as_ptr(), arg) })
    })
}

static RSA_PUBLIC_TYPES: [OSSL_PARAM; 3] = [
    template(names::PKEY_RSA_N, OSSL_PARAM_UNSIGNED_INTEGER),
    template(names::PKEY_RSA_E, OSSL_PARAM_UNSIGNED_INTEGER),
    END,
];
static EC_PUBLIC_TYPES: [OSSL_PARAM; 3] = [
    template(names::PKEY_GROUP_NAME, OSSL_PARAM_UTF8_STRING),
    template(names::PKEY_PUB_KEY, OSSL_PARAM_OCTET_STRING),
    END,
];
static NO_TYPES: [OSSL_PARAM; 1] = [END];

unsafe extern "C" fn rsa_export_types(selection: c_int) -> *const OSSL_PARAM {
    if selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY != 0 {
        return NO_TYPES.as_ptr();
    }
    RSA_PUBLIC_TYPES.as_ptr()
}

unsafe extern "C" fn ec_export_types(selection: c_int) -> *const OSSL_PARAM {
    if selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY != 0 {
        return NO_TYPES.as_ptr();
    }
    EC_PUBLIC_TYPES.as_ptr()
}

unsafe extern "C" fn get_params(keydata: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    guard(c"keymgmt_get_params", 0, || {
        // SAFETY: keydata from `load`; params is the caller's terminated array.
        let Some(key) = (unsafe { key_of(keydata) }) else {
            return Ok(0);
        };
        let kind = key.vault.kind;
        let is_ec = matches!(kind, KeyKind::Ec { .. });
        for p in unsafe { params::entries(params) } {
            let name = params::name(p);
            let result = if name == names::PKEY_BITS {
                params::set_int(p, key.bits() as i64)
            } else if name == names::PKEY_SECURITY_BITS {
                params::set_int(p, security_bits(kind) as i64)
            } else if name == names::PKEY_MAX_SIZE {
                params::set_int(p, key.max_size() as i64)
            } else if name == names::PKEY_DEFAULT_DIGEST {
                params::set_utf8(p, default_digest(kind))
            } else if let (true, KeyKind::Ec { curve }) = (name == names::PKEY_GROUP_NAME, kind) {
                params::set_utf8(p, group_name(curve))
            } else if name == names::PKEY_EC_POINT_FORMAT && is_ec {
                // libssl checks it against the client's point formats in TLS 1.2.
                params::set_utf8(p, "uncompressed")
            } else if name == names::PKEY_EC_ENCODING && is_ec {
                params::set_utf8(p, "named_curve")
            } else if name == names::PKEY_ENCODED_PUBLIC_KEY || name == names::PKEY_PUB_KEY {
                match encoded_point(&key.vault.public) {
                    Some(point) => params::set_octets(p, &point),
                    None => Ok(()),
                }
            } else if let (true, PublicKey::Rsa { n, .. }) =
                (name == names::PKEY_RSA_N, &key.vault.public)
            {
                params::set_big_unsigned(p, n)
            } else if let (true, PublicKey::Rsa { e, .. }) =
                (name == names::PKEY_RSA_E, &key.vault.public)
            {
                params::set_big_unsigned(p, e)
            } else {
                akv_frontend::log::debug(format_args!(
                    "key parameter {} asked for, not answered",
                    name.to_string_lossy()
                ));
                Ok(())
            };
            result.map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("key parameter {}: {e:?}", name.to_string_lossy()),
                )
            })?;
        }
        Ok(1)
    })
}

static RSA_GETTABLE: [OSSL_PARAM; 7] = [
    template(names::PKEY_BITS, OSSL_PARAM_INTEGER),
    template(names::PKEY_SECURITY_BITS, OSSL_PARAM_INTEGER),
    template(names::PKEY_MAX_SIZE, OSSL_PARAM_INTEGER),
    template(names::PKEY_DEFAULT_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::PKEY_RSA_N, OSSL_PARAM_UNSIGNED_INTEGER),
    template(names::PKEY_RSA_E, OSSL_PARAM_UNSIGNED_INTEGER),
    END,
];
static EC_GETTABLE: [OSSL_PARAM; 10] = [
    template(names::PKEY_BITS, OSSL_PARAM_INTEGER),
    template(names::PKEY_SECURITY_BITS, OSSL_PARAM_INTEGER),
    template(names::PKEY_MAX_SIZE, OSSL_PARAM_INTEGER),
    template(names::PKEY_DEFAULT_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::PKEY_GROUP_NAME, OSSL_PARAM_UTF8_STRING),
    template(names::PKEY_ENCODED_PUBLIC_KEY, OSSL_PARAM_OCTET_STRING),
    template(names::PKEY_PUB_KEY, OSSL_PARAM_OCTET_STRING),
    template(names::PKEY_EC_POINT_FORMAT, OSSL_PARAM_UTF8_STRING),
    template(names::PKEY_EC_ENCODING, OSSL_PARAM_UTF8_STRING),
    END,
];

unsafe extern "C" fn rsa_gettable(_provctx: *mut c_void) -> *const OSSL_PARAM {
    RSA_GETTABLE.as_ptr()
}

unsafe extern "C" fn ec_gettable(_provctx: *mut c_void) -> *const OSSL_PARAM {
    EC_GETTABLE.as_ptr()
}

unsafe extern "C" fn rsa_operation_name(operation: c_int) -> *const c_char {
    match operation {
        OSSL_OP_SIGNATURE | OSSL_OP_ASYM_CIPHER => c"RSA".as_ptr(),
        _ => std::ptr::null(),
    }
}

unsafe extern "C" fn ec_operation_name(operation: c_int) -> *const c_char {
    match operation {
        OSSL_OP_SIGNATURE => c"ECDSA".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// A KEYMGMT table: the functions every key type shares, and its own export types, gettable
/// parameters and operation names.
macro_rules! keymgmt_table {
    ($export_types:expr, $gettable:expr, $operation_name:expr) => {
        [
            entry!(
                OSSL_FUNC_KEYMGMT_LOAD,
                load,
                unsafe extern "C" fn(*const c_void, usize) -> *mut c_void
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_FREE,
                free,
                unsafe extern "C" fn(*mut c_void)
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_HAS,
                has,
                unsafe extern "C" fn(*const c_void, c_int) -> c_int
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_MATCH,
                matches,
                unsafe extern "C" fn(*const c_void, *const c_void, c_int) -> c_int
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_EXPORT,
                export,
                unsafe extern "C" fn(
                    *mut c_void,
                    c_int,
                    Option<ObjectCallback>,
                    *mut c_void,
                ) -> c_int
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_EXPORT_TYPES,
                $export_types,
                unsafe extern "C" fn(c_int) -> *const OSSL_PARAM
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_GET_PARAMS,
                get_params,
                unsafe extern "C" fn(*mut c_void, *mut OSSL_PARAM) -> c_int
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS,
                $gettable,
                unsafe extern "C" fn(*mut c_void) -> *const OSSL_PARAM
            ),
            entry!(
                OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,
                $operation_name,
                unsafe extern "C" fn(c_int) -> *const c_char
            ),
            DISPATCH_END,
        ]
    };
}

/// KEYMGMT for RSA keys.
pub static RSA_KEYMGMT: [OSSL_DISPATCH; 10] =
    keymgmt_table!(rsa_export_types, rsa_gettable, rsa_operation_name);
/// KEYMGMT for EC keys.
pub static EC_KEYMGMT: [OSSL_DISPATCH; 10] =
    keymgmt_table!(ec_export_types, ec_gettable, ec_operation_name);

/// The data type a key is announced with (the KEYMGMT algorithm name).
pub fn data_type(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Rsa { .. } => "RSA",
        KeyKind::Ec { .. } => "EC",
    }
}

/// Lends `key` to OpenSSL and describes it as the object the store and the decoder hand
/// over: a private key of its type, by reference, for this provider's KEYMGMT to load.
/// Returns the parameters and the reference (to end it when it is no longer needed).
pub fn lend_as_object(key: Arc<VaultKey>) -> (params::Built, u64) {
    let kind = key.kind;
    let reference = lend(key);
    let object = params::Builder::default()
        .int(names::OBJECT_TYPE, OSSL_OBJECT_PKEY)
        .utf8(names::OBJECT_DATA_TYPE, data_type(kind))
        .octets(names::OBJECT_REFERENCE, &reference_bytes(reference))
        .build();
    (object, reference)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_sizes_match_openssl() {
        // ECDSA_size() of OpenSSL for each curve.
        assert_eq!(ecdsa_der_max(Curve::P256), 72);
        assert_eq!(ecdsa_der_max(Curve::P384), 104);
        assert_eq!(ecdsa_der_max(Curve::P521), 139);
        assert_eq!(ecdsa_der_max(Curve::P256K), 72);
    }

    #[test]
    fn references_are_tagged_numbers_that_end() {
        assert!(borrowed(u64::MAX).is_none());
        let bytes = reference_bytes(42);
        assert_eq!(reference_id(&bytes), Some(42));
        assert_eq!(reference_id(&bytes[..8]), None);
        let mut foreign = bytes;
        foreign[0] = b'x';
        assert_eq!(reference_id(&foreign), None);
    }
}
