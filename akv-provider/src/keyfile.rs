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
    OSSL_KEYMGMT_SELECT_PRIVATE_KEY, OSSL_KEYMGMT_SELECT_PUBLIC_KEY, OSSL_OBJECT_PKEY, OSSL_PARAM,
    ObjectCallback, PassphraseCallback, entry, names,
};
use crate::core::{self, guard};
use crate::{keys, params};

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

/// Reads the next PEM block of the input a line at a time, as OpenSSL's own PEM reader does:
/// the block if it is a reference, `None` if the next block is something else (the
/// certificate of a bundle, left to the next reader) or there is none.
fn next_reference(cin: *mut c_void) -> Result<Option<Vec<u8>>, Failure> {
    let mut block = Vec::new();
    let mut read = 0;
    // SAFETY: cin is the core BIO of this call.
    while let Some(line) = unsafe { core::read_line(cin, keyref::MAX_FILE) }? {
        read += line.len();
        if read > keyref::MAX_FILE {
            // Far too long for a reference: keyref says so if one began; else not ours.
            break;
        }
        let text = line.trim_ascii_end();
        if block.is_empty() {
            if text.starts_with(b"-----BEGIN ") {
                if !keyref::is_reference(text) {
                    return Ok(None);
                }
                block.extend_from_slice(&line);
            }
            continue;
        }
        block.extend_from_slice(&line);
        if text.starts_with(b"-----END ") {
            break;
        }
    }
    Ok((!block.is_empty()).then_some(block))
}

/// The first stage: a reference's PEM block in, its DER body out (marked with our structure
/// name), as OpenSSL's own PEM stage hands DER to the key decoders. OpenSSL's file store
/// passes the DER of an object it does not know to a fresh key decoding, where the second
/// stage makes the key; a decoder that made the key object here would be handed to the
/// default provider's key management by the file store, which cannot load our keys.
fn decode_pem(
    cin: *mut c_void,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
) -> Result<c_int, Failure> {
    let Some(block) = next_reference(cin)? else {
        return Ok(1);
    };
    let named = keyref::from_pem(&block)
        .map_err(|e| Failure::new(akv_frontend::failure::Reason::InvalidKeyId, e.to_string()))?;
    // Loaded (and kept among the recent keys for the second stage) here, so that a failure
    // (a host outside the allowed set, a vault that does not answer) reaches the program
    // with its reason: OpenSSL's file store runs the second stage in a fallback decoding of
    // its own and drops that stage's errors.
    crate::check_config()?;
    load_recent(&named)?;
    let Some(data_cb) = data_cb else { return Ok(0) };
    let object = params::Builder::default()
        .int(names::OBJECT_TYPE, OSSL_OBJECT_PKEY)
        .octets(names::OBJECT_DATA, &keyref::to_der(&named))
        .utf8(names::OBJECT_DATA_STRUCTURE, STRUCTURE)
        .build();
    // SAFETY: a terminated array alive during the call.
    Ok(unsafe { data_cb(object.as_ptr(), data_arg) })
}

/// The second stage: a reference's DER body in, the vault key out, of whatever kind the
/// vault key is. Other DER (a decoder chain with no structure asked for tries every DER
/// decoder) is left to other decoders: success with no object, nothing on the error queue.
///
/// Registered under RSA and under EC (OpenSSL looks key decoders up by key type), but the
/// kind is known only once the vault answers: so whichever is tried first decodes the key,
/// of either kind, and the second finds it among the recent keys if asked again.
fn decode_der(
    cin: *mut c_void,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
) -> Result<c_int, Failure> {
    // SAFETY: cin is the core BIO of this call.
    let Some(der) = (unsafe { core::read_bio(cin, keyref::MAX_FILE) })? else {
        return Ok(1);
    };
    let Ok(named) = keyref::from_der(&der) else {
        return Ok(1);
    };
    crate::check_config()?;
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

/// The structure name the first stage gives the DER body, which the second stage takes.
const STRUCTURE: &str = "akv-key-ref";
/// Properties of the two stages (OpenSSL's `input` and `structure` properties pick them).
pub const PEM_DECODER_PROPERTIES: &std::ffi::CStr = c"provider=akv,input=pem";
pub const DER_DECODER_PROPERTIES: &std::ffi::CStr = c"provider=akv,input=der,structure=akv-key-ref";

unsafe extern "C" fn decode_pem_stage(
    _ctx: *mut c_void,
    cin: *mut c_void,
    _selection: c_int,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
    _pw_cb: Option<PassphraseCallback>,
    _pw_arg: *mut c_void,
) -> c_int {
    guard(c"decoder_decode", 0, || decode_pem(cin, data_cb, data_arg))
}

unsafe extern "C" fn decode_der_stage(
    _ctx: *mut c_void,
    cin: *mut c_void,
    _selection: c_int,
    data_cb: Option<ObjectCallback>,
    data_arg: *mut c_void,
    _pw_cb: Option<PassphraseCallback>,
    _pw_arg: *mut c_void,
) -> c_int {
    guard(c"decoder_decode", 0, || decode_der(cin, data_cb, data_arg))
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

/// A decoder's dispatch table with `decode` as its decode function.
macro_rules! decoder {
    ($decode:expr) => {
        [
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
                $decode,
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
        ]
    };
}

/// First stage: reference files (PEM) to their DER body (registered as a "DER" decoder).
pub static PEM_DECODER: [OSSL_DISPATCH; 5] = decoder!(decode_pem_stage);
/// Second stage: a reference's DER body to the vault key (registered under RSA and EC).
pub static DER_DECODER: [OSSL_DISPATCH; 5] = decoder!(decode_der_stage);

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
