//! SIGNATURE for RSA (PKCS#1 v1.5 and PSS) and ECDSA: `sign` for a ready digest
//! (`pkeyutl -sign`) and `digest_sign_init/update/final` for the EVP_DigestSign path that
//! libssl, `req`, `x509`, `ca`, `cms` and `dgst` use. The digest is computed here (ring) and
//! only the digest goes to the vault. Settings follow OpenSSL's names: pad-mode, digest,
//! saltlen (number or name), mgf1-digest; `algorithm-id` is the DER that goes into
//! certificates.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Arc;

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::remote::{KeyKind, VaultKey, Via};
use akv_proto::{Digest, PssSaltLen, RsaPadding, RsaSignParams};

use crate::abi::{
    DISPATCH_END, OSSL_DISPATCH, OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
    OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
    OSSL_FUNC_SIGNATURE_DUPCTX, OSSL_FUNC_SIGNATURE_FREECTX, OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
    OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, OSSL_FUNC_SIGNATURE_NEWCTX,
    OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS,
    OSSL_FUNC_SIGNATURE_SIGN, OSSL_FUNC_SIGNATURE_SIGN_INIT, OSSL_PARAM, OSSL_PARAM_INTEGER,
    OSSL_PARAM_OCTET_STRING, OSSL_PARAM_UTF8_STRING, RSA_PKCS1_PADDING, RSA_PKCS1_PSS_PADDING,
    RSA_PSS_SALTLEN_AUTO, RSA_PSS_SALTLEN_DIGEST, RSA_PSS_SALTLEN_MAX, entry, names,
};
use crate::core::{guard, guard_remote};
use crate::params::{self, END, template};
use crate::{der, keys};

/// A digest being computed for `digest_sign` (ring: the provider links no libcrypto).
#[derive(Clone)]
struct Hasher(ring::digest::Context);

impl Hasher {
    fn new(digest: Digest) -> Result<Hasher, Failure> {
        let algorithm = match digest {
            Digest::Sha1 => &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &ring::digest::SHA256,
            Digest::Sha384 => &ring::digest::SHA384,
            Digest::Sha512 => &ring::digest::SHA512,
            other => {
                return Err(Failure::new(
                    Reason::NotPossibleRemotely,
                    format!(
                        "digest {other:?} is not available in the akv provider: use SHA-256, SHA-384 or SHA-512"
                    ),
                ));
            }
        };
        Ok(Hasher(ring::digest::Context::new(algorithm)))
    }

    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest so far; the hasher can go on (OpenSSL may finalise a copy).
    fn peek(&self) -> Vec<u8> {
        self.0.clone().finish().as_ref().to_vec()
    }
}

/// One signing operation's state.
#[derive(Clone)]
struct SigCtx {
    ecdsa: bool,
    key: Option<Arc<VaultKey>>,
    pad_mode: c_int,
    digest: Option<Digest>,
    salt_len: c_int,
    mgf1: Option<Digest>,
    hasher: Option<Hasher>,
}

/// Maps OpenSSL's digest names ("SHA256", "SHA2-256", "sha-256", OIDs) to a digest.
pub fn digest_from_name(name: &str) -> Digest {
    let n = name.trim().to_ascii_uppercase().replace(['-', '_'], "");
    match n.as_str() {
        "SHA1" | "SHA" | "1.3.14.3.2.26" => Digest::Sha1,
        "SHA224" | "SHA2224" | "2.16.840.1.101.3.4.2.4" => Digest::Sha224,
        "SHA256" | "SHA2256" | "2.16.840.1.101.3.4.2.1" => Digest::Sha256,
        "SHA384" | "SHA2384" | "2.16.840.1.101.3.4.2.2" => Digest::Sha384,
        "SHA512" | "SHA2512" | "2.16.840.1.101.3.4.2.3" => Digest::Sha512,
        "MD5" => Digest::Md5,
        "MD5SHA1" => Digest::Md5Sha1,
        _ => Digest::Other,
    }
}

