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

/// Parameter data types.
pub const OSSL_PARAM_INTEGER: c_uint = 1;
pub const OSSL_PARAM_UNSIGNED_INTEGER: c_uint = 2;
pub const OSSL_PARAM_UTF8_STRING: c_uint = 4;
pub const OSSL_PARAM_OCTET_STRING: c_uint = 5;
pub const OSSL_PARAM_UTF8_PTR: c_uint = 6;

/// Operation ids.
pub const OSSL_OP_KEYMGMT: c_int = 10;
pub const OSSL_OP_SIGNATURE: c_int = 12;
pub const OSSL_OP_ASYM_CIPHER: c_int = 13;
pub const OSSL_OP_ENCODER: c_int = 20;
pub const OSSL_OP_DECODER: c_int = 21;
pub const OSSL_OP_STORE: c_int = 22;

/// What the core hands the provider.
pub const OSSL_FUNC_CORE_GETTABLE_PARAMS: c_int = 1;
pub const OSSL_FUNC_CORE_GET_PARAMS: c_int = 2;
pub const OSSL_FUNC_CORE_NEW_ERROR: c_int = 5;
pub const OSSL_FUNC_CORE_SET_ERROR_DEBUG: c_int = 6;
pub const OSSL_FUNC_CORE_VSET_ERROR: c_int = 7;

/// The core's BIO upcalls (for decoders and encoders).
pub const OSSL_FUNC_BIO_READ_EX: c_int = 42;
pub const OSSL_FUNC_BIO_WRITE_EX: c_int = 43;

/// Decoders and encoders.
pub const OSSL_FUNC_DECODER_NEWCTX: c_int = 1;
pub const OSSL_FUNC_DECODER_FREECTX: c_int = 2;
pub const OSSL_FUNC_DECODER_DOES_SELECTION: c_int = 10;
pub const OSSL_FUNC_DECODER_DECODE: c_int = 11;
pub const OSSL_FUNC_ENCODER_NEWCTX: c_int = 1;
pub const OSSL_FUNC_ENCODER_FREECTX: c_int = 2;
pub const OSSL_FUNC_ENCODER_DOES_SELECTION: c_int = 10;
pub const OSSL_FUNC_ENCODER_ENCODE: c_int = 11;

/// The provider's own functions.
pub const OSSL_FUNC_PROVIDER_TEARDOWN: c_int = 1024;
pub const OSSL_FUNC_PROVIDER_GETTABLE_PARAMS: c_int = 1025;
pub const OSSL_FUNC_PROVIDER_GET_PARAMS: c_int = 1026;
pub const OSSL_FUNC_PROVIDER_QUERY_OPERATION: c_int = 1027;
pub const OSSL_FUNC_PROVIDER_GET_REASON_STRINGS: c_int = 1029;

/// Key management.
pub const OSSL_FUNC_KEYMGMT_NEW: c_int = 1;
pub const OSSL_FUNC_KEYMGMT_LOAD: c_int = 8;
pub const OSSL_FUNC_KEYMGMT_FREE: c_int = 10;
pub const OSSL_FUNC_KEYMGMT_GET_PARAMS: c_int = 11;
pub const OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS: c_int = 12;
pub const OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME: c_int = 20;
pub const OSSL_FUNC_KEYMGMT_HAS: c_int = 21;
pub const OSSL_FUNC_KEYMGMT_MATCH: c_int = 23;
pub const OSSL_FUNC_KEYMGMT_EXPORT: c_int = 42;
pub const OSSL_FUNC_KEYMGMT_EXPORT_TYPES: c_int = 43;

/// `OSSL_KEYMGMT_SELECT_*` bits.
pub const OSSL_KEYMGMT_SELECT_PRIVATE_KEY: c_int = 0x01;
pub const OSSL_KEYMGMT_SELECT_PUBLIC_KEY: c_int = 0x02;
pub const OSSL_KEYMGMT_SELECT_ALL_PARAMETERS: c_int = 0x84;

