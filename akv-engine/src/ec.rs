//! ECDSA: an EC_KEY_METHOD whose signing goes to Key Vault for our keys (raw `r||s` turned
//! into DER or an ECDSA_SIG), and a copy of OpenSSL's EC EVP_PKEY_METHOD (needed so that the
//! engine can be attached to EC keys). Keys that are not ours use OpenSSL's own functions.

use std::ffi::{c_int, c_uchar, c_uint};
use std::sync::{Arc, OnceLock};

use akv_frontend::failure::{Failure, Reason};

use crate::errors::{guard, guard_remote};
use crate::ffi;
use akv_frontend::remote::{VaultKey, Via};

use crate::keys;

/// OpenSSL's own functions: of its EC_KEY_METHOD, and the sign and derive of its EC
/// EVP_PKEY_METHOD.
struct Originals {
    sign: ffi::EcSignFn,
    sign_setup: ffi::EcSignSetupFn,
    sign_sig: ffi::EcSignSigFn,
    init: ffi::EcInitFn,
    finish: ffi::EcFinishFn,
    copy: ffi::EcCopyFn,
    set_group: ffi::EcSetGroupFn,
    set_private: ffi::EcSetPrivateFn,
    set_public: ffi::EcSetPublicFn,
    pkey_sign_init: ffi::PkeyInitFn,
    pkey_sign: ffi::PkeySignFn,
    pkey_derive_init: ffi::PkeyInitFn,
    pkey_derive: ffi::PkeyDeriveFn,
}

static ORIGINALS: OnceLock<Originals> = OnceLock::new();

fn originals() -> &'static Originals {
    ORIGINALS.get_or_init(|| {
        let mut o = Originals {
            sign: None,
            sign_setup: None,
            sign_sig: None,
            init: None,
            finish: None,
            copy: None,
            set_group: None,
            set_private: None,
            set_public: None,
            pkey_sign_init: None,
            pkey_sign: None,
            pkey_derive_init: None,
            pkey_derive: None,
        };
        // SAFETY: reading OpenSSL's built-in methods.
        unsafe {
            let m = ffi::EC_KEY_OpenSSL();
            ffi::EC_KEY_METHOD_get_sign(m, &mut o.sign, &mut o.sign_setup, &mut o.sign_sig);
            ffi::EC_KEY_METHOD_get_init(
                m,
                &mut o.init,
                &mut o.finish,
                &mut o.copy,
                &mut o.set_group,
                &mut o.set_private,
                &mut o.set_public,
            );
            let pm = ffi::EVP_PKEY_meth_find(ffi::EVP_PKEY_EC);
            ffi::EVP_PKEY_meth_get_sign(pm, &mut o.pkey_sign_init, &mut o.pkey_sign);
            ffi::EVP_PKEY_meth_get_derive(pm, &mut o.pkey_derive_init, &mut o.pkey_derive);
        }
        o
    })
}

/// OpenSSL's EC_KEY_METHOD with our signing, finish and copy.
pub fn new_ec_key_method() -> *mut ffi::EC_KEY_METHOD {
    let o = originals();
    // SAFETY: creating and adjusting a fresh method.
    unsafe {
        let m = ffi::EC_KEY_METHOD_new(ffi::EC_KEY_OpenSSL());
        if m.is_null() {
            return m;
        }
        ffi::EC_KEY_METHOD_set_sign(m, Some(ec_sign), o.sign_setup, Some(ec_sign_sig));
        ffi::EC_KEY_METHOD_set_init(
            m,
            o.init,
            Some(ec_finish),
            Some(ec_copy),
            o.set_group,
            o.set_private,
            o.set_public,
        );
        m
    }
}

