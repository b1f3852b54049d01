//! `e_akv`: an OpenSSL engine whose RSA and EC private keys live in Azure Key Vault or
//! Azure Managed HSM. Private-key operations (sign, decrypt) become Key Vault REST calls
//! through `akv-frontend` (shared with the provider); public-key operations stay local in
//! OpenSSL. This crate is only the engine's OpenSSL surface: the ENGINE entry points, the
//! control commands, the RSA and EC methods and their key objects.
//!
//! It must never let a panic cross into C (every callback runs behind [`errors::guard`]),
//! never start threads or open sockets at load time (nginx forks after loading keys), never
//! reuse a parent's connections after a fork, and never put a token into a log line or an
//! error.

mod ec;
pub mod errors;
pub mod ffi;
mod keys;
mod rsa;
pub mod settings;

use std::ffi::{CStr, c_char, c_int, c_long, c_ulong, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};

use akv_frontend::failure::{Failure, Reason};
use errors::guard;

/// The engine id: OpenSSL loads `e_akv.so` for it.
pub const ENGINE_ID: &CStr = c"e_akv";
const ENGINE_NAME: &CStr = c"Azure Key Vault and Managed HSM keys (e_akv)";

static RSA_PMETH: AtomicPtr<ffi::EVP_PKEY_METHOD> = AtomicPtr::new(std::ptr::null_mut());
static EC_PMETH: AtomicPtr<ffi::EVP_PKEY_METHOD> = AtomicPtr::new(std::ptr::null_mut());
static RSA_METH: AtomicPtr<ffi::RSA_METHOD> = AtomicPtr::new(std::ptr::null_mut());
static EC_METH: AtomicPtr<ffi::EC_KEY_METHOD> = AtomicPtr::new(std::ptr::null_mut());

/// The key types we provide methods for.
static NIDS: [c_int; 2] = [ffi::EVP_PKEY_RSA, ffi::EVP_PKEY_EC];

/// OpenSSL's dynamic-engine version check (`IMPLEMENT_DYNAMIC_CHECK_FN`).
///
/// # Safety
/// Called by OpenSSL's dynamic loader.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn v_check(v: c_ulong) -> c_ulong {
    if v >= ffi::OSSL_DYNAMIC_OLDEST {
        ffi::OSSL_DYNAMIC_VERSION
    } else {
        0
    }
}

/// Whether the id OpenSSL passes names this engine: `e_akv`, a path to our library (when
/// loaded with `-engine /path/libe_akv.so`), or NULL (an openssl.cnf `dynamic_path`).
fn accepts_id(id: Option<&[u8]>) -> bool {
    let Some(id) = id else { return true };
    if id == ENGINE_ID.to_bytes() {
        return true;
    }
    let file = id.rsplit(|b| *b == b'/').next().unwrap_or(id);
    file.starts_with(b"e_akv") || file.starts_with(b"libe_akv")
}

/// OpenSSL's dynamic-engine entry point (`IMPLEMENT_DYNAMIC_BIND_FN`).
///
/// # Safety
/// Called by OpenSSL's dynamic loader with a live ENGINE.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bind_engine(
    e: *mut ffi::ENGINE,
    id: *const c_char,
    fns: *const ffi::dynamic_fns,
) -> c_int {
    errors::register();
    guard(c"bind_engine", 0, || {
        // SAFETY: fns comes from the loader; a different static state means a different
        // libcrypto instance, whose allocator we must use.
        unsafe {
            if !fns.is_null() && ffi::ENGINE_get_static_state() != (*fns).static_state {
                ffi::CRYPTO_set_mem_functions(
                    (*fns).mem_fns.malloc_fn,
                    (*fns).mem_fns.realloc_fn,
                    (*fns).mem_fns.free_fn,
                );
                ffi::OPENSSL_init_crypto(ffi::OPENSSL_INIT_NO_ATEXIT, std::ptr::null());
            }
        }
        // SAFETY: id is NULL or a C string.
        let id = (!id.is_null()).then(|| unsafe { CStr::from_ptr(id) }.to_bytes());
        if !accepts_id(id) {
            return Err(Failure::new(
                Reason::Configuration,
                format!(
                    "asked to bind as {:?}, but this is e_akv",
                    String::from_utf8_lossy(id.unwrap_or_default())
                ),
            ));
        }
        // SAFETY: e is the live ENGINE being bound.
        unsafe { bind(e) }?;
        // Applications such as nginx call ENGINE_load_private_key right after ENGINE_by_id,
        // without ENGINE_init, which OpenSSL then refuses ("not initialised"). Holding one
        // functional reference of our own makes `engine:e_akv:...` keys work without
        // `ssl_engine` or an openssl.cnf `init = 1`. Initialising starts nothing (no threads,
        // no sockets), so it is safe before a fork.
        // SAFETY: e is fully bound; the engine lock is not held while an engine binds.
        unsafe { ffi::ENGINE_init(e) };
        Ok(1)
    })
}

