//! RSA: an EVP_PKEY_METHOD whose sign and decrypt go to Key Vault for our keys (the padding
//! mode, digest and salt length are visible at this level), and an RSA_METHOD whose only
//! jobs are to release our bookkeeping and to refuse raw private operations. Keys that are
//! not ours fall through to OpenSSL's own functions untouched.

use std::ffi::{c_int, c_uchar};
use std::sync::OnceLock;

use akv_proto::{Digest, PssSaltLen, RsaDecryptParams, RsaPadding, RsaSignParams};

use akv_frontend::failure::{Failure, Reason};

use crate::errors::{guard, guard_remote};
use crate::ffi;
use akv_frontend::remote::Via;
use akv_frontend::remote::{KeyKind, VaultKey};
use std::future::Future;
use std::sync::Arc;

use crate::keys;

struct Originals {
    /// The RSA method's ctrl, which our copy of the method shares: its `GET_*` commands read
    /// the padding and digests straight from the context. `EVP_PKEY_CTX_get_rsa_padding`
    /// and the like reach the same function, but through OpenSSL 3's translation layer,
    /// which raises and pops an error each time: about 1,800 instructions a call.
    ctrl: ffi::PkeyCtrlFn,
    sign: ffi::PkeySignFn,
    decrypt: ffi::PkeyDecryptFn,
    finish: ffi::RsaFinishFn,
    priv_enc: ffi::RsaCryptFn,
    priv_dec: ffi::RsaCryptFn,
}

static ORIGINALS: OnceLock<Originals> = OnceLock::new();

fn originals() -> &'static Originals {
    ORIGINALS.get_or_init(|| {
        let (mut sign_init, mut sign, mut dec_init, mut decrypt) = (None, None, None, None);
        let (mut ctrl, mut ctrl_str) = (None, None);
        // SAFETY: reading OpenSSL's built-in methods.
        unsafe {
            let pmeth = ffi::EVP_PKEY_meth_find(ffi::EVP_PKEY_RSA);
            ffi::EVP_PKEY_meth_get_sign(pmeth, &mut sign_init, &mut sign);
            ffi::EVP_PKEY_meth_get_decrypt(pmeth, &mut dec_init, &mut decrypt);
            ffi::EVP_PKEY_meth_get_ctrl(pmeth, &mut ctrl, &mut ctrl_str);
            let meth = ffi::RSA_PKCS1_OpenSSL();
            Originals {
                ctrl,
                sign,
                decrypt,
                finish: ffi::RSA_meth_get_finish(meth),
                priv_enc: ffi::RSA_meth_get_priv_enc(meth),
                priv_dec: ffi::RSA_meth_get_priv_dec(meth),
            }
        }
    })
}

/// A copy of OpenSSL's RSA EVP_PKEY_METHOD with our sign and decrypt.
pub fn new_pkey_method() -> *mut ffi::EVP_PKEY_METHOD {
    let _ = originals();
    // SAFETY: creating and filling a fresh method. AUTOARGLEN makes OpenSSL answer size
    // queries and check output buffer sizes before calling us.
    unsafe {
        let m = crate::copy_pkey_method(ffi::EVP_PKEY_RSA, ffi::EVP_PKEY_FLAG_AUTOARGLEN);
        if m.is_null() {
            return m;
        }
        let original = ffi::EVP_PKEY_meth_find(ffi::EVP_PKEY_RSA);
        let (mut sign_init, mut sign, mut dec_init, mut dec) = (None, None, None, None);
        ffi::EVP_PKEY_meth_get_sign(original, &mut sign_init, &mut sign);
        ffi::EVP_PKEY_meth_get_decrypt(original, &mut dec_init, &mut dec);
        ffi::EVP_PKEY_meth_set_sign(m, sign_init, Some(pkey_sign));
        ffi::EVP_PKEY_meth_set_decrypt(m, dec_init, Some(pkey_decrypt));
        m
    }
}

/// A copy of OpenSSL's RSA_METHOD for keys created by the engine.
pub fn new_rsa_method() -> *mut ffi::RSA_METHOD {
    let _ = originals();
    // SAFETY: duplicating and adjusting a method.
    unsafe {
        let m = ffi::RSA_meth_dup(ffi::RSA_PKCS1_OpenSSL());
        if m.is_null() {
            return m;
        }
        ffi::RSA_meth_set1_name(m, c"e_akv RSA (Azure Key Vault)".as_ptr());
        ffi::RSA_meth_set_finish(m, Some(rsa_finish));
        ffi::RSA_meth_set_priv_enc(m, Some(rsa_priv_enc));
        ffi::RSA_meth_set_priv_dec(m, Some(rsa_priv_dec));
        m
    }
}

unsafe fn key_of_ctx(ctx: *mut ffi::EVP_PKEY_CTX) -> Option<std::sync::Arc<VaultKey>> {
    // SAFETY: ctx is the live context OpenSSL called us with.
    keys::lookup(unsafe { crate::ctx_key(ctx, ffi::EVP_PKEY_RSA) })
}