/// A copy of OpenSSL's EC EVP_PKEY_METHOD (needed so that the engine can be attached to EC
/// keys) with our sign, and without the AUTOARGLEN flag. With the flag, OpenSSL asks the
/// key's size before every signature (`EVP_PKEY_get_size`, which for EC is `ECDSA_size`: a
/// whole signature encoded to be measured, 2,400 instructions), and its own sign asks again:
/// 4,800 of the 38,500 instructions of a signature. Our sign does the flag's checks for our
/// keys with the size known per curve, and leaves other keys to OpenSSL's sign, which does
/// them itself; our derive does them as OpenSSL would before its own derive.
pub fn new_pkey_method() -> *mut ffi::EVP_PKEY_METHOD {
    let o = originals();
    // SAFETY: creating and filling a fresh method.
    unsafe {
        let m = crate::copy_pkey_method(ffi::EVP_PKEY_EC, 0);
        if !m.is_null() {
            ffi::EVP_PKEY_meth_set_sign(m, o.pkey_sign_init, Some(pkey_sign));
            ffi::EVP_PKEY_meth_set_derive(m, o.pkey_derive_init, Some(pkey_derive));
        }
        m
    }
}

/// Our key behind an EC context, with its EC_KEY.
///
/// # Safety
/// `ctx` is the live context OpenSSL called us with.
unsafe fn key_of_ctx(ctx: *mut ffi::EVP_PKEY_CTX) -> Option<(Arc<VaultKey>, *mut ffi::EC_KEY)> {
    // SAFETY: per the contract above.
    let eckey = unsafe { crate::ctx_key(ctx, ffi::EVP_PKEY_EC) }.cast::<ffi::EC_KEY>();
    ours(eckey).map(|data| (data, eckey))
}

/// What AUTOARGLEN has OpenSSL do before calling a method, for an output of at most `size`
/// bytes: answer a size query, refuse a smaller buffer. `Some` ends the call with that value.
///
/// # Safety
/// `outlen` is valid; `out` is NULL (a size query) or the caller's buffer.
unsafe fn autoarg(
    out: *mut c_uchar,
    outlen: *mut usize,
    size: usize,
    function: &'static std::ffi::CStr,
) -> Option<c_int> {
    if size == 0 {
        crate::errors::raise_evp(ffi::EVP_R_INVALID_KEY, function);
        return Some(0);
    }
    // SAFETY: per the contract above.
    unsafe {
        if out.is_null() {
            *outlen = size;
            return Some(1);
        }
        if *outlen < size {
            crate::errors::raise_evp(ffi::EVP_R_BUFFER_TOO_SMALL, function);
            return Some(0);
        }
    }
    None
}

unsafe extern "C" fn pkey_sign(
    ctx: *mut ffi::EVP_PKEY_CTX,
    sig: *mut c_uchar,
    siglen: *mut usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    // SAFETY: ctx is the live context of this call.
    let Some((data, eckey)) = (unsafe { key_of_ctx(ctx) }) else {
        // OpenSSL's own sign answers size queries and checks the buffer itself, against
        // the size AUTOARGLEN would have used.
        return guard(c"ecdsa_pkey_sign", 0, || {
            Ok(match originals().pkey_sign {
                // SAFETY: OpenSSL's own function with the arguments it gave us.
                Some(f) => unsafe { f(ctx, sig, siglen, tbs, tbslen) },
                None => 0,
            })
        });
    };
    let akv_frontend::remote::KeyKind::Ec { curve } = data.kind else {
        return guard(c"ecdsa_pkey_sign", 0, || {
            Err(Failure::new(
                Reason::Internal,
                format!("{}: an RSA key behind an EC context", data.key),
            ))
        });
    };
    // SAFETY: a valid key of this curve; the pointers OpenSSL passed.
    let capacity = unsafe { der_capacity(curve, eckey) };
    if let Some(done) = unsafe { autoarg(sig, siglen, capacity, c"ecdsa_pkey_sign") } {
        return done;
    }
    let body = move |via| async move {
        // SAFETY: tbs holds tbslen bytes until the callback returns; eckey is our key.
        let digest = unsafe { std::slice::from_raw_parts(tbs, tbslen) };
        let der = unsafe { der_signature(via, &data, digest, eckey) }.await?;
        // SAFETY: the buffer holds at least `capacity` bytes (checked above), and the
        // signature fits in that.
        unsafe {
            std::ptr::copy_nonoverlapping(der.as_ptr(), sig, der.len());
            *siglen = der.len();
        }
        Ok(1)
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"ecdsa_pkey_sign", 0, body) }
}

