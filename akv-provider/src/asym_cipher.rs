//! ASYM_CIPHER for RSA: decryption by the vault with RSA1_5, RSA-OAEP (SHA-1) or
//! RSA-OAEP-256; any other padding, digest pair or an OAEP label is refused with the reason
//! (akv-proto decides). Encryption is a public-key operation: OpenSSL's default provider does
//! it with the exported public key.

use std::ffi::{c_int, c_void};
use std::sync::Arc;

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::remote::{KeyKind, VaultKey};
use akv_proto::{Digest, RsaDecryptParams, RsaPadding};

use crate::abi::{
    DISPATCH_END, OSSL_DISPATCH, OSSL_FUNC_ASYM_CIPHER_DECRYPT, OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT,
    OSSL_FUNC_ASYM_CIPHER_DUPCTX, OSSL_FUNC_ASYM_CIPHER_FREECTX,
    OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS,
    OSSL_FUNC_ASYM_CIPHER_NEWCTX, OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS,
    OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, OSSL_PARAM, OSSL_PARAM_OCTET_STRING,
    OSSL_PARAM_UTF8_STRING, RSA_NO_PADDING, RSA_PKCS1_OAEP_PADDING, RSA_PKCS1_PADDING, entry,
    names,
};
use crate::core::{guard, guard_remote};
use crate::keys;
use crate::params::{self, END, template};
use crate::signature::digest_from_name;

/// One decryption's state.
#[derive(Clone)]
struct CipherCtx {
    key: Option<std::sync::Arc<VaultKey>>,
    pad_mode: c_int,
    oaep_digest: Option<Digest>,
    mgf1: Option<Digest>,
    label_len: usize,
}

impl CipherCtx {
    fn set_params(&mut self, params: *const OSSL_PARAM) -> Result<(), Failure> {
        // SAFETY: a terminated array from OpenSSL.
        let all = unsafe { params::entries(params as *mut OSSL_PARAM) };
        let bad = |what: &std::ffi::CStr, why: String| {
            Failure::new(
                Reason::NotPossibleRemotely,
                format!("decryption parameter {}: {why}", what.to_string_lossy()),
            )
        };
        for p in all.iter() {
            let name = params::name(p);
            if name == names::ASYM_CIPHER_PAD_MODE {
                self.pad_mode = match params::get_int(p) {
                    Ok(n) => n as c_int,
                    Err(_) => match params::get_utf8(p).map(str::to_ascii_lowercase).as_deref() {
                        Ok("pkcs1") => RSA_PKCS1_PADDING,
                        Ok("oaep" | "oeap") => RSA_PKCS1_OAEP_PADDING,
                        Ok("none") => RSA_NO_PADDING,
                        Ok(other) => {
                            return Err(bad(name, format!("{other:?} is not pkcs1 or oaep")));
                        }
                        Err(e) => return Err(bad(name, format!("{e:?}"))),
                    },
                };
            } else if name == names::ASYM_CIPHER_OAEP_DIGEST {
                let text = params::get_utf8(p).map_err(|e| bad(name, format!("{e:?}")))?;
                self.oaep_digest = Some(digest_from_name(text));
            } else if name == names::ASYM_CIPHER_MGF1_DIGEST {
                let text = params::get_utf8(p).map_err(|e| bad(name, format!("{e:?}")))?;
                self.mgf1 = Some(digest_from_name(text));
            } else if name == names::ASYM_CIPHER_OAEP_LABEL {
                self.label_len = params::get_octets(p)
                    .map_err(|e| bad(name, format!("{e:?}")))?
                    .len();
            }
        }
        Ok(())
    }
}

/// # Safety
/// `ctx` is NULL or from `newctx`/`dupctx`.
unsafe fn ctx_of<'a>(ctx: *mut c_void) -> Result<&'a mut CipherCtx, Failure> {
    // SAFETY: per the contract.
    unsafe { (ctx as *mut CipherCtx).as_mut() }
        .ok_or_else(|| Failure::new(Reason::Internal, "no decryption context"))
}

unsafe extern "C" fn newctx(_provctx: *mut c_void) -> *mut c_void {
    Box::into_raw(Box::new(CipherCtx {
        key: None,
        pad_mode: RSA_PKCS1_PADDING,
        oaep_digest: None,
        mgf1: None,
        label_len: 0,
    })) as *mut c_void
}

unsafe extern "C" fn freectx(ctx: *mut c_void) {
    if !ctx.is_null() {
        // SAFETY: made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(ctx as *mut CipherCtx) });
    }
}

unsafe extern "C" fn dupctx(ctx: *mut c_void) -> *mut c_void {
    guard(c"asym_cipher_dupctx", std::ptr::null_mut(), || {
        let copy = unsafe { ctx_of(ctx) }?.clone();
        Ok(Box::into_raw(Box::new(copy)) as *mut c_void)
    })
}

unsafe extern "C" fn decrypt_init(
    ctx: *mut c_void,
    provkey: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard(c"asym_cipher_decrypt_init", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        // SAFETY: keydata of this provider's KEYMGMT.
        let key = unsafe { keys::key_of(provkey) }
            .ok_or_else(|| Failure::new(Reason::Internal, "no key given to decrypt with"))?;
        if !matches!(key.vault.kind, KeyKind::Rsa { .. }) {
            return Err(Failure::new(
                Reason::UnusableKey,
                format!("{}: not an RSA key", key.vault.key),
            ));
        }
        if !key.vault.can_decrypt {
            return Err(Failure::new(
                Reason::UnusableKey,
                format!("{}: the key's key_ops do not allow decrypt", key.vault.key),
            ));
        }
        ctx.key = Some(key.vault.clone());
        ctx.set_params(params)?;
        Ok(1)
    })
}