/// Asks the method's own ctrl (see [`Originals::ctrl`]) for a value; `None` when it has none
/// or refuses (a PSS-only command on a PKCS#1 context, for example).
///
/// # Safety
/// `ctx` is the live RSA context OpenSSL called us with, and `T` is what `command` writes.
unsafe fn ctrl_get<T>(ctx: *mut ffi::EVP_PKEY_CTX, command: c_int, initial: T) -> Option<T> {
    let ctrl = originals().ctrl?;
    let mut value = initial;
    // SAFETY: per the contract above; the ctrl writes one `T` through the pointer.
    let done = unsafe { ctrl(ctx, command, 0, (&raw mut value).cast()) };
    (done > 0).then_some(value)
}

/// A digest the context names (`EVP_PKEY_CTRL_GET_MD` and the like).
unsafe fn md_of(ctx: *mut ffi::EVP_PKEY_CTX, command: c_int) -> Option<Digest> {
    // SAFETY: the md commands write an `const EVP_MD *`.
    let md = unsafe { ctrl_get::<*const ffi::EVP_MD>(ctx, command, std::ptr::null()) }?;
    if md.is_null() {
        return None;
    }
    // SAFETY: md is a valid digest.
    Some(Digest::from_openssl_nid(unsafe {
        ffi::EVP_MD_get_type(md)
    }))
}

/// The length of the OAEP label the context holds (its ctrl answers with the length).
///
/// # Safety
/// `ctx` is the live RSA context OpenSSL called us with.
unsafe fn oaep_label_len(ctx: *mut ffi::EVP_PKEY_CTX) -> usize {
    let Some(ctrl) = originals().ctrl else {
        return 0;
    };
    let mut label: *mut c_uchar = std::ptr::null_mut();
    // SAFETY: per the contract above; the command writes a pointer.
    let len = unsafe {
        ctrl(
            ctx,
            ffi::EVP_PKEY_CTRL_GET_RSA_OAEP_LABEL,
            0,
            (&raw mut label).cast(),
        )
    };
    len.max(0) as usize
}

/// The padding mode of the context (`RSA_PKCS1_PADDING` and so on; 0 if unreadable).
unsafe fn padding_of(ctx: *mut ffi::EVP_PKEY_CTX) -> RsaPadding {
    // SAFETY: the padding command writes an int.
    let raw = unsafe { ctrl_get::<c_int>(ctx, ffi::EVP_PKEY_CTRL_GET_RSA_PADDING, 0) };
    RsaPadding::from_openssl(raw.unwrap_or(0))
}

fn bits_of(data: &VaultKey) -> usize {
    match data.kind {
        KeyKind::Rsa { bits } => bits,
        KeyKind::Ec { .. } => 0,
    }
}

/// The arguments OpenSSL passes to an EVP_PKEY_METHOD sign or decrypt callback.
struct PkeyCall {
    ctx: *mut ffi::EVP_PKEY_CTX,
    out: *mut c_uchar,
    outlen: *mut usize,
    input: *const c_uchar,
    inlen: usize,
}

/// The frame shared by sign and decrypt (same C signature): keys that are not ours go to
/// OpenSSL's `original`, untouched; size queries (NULL output) are answered with the modulus
/// size; `remote` computes the output for our key from the input, and it is copied out after
/// checking the caller's buffer. Only the remote part moves in an ASYNC job.
///
/// # Safety
/// The pointers are the ones OpenSSL passed to the callback; `remote` uses nothing else.
unsafe fn run_pkey_op<F>(
    function: &'static std::ffi::CStr,
    original: ffi::PkeySignFn,
    call: PkeyCall,
    remote: impl FnOnce(Via, Arc<VaultKey>, &'static [u8]) -> F + 'static,
) -> c_int
where
    F: Future<Output = Result<Vec<u8>, Failure>> + 'static,
{
    let PkeyCall {
        ctx,
        out,
        outlen,
        input,
        inlen,
    } = call;
    // SAFETY: all pointers come from OpenSSL for this call.
    let Some(data) = (unsafe { key_of_ctx(ctx) }) else {
        return guard(function, 0, || {
            Ok(match original {
                // SAFETY: OpenSSL's own function with the arguments it gave us.
                Some(f) => unsafe { f(ctx, out, outlen, input, inlen) },
                None => 0,
            })
        });
    };
    if out.is_null() {
        // SAFETY: outlen is valid.
        unsafe { *outlen = bits_of(&data).div_ceil(8) };
        return 1;
    }
    let body = move |via| async move {
        // SAFETY: input holds inlen bytes until the callback returns.
        let input = unsafe { std::slice::from_raw_parts(input, inlen) };
        let output = remote(via, data, input).await?;
        // SAFETY: outlen holds the buffer size (checked by OpenSSL thanks to
        // AUTOARGLEN, checked again here).
        let capacity = unsafe { *outlen };
        if output.len() > capacity {
            return Err(Failure::new(
                Reason::BufferTooSmall,
                format!("output of {} bytes, buffer of {capacity}", output.len()),
            ));
        }
        unsafe {
            std::ptr::copy_nonoverlapping(output.as_ptr(), out, output.len());
            *outlen = output.len();
        }
        Ok(1)
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(function, 0, body) }
}

unsafe extern "C" fn pkey_sign(
    ctx: *mut ffi::EVP_PKEY_CTX,
    sig: *mut c_uchar,
    siglen: *mut usize,
    tbs: *const c_uchar,
    tbslen: usize,
) -> c_int {
    let remote = move |via, data: Arc<VaultKey>, input: &'static [u8]| async move {
        // SAFETY (these reads): ctx is the live RSA context of this call.
        let padding = unsafe { padding_of(ctx) };
        let digest = unsafe { md_of(ctx, ffi::EVP_PKEY_CTRL_GET_MD) };
        let (mut salt_len, mut mgf1) = (PssSaltLen::Digest, None);
        if padding == RsaPadding::Pss {
            let raw = unsafe { ctrl_get::<c_int>(ctx, ffi::EVP_PKEY_CTRL_GET_RSA_PSS_SALTLEN, -1) };
            salt_len =
                PssSaltLen::from_openssl(raw.unwrap_or(-1)).unwrap_or(PssSaltLen::Bytes(u32::MAX));
            mgf1 = unsafe { md_of(ctx, ffi::EVP_PKEY_CTRL_GET_RSA_MGF1_MD) };
        }
        let params = RsaSignParams {
            padding,
            digest,
            salt_len,
            mgf1,
            modulus_bits: bits_of(&data),
        };
        akv_frontend::remote::sign_rsa(via, &data, &params, input).await
    };
    // SAFETY: the pointers OpenSSL passed.
    unsafe {
        run_pkey_op(
            c"rsa_sign",
            originals().sign,
            PkeyCall {
                ctx,
                out: sig,
                outlen: siglen,
                input: tbs,
                inlen: tbslen,
            },
            remote,
        )
    }
}

