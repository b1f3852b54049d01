//! Failures on OpenSSL's error queue under an `e_akv` library, and the guard every
//! `extern "C"` callback runs behind ([`akv_frontend::failure::guard`] raising here): no
//! panic ever crosses into C, and every failure leaves a readable reason that `openssl` and
//! nginx print.

use akv_frontend::remote::Via;
use std::ffi::{CStr, CString, c_int};
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

use akv_frontend::failure::{Failure, Reason};

use crate::ffi;

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

/// Puts a failure on OpenSSL's error queue.
fn raise(failure: &Failure, function: &'static CStr) {
    let message = CString::new(failure.message.replace('\0', " ")).unwrap_or_default();
    push(
        LIBRARY.load(Ordering::SeqCst),
        failure.reason as c_int,
        function,
        Some(&message),
    );
}

/// Puts an EVP error on the queue, as OpenSSL's own checks do (for the checks the engine
/// makes in OpenSSL's place; see `ec::autoarg`).
pub fn raise_evp(reason: c_int, function: &'static CStr) {
    push(ffi::ERR_LIB_EVP, reason, function, None);
}

fn push(lib: c_int, reason: c_int, function: &'static CStr, message: Option<&CStr>) {
    // SAFETY: ERR_set_error copies the formatted text; all pointers are valid C strings.
    unsafe {
        ffi::ERR_new();
        ffi::ERR_set_debug(c"akv-engine".as_ptr(), 0, function.as_ptr());
        match message {
            Some(text) => ffi::ERR_set_error(lib, reason, c"%s".as_ptr(), text.as_ptr()),
            None => ffi::ERR_set_error(lib, reason, std::ptr::null()),
        }
    }
}

/// Runs a callback body: a returned failure or a panic becomes an OpenSSL error and
/// `on_error` is returned instead.
pub fn guard<T>(
    function: &'static CStr,
    on_error: T,
    body: impl FnOnce() -> Result<T, Failure>,
) -> T {
    akv_frontend::failure::guard(function, on_error, raise, body)
}

/// Runs the body of a callback that calls the vault behind the same guard: in place, or as
/// a task of the async runtime inside an OpenSSL ASYNC job (see
/// [`akv_frontend::async_job::run_remote`]).
///
/// # Safety
/// As for `run_remote`: the body may run on another thread and must use only the
/// callback's arguments.
pub unsafe fn guard_remote<T, F>(
    function: &'static CStr,
    on_error: T,
    body: impl FnOnce(Via) -> F + 'static,
) -> T
where
    T: Copy + 'static,
    F: Future<Output = Result<T, Failure>> + 'static,
{
    // SAFETY: the caller's promise, passed on.
    unsafe { akv_frontend::async_job::run_remote(function, on_error, raise, body) }
}
