//! `akv`: an OpenSSL provider whose RSA and EC private keys live in Azure Key Vault or Azure
//! Managed HSM, for OpenSSL 3.0 through 4.x (which has no engines). A STORE loader turns
//! `vault:NAME:KEY` URIs into keys, a KEYMGMT holds them (public half local, private half in
//! the vault), and SIGNATURE turns signing into Key Vault calls through `akv-frontend`, the
//! core the engine shares.
//!
//! It calls nothing in libcrypto, only the core's upcalls, so one built module runs in
//! processes linked to `libcrypto.so.3` or `libcrypto.so.4`. It must never let a panic cross
//! into C (every function runs behind [`core::guard`]), never start threads or open sockets
//! while loading (servers fork after loading keys), never reuse a parent's connections after
//! a fork, and never put a token into a log line or an error.

pub mod abi;
mod asym_cipher;
mod core;
mod der;
mod keyfile;
mod keys;
pub mod params;
mod signature;
mod store;

use std::ffi::{CStr, c_char, c_int, c_void};

use akv_frontend::failure::{Failure, Reason};
use akv_frontend::settings::SETTINGS;

use abi::{
    DISPATCH_END, OSSL_ALGORITHM, OSSL_DISPATCH, OSSL_FUNC_PROVIDER_GET_PARAMS,
    OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
    OSSL_FUNC_PROVIDER_QUERY_OPERATION, OSSL_FUNC_PROVIDER_TEARDOWN, OSSL_ITEM,
    OSSL_OP_ASYM_CIPHER, OSSL_OP_DECODER, OSSL_OP_ENCODER, OSSL_OP_KEYMGMT, OSSL_OP_SIGNATURE,
    OSSL_OP_STORE, OSSL_PARAM, OSSL_PARAM_INTEGER, OSSL_PARAM_UTF8_PTR, entry, names,
};
use params::{END, template};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// What properties our algorithms carry: `?provider=akv` picks them.
const PROPERTIES: &CStr = c"provider=akv";

const fn algorithm(
    names: &'static CStr,
    implementation: &'static [OSSL_DISPATCH],
    description: &'static CStr,
) -> OSSL_ALGORITHM {
    algorithm_with(names, PROPERTIES, implementation, description)
}

const fn algorithm_with(
    names: &'static CStr,
    properties: &'static CStr,
    implementation: &'static [OSSL_DISPATCH],
    description: &'static CStr,
) -> OSSL_ALGORITHM {
    OSSL_ALGORITHM {
        algorithm_names: names.as_ptr(),
        property_definition: properties.as_ptr(),
        implementation: implementation.as_ptr(),
        algorithm_description: description.as_ptr(),
    }
}

const ALGORITHM_END: OSSL_ALGORITHM = OSSL_ALGORITHM {
    algorithm_names: std::ptr::null(),
    property_definition: std::ptr::null(),
    implementation: std::ptr::null(),
    algorithm_description: std::ptr::null(),
};