/// A new EVP_PKEY_METHOD for key type `id` with `flags`, holding OpenSSL's own functions
/// for that type (the caller replaces some); null if OpenSSL could not make one.
///
/// # Safety
/// Plain libcrypto calls; `id` is a key type OpenSSL has a method for.
unsafe fn copy_pkey_method(id: c_int, flags: c_int) -> *mut ffi::EVP_PKEY_METHOD {
    // SAFETY: per the contract above.
    unsafe {
        let m = ffi::EVP_PKEY_meth_new(id, flags);
        if !m.is_null() {
            // Copies the functions, not the id or the flags.
            ffi::EVP_PKEY_meth_copy(m, ffi::EVP_PKEY_meth_find(id));
        }
        m
    }
}

/// The RSA or EC_KEY object behind a pkey context whose key has type `id`; null for any
/// other key. The key's own type, not its base type: `EVP_PKEY_get_base_id` (and
/// `get0_RSA` / `get0_EC_KEY`, which check it) look the base up in the loaded engines'
/// tables, under a lock, on every call. Our keys are made with these types; an alias of one
/// is not ours and goes to OpenSSL's method.
///
/// # Safety
/// `ctx` is the live context OpenSSL called a pkey method with.
unsafe fn ctx_key(ctx: *mut ffi::EVP_PKEY_CTX, id: c_int) -> *mut c_void {
    // SAFETY: per the contract above.
    unsafe {
        let pkey = ffi::EVP_PKEY_CTX_get0_pkey(ctx);
        if pkey.is_null() || ffi::EVP_PKEY_get_id(pkey) != id {
            return std::ptr::null_mut();
        }
        ffi::EVP_PKEY_get0(pkey)
    }
}

unsafe fn bind(e: *mut ffi::ENGINE) -> Result<c_int, Failure> {
    let rsa_pmeth = rsa::new_pkey_method();
    let ec_pmeth = ec::new_pkey_method();
    let rsa_meth = rsa::new_rsa_method();
    let ec_meth = ec::new_ec_key_method();
    if rsa_pmeth.is_null() || ec_pmeth.is_null() || rsa_meth.is_null() || ec_meth.is_null() {
        return Err(Failure::new(
            Reason::Internal,
            "OpenSSL could not create the key methods",
        ));
    }
    RSA_PMETH.store(rsa_pmeth, Ordering::SeqCst);
    EC_PMETH.store(ec_pmeth, Ordering::SeqCst);
    free_key_methods();
    RSA_METH.store(rsa_meth, Ordering::SeqCst);
    EC_METH.store(ec_meth, Ordering::SeqCst);
    // SAFETY: e is live; every pointer handed over is 'static or owned by OpenSSL after this.
    let ok = unsafe {
        ffi::ENGINE_set_id(e, ENGINE_ID.as_ptr()) == 1
            && ffi::ENGINE_set_name(e, ENGINE_NAME.as_ptr()) == 1
            && ffi::ENGINE_set_init_function(e, Some(engine_init)) == 1
            && ffi::ENGINE_set_finish_function(e, Some(engine_finish)) == 1
            && ffi::ENGINE_set_destroy_function(e, Some(engine_destroy)) == 1
            && ffi::ENGINE_set_ctrl_function(e, Some(engine_ctrl)) == 1
            && ffi::ENGINE_set_cmd_defns(e, settings::COMMANDS.0.as_ptr()) == 1
            && ffi::ENGINE_set_load_privkey_function(e, Some(load_privkey)) == 1
            && ffi::ENGINE_set_load_pubkey_function(e, Some(load_pubkey)) == 1
            && ffi::ENGINE_set_pkey_meths(e, Some(pkey_meths)) == 1
            && ffi::ENGINE_set_RSA(e, rsa_meth) == 1
            && ffi::ENGINE_set_EC(e, ec_meth) == 1
    };
    if ok {
        Ok(1)
    } else {
        Err(Failure::new(
            Reason::Internal,
            "OpenSSL refused to bind the engine",
        ))
    }
}

