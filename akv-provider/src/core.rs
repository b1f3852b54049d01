//! What the provider keeps of OpenSSL's core: its handle and the upcalls for errors and for
//! the provider's openssl.cnf section. Failures reach the error queue through the core, so
//! they print under the provider's name in whichever libcrypto loaded us.

use std::ffi::{CStr, CString, c_int, c_void};
use std::sync::Mutex;

use akv_frontend::failure::Failure;

use crate::abi::{
    CoreBioGets, CoreBioReadEx, CoreBioWriteEx, CoreGetParams, CoreNewError, CoreSetErrorDebug,
    CoreVsetError, OSSL_DISPATCH, OSSL_FUNC_BIO_GETS, OSSL_FUNC_BIO_READ_EX,
    OSSL_FUNC_BIO_WRITE_EX, OSSL_FUNC_CORE_GET_PARAMS, OSSL_FUNC_CORE_NEW_ERROR,
    OSSL_FUNC_CORE_SET_ERROR_DEBUG, OSSL_FUNC_CORE_VSET_ERROR, OSSL_PARAM, OSSL_PARAM_UNMODIFIED,
    OSSL_PARAM_UTF8_PTR,
};
use crate::params;

/// The core's handle and the upcalls we use.
#[derive(Clone, Copy)]
pub struct Core {
    handle: *const c_void,
    get_params: Option<CoreGetParams>,
    new_error: Option<CoreNewError>,
    set_error_debug: Option<CoreSetErrorDebug>,
    vset_error: Option<CoreVsetError>,
    bio_read_ex: Option<CoreBioReadEx>,
    bio_gets: Option<CoreBioGets>,
    bio_write_ex: Option<CoreBioWriteEx>,
}

// SAFETY: the handle is an opaque token the core accepts from any thread.
unsafe impl Send for Core {}

/// The core of the most recent initialisation (one per library context that loads us; any
/// of them reaches the thread's error queue).
static CORE: Mutex<Option<Core>> = Mutex::new(None);