// The same names as the default provider's, so OpenSSL finds our implementation for our keys.
static KEYMGMT: [OSSL_ALGORITHM; 3] = [
    algorithm(
        c"RSA:rsaEncryption:1.2.840.113549.1.1.1",
        &keys::RSA_KEYMGMT,
        c"RSA keys in Azure Key Vault",
    ),
    algorithm(
        c"EC:id-ecPublicKey:1.2.840.10045.2.1",
        &keys::EC_KEYMGMT,
        c"EC keys in Azure Key Vault",
    ),
    ALGORITHM_END,
];
static SIGNATURES: [OSSL_ALGORITHM; 3] = [
    algorithm(
        c"RSA:rsaEncryption:1.2.840.113549.1.1.1",
        &signature::RSA_SIGNATURE,
        c"RSA signatures by Azure Key Vault",
    ),
    algorithm(
        c"ECDSA",
        &signature::ECDSA_SIGNATURE,
        c"ECDSA signatures by Azure Key Vault",
    ),
    ALGORITHM_END,
];
const RSA_NAMES: &CStr = c"RSA:rsaEncryption:1.2.840.113549.1.1.1";
const EC_NAMES: &CStr = c"EC:id-ecPublicKey:1.2.840.10045.2.1";
/// Our private keys written as reference files.
const ENCODER_PROPERTIES: &CStr = c"provider=akv,output=pem,structure=PrivateKeyInfo";
/// Reference files are read in two stages, as OpenSSL reads its own PEM keys (see keyfile).
static DECODERS: [OSSL_ALGORITHM; 4] = [
    algorithm_with(
        c"DER",
        keyfile::PEM_DECODER_PROPERTIES,
        &keyfile::PEM_DECODER,
        c"Azure Key Vault key reference files (PEM to DER)",
    ),
    algorithm_with(
        RSA_NAMES,
        keyfile::DER_DECODER_PROPERTIES,
        &keyfile::DER_DECODER,
        c"Azure Key Vault key references (RSA keys)",
    ),
    algorithm_with(
        EC_NAMES,
        keyfile::DER_DECODER_PROPERTIES,
        &keyfile::DER_DECODER,
        c"Azure Key Vault key references (EC keys)",
    ),
    ALGORITHM_END,
];
static ENCODERS: [OSSL_ALGORITHM; 3] = [
    algorithm_with(
        RSA_NAMES,
        ENCODER_PROPERTIES,
        &keyfile::ENCODER,
        c"RSA vault keys as key reference files",
    ),
    algorithm_with(
        EC_NAMES,
        ENCODER_PROPERTIES,
        &keyfile::ENCODER,
        c"EC vault keys as key reference files",
    ),
    ALGORITHM_END,
];

// One entry per scheme: OpenSSL 3.0 takes a STORE's algorithm name as one scheme, unsplit.
// Schemes match in any case (`managedhsm:` too).
static ASYM_CIPHERS: [OSSL_ALGORITHM; 2] = [
    algorithm(
        c"RSA:rsaEncryption:1.2.840.113549.1.1.1",
        &asym_cipher::RSA_ASYM_CIPHER,
        c"RSA decryption by Azure Key Vault",
    ),
    ALGORITHM_END,
];
static STORES: [OSSL_ALGORITHM; 4] = [
    algorithm(
        c"vault",
        &store::STORE,
        c"Azure Key Vault keys: vault:NAME:KEY[:VERSION]",
    ),
    algorithm(
        c"managedHsm",
        &store::STORE,
        c"Managed HSM keys: managedHsm:NAME:KEY[:VERSION]",
    ),
    algorithm(
        c"akv",
        &store::STORE,
        c"akv:vault:..., akv:managedHsm:..., akv:https://.../keys/...",
    ),
    ALGORITHM_END,
];

unsafe extern "C" fn query_operation(
    _provctx: *mut c_void,
    operation: c_int,
    no_cache: *mut c_int,
) -> *const OSSL_ALGORITHM {
    if !no_cache.is_null() {
        // SAFETY: OpenSSL passes a writable int.
        unsafe { *no_cache = 0 };
    }
    match operation {
        OSSL_OP_KEYMGMT => KEYMGMT.as_ptr(),
        OSSL_OP_SIGNATURE => SIGNATURES.as_ptr(),
        OSSL_OP_ASYM_CIPHER => ASYM_CIPHERS.as_ptr(),
        OSSL_OP_STORE => STORES.as_ptr(),
        OSSL_OP_DECODER => DECODERS.as_ptr(),
        OSSL_OP_ENCODER => ENCODERS.as_ptr(),
        _ => std::ptr::null(),
    }
}

static GETTABLE: [OSSL_PARAM; 5] = [
    template(names::PROV_NAME, OSSL_PARAM_UTF8_PTR),
    template(names::PROV_VERSION, OSSL_PARAM_UTF8_PTR),
    template(names::PROV_BUILDINFO, OSSL_PARAM_UTF8_PTR),
    template(names::PROV_STATUS, OSSL_PARAM_INTEGER),
    END,
];

