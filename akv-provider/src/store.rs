//! The STORE loader: `vault:NAME:KEY`, `managedHsm:NAME:KEY`, `akv:...` and Microsoft's
//! `managedhsm:` spellings, as URIs `OSSL_STORE_open` (so `-key`, `-inkey`, `storeutl` and
//! nginx's `store:`) accepts. The key is fetched once and its version pinned; OpenSSL gets it
//! by reference, so the KEYMGMT of this provider loads it without a second fetch.

use std::ffi::{c_char, c_int, c_void};
use std::sync::Arc;

use akv_frontend::failure::{Failure, Reason};

use crate::abi::{
    DISPATCH_END, OSSL_DISPATCH, OSSL_FUNC_STORE_CLOSE, OSSL_FUNC_STORE_EOF, OSSL_FUNC_STORE_LOAD,
    OSSL_FUNC_STORE_OPEN, OSSL_FUNC_STORE_SET_CTX_PARAMS, OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS,
    OSSL_PARAM, OSSL_PARAM_INTEGER, OSSL_STORE_INFO_PKEY, OSSL_STORE_INFO_PUBKEY, ObjectCallback,
    PassphraseCallback, entry, names,
};
use crate::core::guard;
use crate::keys;
use crate::params::{self, END, template};

/// One open URI.
struct StoreCtx {
    /// The key string the URI names.
    key_string: String,
    /// What the caller expects (0: anything).
    expect: c_int,
    /// Whether the one object was given (or cannot be).
    done: bool,
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
            done: false,
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
        if ctx.done {
            return Ok(0);
        }
        ctx.done = true;
        if ctx.expect != 0
            && ctx.expect != OSSL_STORE_INFO_PKEY
            && ctx.expect != OSSL_STORE_INFO_PUBKEY
        {
            // A certificate or CRL was asked for: this store holds keys only.
            return Ok(0);
        }
        let Some(object_cb) = object_cb else {
            return Ok(0);
        };
        let key = Arc::new(akv_frontend::remote::load_key(&ctx.key_string)?);
        let (object, reference) = keys::lend_as_object(key);
        ctx.lent.push(reference);
        // SAFETY: a terminated array alive during the call.
        Ok(unsafe { object_cb(object.as_ptr(), object_arg) })
    })
}

unsafe extern "C" fn eof(ctx: *mut c_void) -> c_int {
    // SAFETY: ctx from `open`.
    match unsafe { (ctx as *const StoreCtx).as_ref() } {
        Some(ctx) => c_int::from(ctx.done),
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