fn digest_name(digest: Digest) -> &'static str {
    match digest {
        Digest::Sha1 => "SHA1",
        Digest::Sha224 => "SHA2-224",
        Digest::Sha256 => "SHA2-256",
        Digest::Sha384 => "SHA2-384",
        Digest::Sha512 => "SHA2-512",
        Digest::Md5 => "MD5",
        Digest::Md5Sha1 => "MD5-SHA1",
        _ => "",
    }
}

impl SigCtx {
    fn key(&self) -> Result<&Arc<VaultKey>, Failure> {
        self.key
            .as_ref()
            .ok_or_else(|| Failure::new(Reason::Internal, "signature context has no key"))
    }

    fn start(&mut self, provkey: *mut c_void) -> Result<(), Failure> {
        // SAFETY: OpenSSL passes keydata of this provider's KEYMGMT.
        let key = unsafe { keys::key_of(provkey) }
            .ok_or_else(|| Failure::new(Reason::Internal, "no key given to sign with"))?;
        let is_ec = matches!(key.vault.kind, KeyKind::Ec { .. });
        if is_ec != self.ecdsa {
            return Err(Failure::new(
                Reason::Internal,
                format!(
                    "{}: wrong signature algorithm for this key type",
                    key.vault.key
                ),
            ));
        }
        if !key.vault.can_sign {
            return Err(Failure::new(
                Reason::UnusableKey,
                format!("{}: the key's key_ops do not allow sign", key.vault.key),
            ));
        }
        self.key = Some(key.vault.clone());
        self.hasher = None;
        Ok(())
    }

    fn set_params(&mut self, params: *const OSSL_PARAM) -> Result<(), Failure> {
        // SAFETY: a terminated array from OpenSSL.
        let all = unsafe { params::entries(params as *mut OSSL_PARAM) };
        let bad = |what: &CStr, why: String| {
            Failure::new(
                Reason::NotPossibleRemotely,
                format!("signature parameter {}: {why}", what.to_string_lossy()),
            )
        };
        for p in all.iter() {
            let name = params::name(p);
            if name == names::SIGNATURE_DIGEST {
                let text = params::get_utf8(p).map_err(|e| bad(name, format!("{e:?}")))?;
                let digest = digest_from_name(text);
                if digest == Digest::Other {
                    return Err(bad(name, format!("unknown digest {text:?}")));
                }
                if self.hasher.is_some() && self.digest != Some(digest) {
                    return Err(bad(name, "cannot change the digest while hashing".into()));
                }
                self.digest = Some(digest);
            } else if name == names::SIGNATURE_PAD_MODE && !self.ecdsa {
                self.pad_mode = match params::get_int(p) {
                    Ok(n) => n as c_int,
                    Err(_) => match params::get_utf8(p).map(str::to_ascii_lowercase).as_deref() {
                        Ok("pkcs1") => RSA_PKCS1_PADDING,
                        Ok("pss") => RSA_PKCS1_PSS_PADDING,
                        Ok(other) => {
                            return Err(bad(name, format!("{other:?} is not pkcs1 or pss")));
                        }
                        Err(e) => return Err(bad(name, format!("{e:?}"))),
                    },
                };
            } else if name == names::SIGNATURE_PSS_SALTLEN && !self.ecdsa {
                self.salt_len = match params::get_int(p) {
                    Ok(n) => n as c_int,
                    Err(_) => match params::get_utf8(p).as_deref() {
                        Ok("digest") => RSA_PSS_SALTLEN_DIGEST,
                        Ok("max") => RSA_PSS_SALTLEN_MAX,
                        Ok("auto") => RSA_PSS_SALTLEN_AUTO,
                        Ok("auto-digestmax") => -4,
                        Ok(n) => n
                            .parse()
                            .map_err(|_| bad(name, format!("{n:?} is not a salt length")))?,
                        Err(e) => return Err(bad(name, format!("{e:?}"))),
                    },
                };
            } else if name == names::SIGNATURE_MGF1_DIGEST && !self.ecdsa {
                let text = params::get_utf8(p).map_err(|e| bad(name, format!("{e:?}")))?;
                self.mgf1 = Some(digest_from_name(text));
            }
        }
        Ok(())
    }

