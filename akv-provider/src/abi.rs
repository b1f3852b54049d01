//! The provider ABI as OpenSSL 3.0 through 4.x define it (`core.h`, `core_dispatch.h`,
//! `core_names.h`, `core_object.h`): the C types, the function ids and the parameter names
//! this provider uses. openssl-sys declares none of them. A wrong id is a silent crash, so a
//! test (tests/tests/provider_cli.rs) builds a C program from [`CHECKED`] and
//! [`names::CHECKED`] that prints each one from the real headers, and compares, on the
//! system's OpenSSL 3 and on OpenSSL 4: every constant listed here is checked.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_int, c_uint, c_void};

/// One entry of a dispatch table: a function id and the function, cast to a common type.
#[repr(C)]
pub struct OSSL_DISPATCH {
    pub function_id: c_int,
    pub function: Option<unsafe extern "C" fn()>,
}

// SAFETY: dispatch tables are immutable statics of ids and function pointers.
unsafe impl Sync for OSSL_DISPATCH {}

/// A dispatch table entry for function `$f` of C type `$t` under id `$id`.
macro_rules! entry {
    ($id:expr, $f:expr, $t:ty) => {
        $crate::abi::OSSL_DISPATCH {
            function_id: $id,
            // SAFETY: OpenSSL calls the function with the C type its id defines, which is $t.
            function: Some(unsafe { std::mem::transmute::<$t, unsafe extern "C" fn()>($f) }),
        }
    };
}
pub(crate) use entry;

/// The end of a dispatch table.
pub const DISPATCH_END: OSSL_DISPATCH = OSSL_DISPATCH {
    function_id: 0,
    function: None,
};

/// One algorithm offered for an operation.
#[repr(C)]
pub struct OSSL_ALGORITHM {
    pub algorithm_names: *const c_char,
    pub property_definition: *const c_char,
    pub implementation: *const OSSL_DISPATCH,
    pub algorithm_description: *const c_char,
}

// SAFETY: algorithm tables are immutable statics pointing at other statics.
unsafe impl Sync for OSSL_ALGORITHM {}

/// A typed, named parameter; arrays end with an entry whose key is NULL.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OSSL_PARAM {
    pub key: *const c_char,
    pub data_type: c_uint,
    pub data: *mut c_void,
    pub data_size: usize,
    pub return_size: usize,
}

// SAFETY: parameter templates are immutable statics (NULL data).
unsafe impl Sync for OSSL_PARAM {}

/// A numbered string (reason strings).
#[repr(C)]
pub struct OSSL_ITEM {
    pub id: c_uint,
    pub ptr: *mut c_void,
}

// SAFETY: the reason table is an immutable static of 'static strings.
unsafe impl Sync for OSSL_ITEM {}

/// `OSSL_PARAM_UNMODIFIED`: `return_size` before anyone wrote the parameter.
pub const OSSL_PARAM_UNMODIFIED: usize = usize::MAX;