unsafe extern "C" fn pkey_derive(
    ctx: *mut ffi::EVP_PKEY_CTX,
    key: *mut c_uchar,
    keylen: *mut usize,
) -> c_int {
    guard(c"ecdh_pkey_derive", 0, || {
        // SAFETY: ctx is the live context of this call; the pointers OpenSSL passed.
        unsafe {
            let size = ffi::EVP_PKEY_get_size(ffi::EVP_PKEY_CTX_get0_pkey(ctx)).max(0) as usize;
            if let Some(done) = autoarg(key, keylen, size, c"ecdh_pkey_derive") {
                return Ok(done);
            }
            Ok(match originals().pkey_derive {
                Some(f) => f(ctx, key, keylen),
                None => 0,
            })
        }
    })
}

fn ours(key: *const ffi::EC_KEY) -> Option<Arc<VaultKey>> {
    keys::lookup(key.cast())
}

// The C callback's arguments.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn ec_sign(
    kind: c_int,
    dgst: *const c_uchar,
    dlen: c_int,
    sig: *mut c_uchar,
    siglen: *mut c_uint,
    kinv: *const ffi::BIGNUM,
    r: *const ffi::BIGNUM,
    eckey: *mut ffi::EC_KEY,
) -> c_int {
    // Keys that are not ours go to OpenSSL's own function, untouched, in place.
    let Some(data) = ours(eckey) else {
        return guard(c"ecdsa_sign", 0, || {
            Ok(match originals().sign {
                // SAFETY: OpenSSL's own function with the arguments it gave us.
                Some(f) => unsafe { f(kind, dgst, dlen, sig, siglen, kinv, r, eckey) },
                None => 0,
            })
        });
    };
    let body = move |via| async move {
        // SAFETY: dgst holds dlen bytes; eckey is our key.
        let digest = unsafe { std::slice::from_raw_parts(dgst, dlen.max(0) as usize) };
        let der = unsafe { der_signature(via, &data, digest, eckey) }.await?;
        // SAFETY: the buffer OpenSSL gives holds ECDSA_size bytes, and the signature fits.
        unsafe {
            std::ptr::copy_nonoverlapping(der.as_ptr(), sig, der.len());
            *siglen = der.len() as c_uint;
        }
        Ok(1)
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"ecdsa_sign", 0, body) }
}

/// A DER signature of `digest` by our key, refused when longer than `ECDSA_size` (the
/// buffer OpenSSL hands over, or checked by our pkey sign).
///
/// # Safety
/// `eckey` is the valid key `data` belongs to.
async unsafe fn der_signature(
    via: Via,
    data: &VaultKey,
    digest: &[u8],
    eckey: *mut ffi::EC_KEY,
) -> Result<Vec<u8>, Failure> {
    let (raw, curve) = akv_frontend::remote::sign_ecdsa(via, data, digest).await?;
    let der = akv_proto::ecdsa_raw_to_der(curve, &raw)
        .map_err(|e| Failure::new(Reason::Sign, e.to_string()))?;
    // SAFETY: per the contract above.
    let capacity = unsafe { der_capacity(curve, eckey) };
    if der.len() > capacity {
        return Err(Failure::new(
            Reason::BufferTooSmall,
            format!("DER signature of {} bytes, buffer of {capacity}", der.len()),
        ));
    }
    Ok(der)
}