    /// Signs a finished digest; returns what goes into the caller's buffer.
    async fn sign_digest(&self, via: Via, digest_bytes: &[u8]) -> Result<Vec<u8>, Failure> {
        let key = self.key()?;
        match key.kind {
            KeyKind::Ec { .. } => {
                let (raw, curve) = akv_frontend::remote::sign_ecdsa(via, key, digest_bytes).await?;
                akv_proto::ecdsa_raw_to_der(curve, &raw)
                    .map_err(|e| Failure::new(Reason::Sign, e.to_string()))
            }
            KeyKind::Rsa { bits } => {
                let params = RsaSignParams {
                    padding: RsaPadding::from_openssl(self.pad_mode),
                    digest: self.digest,
                    salt_len: PssSaltLen::from_openssl(self.salt_len)
                        .unwrap_or(PssSaltLen::Bytes(u32::MAX)),
                    mgf1: self.mgf1,
                    modulus_bits: bits,
                };
                akv_frontend::remote::sign_rsa(via, key, &params, digest_bytes).await
            }
        }
    }

    fn max_size(&self) -> Result<usize, Failure> {
        let key = self.key()?;
        Ok(match key.kind {
            KeyKind::Rsa { bits } => bits.div_ceil(8),
            KeyKind::Ec { curve } => keys::ecdsa_der_max(curve),
        })
    }

    /// The DER algorithm identifier of the signature this context makes.
    fn algorithm_id(&self) -> Option<Vec<u8>> {
        let digest = self.digest?;
        if self.ecdsa {
            return der::ecdsa(digest);
        }
        match self.pad_mode {
            RSA_PKCS1_PADDING => der::rsa_pkcs1(digest),
            RSA_PKCS1_PSS_PADDING => {
                let salt = match self.salt_len {
                    n if n >= 0 => n as usize,
                    // The vault's PSS uses a salt as long as the digest.
                    _ => digest.output_len()?,
                };
                der::rsa_pss(digest, self.mgf1.unwrap_or(digest), salt)
            }
            _ => None,
        }
    }
}

/// Copies `output` into OpenSSL's buffer of `size` bytes.
///
/// # Safety
/// `out` holds `size` bytes; `outlen` is writable.
unsafe fn copy_out(
    output: &[u8],
    out: *mut u8,
    outlen: *mut usize,
    size: usize,
) -> Result<c_int, Failure> {
    if output.len() > size {
        return Err(Failure::new(
            Reason::BufferTooSmall,
            format!("signature of {} bytes, buffer of {size}", output.len()),
        ));
    }
    // SAFETY: per the contract.
    unsafe {
        std::ptr::copy_nonoverlapping(output.as_ptr(), out, output.len());
        *outlen = output.len();
    }
    Ok(1)
}

fn new_ctx(ecdsa: bool) -> *mut c_void {
    Box::into_raw(Box::new(SigCtx {
        ecdsa,
        key: None,
        pad_mode: RSA_PKCS1_PADDING,
        digest: None,
        salt_len: RSA_PSS_SALTLEN_DIGEST,
        mgf1: None,
        hasher: None,
    })) as *mut c_void
}

unsafe extern "C" fn rsa_newctx(_provctx: *mut c_void, _propq: *const c_char) -> *mut c_void {
    new_ctx(false)
}

unsafe extern "C" fn ecdsa_newctx(_provctx: *mut c_void, _propq: *const c_char) -> *mut c_void {
    new_ctx(true)
}