/// Signatures.
pub const OSSL_FUNC_SIGNATURE_NEWCTX: c_int = 1;
pub const OSSL_FUNC_SIGNATURE_SIGN_INIT: c_int = 2;
pub const OSSL_FUNC_SIGNATURE_SIGN: c_int = 3;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT: c_int = 8;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE: c_int = 9;
pub const OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL: c_int = 10;
pub const OSSL_FUNC_SIGNATURE_FREECTX: c_int = 16;
pub const OSSL_FUNC_SIGNATURE_DUPCTX: c_int = 17;
pub const OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS: c_int = 18;
pub const OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS: c_int = 19;
pub const OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS: c_int = 20;
pub const OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS: c_int = 21;

/// Asymmetric ciphers.
pub const OSSL_FUNC_ASYM_CIPHER_NEWCTX: c_int = 1;
pub const OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT: c_int = 4;
pub const OSSL_FUNC_ASYM_CIPHER_DECRYPT: c_int = 5;
pub const OSSL_FUNC_ASYM_CIPHER_FREECTX: c_int = 6;
pub const OSSL_FUNC_ASYM_CIPHER_DUPCTX: c_int = 7;
pub const OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS: c_int = 8;
pub const OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS: c_int = 9;
pub const OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS: c_int = 10;
pub const OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS: c_int = 11;

/// Stores.
pub const OSSL_FUNC_STORE_OPEN: c_int = 1;
pub const OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS: c_int = 3;
pub const OSSL_FUNC_STORE_SET_CTX_PARAMS: c_int = 4;
pub const OSSL_FUNC_STORE_LOAD: c_int = 5;
pub const OSSL_FUNC_STORE_EOF: c_int = 6;
pub const OSSL_FUNC_STORE_CLOSE: c_int = 7;

/// `OSSL_OBJECT_PKEY` (`core_object.h`).
pub const OSSL_OBJECT_PKEY: c_int = 2;

/// `OSSL_STORE_INFO_PKEY` / `_PUBKEY` (`store.h`), the expected-type values a store is told.
pub const OSSL_STORE_INFO_PUBKEY: c_int = 3;
pub const OSSL_STORE_INFO_PKEY: c_int = 4;

/// `RSA_PKCS1_PADDING` and friends (`rsa.h`), as pad-mode integers.
pub const RSA_PKCS1_PADDING: c_int = 1;
pub const RSA_NO_PADDING: c_int = 3;
pub const RSA_PKCS1_OAEP_PADDING: c_int = 4;
pub const RSA_PKCS1_PSS_PADDING: c_int = 6;

/// `RSA_PSS_SALTLEN_*` (`rsa.h`).
pub const RSA_PSS_SALTLEN_DIGEST: c_int = -1;
pub const RSA_PSS_SALTLEN_AUTO: c_int = -2;
pub const RSA_PSS_SALTLEN_MAX: c_int = -3;

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