/// `ECDSA_size` of the key: the size of the buffer OpenSSL hands to `ec_sign`. It depends on
/// the curve alone, and OpenSSL works it out by encoding a whole signature (about 2,400
/// instructions), so it is asked once per curve.
///
/// # Safety
/// `eckey` is a valid key on `curve`.
unsafe fn der_capacity(curve: akv_proto::Curve, eckey: *mut ffi::EC_KEY) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static SIZES: [AtomicUsize; akv_proto::Curve::ALL.len()] =
        [const { AtomicUsize::new(0) }; akv_proto::Curve::ALL.len()];
    let slot = akv_proto::Curve::ALL
        .iter()
        .position(|c| *c == curve)
        .map(|i| &SIZES[i]);
    if let Some(known) = slot.map(|s| s.load(Ordering::Relaxed)).filter(|n| *n > 0) {
        return known;
    }
    // SAFETY: per the contract above.
    let size = unsafe { ffi::ECDSA_size(eckey) }.max(0) as usize;
    if let Some(slot) = slot {
        slot.store(size, Ordering::Relaxed);
    }
    size
}

unsafe extern "C" fn ec_sign_sig(
    dgst: *const c_uchar,
    dlen: c_int,
    kinv: *const ffi::BIGNUM,
    r: *const ffi::BIGNUM,
    eckey: *mut ffi::EC_KEY,
) -> *mut ffi::ECDSA_SIG {
    // Keys that are not ours go to OpenSSL's own function, untouched, in place.
    let Some(data) = ours(eckey) else {
        return guard(c"ecdsa_sign_sig", std::ptr::null_mut(), || {
            Ok(match originals().sign_sig {
                // SAFETY: OpenSSL's own function with the arguments it gave us.
                Some(f) => unsafe { f(dgst, dlen, kinv, r, eckey) },
                None => std::ptr::null_mut(),
            })
        });
    };
    let body = move |via| async move {
        // SAFETY: dgst holds dlen bytes.
        let digest = unsafe { std::slice::from_raw_parts(dgst, dlen.max(0) as usize) };
        let (raw, curve) = akv_frontend::remote::sign_ecdsa(via, &data, digest).await?;
        let w = curve.field_len();
        // SAFETY: building a fresh ECDSA_SIG that takes the two numbers.
        unsafe {
            let sig = ffi::ECDSA_SIG_new();
            let br = ffi::BN_bin2bn(raw.as_ptr(), w as c_int, std::ptr::null_mut());
            let bs = ffi::BN_bin2bn(raw.as_ptr().add(w), w as c_int, std::ptr::null_mut());
            if sig.is_null()
                || br.is_null()
                || bs.is_null()
                || ffi::ECDSA_SIG_set0(sig, br, bs) != 1
            {
                ffi::BN_free(br);
                ffi::BN_free(bs);
                ffi::ECDSA_SIG_free(sig);
                return Err(Failure::new(
                    Reason::Internal,
                    "OpenSSL could not build an ECDSA_SIG",
                ));
            }
            Ok(sig)
        }
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"ecdsa_sign_sig", std::ptr::null_mut(), body) }
}

unsafe extern "C" fn ec_finish(eckey: *mut ffi::EC_KEY) {
    guard(c"ec_finish", (), || {
        keys::forget(eckey.cast());
        if let Some(f) = originals().finish {
            // SAFETY: OpenSSL's own finish.
            unsafe { f(eckey) }
        }
        Ok(())
    })
}

unsafe extern "C" fn ec_copy(dest: *mut ffi::EC_KEY, src: *const ffi::EC_KEY) -> c_int {
    guard(c"ec_copy", 0, || {
        // A copy of one of our keys is one of our keys too.
        if let Some(data) = ours(src) {
            keys::register(dest.cast(), data);
        }
        Ok(match originals().copy {
            // SAFETY: OpenSSL's own copy.
            Some(f) => unsafe { f(dest, src) },
            None => 1,
        })
    })
}