/// # Safety
/// `ctx` is NULL or from `newctx`/`dupctx`.
unsafe fn ctx_of<'a>(ctx: *mut c_void) -> Result<&'a mut SigCtx, Failure> {
    // SAFETY: per the contract.
    unsafe { (ctx as *mut SigCtx).as_mut() }
        .ok_or_else(|| Failure::new(Reason::Internal, "no signature context"))
}

unsafe extern "C" fn freectx(ctx: *mut c_void) {
    if !ctx.is_null() {
        // SAFETY: made by Box::into_raw, freed once.
        drop(unsafe { Box::from_raw(ctx as *mut SigCtx) });
    }
}

unsafe extern "C" fn dupctx(ctx: *mut c_void) -> *mut c_void {
    guard(c"signature_dupctx", std::ptr::null_mut(), || {
        let copy = unsafe { ctx_of(ctx) }?.clone();
        Ok(Box::into_raw(Box::new(copy)) as *mut c_void)
    })
}

unsafe extern "C" fn sign_init(
    ctx: *mut c_void,
    provkey: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard(c"signature_sign_init", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        ctx.start(provkey)?;
        ctx.set_params(params)?;
        Ok(1)
    })
}

unsafe extern "C" fn sign(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut usize,
    sigsize: usize,
    tbs: *const u8,
    tbslen: usize,
) -> c_int {
    if sig.is_null() {
        return guard(c"signature_sign", 0, || {
            let ctx = unsafe { ctx_of(ctx) }?;
            // SAFETY: siglen is writable.
            unsafe { *siglen = ctx.max_size()? };
            Ok(1)
        });
    }
    let body = move |via| async move {
        let ctx = unsafe { ctx_of(ctx) }?;
        if tbs.is_null() {
            return Err(Failure::new(Reason::Internal, "nothing to sign"));
        }
        // SAFETY: tbs holds tbslen bytes.
        let digest = unsafe { std::slice::from_raw_parts(tbs, tbslen) };
        let output = ctx.sign_digest(via, digest).await?;
        // SAFETY: sig holds sigsize bytes.
        unsafe { copy_out(&output, sig, siglen, sigsize) }
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"signature_sign", 0, body) }
}

unsafe extern "C" fn digest_sign_init(
    ctx: *mut c_void,
    mdname: *const c_char,
    provkey: *mut c_void,
    params: *const OSSL_PARAM,
) -> c_int {
    guard(c"signature_digest_sign_init", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        ctx.start(provkey)?;
        // A NULL digest name means the key's default (nginx, some CMS paths).
        let digest = if mdname.is_null() {
            digest_from_name(keys::default_digest(ctx.key()?.kind))
        } else {
            // SAFETY: a NUL-terminated name.
            let name = unsafe { CStr::from_ptr(mdname) }.to_string_lossy();
            match digest_from_name(&name) {
                Digest::Other => {
                    return Err(Failure::new(
                        Reason::NotPossibleRemotely,
                        format!("unknown digest {name:?}"),
                    ));
                }
                d => d,
            }
        };
        ctx.digest = Some(digest);
        ctx.set_params(params)?;
        ctx.hasher = Some(Hasher::new(digest)?);
        Ok(1)
    })
}

unsafe extern "C" fn digest_sign_update(ctx: *mut c_void, data: *const u8, len: usize) -> c_int {
    guard(c"signature_digest_sign_update", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        let hasher = ctx
            .hasher
            .as_mut()
            .ok_or_else(|| Failure::new(Reason::Internal, "digest_sign_update before init"))?;
        if len > 0 {
            // SAFETY: data holds len bytes.
            hasher.update(unsafe { std::slice::from_raw_parts(data, len) });
        }
        Ok(1)
    })
}

