//! Key reference files (see `akv_proto::key_ref`): a DECODER that reads the PEM block into
//! the same key object as the store, so every program that reads a PEM key file (HAProxy,
//! Apache, nginx, Python's `ssl`) can use a vault key with no change; and an ENCODER that
//! writes the block when OpenSSL is asked to write one of our private keys (`openssl pkey
//! -in vault:... -out key.pem`): the private key cannot leave the vault, its name can.

use std::ffi::{c_int, c_void};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akv_frontend::failure::Failure;
use akv_frontend::remote::VaultKey;
use akv_proto::key_ref as keyref;

use crate::abi::{
    DISPATCH_END, OSSL_DISPATCH, OSSL_FUNC_DECODER_DECODE, OSSL_FUNC_DECODER_DOES_SELECTION,
    OSSL_FUNC_DECODER_FREECTX, OSSL_FUNC_DECODER_NEWCTX, OSSL_FUNC_ENCODER_DOES_SELECTION,
    OSSL_FUNC_ENCODER_ENCODE, OSSL_FUNC_ENCODER_FREECTX, OSSL_FUNC_ENCODER_NEWCTX,
    OSSL_KEYMGMT_SELECT_PRIVATE_KEY, OSSL_KEYMGMT_SELECT_PUBLIC_KEY, OSSL_PARAM, ObjectCallback,
    PassphraseCallback, entry,
};
use crate::core::{self, guard};
use crate::keys;

/// Keys decoded lately, by key string. OpenSSL tries the RSA and the EC decoder in turn on
/// one file; the second finds the key here instead of fetching it again.
static RECENT: Mutex<Vec<(String, Instant, Arc<VaultKey>)>> = Mutex::new(Vec::new());
const RECENT_FOR: Duration = Duration::from_secs(30);
const RECENT_MAX: usize = 16;

fn load_recent(named: &str) -> Result<Arc<VaultKey>, Failure> {
    let now = Instant::now();
    {
        let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(_, at, _)| now.duration_since(*at) < RECENT_FOR);
        if let Some((_, _, key)) = recent.iter().find(|(n, _, _)| n == named) {
            return Ok(key.clone());
        }
    }
    let key = Arc::new(akv_frontend::remote::load_key(named)?);
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if recent.len() >= RECENT_MAX {
        recent.remove(0);
    }
    recent.push((named.to_string(), now, key.clone()));
    Ok(key)
}

/// References lent to OpenSSL by the decoder, ended after a grace period: unlike a store, a
/// decoder has no close in which to end them, and OpenSSL loads a reference within the
/// callback that receives it.
static LENT: Mutex<Vec<(u64, Instant)>> = Mutex::new(Vec::new());

fn end_old_references() {
    let now = Instant::now();
    LENT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(id, at)| {
            let keep = now.duration_since(*at) < RECENT_FOR;
            if !keep {
                keys::take_back(*id);
            }
            keep
        });
}

unsafe extern "C" fn newctx(_provctx: *mut c_void) -> *mut c_void {
    // No state: a non-NULL token.
    std::ptr::NonNull::<u8>::dangling().as_ptr().cast()
}

unsafe extern "C" fn freectx(_ctx: *mut c_void) {}

unsafe extern "C" fn decoder_does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    // A reference is a private key (with its public half): anything but parameters alone.
    c_int::from(
        selection == 0
            || selection & (OSSL_KEYMGMT_SELECT_PRIVATE_KEY | OSSL_KEYMGMT_SELECT_PUBLIC_KEY) != 0,
    )
}