fn free_key_methods() {
    let rsa = RSA_METH.swap(std::ptr::null_mut(), Ordering::SeqCst);
    let ec = EC_METH.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: methods we created; keys using them hold engine references, so none is alive
    // when the engine is destroyed or bound again.
    unsafe {
        if !rsa.is_null() {
            ffi::RSA_meth_free(rsa);
        }
        if !ec.is_null() {
            ffi::EC_KEY_METHOD_free(ec);
        }
    }
}

unsafe extern "C" fn engine_init(_e: *mut ffi::ENGINE) -> c_int {
    // Nothing to start: connections and tokens are made on first use, after any fork.
    1
}

unsafe extern "C" fn engine_finish(_e: *mut ffi::ENGINE) -> c_int {
    1
}

unsafe extern "C" fn engine_destroy(_e: *mut ffi::ENGINE) -> c_int {
    guard(c"engine_destroy", 0, || {
        // OpenSSL has already freed the EVP_PKEY_METHODs it got from pkey_meths.
        RSA_PMETH.store(std::ptr::null_mut(), Ordering::SeqCst);
        EC_PMETH.store(std::ptr::null_mut(), Ordering::SeqCst);
        free_key_methods();
        akv_frontend::runtime::reset();
        errors::unregister();
        Ok(1)
    })
}

unsafe extern "C" fn engine_ctrl(
    _e: *mut ffi::ENGINE,
    cmd: c_int,
    _i: c_long,
    p: *mut c_void,
    _f: Option<unsafe extern "C" fn()>,
) -> c_int {
    guard(c"engine_ctrl", 0, || {
        if settings::is_internal(cmd) {
            return Ok(1);
        }
        let value =
            if p.is_null() {
                None
            } else {
                // SAFETY: string commands pass a C string.
                let bytes = unsafe { CStr::from_ptr(p as *const c_char) }.to_bytes();
                if bytes.len() > 4096 {
                    return Err(Failure::new(
                        Reason::Setting,
                        "setting value longer than 4096 bytes",
                    ));
                }
                Some(std::str::from_utf8(bytes).map_err(|_| {
                    Failure::new(Reason::Setting, "setting value is not valid UTF-8")
                })?)
            };
        settings::set(cmd, value)?;
        Ok(1)
    })
}

unsafe extern "C" fn load_privkey(
    e: *mut ffi::ENGINE,
    key_id: *const c_char,
    _ui: *mut ffi::UI_METHOD,
    _data: *mut c_void,
) -> *mut ffi::EVP_PKEY {
    guard(c"load_privkey", std::ptr::null_mut(), || {
        // SAFETY: key_id is NULL or a C string from OpenSSL.
        let text = unsafe { akv_frontend::remote::key_string(key_id) }?;
        keys::load(e, text)
    })
}

unsafe extern "C" fn load_pubkey(
    e: *mut ffi::ENGINE,
    key_id: *const c_char,
    ui: *mut ffi::UI_METHOD,
    data: *mut c_void,
) -> *mut ffi::EVP_PKEY {
    // The same key: its public half is real, and signing with it still works.
    unsafe { load_privkey(e, key_id, ui, data) }
}

unsafe extern "C" fn pkey_meths(
    _e: *mut ffi::ENGINE,
    pmeth: *mut *mut ffi::EVP_PKEY_METHOD,
    nids: *mut *const c_int,
    nid: c_int,
) -> c_int {
    guard(c"pkey_meths", 0, || {
        // SAFETY: out pointers from OpenSSL.
        unsafe {
            if pmeth.is_null() {
                if !nids.is_null() {
                    *nids = NIDS.as_ptr();
                }
                return Ok(NIDS.len() as c_int);
            }
            let m = match nid {
                ffi::EVP_PKEY_RSA => RSA_PMETH.load(Ordering::SeqCst),
                ffi::EVP_PKEY_EC => EC_PMETH.load(Ordering::SeqCst),
                _ => std::ptr::null_mut(),
            };
            *pmeth = m;
            Ok((!m.is_null()) as c_int)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_openssl_may_pass() {
        assert!(accepts_id(None));
        assert!(accepts_id(Some(b"e_akv")));
        assert!(accepts_id(Some(
            b"/usr/lib/x86_64-linux-gnu/engines-3/e_akv.so"
        )));
        assert!(accepts_id(Some(b"/work/target/debug/libe_akv.so")));
        assert!(!accepts_id(Some(b"pkcs11")));
        assert!(!accepts_id(Some(b"/usr/lib/engines-3/pkcs11.so")));
    }

    #[test]
    fn version_check() {
        // SAFETY: pure function.
        unsafe {
            assert_eq!(v_check(0x0003_0000), 0x0003_0000);
            assert_eq!(v_check(0x0002_0000), 0);
        }
    }
}