impl Core {
    /// Reads the upcalls from the dispatch table the core passed to `OSSL_provider_init`.
    ///
    /// # Safety
    /// `table` is the core's terminated dispatch table.
    pub unsafe fn from_dispatch(handle: *const c_void, mut table: *const OSSL_DISPATCH) -> Core {
        let mut core = Core {
            handle,
            get_params: None,
            new_error: None,
            set_error_debug: None,
            vset_error: None,
            bio_read_ex: None,
            bio_gets: None,
            bio_write_ex: None,
        };
        // SAFETY: the table ends with a zero id; each function has the type its id says.
        unsafe {
            while !table.is_null() && (*table).function_id != 0 {
                let f = (*table).function;
                match (*table).function_id {
                    OSSL_FUNC_CORE_GET_PARAMS => {
                        core.get_params = f.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_NEW_ERROR => core.new_error = f.map(|f| std::mem::transmute(f)),
                    OSSL_FUNC_CORE_SET_ERROR_DEBUG => {
                        core.set_error_debug = f.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_CORE_VSET_ERROR => {
                        core.vset_error = f.map(|f| std::mem::transmute(f))
                    }
                    OSSL_FUNC_BIO_READ_EX => core.bio_read_ex = f.map(|f| std::mem::transmute(f)),
                    OSSL_FUNC_BIO_GETS => core.bio_gets = f.map(|f| std::mem::transmute(f)),
                    OSSL_FUNC_BIO_WRITE_EX => core.bio_write_ex = f.map(|f| std::mem::transmute(f)),
                    _ => {}
                }
                table = table.add(1);
            }
        }
        core
    }

    /// Makes this the core errors go to.
    pub fn install(self) {
        *CORE.lock().unwrap_or_else(|p| p.into_inner()) = Some(self);
    }

    /// The value of `name` in the provider's openssl.cnf section, if set.
    pub fn config(&self, name: &CStr) -> Option<String> {
        let get = self.get_params?;
        let mut value: *const std::ffi::c_char = std::ptr::null();
        let mut request = [
            OSSL_PARAM {
                key: name.as_ptr(),
                data_type: OSSL_PARAM_UTF8_PTR,
                data: (&mut value as *mut *const std::ffi::c_char).cast(),
                data_size: 0,
                return_size: OSSL_PARAM_UNMODIFIED,
            },
            params::END,
        ];
        // SAFETY: a terminated request whose one entry points at `value`.
        if unsafe { get(self.handle, request.as_mut_ptr()) } != 1 || value.is_null() {
            return None;
        }
        // SAFETY: the core returned a pointer to a NUL-terminated string it owns.
        let text = unsafe { CStr::from_ptr(value) }
            .to_string_lossy()
            .into_owned();
        Some(text)
    }
}

fn installed() -> Option<Core> {
    *CORE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads a core BIO to its end, at most `max` bytes; `None` when it holds more.
///
/// # Safety
/// `bio` is an `OSSL_CORE_BIO` the core passed for this call.
pub unsafe fn read_bio(bio: *mut c_void, max: usize) -> Result<Option<Vec<u8>>, Failure> {
    let read = installed().and_then(|c| c.bio_read_ex).ok_or_else(|| {
        Failure::new(
            akv_frontend::failure::Reason::Internal,
            "the core gave no BIO reader",
        )
    })?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut got = 0usize;
        // SAFETY: the core's reader with a valid buffer and out pointer.
        let ok = unsafe { read(bio, chunk.as_mut_ptr().cast(), chunk.len(), &mut got) };
        if ok != 1 || got == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&chunk[..got]);
        if out.len() > max {
            return Ok(None);
        }
    }
}

/// Reads the next line of a core BIO (with its newline, if it has one), at most `max` bytes
/// of it; `None` at the end. Reading a line at a time leaves the rest of a file (the next
/// PEM block of a bundle) to whoever reads next.
///
/// # Safety
/// `bio` is an `OSSL_CORE_BIO` the core passed for this call.
pub unsafe fn read_line(bio: *mut c_void, max: usize) -> Result<Option<Vec<u8>>, Failure> {
    let gets = installed().and_then(|c| c.bio_gets).ok_or_else(|| {
        Failure::new(
            akv_frontend::failure::Reason::Internal,
            "the core gave no BIO line reader",
        )
    })?;
    let mut line = Vec::new();
    let mut chunk = [0u8; 256];
    while line.len() <= max && line.last() != Some(&b'\n') {
        // SAFETY: the core's reader with a valid buffer of that size; it NUL-terminates.
        let got = unsafe { gets(bio, chunk.as_mut_ptr().cast(), chunk.len() as c_int) };
        let Ok(got @ 1..) = usize::try_from(got) else {
            break;
        };
        line.extend_from_slice(&chunk[..got.min(chunk.len() - 1)]);
    }
    Ok((!line.is_empty()).then_some(line))
}

/// Writes all of `bytes` to a core BIO.
///
/// # Safety
/// `bio` is an `OSSL_CORE_BIO` the core passed for this call.
pub unsafe fn write_bio(bio: *mut c_void, bytes: &[u8]) -> Result<(), Failure> {
    let fail = |why: &str| Failure::new(akv_frontend::failure::Reason::Internal, why.to_string());
    let write = installed()
        .and_then(|c| c.bio_write_ex)
        .ok_or_else(|| fail("the core gave no BIO writer"))?;
    let mut done = 0;
    while done < bytes.len() {
        let mut wrote = 0usize;
        // SAFETY: the core's writer with a valid buffer and out pointer.
        let ok = unsafe {
            write(
                bio,
                bytes[done..].as_ptr().cast(),
                bytes.len() - done,
                &mut wrote,
            )
        };
        if ok != 1 || wrote == 0 {
            return Err(fail("cannot write the key reference"));
        }
        done += wrote;
    }
    Ok(())
}

/// Puts a failure on the calling thread's error queue through the core.
pub fn raise(failure: &Failure, function: &'static CStr) {
    let Some(core) = *CORE.lock().unwrap_or_else(|p| p.into_inner()) else {
        return;
    };
    let (Some(new_error), Some(vset_error)) = (core.new_error, core.vset_error) else {
        return;
    };
    // The message is the format: no conversions, so the argument list is never read.
    let format =
        CString::new(failure.message.replace('\0', " ").replace('%', "%%")).unwrap_or_default();
    let mut no_arguments = [0u64; 4];
    // SAFETY: upcalls from the core's own table, with valid strings.
    unsafe {
        new_error(core.handle);
        if let Some(debug) = core.set_error_debug {
            debug(core.handle, c"akv-provider".as_ptr(), 0, function.as_ptr());
        }
        vset_error(
            core.handle,
            failure.reason as c_int as u32,
            format.as_ptr(),
            no_arguments.as_mut_ptr().cast(),
        );
    }
}

/// Runs a callback body behind the shared guard, raising failures here.
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
    body: impl FnOnce(akv_frontend::remote::Via) -> F + 'static,
) -> T
where
    T: Copy + 'static,
    F: std::future::Future<Output = Result<T, Failure>> + 'static,
{
    // SAFETY: the caller's promise, passed on.
    unsafe { akv_frontend::async_job::run_remote(function, on_error, raise, body) }
}