unsafe extern "C" fn digest_sign_final(
    ctx: *mut c_void,
    sig: *mut u8,
    siglen: *mut usize,
    sigsize: usize,
) -> c_int {
    if sig.is_null() {
        return guard(c"signature_digest_sign_final", 0, || {
            let ctx = unsafe { ctx_of(ctx) }?;
            // SAFETY: siglen is writable.
            unsafe { *siglen = ctx.max_size()? };
            Ok(1)
        });
    }
    let body = move |via| async move {
        let ctx = unsafe { ctx_of(ctx) }?;
        let digest = ctx
            .hasher
            .as_ref()
            .ok_or_else(|| Failure::new(Reason::Internal, "digest_sign_final before init"))?
            .peek();
        let output = ctx.sign_digest(via, &digest).await?;
        // SAFETY: sig holds sigsize bytes.
        unsafe { copy_out(&output, sig, siglen, sigsize) }
    };
    // SAFETY: the body uses only the callback's arguments, untouched until it returns.
    unsafe { guard_remote(c"signature_digest_sign_final", 0, body) }
}

unsafe extern "C" fn get_ctx_params(ctx: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    guard(c"signature_get_ctx_params", 0, || {
        let ctx = unsafe { ctx_of(ctx) }?;
        for p in unsafe { params::entries(params) } {
            let name = params::name(p);
            let result = if name == names::SIGNATURE_ALGORITHM_ID {
                match ctx.algorithm_id() {
                    Some(id) => params::set_octets(p, &id),
                    None => Ok(()),
                }
            } else if name == names::SIGNATURE_DIGEST {
                params::set_utf8(p, ctx.digest.map(digest_name).unwrap_or(""))
            } else if name == names::SIGNATURE_DIGEST_SIZE {
                params::set_int(
                    p,
                    ctx.digest.and_then(Digest::output_len).unwrap_or(0) as i64,
                )
            } else if name == names::SIGNATURE_PAD_MODE && !ctx.ecdsa {
                params::set_int(p, ctx.pad_mode as i64)
            } else if name == names::SIGNATURE_PSS_SALTLEN && !ctx.ecdsa {
                params::set_int(p, ctx.salt_len as i64)
            } else {
                Ok(())
            };
            result.map_err(|e| {
                Failure::new(
                    Reason::Internal,
                    format!("signature parameter {}: {e:?}", name.to_string_lossy()),
                )
            })?;
        }
        Ok(1)
    })
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, params: *const OSSL_PARAM) -> c_int {
    guard(c"signature_set_ctx_params", 0, || {
        unsafe { ctx_of(ctx) }?.set_params(params)?;
        Ok(1)
    })
}

static RSA_GETTABLE: [OSSL_PARAM; 6] = [
    template(names::SIGNATURE_ALGORITHM_ID, OSSL_PARAM_OCTET_STRING),
    template(names::SIGNATURE_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_DIGEST_SIZE, OSSL_PARAM_INTEGER),
    template(names::SIGNATURE_PAD_MODE, OSSL_PARAM_INTEGER),
    template(names::SIGNATURE_PSS_SALTLEN, OSSL_PARAM_INTEGER),
    END,
];
static ECDSA_GETTABLE: [OSSL_PARAM; 4] = [
    template(names::SIGNATURE_ALGORITHM_ID, OSSL_PARAM_OCTET_STRING),
    template(names::SIGNATURE_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_DIGEST_SIZE, OSSL_PARAM_INTEGER),
    END,
];
// Pad mode and salt length are declared as strings, as the default provider does: OpenSSL
// converts `-sigopt rsa_padding_mode:pss` by the declared type. Numbers are accepted too.
static RSA_SETTABLE: [OSSL_PARAM; 6] = [
    template(names::SIGNATURE_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_PROPERTIES, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_PAD_MODE, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_PSS_SALTLEN, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_MGF1_DIGEST, OSSL_PARAM_UTF8_STRING),
    END,
];
static ECDSA_SETTABLE: [OSSL_PARAM; 3] = [
    template(names::SIGNATURE_DIGEST, OSSL_PARAM_UTF8_STRING),
    template(names::SIGNATURE_PROPERTIES, OSSL_PARAM_UTF8_STRING),
    END,
];