/// Every numeric constant above that the headers define, by its C name, for the check
/// against the real headers.
pub const CHECKED: &[(&str, i64)] = &[
    ("OSSL_PARAM_INTEGER", OSSL_PARAM_INTEGER as i64),
    (
        "OSSL_PARAM_UNSIGNED_INTEGER",
        OSSL_PARAM_UNSIGNED_INTEGER as i64,
    ),
    ("OSSL_PARAM_UTF8_STRING", OSSL_PARAM_UTF8_STRING as i64),
    ("OSSL_PARAM_OCTET_STRING", OSSL_PARAM_OCTET_STRING as i64),
    ("OSSL_PARAM_UTF8_PTR", OSSL_PARAM_UTF8_PTR as i64),
    ("OSSL_OP_KEYMGMT", OSSL_OP_KEYMGMT as i64),
    ("OSSL_OP_SIGNATURE", OSSL_OP_SIGNATURE as i64),
    ("OSSL_OP_ASYM_CIPHER", OSSL_OP_ASYM_CIPHER as i64),
    ("OSSL_OP_STORE", OSSL_OP_STORE as i64),
    ("OSSL_OP_ENCODER", OSSL_OP_ENCODER as i64),
    ("OSSL_OP_DECODER", OSSL_OP_DECODER as i64),
    ("OSSL_FUNC_BIO_READ_EX", OSSL_FUNC_BIO_READ_EX as i64),
    ("OSSL_FUNC_BIO_WRITE_EX", OSSL_FUNC_BIO_WRITE_EX as i64),
    ("OSSL_FUNC_DECODER_NEWCTX", OSSL_FUNC_DECODER_NEWCTX as i64),
    (
        "OSSL_FUNC_DECODER_FREECTX",
        OSSL_FUNC_DECODER_FREECTX as i64,
    ),
    (
        "OSSL_FUNC_DECODER_DOES_SELECTION",
        OSSL_FUNC_DECODER_DOES_SELECTION as i64,
    ),
    ("OSSL_FUNC_DECODER_DECODE", OSSL_FUNC_DECODER_DECODE as i64),
    ("OSSL_FUNC_ENCODER_NEWCTX", OSSL_FUNC_ENCODER_NEWCTX as i64),
    (
        "OSSL_FUNC_ENCODER_FREECTX",
        OSSL_FUNC_ENCODER_FREECTX as i64,
    ),
    (
        "OSSL_FUNC_ENCODER_DOES_SELECTION",
        OSSL_FUNC_ENCODER_DOES_SELECTION as i64,
    ),
    ("OSSL_FUNC_ENCODER_ENCODE", OSSL_FUNC_ENCODER_ENCODE as i64),
    (
        "OSSL_FUNC_CORE_GETTABLE_PARAMS",
        OSSL_FUNC_CORE_GETTABLE_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_CORE_GET_PARAMS",
        OSSL_FUNC_CORE_GET_PARAMS as i64,
    ),
    ("OSSL_FUNC_CORE_NEW_ERROR", OSSL_FUNC_CORE_NEW_ERROR as i64),
    (
        "OSSL_FUNC_CORE_SET_ERROR_DEBUG",
        OSSL_FUNC_CORE_SET_ERROR_DEBUG as i64,
    ),
    (
        "OSSL_FUNC_CORE_VSET_ERROR",
        OSSL_FUNC_CORE_VSET_ERROR as i64,
    ),
    (
        "OSSL_FUNC_PROVIDER_TEARDOWN",
        OSSL_FUNC_PROVIDER_TEARDOWN as i64,
    ),
    (
        "OSSL_FUNC_PROVIDER_GETTABLE_PARAMS",
        OSSL_FUNC_PROVIDER_GETTABLE_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_PROVIDER_GET_PARAMS",
        OSSL_FUNC_PROVIDER_GET_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_PROVIDER_QUERY_OPERATION",
        OSSL_FUNC_PROVIDER_QUERY_OPERATION as i64,
    ),
    (
        "OSSL_FUNC_PROVIDER_GET_REASON_STRINGS",
        OSSL_FUNC_PROVIDER_GET_REASON_STRINGS as i64,
    ),
    ("OSSL_FUNC_KEYMGMT_NEW", OSSL_FUNC_KEYMGMT_NEW as i64),
    ("OSSL_FUNC_KEYMGMT_LOAD", OSSL_FUNC_KEYMGMT_LOAD as i64),
    ("OSSL_FUNC_KEYMGMT_FREE", OSSL_FUNC_KEYMGMT_FREE as i64),
    (
        "OSSL_FUNC_KEYMGMT_GET_PARAMS",
        OSSL_FUNC_KEYMGMT_GET_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS",
        OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME",
        OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME as i64,
    ),
    ("OSSL_FUNC_KEYMGMT_HAS", OSSL_FUNC_KEYMGMT_HAS as i64),
    ("OSSL_FUNC_KEYMGMT_MATCH", OSSL_FUNC_KEYMGMT_MATCH as i64),
    ("OSSL_FUNC_KEYMGMT_EXPORT", OSSL_FUNC_KEYMGMT_EXPORT as i64),
    (
        "OSSL_FUNC_KEYMGMT_EXPORT_TYPES",
        OSSL_FUNC_KEYMGMT_EXPORT_TYPES as i64,
    ),
    (
        "OSSL_KEYMGMT_SELECT_PRIVATE_KEY",
        OSSL_KEYMGMT_SELECT_PRIVATE_KEY as i64,
    ),
    (
        "OSSL_KEYMGMT_SELECT_ALL_PARAMETERS",
        OSSL_KEYMGMT_SELECT_ALL_PARAMETERS as i64,
    ),
    (
        "OSSL_KEYMGMT_SELECT_PUBLIC_KEY",
        OSSL_KEYMGMT_SELECT_PUBLIC_KEY as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_NEWCTX",
        OSSL_FUNC_SIGNATURE_NEWCTX as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_SIGN_INIT",
        OSSL_FUNC_SIGNATURE_SIGN_INIT as i64,
    ),
    ("OSSL_FUNC_SIGNATURE_SIGN", OSSL_FUNC_SIGNATURE_SIGN as i64),
    (
        "OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT",
        OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE",
        OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL",
        OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_FREECTX",
        OSSL_FUNC_SIGNATURE_FREECTX as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_DUPCTX",
        OSSL_FUNC_SIGNATURE_DUPCTX as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS",
        OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS",
        OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS",
        OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS",
        OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_NEWCTX",
        OSSL_FUNC_ASYM_CIPHER_NEWCTX as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT",
        OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_DECRYPT",
        OSSL_FUNC_ASYM_CIPHER_DECRYPT as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_FREECTX",
        OSSL_FUNC_ASYM_CIPHER_FREECTX as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_DUPCTX",
        OSSL_FUNC_ASYM_CIPHER_DUPCTX as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS",
        OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS",
        OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS",
        OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS",
        OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS as i64,
    ),
    ("OSSL_FUNC_STORE_OPEN", OSSL_FUNC_STORE_OPEN as i64),
    (
        "OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS",
        OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS as i64,
    ),
    (
        "OSSL_FUNC_STORE_SET_CTX_PARAMS",
        OSSL_FUNC_STORE_SET_CTX_PARAMS as i64,
    ),
    ("OSSL_FUNC_STORE_LOAD", OSSL_FUNC_STORE_LOAD as i64),
    ("OSSL_FUNC_STORE_EOF", OSSL_FUNC_STORE_EOF as i64),
    ("OSSL_FUNC_STORE_CLOSE", OSSL_FUNC_STORE_CLOSE as i64),
    ("OSSL_OBJECT_PKEY", OSSL_OBJECT_PKEY as i64),
    ("OSSL_STORE_INFO_PUBKEY", OSSL_STORE_INFO_PUBKEY as i64),
    ("OSSL_STORE_INFO_PKEY", OSSL_STORE_INFO_PKEY as i64),
    ("RSA_PKCS1_PADDING", RSA_PKCS1_PADDING as i64),
    ("RSA_NO_PADDING", RSA_NO_PADDING as i64),
    ("RSA_PKCS1_OAEP_PADDING", RSA_PKCS1_OAEP_PADDING as i64),
    ("RSA_PKCS1_PSS_PADDING", RSA_PKCS1_PSS_PADDING as i64),
    ("RSA_PSS_SALTLEN_DIGEST", RSA_PSS_SALTLEN_DIGEST as i64),
    ("RSA_PSS_SALTLEN_AUTO", RSA_PSS_SALTLEN_AUTO as i64),
    ("RSA_PSS_SALTLEN_MAX", RSA_PSS_SALTLEN_MAX as i64),
];