unsafe extern "C" fn gettable_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    GETTABLE.as_ptr()
}

/// The provider's name, as `openssl list -providers` shows it.
static NAME_C: &CStr = c"Azure Key Vault and Managed HSM keys (akv)";
/// The version, NUL-terminated for UTF8_PTR answers.
static VERSION_C: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

unsafe extern "C" fn get_params(_provctx: *mut c_void, params: *mut OSSL_PARAM) -> c_int {
    core::guard(c"provider_get_params", 0, || {
        let version = VERSION_C.get_or_init(|| std::ffi::CString::new(VERSION).unwrap_or_default());
        for p in unsafe { params::entries(params) } {
            let name = params::name(p);
            if name == names::PROV_NAME {
                set_ptr(p, NAME_C)?;
            } else if name == names::PROV_VERSION || name == names::PROV_BUILDINFO {
                set_ptr(p, version)?;
            } else if name == names::PROV_STATUS {
                params::set_int(p, 1)
                    .map_err(|e| Failure::new(Reason::Internal, format!("status: {e:?}")))?;
            }
        }
        Ok(1)
    })
}

/// Answers a UTF8_PTR parameter with a 'static string.
fn set_ptr(p: &mut OSSL_PARAM, value: &'static CStr) -> Result<(), Failure> {
    if p.data_type != OSSL_PARAM_UTF8_PTR || p.data.is_null() {
        return Err(Failure::new(
            Reason::Internal,
            "provider parameter of an unexpected type",
        ));
    }
    // SAFETY: data points at a `const char *` to fill.
    unsafe { *(p.data as *mut *const c_char) = value.as_ptr() };
    p.return_size = value.to_bytes().len();
    Ok(())
}

/// Our reason codes and texts, for the core's error messages.
struct Reasons([OSSL_ITEM; Reason::ALL.len() + 1]);
// SAFETY: pointers to 'static C strings only.
unsafe impl Sync for Reasons {}
static REASONS: Reasons = Reasons(reason_table());

const fn reason_table() -> [OSSL_ITEM; Reason::ALL.len() + 1] {
    let mut table = [const {
        OSSL_ITEM {
            id: 0,
            ptr: std::ptr::null_mut(),
        }
    }; Reason::ALL.len() + 1];
    let mut i = 0;
    while i < Reason::ALL.len() {
        table[i] = OSSL_ITEM {
            id: Reason::ALL[i] as u32,
            ptr: Reason::ALL[i].text().as_ptr() as *mut c_void,
        };
        i += 1;
    }
    table
}

unsafe extern "C" fn get_reason_strings(_provctx: *mut c_void) -> *const OSSL_ITEM {
    REASONS.0.as_ptr()
}

unsafe extern "C" fn teardown(_provctx: *mut c_void) {
    // Connections and tokens are the process's, shared by every library context that loaded
    // us; after the last teardown they are dropped (and rebuilt if the provider is loaded
    // again). Nothing here depends on OPENSSL_cleanup running.
    let remaining = LOADED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) - 1;
    if remaining == 0 {
        akv_frontend::runtime::reset();
    }
}

static LOADED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

static PROVIDER: [OSSL_DISPATCH; 6] = [
    entry!(
        OSSL_FUNC_PROVIDER_TEARDOWN,
        teardown,
        unsafe extern "C" fn(*mut c_void)
    ),
    entry!(
        OSSL_FUNC_PROVIDER_GETTABLE_PARAMS,
        gettable_params,
        unsafe extern "C" fn(*mut c_void) -> *const OSSL_PARAM
    ),
    entry!(
        OSSL_FUNC_PROVIDER_GET_PARAMS,
        get_params,
        unsafe extern "C" fn(*mut c_void, *mut OSSL_PARAM) -> c_int
    ),
    entry!(
        OSSL_FUNC_PROVIDER_QUERY_OPERATION,
        query_operation,
        unsafe extern "C" fn(*mut c_void, c_int, *mut c_int) -> *const OSSL_ALGORITHM
    ),
    entry!(
        OSSL_FUNC_PROVIDER_GET_REASON_STRINGS,
        get_reason_strings,
        unsafe extern "C" fn(*mut c_void) -> *const OSSL_ITEM
    ),
    DISPATCH_END,
];

