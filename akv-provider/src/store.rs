//! The STORE loader: `vault:NAME:KEY`, `managedHsm:NAME:KEY`, `akv:...` and Microsoft's
//! `managedhsm:` spellings, as URIs `OSSL_STORE_open` (so `-key`, `-inkey`, `storeutl` and
//! nginx's `store:`) accepts. The key is fetched once and its version pinned; OpenSSL gets it
//! by reference, so the KEYMGMT of this provider loads it without a second fetch. A name
//! also gives the certificate the vault holds under it (`-cert vault:...`, `storeutl
//! -certs`): asked for alone, or after the key when the caller takes anything.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use akv_frontend::failure::{Failure, Reason};

use crate::abi::{
    DISPATCH_END, OSSL_DISPATCH, OSSL_FUNC_STORE_CLOSE, OSSL_FUNC_STORE_EOF, OSSL_FUNC_STORE_LOAD,
    OSSL_FUNC_STORE_OPEN, OSSL_FUNC_STORE_SET_CTX_PARAMS, OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
    OSSL_OBJECT_CERT, OSSL_PARAM, OSSL_PARAM_INTEGER, OSSL_STORE_INFO_CERT, OSSL_STORE_INFO_PKEY,
    OSSL_STORE_INFO_PUBKEY, ObjectCallback, PassphraseCallback, entry, names,
};
use crate::core::guard;
use crate::keys;
use crate::params::{self, END, template};

/// What a store gives next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Key,
    Certificate,
    Nothing,
}

/// One open URI.
struct StoreCtx {
    /// The key string the URI names.
    key_string: String,
    /// What the caller expects (0: anything).
    expect: c_int,
    /// What the next load gives (decided by `expect` at the first load).
    next: Next,
    /// Whether a load happened (after which `expect` no longer changes the plan).
    started: bool,
    /// References lent to OpenSSL for this store (each keeps its key alive), ended at close.
    lent: Vec<u64>,
}

unsafe extern "C" fn open(_provctx: *mut c_void, uri: *const c_char) -> *mut c_void {
    guard(c"store_open", std::ptr::null_mut(), || {
        crate::check_config()?;
        // SAFETY: OpenSSL passes a NUL-terminated URI.
        let text = unsafe { akv_frontend::remote::key_string(uri) }?;
        let key_string = akv_frontend::uri::key_string_of(text)?;
        Ok(Box::into_raw(Box::new(StoreCtx {
            key_string,
            expect: 0,
            next: Next::Key,
            started: false,
            lent: Vec::new(),
        })) as *mut c_void)
    })
}

static SETTABLE: [OSSL_PARAM; 2] = [template(names::STORE_EXPECT, OSSL_PARAM_INTEGER), END];

unsafe extern "C" fn settable_ctx_params(_provctx: *mut c_void) -> *const OSSL_PARAM {
    SETTABLE.as_ptr()
}

unsafe extern "C" fn set_ctx_params(ctx: *mut c_void, params: *const OSSL_PARAM) -> c_int {
    guard(c"store_set_ctx_params", 0, || {
        // SAFETY: ctx from `open`; params terminated.
        let Some(ctx) = (unsafe { (ctx as *mut StoreCtx).as_mut() }) else {
            return Ok(0);
        };
        let all = unsafe { params::entries(params as *mut OSSL_PARAM) };
        if let Some(p) = params::locate(all, names::STORE_EXPECT) {
            ctx.expect = params::get_int(p).map_err(|e| {
                Failure::new(Reason::Internal, format!("store expect parameter: {e:?}"))
            })? as c_int;
        }
        Ok(1)
    })
}

