//! ECDSA: an EC_KEY_METHOD whose signing goes to Key Vault for our keys (raw `r||s` turned
//! into DER or an ECDSA_SIG), and a copy of OpenSSL's EC EVP_PKEY_METHOD (needed so that the
//! engine can be attached to EC keys). Keys that are not ours use OpenSSL's own functions.

use std::ffi::{c_int, c_uchar, c_uint};
use std::sync::{Arc, OnceLock};

use akv_frontend::failure::{Failure, Reason};

use crate::errors::{guard, guard_remote};
use crate::ffi;
use akv_frontend::remote::VaultKey;

use crate::keys;

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
        };
        // SAFETY: reading OpenSSL's built-in method.
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

/// A copy of OpenSSL's EC EVP_PKEY_METHOD.
pub fn new_pkey_method() -> *mut ffi::EVP_PKEY_METHOD {
    // SAFETY: creating and filling a fresh method.
    unsafe {
        let m = ffi::EVP_PKEY_meth_new(ffi::EVP_PKEY_EC, ffi::EVP_PKEY_FLAG_AUTOARGLEN);
        if !m.is_null() {
            ffi::EVP_PKEY_meth_copy(m, ffi::EVP_PKEY_meth_find(ffi::EVP_PKEY_EC));
        }
        m
    }
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
        // SAFETY: dgst holds dlen bytes.
        let digest = unsafe { std::slice::from_raw_parts(dgst, dlen.max(0) as usize) };
        let (raw, curve) = akv_frontend::remote::sign_ecdsa(via, &data, digest).await?;
        let der = akv_proto::ecdsa_raw_to_der(curve, &raw)
            .map_err(|e| Failure::new(Reason::Sign, e.to_string()))?;
        // SAFETY: valid key of this curve; the buffer OpenSSL gives holds ECDSA_size bytes.
        let capacity = unsafe { der_capacity(curve, eckey) };
        if der.len() > capacity {
            return Err(Failure::new(
                Reason::BufferTooSmall,
                format!("DER signature of {} bytes, buffer of {capacity}", der.len()),
            ));
        }
        unsafe {
            std::ptr::copy_nonoverlapping(der.as_ptr(), sig, der.len());
            *siglen = der.len() as c_uint;
        }
        Ok(1)
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"ecdsa_sign", 0, body) }
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