/// Reads the settings from the provider's openssl.cnf section (same names as the engine's
/// control commands); the `AKV_*` environment variables fill in the rest. A bad value does
/// not stop the provider from loading, where OpenSSL would only say later that no loader
/// knows `vault:`: it is kept and reported by every key load instead.
fn apply_config(core: &core::Core) {
    let mut problems = Vec::new();
    for (index, setting) in SETTINGS.iter().enumerate() {
        if let Some(value) = core.config(setting.name) {
            if let Err(e) = akv_frontend::settings::set(index, Some(&value)) {
                problems.push(e.message);
            }
        }
    }
    *CONFIG_PROBLEM.lock().unwrap_or_else(|p| p.into_inner()) = (!problems.is_empty()).then(|| {
        Failure::new(
            Reason::Setting,
            format!("in openssl.cnf: {}", problems.join("; ")),
        )
    });
}

/// A bad openssl.cnf setting, reported when a key is loaded.
static CONFIG_PROBLEM: std::sync::Mutex<Option<Failure>> = std::sync::Mutex::new(None);

/// Fails with the openssl.cnf problem, if there is one.
pub(crate) fn check_config() -> Result<(), Failure> {
    match CONFIG_PROBLEM
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        Some(problem) => Err(problem.clone()),
        None => Ok(()),
    }
}

/// The provider's entry point.
///
/// # Safety
/// Called by OpenSSL's core with its handle and dispatch table.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OSSL_provider_init(
    handle: *const c_void,
    core_table: *const OSSL_DISPATCH,
    out: *mut *const OSSL_DISPATCH,
    provctx: *mut *mut c_void,
) -> c_int {
    akv_frontend::log::set_tag("akv");
    // SAFETY: the core's own table.
    let core = unsafe { core::Core::from_dispatch(handle, core_table) };
    core.install();
    core::guard(c"OSSL_provider_init", 0, || {
        if out.is_null() || provctx.is_null() {
            return Err(Failure::new(
                Reason::Internal,
                "OSSL_provider_init without output pointers",
            ));
        }
        apply_config(&core);
        LOADED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // SAFETY: both are writable, per the contract.
        unsafe {
            *out = PROVIDER.as_ptr();
            // No per-instance state: everything is the process's (akv-frontend).
            *provctx = handle as *mut c_void;
        }
        Ok(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_terminated() {
        for table in [
            &KEYMGMT[..],
            &SIGNATURES[..],
            &ASYM_CIPHERS[..],
            &STORES[..],
        ] {
            assert!(table.last().unwrap().algorithm_names.is_null());
        }
        for table in [
            &PROVIDER[..],
            &keys::RSA_KEYMGMT[..],
            &keys::EC_KEYMGMT[..],
            &signature::RSA_SIGNATURE[..],
            &signature::ECDSA_SIGNATURE[..],
            &asym_cipher::RSA_ASYM_CIPHER[..],
            &keyfile::PEM_DECODER[..],
            &keyfile::DER_DECODER[..],
            &keyfile::ENCODER[..],
            &store::STORE[..],
        ] {
            assert_eq!(table.last().unwrap().function_id, 0);
            assert!(
                table[..table.len() - 1]
                    .iter()
                    .all(|e| e.function.is_some())
            );
        }
        assert_eq!(REASONS.0.len(), Reason::ALL.len() + 1);
    }
}