unsafe extern "C" fn load(
    ctx: *mut c_void,
    object_cb: Option<ObjectCallback>,
    object_arg: *mut c_void,
    _pw_cb: Option<PassphraseCallback>,
    _pw_arg: *mut c_void,
) -> c_int {
    guard(c"store_load", 0, || {
        // SAFETY: ctx from `open`.
        let Some(ctx) = (unsafe { (ctx as *mut StoreCtx).as_mut() }) else {
            return Ok(0);
        };
        if !ctx.started {
            ctx.started = true;
            ctx.next = match ctx.expect {
                0 | OSSL_STORE_INFO_PKEY | OSSL_STORE_INFO_PUBKEY => Next::Key,
                OSSL_STORE_INFO_CERT => Next::Certificate,
                // Parameters or CRLs: a vault holds none.
                _ => Next::Nothing,
            };
        }
        let Some(object_cb) = object_cb else {
            ctx.next = Next::Nothing;
            return Ok(0);
        };
        match ctx.next {
            Next::Nothing => Ok(0),
            Next::Key => {
                // With nothing expected, the certificate (if any) follows the key; a caller
                // that has what it wants stops before it is fetched.
                ctx.next = if ctx.expect == 0 {
                    Next::Certificate
                } else {
                    Next::Nothing
                };
                let key = Arc::new(akv_frontend::remote::load_key(&ctx.key_string)?);
                let (object, reference) = keys::lend_as_object(key);
                ctx.lent.push(reference);
                // SAFETY: a terminated array alive during the call.
                Ok(unsafe { object_cb(object.as_ptr(), object_arg) })
            }
            Next::Certificate => {
                ctx.next = Next::Nothing;
                let certificate = match akv_frontend::remote::load_certificate(&ctx.key_string) {
                    Ok(Some(der)) => der,
                    // Asked for by name: its absence is the answer.
                    Ok(None) if ctx.expect == OSSL_STORE_INFO_CERT => {
                        return Err(Failure::new(
                            Reason::Certificate,
                            format!(
                                "{}: the vault holds no certificate of this name",
                                ctx.key_string
                            ),
                        ));
                    }
                    Err(e) if ctx.expect == OSSL_STORE_INFO_CERT => return Err(e),
                    // After the key, a missing or unreadable certificate ends the listing:
                    // many keys have none, and reading certificates is a permission of its own.
                    Ok(None) => return Ok(0),
                    Err(e) => {
                        akv_frontend::log::info(format_args!("{}", e.message));
                        return Ok(0);
                    }
                };
                let object = params::Builder::default()
                    .int(names::OBJECT_TYPE, OSSL_OBJECT_CERT)
                    .octets(names::OBJECT_DATA, &certificate)
                    .build();
                // SAFETY: a terminated array alive during the call.
                Ok(unsafe { object_cb(object.as_ptr(), object_arg) })
            }
        }
    })
}

unsafe extern "C" fn eof(ctx: *mut c_void) -> c_int {
    // SAFETY: ctx from `open`.
    match unsafe { (ctx as *const StoreCtx).as_ref() } {
        Some(ctx) => c_int::from(ctx.started && ctx.next == Next::Nothing),
        None => 1,
    }
}

unsafe extern "C" fn close(ctx: *mut c_void) -> c_int {
    if ctx.is_null() {
        return 1;
    }
    // SAFETY: made by `open`, closed once.
    let ctx = unsafe { Box::from_raw(ctx as *mut StoreCtx) };
    for reference in &ctx.lent {
        keys::take_back(*reference);
    }
    1
}

/// The STORE dispatch table.
pub static STORE: [OSSL_DISPATCH; 7] = [
    entry!(
        OSSL_FUNC_STORE_OPEN,
        open,
        unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_void
    ),
    entry!(
        OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
        settable_ctx_params,
        unsafe extern "C" fn(*mut c_void) -> *const OSSL_PARAM
    ),
    entry!(
        OSSL_FUNC_STORE_SET_CTX_PARAMS,
        set_ctx_params,
        unsafe extern "C" fn(*mut c_void, *const OSSL_PARAM) -> c_int
    ),
    entry!(
        OSSL_FUNC_STORE_LOAD,
        load,
        unsafe extern "C" fn(
            *mut c_void,
            Option<ObjectCallback>,
            *mut c_void,
            Option<PassphraseCallback>,
            *mut c_void,
        ) -> c_int
    ),
    entry!(
        OSSL_FUNC_STORE_EOF,
        eof,
        unsafe extern "C" fn(*mut c_void) -> c_int
    ),
    entry!(
        OSSL_FUNC_STORE_CLOSE,
        close,
        unsafe extern "C" fn(*mut c_void) -> c_int
    ),
    DISPATCH_END,
];