unsafe extern "C" fn decrypt(
    ctx: *mut c_void,
    out: *mut u8,
    outlen: *mut usize,
    outsize: usize,
    input: *const u8,
    inlen: usize,
) -> c_int {
    let key_of = |ctx: &CipherCtx| -> Result<(Arc<VaultKey>, usize), Failure> {
        let key = ctx
            .key
            .clone()
            .ok_or_else(|| Failure::new(Reason::Internal, "decrypt before decrypt_init"))?;
        match key.kind {
            KeyKind::Rsa { bits } => Ok((key, bits)),
            KeyKind::Ec { .. } => Err(Failure::new(Reason::Internal, "not an RSA key")),
        }
    };
    if out.is_null() {
        return guard(c"asym_cipher_decrypt", 0, || {
            let (_, bits) = key_of(unsafe { ctx_of(ctx) }?)?;
            // SAFETY: outlen is writable.
            unsafe { *outlen = bits.div_ceil(8) };
            Ok(1)
        });
    }
    let body = move |via| async move {
        let ctx = unsafe { ctx_of(ctx) }?;
        let (key, _) = key_of(ctx)?;
        let params = RsaDecryptParams {
            padding: RsaPadding::from_openssl(ctx.pad_mode),
            oaep_digest: ctx.oaep_digest,
            mgf1: ctx.mgf1,
            label_len: ctx.label_len,
        };
        // SAFETY: input holds inlen bytes.
        let ciphertext = unsafe { std::slice::from_raw_parts(input, inlen) };
        let plaintext = akv_frontend::remote::decrypt_rsa(via, &key, &params, ciphertext).await?;
        if plaintext.len() > outsize {
            return Err(Failure::new(
                Reason::BufferTooSmall,
                format!(
                    "plaintext of {} bytes, buffer of {outsize}",
                    plaintext.len()
                ),
            ));
        }
        // SAFETY: out holds outsize bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(plaintext.as_ptr(), out, plaintext.len());
            *outlen = plaintext.len();
        }
        Ok(1)
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"asym_cipher_decrypt", 0, body) }
}

unsafe extern "C" fn get_ctx_params(ctx: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    guard(c"asym_cipher_get_ctx_params", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        for p in unsafe { params::entries(params) } {
            let name = params::name(p);
            let result = if name == names::ASYM_CIPHER_PAD_MODE {
                params::set_int(p, ctx.pad_mode as i64)
            } else {
                Ok(())
            };
            result.map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("{}: {e:?}", name.to_string_lossy()),
                )
            })?;
        }
        Ok(1)
    })
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, params: *const OSSL_PARAM) -> c_int {
    guard(c"asym_cipher_set_ctx_params", 0, || {
        unsafe { ctx_of(ctx) }?.set_params(params)?;
        Ok(1)
    })
}

// Strings, as the default provider declares them: `-pkeyopt rsa_padding_mode:oaep` is
// converted by the declared type.
static GETTABLE: [OSSL_PARAM; 2] = [
    template(names::ASYM_CIPHER_PAD_MODE, OSSL_PARAM_UTF8_STRING),
    END,
];
static SETTABLE: [OSSL_PARAM; 5] = [
    template(names::ASYM_CIPHER_PAD_MODE, OSSL_PARAM_UTF8_STRING),
    template(names::ASYM_CIPHER_OAEP_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::ASYM_CIPHER_MGF1_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::ASYM_CIPHER_OAEP_LABEL, OSSL_PARAM_OCTET_STRING),
    END,
];

unsafe extern "C" fn gettable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr()
}

unsafe extern "C" fn settable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    SETTABLE.as_ptr()
}

/// ASYM_CIPHER for RSA keys.
pub static RSA_ASYM_CIPHER: [OSSL_DISPATCH; 10] = [
    entry!(
        OSSL_FUNC_ASYM_CIPHER_NEWCTX,
        newctx,
        unsafe extern "C" fn(*mut c_void) -> *mut c_void
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_FREECTX,
        freectx,
        unsafe extern "C" fn(*mut c_void)
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_DUPCTX,
        dupctx,
        unsafe extern "C" fn(*mut c_void) -> *mut c_void
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT,
        decrypt_init,
        unsafe extern "C" fn(*mut c_void, *mut c_void, *const OSSL_PARAM) -> c_int
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_DECRYPT,
        decrypt,
        unsafe extern "C" fn(*mut c_void, *mut u8, *mut usize, usize, *const u8, usize) -> c_int
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS,
        get_ctx_params,
        unsafe extern "C" fn(*mut c_void, *mut OSSL_PARAM) -> c_int
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS,
        gettable,
        unsafe extern "C" fn(*mut c_void, *mut c_void) -> *const OSSL_PARAM
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS,
        set_ctx_params,
        unsafe extern "C" fn(*mut c_void, *const OSSL_PARAM) -> c_int
    ),
    entry!(
        OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS,
        settable,
        unsafe extern "C" fn(*mut c_void, *mut c_void) -> *const OSSL_PARAM
    ),
    DISPATCH_END,
];
