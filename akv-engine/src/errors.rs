//! Failures reported on OpenSSL's error queue under an `e_akv` library, and the guard every
//! `extern "C"` callback runs behind: no panic ever crosses into C, and every failure leaves
//! a readable reason that `openssl` and nginx print.

use std::ffi::{CString, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::ffi;
use crate::log;

/// Why an engine call failed. The numbers are the OpenSSL reason codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Reason {
    /// The key string is not a valid key identifier.
    InvalidKeyId = 100,
    /// The key could not be fetched from the vault.
    KeyFetch = 101,
    /// The vault key cannot be used (type, curve, disabled, expired).
    UnusableKey = 102,
    /// Remote signing failed.
    Sign = 103,
    /// Remote decryption failed.
    Decrypt = 104,
    /// The requested padding/digest cannot be done by Key Vault.
    NotPossibleRemotely = 105,
    /// An engine setting is invalid.
    Setting = 106,
    /// The engine's configuration (TLS, credential) cannot be built.
    Configuration = 107,
    /// A bug: a panic was caught.
    Internal = 108,
    /// The output buffer OpenSSL gave is too small.
    BufferTooSmall = 109,
}

impl Reason {
    fn text(self) -> &'static std::ffi::CStr {
        match self {
            Reason::InvalidKeyId => c"invalid Key Vault key identifier",
            Reason::KeyFetch => c"cannot fetch the key from Key Vault",
            Reason::UnusableKey => c"the Key Vault key cannot be used",
            Reason::Sign => c"Key Vault signing failed",
            Reason::Decrypt => c"Key Vault decryption failed",
            Reason::NotPossibleRemotely => c"operation not possible with a Key Vault key",
            Reason::Setting => c"invalid e_akv setting",
            Reason::Configuration => c"e_akv configuration failed",
            Reason::Internal => c"internal error in e_akv",
            Reason::BufferTooSmall => c"output buffer too small",
        }
    }

    const ALL: [Reason; 10] = [
        Reason::InvalidKeyId,
        Reason::KeyFetch,
        Reason::UnusableKey,
        Reason::Sign,
        Reason::Decrypt,
        Reason::NotPossibleRemotely,
        Reason::Setting,
        Reason::Configuration,
        Reason::Internal,
        Reason::BufferTooSmall,
    ];
}

/// An engine failure: a reason code and the details (never a secret).
#[derive(Debug, Clone)]
pub struct EngineError {
    /// The reason code.
    pub reason: Reason,
    /// What went wrong, for the error queue and the log.
    pub message: String,
}

impl EngineError {
    /// Builds an error.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        EngineError {
            reason,
            message: message.into(),
        }
    }
}

static LIBRARY: AtomicI32 = AtomicI32::new(0);

/// The string table registered with OpenSSL. It must live until it is unloaded.
struct Strings(Vec<ffi::ERR_STRING_DATA>);
// SAFETY: the table holds pointers to 'static C strings only.
unsafe impl Send for Strings {}
static STRINGS: Mutex<Option<Strings>> = Mutex::new(None);

/// Registers the `e_akv` library and its reason strings (once per process).
pub fn register() {
    let mut guard = STRINGS.lock().unwrap_or_else(|p| p.into_inner());
    if guard.is_some() {
        return;
    }
    let mut lib = LIBRARY.load(Ordering::SeqCst);
    if lib == 0 {
        // SAFETY: plain call into libcrypto.
        lib = unsafe { ffi::ERR_get_next_error_library() };
        LIBRARY.store(lib, Ordering::SeqCst);
    }
    let mut table = vec![ffi::ERR_STRING_DATA {
        error: ffi::err_pack(lib, 0),
        string: c"e_akv".as_ptr(),
    }];
    for r in Reason::ALL {
        table.push(ffi::ERR_STRING_DATA {
            error: ffi::err_pack(lib, r as c_int),
            string: r.text().as_ptr(),
        });
    }
    table.push(ffi::ERR_STRING_DATA {
        error: 0,
        string: std::ptr::null(),
    });
    // SAFETY: the table is terminated and kept alive in STRINGS until `unregister`.
    unsafe { ffi::ERR_load_strings(lib, table.as_mut_ptr()) };
    *guard = Some(Strings(table));
}

/// Removes our strings from OpenSSL: they live in this library's memory, which may be
/// unmapped after the engine is unloaded.
pub fn unregister() {
    let mut guard = STRINGS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(mut table) = guard.take() {
        // SAFETY: the same table that was loaded.
        unsafe { ffi::ERR_unload_strings(LIBRARY.load(Ordering::SeqCst), table.0.as_mut_ptr()) };
    }
}

/// Puts an error on OpenSSL's error queue (and in the log).
pub fn raise(error: &EngineError, function: &'static std::ffi::CStr) {
    log::error(format_args!(
        "{}: {}",
        error.reason.text().to_string_lossy(),
        error.message
    ));
    let lib = LIBRARY.load(Ordering::SeqCst);
    let message = CString::new(error.message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: ERR_set_error copies the formatted text; all pointers are valid C strings.
    unsafe {
        ffi::ERR_new();
        ffi::ERR_set_debug(c"akv-engine".as_ptr(), 0, function.as_ptr());
        ffi::ERR_set_error(lib, error.reason as c_int, c"%s".as_ptr(), message.as_ptr());
    }
}

/// Runs a callback body: a returned error or a panic becomes an OpenSSL error and
/// `on_error` is returned instead.
pub fn guard<T>(
    function: &'static std::ffi::CStr,
    on_error: T,
    body: impl FnOnce() -> Result<T, EngineError>,
) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            raise(&error, function);
            on_error
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            raise(
                &EngineError::new(
                    Reason::Internal,
                    format!("caught a panic in {}: {what}", function.to_string_lossy()),
                ),
                function,
            );
            on_error
        }
    }
}