/// Parameter names, checked against the headers' `OSSL_*_PARAM_*` macros like the ids.
pub mod names {
    use std::ffi::CStr;

    pub const PROV_NAME: &CStr = c"name";
    pub const PROV_VERSION: &CStr = c"version";
    pub const PROV_BUILDINFO: &CStr = c"buildinfo";
    pub const PROV_STATUS: &CStr = c"status";

    pub const PKEY_BITS: &CStr = c"bits";
    pub const PKEY_SECURITY_BITS: &CStr = c"security-bits";
    pub const PKEY_MAX_SIZE: &CStr = c"max-size";
    pub const PKEY_DEFAULT_DIGEST: &CStr = c"default-digest";
    pub const PKEY_GROUP_NAME: &CStr = c"group";
    pub const PKEY_ENCODED_PUBLIC_KEY: &CStr = c"encoded-pub-key";
    pub const PKEY_PUB_KEY: &CStr = c"pub";
    pub const PKEY_EC_POINT_FORMAT: &CStr = c"point-format";
    pub const PKEY_EC_ENCODING: &CStr = c"encoding";
    pub const PKEY_RSA_N: &CStr = c"n";
    pub const PKEY_RSA_E: &CStr = c"e";

    pub const SIGNATURE_ALGORITHM_ID: &CStr = c"algorithm-id";
    pub const SIGNATURE_DIGEST: &CStr = c"digest";
    pub const SIGNATURE_DIGEST_SIZE: &CStr = c"digest-size";
    pub const SIGNATURE_PAD_MODE: &CStr = c"pad-mode";
    pub const SIGNATURE_PSS_SALTLEN: &CStr = c"saltlen";
    pub const SIGNATURE_MGF1_DIGEST: &CStr = c"mgf1-digest";
    pub const SIGNATURE_PROPERTIES: &CStr = c"properties";