/// Declares each constant, and lists it in [`CHECKED`] by its C name, so that nothing
/// declared here escapes the check against the headers.
macro_rules! checked_constants {
    ($($(#[$doc:meta])* $name:ident: $ty:ty = $value:expr;)*) => {
        $($(#[$doc])* pub const $name: $ty = $value;)*

        /// Every constant declared with it, by its C name, for the check against the real
        /// headers.
        pub const CHECKED: &[(&str, i64)] = &[$((stringify!($name), $name as i64)),*];
    };
}

checked_constants! {
/// Parameter data types.
OSSL_PARAM_INTEGER: c_uint = 1;
OSSL_PARAM_UNSIGNED_INTEGER: c_uint = 2;
OSSL_PARAM_UTF8_STRING: c_uint = 4;
OSSL_PARAM_OCTET_STRING: c_uint = 5;
OSSL_PARAM_UTF8_PTR: c_uint = 6;

/// Operation ids.
OSSL_OP_KEYMGMT: c_int = 10;
OSSL_OP_SIGNATURE: c_int = 12;
OSSL_OP_ASYM_CIPHER: c_int = 13;
OSSL_OP_ENCODER: c_int = 20;
OSSL_OP_DECODER: c_int = 21;
OSSL_OP_STORE: c_int = 22;

/// What the core hands the provider.
OSSL_FUNC_CORE_GETTABLE_PARAMS: c_int = 1;
OSSL_FUNC_CORE_GET_PARAMS: c_int = 2;
OSSL_FUNC_CORE_NEW_ERROR: c_int = 5;
OSSL_FUNC_CORE_SET_ERROR_DEBUG: c_int = 6;
OSSL_FUNC_CORE_VSET_ERROR: c_int = 7;

/// The core's BIO upcalls (for decoders and encoders).
OSSL_FUNC_BIO_READ_EX: c_int = 42;
OSSL_FUNC_BIO_WRITE_EX: c_int = 43;
OSSL_FUNC_BIO_GETS: c_int = 49;

/// Decoders and encoders.
OSSL_FUNC_DECODER_NEWCTX: c_int = 1;
OSSL_FUNC_DECODER_FREECTX: c_int = 2;
OSSL_FUNC_DECODER_DOES_SELECTION: c_int = 10;
OSSL_FUNC_DECODER_DECODE: c_int = 11;
OSSL_FUNC_ENCODER_NEWCTX: c_int = 1;
OSSL_FUNC_ENCODER_FREECTX: c_int = 2;
OSSL_FUNC_ENCODER_DOES_SELECTION: c_int = 10;
OSSL_FUNC_ENCODER_ENCODE: c_int = 11;

/// The provider's own functions.
OSSL_FUNC_PROVIDER_TEARDOWN: c_int = 1024;
OSSL_FUNC_PROVIDER_GETTABLE_PARAMS: c_int = 1025;
OSSL_FUNC_PROVIDER_GET_PARAMS: c_int = 1026;
OSSL_FUNC_PROVIDER_QUERY_OPERATION: c_int = 1027;
OSSL_FUNC_PROVIDER_GET_REASON_STRINGS: c_int = 1029;

/// Key management.
OSSL_FUNC_KEYMGMT_NEW: c_int = 1;
OSSL_FUNC_KEYMGMT_LOAD: c_int = 8;
OSSL_FUNC_KEYMGMT_FREE: c_int = 10;
OSSL_FUNC_KEYMGMT_GET_PARAMS: c_int = 11;
OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS: c_int = 12;
OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME: c_int = 20;
OSSL_FUNC_KEYMGMT_HAS: c_int = 21;
OSSL_FUNC_KEYMGMT_MATCH: c_int = 23;
OSSL_FUNC_KEYMGMT_EXPORT: c_int = 42;
OSSL_FUNC_KEYMGMT_EXPORT_TYPES: c_int = 43;

/// `OSSL_KEYMGMT_SELECT_*` bits.
OSSL_KEYMGMT_SELECT_PRIVATE_KEY: c_int = 0x01;
OSSL_KEYMGMT_SELECT_PUBLIC_KEY: c_int = 0x02;
OSSL_KEYMGMT_SELECT_ALL_PARAMETERS: c_int = 0x84;

/// Signatures.
OSSL_FUNC_SIGNATURE_NEWCTX: c_int = 1;
OSSL_FUNC_SIGNATURE_SIGN_INIT: c_int = 2;
OSSL_FUNC_SIGNATURE_SIGN: c_int = 3;
OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT: c_int = 8;
OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE: c_int = 9;
OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL: c_int = 10;
OSSL_FUNC_SIGNATURE_FREECTX: c_int = 16;
OSSL_FUNC_SIGNATURE_DUPCTX: c_int = 17;
OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS: c_int = 18;
OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS: c_int = 19;
OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS: c_int = 20;
OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS: c_int = 21;

/// Asymmetric ciphers.
OSSL_FUNC_ASYM_CIPHER_NEWCTX: c_int = 1;
OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT: c_int = 4;
OSSL_FUNC_ASYM_CIPHER_DECRYPT: c_int = 5;
OSSL_FUNC_ASYM_CIPHER_FREECTX: c_int = 6;
OSSL_FUNC_ASYM_CIPHER_DUPCTX: c_int = 7;
OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS: c_int = 8;
OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS: c_int = 9;
OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS: c_int = 10;
OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS: c_int = 11;

/// Stores.
OSSL_FUNC_STORE_OPEN: c_int = 1;
OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS: c_int = 3;
OSSL_FUNC_STORE_SET_CTX_PARAMS: c_int = 4;
OSSL_FUNC_STORE_LOAD: c_int = 5;
OSSL_FUNC_STORE_EOF: c_int = 6;
OSSL_FUNC_STORE_CLOSE: c_int = 7;

/// `OSSL_OBJECT_PKEY` / `_CERT` (`core_object.h`).
OSSL_OBJECT_PKEY: c_int = 2;
OSSL_OBJECT_CERT: c_int = 3;

/// `OSSL_STORE_INFO_PUBKEY` / `_PKEY` / `_CERT` (`store.h`), the expected-type values a
/// store is told.
OSSL_STORE_INFO_PUBKEY: c_int = 3;
OSSL_STORE_INFO_PKEY: c_int = 4;
OSSL_STORE_INFO_CERT: c_int = 5;

/// `RSA_PKCS1_PADDING` and friends (`rsa.h`), as pad-mode integers.
RSA_PKCS1_PADDING: c_int = 1;
RSA_NO_PADDING: c_int = 3;
RSA_PKCS1_OAEP_PADDING: c_int = 4;
RSA_PKCS1_PSS_PADDING: c_int = 6;

/// `RSA_PSS_SALTLEN_*` (`rsa.h`).
RSA_PSS_SALTLEN_DIGEST: c_int = -1;
RSA_PSS_SALTLEN_AUTO: c_int = -2;
RSA_PSS_SALTLEN_MAX: c_int = -3;}

/// Core upcall types.
pub type CoreGetParams =
    unsafe extern "C" fn(handle: *const c_void, params: *mut OSSL_PARAM) -> c_int;
pub type CoreNewError = unsafe extern "C" fn(handle: *const c_void);
pub type CoreBioReadEx = unsafe extern "C" fn(
    bio: *mut c_void,
    data: *mut c_void,
    len: usize,
    read: *mut usize,
) -> c_int;
pub type CoreBioGets =
    unsafe extern "C" fn(bio: *mut c_void, buf: *mut c_char, size: c_int) -> c_int;
pub type CoreBioWriteEx = unsafe extern "C" fn(
    bio: *mut c_void,
    data: *const c_void,
    len: usize,
    written: *mut usize,
) -> c_int;
pub type CoreSetErrorDebug = unsafe extern "C" fn(
    handle: *const c_void,
    file: *const c_char,
    line: c_int,
    func: *const c_char,
);
/// The real last argument is a `va_list`. We never pass a format with a conversion (the
/// message is the format, its `%` doubled), so the list is never read; a pointer to a zeroed
/// area stands in for it (on x86-64 and aarch64 a `va_list` argument is passed as a pointer).
pub type CoreVsetError =
    unsafe extern "C" fn(handle: *const c_void, reason: u32, fmt: *const c_char, args: *mut c_void);

/// Callbacks OpenSSL passes to `store_load` and `keymgmt_export`.
pub type ObjectCallback =
    unsafe extern "C" fn(params: *const OSSL_PARAM, arg: *mut c_void) -> c_int;
pub type PassphraseCallback = unsafe extern "C" fn(
    pass: *mut c_char,
    pass_size: usize,
    pass_len: *mut usize,
    params: *const OSSL_PARAM,
    arg: *mut c_void,
) -> c_int;

/// Parameter names, checked against the headers' `OSSL_*_PARAM_*` macros like the ids.
pub mod names {
    use std::ffi::CStr;

    /// Declares each name with the C macro that must spell it the same way, and lists the
    /// pairs in [`CHECKED`].
    macro_rules! checked_names {
        ($($name:ident = $value:expr, $macro:literal;)*) => {
            $(pub const $name: &CStr = $value;)*

            /// Each name with the C macro that must spell it the same way.
            pub const CHECKED: &[(&str, &CStr)] = &[$(($macro, $name)),*];
        };
    }

    checked_names! {
        PROV_NAME = c"name", "OSSL_PROV_PARAM_NAME";
        PROV_VERSION = c"version", "OSSL_PROV_PARAM_VERSION";
        PROV_BUILDINFO = c"buildinfo", "OSSL_PROV_PARAM_BUILDINFO";
        PROV_STATUS = c"status", "OSSL_PROV_PARAM_STATUS";

        PKEY_BITS = c"bits", "OSSL_PKEY_PARAM_BITS";
        PKEY_SECURITY_BITS = c"security-bits", "OSSL_PKEY_PARAM_SECURITY_BITS";
        PKEY_MAX_SIZE = c"max-size", "OSSL_PKEY_PARAM_MAX_SIZE";
        PKEY_DEFAULT_DIGEST = c"default-digest", "OSSL_PKEY_PARAM_DEFAULT_DIGEST";
        PKEY_GROUP_NAME = c"group", "OSSL_PKEY_PARAM_GROUP_NAME";
        PKEY_ENCODED_PUBLIC_KEY = c"encoded-pub-key", "OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY";
        PKEY_PUB_KEY = c"pub", "OSSL_PKEY_PARAM_PUB_KEY";
        PKEY_EC_POINT_FORMAT = c"point-format", "OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT";
        PKEY_EC_ENCODING = c"encoding", "OSSL_PKEY_PARAM_EC_ENCODING";
        PKEY_RSA_N = c"n", "OSSL_PKEY_PARAM_RSA_N";
        PKEY_RSA_E = c"e", "OSSL_PKEY_PARAM_RSA_E";

        SIGNATURE_ALGORITHM_ID = c"algorithm-id", "OSSL_SIGNATURE_PARAM_ALGORITHM_ID";
        SIGNATURE_DIGEST = c"digest", "OSSL_SIGNATURE_PARAM_DIGEST";
        SIGNATURE_DIGEST_SIZE = c"digest-size", "OSSL_SIGNATURE_PARAM_DIGEST_SIZE";
        SIGNATURE_PAD_MODE = c"pad-mode", "OSSL_SIGNATURE_PARAM_PAD_MODE";
        SIGNATURE_PSS_SALTLEN = c"saltlen", "OSSL_SIGNATURE_PARAM_PSS_SALTLEN";
        SIGNATURE_MGF1_DIGEST = c"mgf1-digest", "OSSL_SIGNATURE_PARAM_MGF1_DIGEST";
        SIGNATURE_PROPERTIES = c"properties", "OSSL_SIGNATURE_PARAM_PROPERTIES";

        ASYM_CIPHER_PAD_MODE = c"pad-mode", "OSSL_ASYM_CIPHER_PARAM_PAD_MODE";
        ASYM_CIPHER_OAEP_DIGEST = c"digest", "OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST";
        ASYM_CIPHER_MGF1_DIGEST = c"mgf1-digest", "OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST";
        ASYM_CIPHER_OAEP_LABEL = c"oaep-label", "OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL";

        STORE_EXPECT = c"expect", "OSSL_STORE_PARAM_EXPECT";

        OBJECT_TYPE = c"type", "OSSL_OBJECT_PARAM_TYPE";
        OBJECT_DATA_TYPE = c"data-type", "OSSL_OBJECT_PARAM_DATA_TYPE";
        OBJECT_REFERENCE = c"reference", "OSSL_OBJECT_PARAM_REFERENCE";
        OBJECT_DATA = c"data", "OSSL_OBJECT_PARAM_DATA";
        OBJECT_DATA_STRUCTURE = c"data-structure", "OSSL_OBJECT_PARAM_DATA_STRUCTURE";
    }
}