/// Decodes a reference file into a key object of whatever kind the vault key is; anything
/// else is left to other decoders (success with no object, and nothing on the error queue).
///
/// Registered under RSA and under EC (OpenSSL looks decoders up by key type), but the kind
/// is known only once the vault answers, and OpenSSL does not rewind the input for the next
/// decoder: so whichever is tried first decodes the key, of either kind.
fn decode(
    cin: *mut c_void,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
) -> Result<c_int, Failure> {
    // SAFETY: cin is the core BIO of this call.
    let Some(text) = (unsafe { core::read_bio(cin, keyref::MAX_FILE) })? else {
        return Ok(1);
    };
    if !keyref::is_reference(&text) {
        return Ok(1);
    }
    crate::check_config()?;
    let named = keyref::from_pem(&text)
        .map_err(|e| Failure::new(akv_frontend::failure::Reason::InvalidKeyId, e.to_string()))?;
    let key = load_recent(&named)?;
    let Some(data_cb) = data_cb else { return Ok(0) };
    end_old_references();
    let (object, reference) = keys::lend_as_object(key);
    LENT.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((reference, Instant::now()));
    // SAFETY: a terminated array alive during the call.
    Ok(unsafe { data_cb(object.as_ptr(), data_arg) })
}

unsafe extern "C" fn decode_reference(
    _ctx: *mut c_void,
    cin: *mut c_void,
    _selection: c_int,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
    _pw_cb: Option<PassphraseCallback>,
    _pw_arg: *mut c_void,
) -> c_int {
    guard(c"decoder_decode", 0, || decode(cin, data_cb, data_arg))
}

unsafe extern "C" fn encoder_does_selection(_provctx: *mut c_void, selection: c_int) -> c_int {
    // Only for the private key: public keys and parameters are the default provider's to
    // write, from the exported public half.
    c_int::from(selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY != 0)
}

unsafe extern "C" fn encode(
    _ctx: *mut c_void,
    cout: *mut c_void,
    obj_raw: *const c_void,
    _obj_abstract: *const OSSL_PARAM,
    selection: c_int,
    _pw_cb: Option<PassphraseCallback>,
    _pw_arg: *mut c_void,
) -> c_int {
    guard(c"encoder_encode", 0, || {
        if selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY == 0 {
            return Ok(0);
        }
        // SAFETY: obj_raw is keydata of this provider's KEYMGMT.
        let Some(key) = (unsafe { keys::key_of(obj_raw) }) else {
            return Ok(0);
        };
        let pem = keyref::to_pem(&key.vault.named);
        // SAFETY: cout is the core BIO of this call.
        unsafe { core::write_bio(cout, pem.as_bytes()) }?;
        Ok(1)
    })
}

/// DECODER of reference files (into RSA or EC keys: see `decode`).
pub static DECODER: [OSSL_DISPATCH; 5] = [
    entry!(
        OSSL_FUNC_DECODER_NEWCTX,
        newctx,
        unsafe extern "C" fn(*mut c_void) -> *mut c_void
    ),
    entry!(
        OSSL_FUNC_DECODER_FREECTX,
        freectx,
        unsafe extern "C" fn(*mut c_void)
    ),
    entry!(
        OSSL_FUNC_DECODER_DOES_SELECTION,
        decoder_does_selection,
        unsafe extern "C" fn(*mut c_void, c_int) -> c_int
    ),
    entry!(
        OSSL_FUNC_DECODER_DECODE,
        decode_reference,
        unsafe extern "C" fn(
            *mut c_void,
            *mut c_void,
            c_int,
            Option<ObjectCallback>,
            *mut c_void,
            Option<PassphraseCallback>,
            *mut c_void,
        ) -> c_int
    ),
    DISPATCH_END,
];

/// ENCODER of our private keys as reference files.
pub static ENCODER: [OSSL_DISPATCH; 5] = [
    entry!(
        OSSL_FUNC_ENCODER_NEWCTX,
        newctx,
        unsafe extern "C" fn(*mut c_void) -> *mut c_void
    ),
    entry!(
        OSSL_FUNC_ENCODER_FREECTX,
        freectx,
        unsafe extern "C" fn(*mut c_void)
    ),
    entry!(
        OSSL_FUNC_ENCODER_DOES_SELECTION,
        encoder_does_selection,
        unsafe extern "C" fn(*mut c_void, c_int) -> c_int
    ),
    entry!(
        OSSL_FUNC_ENCODER_ENCODE,
        encode,
        unsafe extern "C" fn(
            *mut c_void,
            *mut c_void,
            *const c_void,
            *const OSSL_PARAM,
            c_int,
            Option<PassphraseCallback>,
            *mut c_void,
        ) -> c_int
    ),
    DISPATCH_END,
];