unsafe extern "C" fn pkey_decrypt(
    ctx: *mut ffi::EVP_PKEY_CTX,
    out: *mut c_uchar,
    outlen: *mut usize,
    input: *const c_uchar,
    inlen: usize,
) -> c_int {
    let remote = move |via, data: Arc<VaultKey>, ciphertext: &'static [u8]| async move {
        // SAFETY (these reads): ctx is the live RSA context of this call.
        let padding = unsafe { padding_of(ctx) };
        let (mut oaep_digest, mut mgf1, mut label_len) = (None, None, 0);
        if padding == RsaPadding::Oaep {
            oaep_digest = unsafe { md_of(ctx, ffi::EVP_PKEY_CTRL_GET_RSA_OAEP_MD) };
            mgf1 = unsafe { md_of(ctx, ffi::EVP_PKEY_CTRL_GET_RSA_MGF1_MD) };
            label_len = unsafe { oaep_label_len(ctx) };
        }
        let params = RsaDecryptParams {
            padding,
            oaep_digest,
            mgf1,
            label_len,
        };
        akv_frontend::remote::decrypt_rsa(via, &data, &params, ciphertext).await
    };
    // SAFETY: the pointers OpenSSL passed.
    unsafe {
        run_pkey_op(
            c"rsa_decrypt",
            originals().decrypt,
            PkeyCall {
                ctx,
                out,
                outlen,
                input,
                inlen,
            },
            remote,
        )
    }
}

unsafe extern "C" fn rsa_finish(rsa: *mut ffi::RSA) -> c_int {
    guard(c"rsa_finish", 0, || {
        keys::forget(rsa.cast());
        Ok(match originals().finish {
            // SAFETY: OpenSSL's own finish for the same object.
            Some(f) => unsafe { f(rsa) },
            None => 1,
        })
    })
}

fn refuse_raw() -> c_int {
    guard(c"rsa_private_raw", -1, || {
        Err(Failure::new(
            Reason::NotPossibleRemotely,
            "a raw RSA private operation (RSA_private_encrypt/decrypt) cannot be done by Key Vault; use the EVP_PKEY sign/decrypt API, which passes the padding and digest",
        ))
    })
}

unsafe extern "C" fn rsa_priv_enc(
    flen: c_int,
    from: *const c_uchar,
    to: *mut c_uchar,
    rsa: *mut ffi::RSA,
    padding: c_int,
) -> c_int {
    if guard(c"rsa_priv_enc", true, || {
        Ok(keys::lookup(rsa.cast()).is_some())
    }) {
        return refuse_raw();
    }
    match originals().priv_enc {
        // SAFETY: OpenSSL's own function with the arguments it gave us.
        Some(f) => unsafe { f(flen, from, to, rsa, padding) },
        None => -1,
    }
}

unsafe extern "C" fn rsa_priv_dec(
    flen: c_int,
    from: *const c_uchar,
    to: *mut c_uchar,
    rsa: *mut ffi::RSA,
    padding: c_int,
) -> c_int {
    if guard(c"rsa_priv_dec", true, || {
        Ok(keys::lookup(rsa.cast()).is_some())
    }) {
        return refuse_raw();
    }
    match originals().priv_dec {
        // SAFETY: as above.
        Some(f) => unsafe { f(flen, from, to, rsa, padding) },
        None => -1,
    }
}