unsafe extern "C" fn rsa_gettable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    RSA_GETTABLE.as_ptr()
}
unsafe extern "C" fn ecdsa_gettable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    ECDSA_GETTABLE.as_ptr()
}
unsafe extern "C" fn rsa_settable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    RSA_SETTABLE.as_ptr()
}
unsafe extern "C" fn ecdsa_settable(_ctx: *mut c_void, _provctx: *mut c_void) -> *const OSSL_PARAM {
    ECDSA_SETTABLE.as_ptr()
}

type NewCtx = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void;
type Tables = unsafe extern "C" fn(*mut c_void, *mut c_void) -> *const OSSL_PARAM;

macro_rules! signature_table {
    ($newctx:expr, $gettable:expr, $settable:expr) => {
        [
            entry!(OSSL_FUNC_SIGNATURE_NEWCTX, $newctx, NewCtx),
            entry!(
                OSSL_FUNC_SIGNATURE_FREECTX,
                freectx,
                unsafe extern "C" fn(*mut c_void)
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_DUPCTX,
                dupctx,
                unsafe extern "C" fn(*mut c_void) -> *mut c_void
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_SIGN_INIT,
                sign_init,
                unsafe extern "C" fn(*mut c_void, *mut c_void, *const OSSL_PARAM) -> c_int
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_SIGN,
                sign,
                unsafe extern "C" fn(
                    *mut c_void,
                    *mut u8,
                    *mut usize,
                    usize,
                    *const u8,
                    usize,
                ) -> c_int
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT,
                digest_sign_init,
                unsafe extern "C" fn(
                    *mut c_void,
                    *const c_char,
                    *mut c_void,
                    *const OSSL_PARAM,
                ) -> c_int
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE,
                digest_sign_update,
                unsafe extern "C" fn(*mut c_void, *const u8, usize) -> c_int
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL,
                digest_sign_final,
                unsafe extern "C" fn(*mut c_void, *mut u8, *mut usize, usize) -> c_int
            ),
            entry!(
                OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS,
                get_ctx_params,
                unsafe extern "C" fn(*mut c_void, *mut OSSL_PARAM) -> c_int
            ),
            entry!(OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, $gettable, Tables),
            entry!(
                OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS,
                set_ctx_params,
                unsafe extern "C" fn(*mut c_void, *const OSSL_PARAM) -> c_int
            ),
            entry!(OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, $settable, Tables),
            DISPATCH_END,
        ]
    };
}

/// SIGNATURE for RSA keys.
pub static RSA_SIGNATURE: [OSSL_DISPATCH; 13] =
    signature_table!(rsa_newctx, rsa_gettable, rsa_settable);
/// SIGNATURE for EC keys.
pub static ECDSA_SIGNATURE: [OSSL_DISPATCH; 13] =
    signature_table!(ecdsa_newctx, ecdsa_gettable, ecdsa_settable);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_in_every_spelling() {
        for (name, want) in [
            ("SHA256", Digest::Sha256),
            ("SHA2-256", Digest::Sha256),
            ("sha-256", Digest::Sha256),
            ("2.16.840.1.101.3.4.2.3", Digest::Sha512),
            ("SHA1", Digest::Sha1),
            ("SHA3-256", Digest::Other),
        ] {
            assert_eq!(digest_from_name(name), want, "{name}");
        }
        for d in [Digest::Sha1, Digest::Sha256, Digest::Sha384, Digest::Sha512] {
            assert_eq!(digest_from_name(digest_name(d)), d);
        }
    }

    #[test]
    fn hashing_matches_known_vectors_and_can_continue() {
        let mut h = Hasher::new(Digest::Sha256).unwrap();
        h.update(b"abc");
        let first = h.peek();
        assert_eq!(
            first.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.peek(), first, "peeking does not finish");
        assert!(Hasher::new(Digest::Sha224).is_err());
    }
}