    pub const ASYM_CIPHER_PAD_MODE: &CStr = c"pad-mode";
    pub const ASYM_CIPHER_OAEP_DIGEST: &CStr = c"digest";
    pub const ASYM_CIPHER_MGF1_DIGEST: &CStr = c"mgf1-digest";
    pub const ASYM_CIPHER_OAEP_LABEL: &CStr = c"oaep-label";

    pub const STORE_EXPECT: &CStr = c"expect";

    pub const OBJECT_TYPE: &CStr = c"type";
    pub const OBJECT_DATA_TYPE: &CStr = c"data-type";
    pub const OBJECT_REFERENCE: &CStr = c"reference";

    /// Each name with the C macro that must spell it the same way.
    pub const CHECKED: &[(&str, &CStr)] = &[
        ("OSSL_PROV_PARAM_NAME", PROV_NAME),
        ("OSSL_PROV_PARAM_VERSION", PROV_VERSION),
        ("OSSL_PROV_PARAM_BUILDINFO", PROV_BUILDINFO),
        ("OSSL_PROV_PARAM_STATUS", PROV_STATUS),
        ("OSSL_PKEY_PARAM_BITS", PKEY_BITS),
        ("OSSL_PKEY_PARAM_SECURITY_BITS", PKEY_SECURITY_BITS),
        ("OSSL_PKEY_PARAM_MAX_SIZE", PKEY_MAX_SIZE),
        ("OSSL_PKEY_PARAM_DEFAULT_DIGEST", PKEY_DEFAULT_DIGEST),
        ("OSSL_PKEY_PARAM_GROUP_NAME", PKEY_GROUP_NAME),
        (
            "OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY",
            PKEY_ENCODED_PUBLIC_KEY,
        ),
        ("OSSL_PKEY_PARAM_PUB_KEY", PKEY_PUB_KEY),
        (
            "OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT",
            PKEY_EC_POINT_FORMAT,
        ),
        ("OSSL_PKEY_PARAM_EC_ENCODING", PKEY_EC_ENCODING),
        ("OSSL_PKEY_PARAM_RSA_N", PKEY_RSA_N),
        ("OSSL_PKEY_PARAM_RSA_E", PKEY_RSA_E),
        ("OSSL_SIGNATURE_PARAM_ALGORITHM_ID", SIGNATURE_ALGORITHM_ID),
        ("OSSL_SIGNATURE_PARAM_DIGEST", SIGNATURE_DIGEST),
        ("OSSL_SIGNATURE_PARAM_DIGEST_SIZE", SIGNATURE_DIGEST_SIZE),
        ("OSSL_SIGNATURE_PARAM_PAD_MODE", SIGNATURE_PAD_MODE),
        ("OSSL_SIGNATURE_PARAM_PSS_SALTLEN", SIGNATURE_PSS_SALTLEN),
        ("OSSL_SIGNATURE_PARAM_MGF1_DIGEST", SIGNATURE_MGF1_DIGEST),
        ("OSSL_SIGNATURE_PARAM_PROPERTIES", SIGNATURE_PROPERTIES),
        ("OSSL_ASYM_CIPHER_PARAM_PAD_MODE", ASYM_CIPHER_PAD_MODE),
        (
            "OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST",
            ASYM_CIPHER_OAEP_DIGEST,
        ),
        (
            "OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST",
            ASYM_CIPHER_MGF1_DIGEST,
        ),
        ("OSSL_ASYM_CIPHER_PARAM_OAEP_LABEL", ASYM_CIPHER_OAEP_LABEL),
        ("OSSL_STORE_PARAM_EXPECT", STORE_EXPECT),
        ("OSSL_OBJECT_PARAM_TYPE", OBJECT_TYPE),
        ("OSSL_OBJECT_PARAM_DATA_TYPE", OBJECT_DATA_TYPE),
        ("OSSL_OBJECT_PARAM_REFERENCE", OBJECT_REFERENCE),
    ];
}
