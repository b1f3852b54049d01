//! Every OpenSSL 3.0 declaration the engine uses, in one place. Hand-written (no bindgen)
//! from the 3.0 headers; only functions that are real exported symbols are declared (the
//! `RSA_get_app_data` / `ERR_raise` style macros are not).

#![allow(non_camel_case_types, missing_docs)]

use std::ffi::{c_char, c_int, c_long, c_uchar, c_uint, c_ulong, c_void};

macro_rules! opaque {
    ($($name:ident),*) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
    )*};
}
opaque!(
    ENGINE,
    EVP_PKEY,
    EVP_PKEY_CTX,
    EVP_PKEY_METHOD,
    EVP_MD,
    RSA,
    RSA_METHOD,
    EC_KEY,
    EC_KEY_METHOD,
    EC_GROUP,
    EC_POINT,
    BIGNUM,
    BN_CTX,
    ECDSA_SIG,
    UI_METHOD
);

pub const OSSL_DYNAMIC_VERSION: c_ulong = 0x0003_0000;
pub const OSSL_DYNAMIC_OLDEST: c_ulong = 0x0003_0000;
pub const OPENSSL_INIT_NO_ATEXIT: u64 = 0x0008_0000;

pub const ENGINE_CMD_BASE: c_uint = 200;
pub const ENGINE_CMD_FLAG_STRING: c_uint = 0x0002;
pub const ENGINE_CMD_FLAG_INTERNAL: c_uint = 0x0008;

pub const EVP_PKEY_RSA: c_int = 6;
pub const EVP_PKEY_EC: c_int = 408;
pub const EVP_PKEY_FLAG_AUTOARGLEN: c_int = 2;
pub const ERR_LIB_EVP: c_int = 6;
pub const EVP_R_BUFFER_TOO_SMALL: c_int = 155;
pub const EVP_R_INVALID_KEY: c_int = 163;

pub const NID_X9_62_PRIME256V1: c_int = 415;
pub const NID_SECP384R1: c_int = 715;
pub const NID_SECP521R1: c_int = 716;
pub const NID_SECP256K1: c_int = 714;

/// `ERR_PACK(lib, 0, reason)` of OpenSSL 3.0.
pub const fn err_pack(lib: c_int, reason: c_int) -> c_ulong {
    (((lib as c_ulong) & 0xff) << 23) | ((reason as c_ulong) & 0x7f_ffff)
}

#[repr(C)]
pub struct ERR_STRING_DATA {
    pub error: c_ulong,
    pub string: *const c_char,
}

#[repr(C)]
pub struct ENGINE_CMD_DEFN {
    pub cmd_num: c_uint,
    pub cmd_name: *const c_char,
    pub cmd_desc: *const c_char,
    pub cmd_flags: c_uint,
}

pub type MallocFn = Option<unsafe extern "C" fn(usize, *const c_char, c_int) -> *mut c_void>;
pub type ReallocFn =
    Option<unsafe extern "C" fn(*mut c_void, usize, *const c_char, c_int) -> *mut c_void>;
pub type FreeFn = Option<unsafe extern "C" fn(*mut c_void, *const c_char, c_int)>;

#[repr(C)]
pub struct dynamic_MEM_fns {
    pub malloc_fn: MallocFn,
    pub realloc_fn: ReallocFn,
    pub free_fn: FreeFn,
}

#[repr(C)]
pub struct dynamic_fns {
    pub static_state: *mut c_void,
    pub mem_fns: dynamic_MEM_fns,
}

pub type EngineGenFn = Option<unsafe extern "C" fn(*mut ENGINE) -> c_int>;
pub type EngineCtrlFn = Option<
    unsafe extern "C" fn(
        *mut ENGINE,
        c_int,
        c_long,
        *mut c_void,
        Option<unsafe extern "C" fn()>,
    ) -> c_int,
>;
pub type EngineLoadKeyFn = Option<
    unsafe extern "C" fn(*mut ENGINE, *const c_char, *mut UI_METHOD, *mut c_void) -> *mut EVP_PKEY,
>;
pub type EnginePkeyMethsFn = Option<
    unsafe extern "C" fn(*mut ENGINE, *mut *mut EVP_PKEY_METHOD, *mut *const c_int, c_int) -> c_int,
>;

pub type PkeyInitFn = Option<unsafe extern "C" fn(*mut EVP_PKEY_CTX) -> c_int>;
pub type PkeySignFn = Option<
    unsafe extern "C" fn(
        *mut EVP_PKEY_CTX,
        *mut c_uchar,
        *mut usize,
        *const c_uchar,
        usize,
    ) -> c_int,
>;
pub type PkeyDecryptFn = PkeySignFn;
pub type PkeyDeriveFn =
    Option<unsafe extern "C" fn(*mut EVP_PKEY_CTX, *mut c_uchar, *mut usize) -> c_int>;
pub type PkeyCtrlFn =
    Option<unsafe extern "C" fn(*mut EVP_PKEY_CTX, c_int, c_int, *mut c_void) -> c_int>;
pub type PkeyCtrlStrFn =
    Option<unsafe extern "C" fn(*mut EVP_PKEY_CTX, *const c_char, *const c_char) -> c_int>;

// The `EVP_PKEY_CTRL_GET_*` commands of OpenSSL's RSA EVP_PKEY_METHOD (evp.h, rsa.h).
pub const EVP_PKEY_CTRL_GET_MD: c_int = 13;
const EVP_PKEY_ALG_CTRL: c_int = 0x1000;
pub const EVP_PKEY_CTRL_GET_RSA_PADDING: c_int = EVP_PKEY_ALG_CTRL + 6;
pub const EVP_PKEY_CTRL_GET_RSA_PSS_SALTLEN: c_int = EVP_PKEY_ALG_CTRL + 7;
pub const EVP_PKEY_CTRL_GET_RSA_MGF1_MD: c_int = EVP_PKEY_ALG_CTRL + 8;
pub const EVP_PKEY_CTRL_GET_RSA_OAEP_MD: c_int = EVP_PKEY_ALG_CTRL + 11;
pub const EVP_PKEY_CTRL_GET_RSA_OAEP_LABEL: c_int = EVP_PKEY_ALG_CTRL + 12;

pub type RsaCryptFn =
    Option<unsafe extern "C" fn(c_int, *const c_uchar, *mut c_uchar, *mut RSA, c_int) -> c_int>;
pub type RsaFinishFn = Option<unsafe extern "C" fn(*mut RSA) -> c_int>;

pub type EcSignFn = Option<
    unsafe extern "C" fn(
        c_int,
        *const c_uchar,
        c_int,
        *mut c_uchar,
        *mut c_uint,
        *const BIGNUM,
        *const BIGNUM,
        *mut EC_KEY,
    ) -> c_int,
>;
pub type EcSignSetupFn = Option<
    unsafe extern "C" fn(*mut EC_KEY, *mut BN_CTX, *mut *mut BIGNUM, *mut *mut BIGNUM) -> c_int,
>;
pub type EcSignSigFn = Option<
    unsafe extern "C" fn(
        *const c_uchar,
        c_int,
        *const BIGNUM,
        *const BIGNUM,
        *mut EC_KEY,
    ) -> *mut ECDSA_SIG,
>;
pub type EcInitFn = Option<unsafe extern "C" fn(*mut EC_KEY) -> c_int>;
pub type EcFinishFn = Option<unsafe extern "C" fn(*mut EC_KEY)>;
pub type EcCopyFn = Option<unsafe extern "C" fn(*mut EC_KEY, *const EC_KEY) -> c_int>;
pub type EcSetGroupFn = Option<unsafe extern "C" fn(*mut EC_KEY, *const EC_GROUP) -> c_int>;
pub type EcSetPrivateFn = Option<unsafe extern "C" fn(*mut EC_KEY, *const BIGNUM) -> c_int>;
pub type EcSetPublicFn = Option<unsafe extern "C" fn(*mut EC_KEY, *const EC_POINT) -> c_int>;

#[link(name = "crypto")]
unsafe extern "C" {
    pub fn ENGINE_get_static_state() -> *mut c_void;
    pub fn CRYPTO_set_mem_functions(m: MallocFn, r: ReallocFn, f: FreeFn) -> c_int;
    pub fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;

    pub fn ENGINE_init(e: *mut ENGINE) -> c_int;
    pub fn ENGINE_set_id(e: *mut ENGINE, id: *const c_char) -> c_int;
    pub fn ENGINE_set_name(e: *mut ENGINE, name: *const c_char) -> c_int;
    pub fn ENGINE_set_init_function(e: *mut ENGINE, f: EngineGenFn) -> c_int;
    pub fn ENGINE_set_finish_function(e: *mut ENGINE, f: EngineGenFn) -> c_int;
    pub fn ENGINE_set_destroy_function(e: *mut ENGINE, f: EngineGenFn) -> c_int;
    pub fn ENGINE_set_ctrl_function(e: *mut ENGINE, f: EngineCtrlFn) -> c_int;
    pub fn ENGINE_set_cmd_defns(e: *mut ENGINE, defns: *const ENGINE_CMD_DEFN) -> c_int;
    pub fn ENGINE_set_load_privkey_function(e: *mut ENGINE, f: EngineLoadKeyFn) -> c_int;
    pub fn ENGINE_set_load_pubkey_function(e: *mut ENGINE, f: EngineLoadKeyFn) -> c_int;
    pub fn ENGINE_set_pkey_meths(e: *mut ENGINE, f: EnginePkeyMethsFn) -> c_int;
    pub fn ENGINE_set_RSA(e: *mut ENGINE, m: *const RSA_METHOD) -> c_int;
    pub fn ENGINE_set_EC(e: *mut ENGINE, m: *const EC_KEY_METHOD) -> c_int;

    pub fn EVP_PKEY_meth_new(id: c_int, flags: c_int) -> *mut EVP_PKEY_METHOD;
    pub fn EVP_PKEY_meth_find(kind: c_int) -> *const EVP_PKEY_METHOD;
    pub fn EVP_PKEY_meth_copy(dst: *mut EVP_PKEY_METHOD, src: *const EVP_PKEY_METHOD);
    pub fn EVP_PKEY_meth_get_sign(
        m: *const EVP_PKEY_METHOD,
        init: *mut PkeyInitFn,
        sign: *mut PkeySignFn,
    );
    pub fn EVP_PKEY_meth_set_sign(m: *mut EVP_PKEY_METHOD, init: PkeyInitFn, sign: PkeySignFn);
    pub fn EVP_PKEY_meth_get_decrypt(
        m: *const EVP_PKEY_METHOD,
        init: *mut PkeyInitFn,
        decrypt: *mut PkeyDecryptFn,
    );
    pub fn EVP_PKEY_meth_set_decrypt(
        m: *mut EVP_PKEY_METHOD,
        init: PkeyInitFn,
        decrypt: PkeyDecryptFn,
    );

    pub fn EVP_PKEY_meth_get_derive(
        m: *const EVP_PKEY_METHOD,
        init: *mut PkeyInitFn,
        derive: *mut PkeyDeriveFn,
    );
    pub fn EVP_PKEY_meth_set_derive(
        m: *mut EVP_PKEY_METHOD,
        init: PkeyInitFn,
        derive: PkeyDeriveFn,
    );
    pub fn EVP_PKEY_get_size(pkey: *const EVP_PKEY) -> c_int;

    pub fn EVP_PKEY_CTX_get0_pkey(ctx: *mut EVP_PKEY_CTX) -> *mut EVP_PKEY;
    pub fn EVP_PKEY_meth_get_ctrl(
        m: *const EVP_PKEY_METHOD,
        ctrl: *mut PkeyCtrlFn,
        ctrl_str: *mut PkeyCtrlStrFn,
    );
    pub fn EVP_MD_get_type(md: *const EVP_MD) -> c_int;

    pub fn EVP_PKEY_new() -> *mut EVP_PKEY;
    pub fn EVP_PKEY_free(pkey: *mut EVP_PKEY);
    pub fn EVP_PKEY_assign(pkey: *mut EVP_PKEY, kind: c_int, key: *mut c_void) -> c_int;
    pub fn EVP_PKEY_set1_engine(pkey: *mut EVP_PKEY, e: *mut ENGINE) -> c_int;
    pub fn EVP_PKEY_get_id(pkey: *const EVP_PKEY) -> c_int;
    pub fn EVP_PKEY_get0(pkey: *const EVP_PKEY) -> *mut c_void;

    pub fn RSA_new_method(e: *mut ENGINE) -> *mut RSA;
    pub fn RSA_free(r: *mut RSA);
    pub fn RSA_set0_key(r: *mut RSA, n: *mut BIGNUM, e: *mut BIGNUM, d: *mut BIGNUM) -> c_int;
    pub fn RSA_size(r: *const RSA) -> c_int;
    pub fn RSA_get_ex_data(r: *const RSA, idx: c_int) -> *mut c_void;
    pub fn RSA_set_ex_data(r: *mut RSA, idx: c_int, arg: *mut c_void) -> c_int;
    pub fn RSA_PKCS1_OpenSSL() -> *const RSA_METHOD;
    pub fn RSA_meth_dup(m: *const RSA_METHOD) -> *mut RSA_METHOD;
    pub fn RSA_meth_free(m: *mut RSA_METHOD);
    pub fn RSA_meth_set1_name(m: *mut RSA_METHOD, name: *const c_char) -> c_int;
    pub fn RSA_meth_get_finish(m: *const RSA_METHOD) -> RsaFinishFn;
    pub fn RSA_meth_set_finish(m: *mut RSA_METHOD, f: RsaFinishFn) -> c_int;
    pub fn RSA_meth_get_priv_enc(m: *const RSA_METHOD) -> RsaCryptFn;
    pub fn RSA_meth_set_priv_enc(m: *mut RSA_METHOD, f: RsaCryptFn) -> c_int;
    pub fn RSA_meth_get_priv_dec(m: *const RSA_METHOD) -> RsaCryptFn;
    pub fn RSA_meth_set_priv_dec(m: *mut RSA_METHOD, f: RsaCryptFn) -> c_int;

    pub fn EC_KEY_new_method(e: *mut ENGINE) -> *mut EC_KEY;
    pub fn EC_KEY_free(k: *mut EC_KEY);
    pub fn EC_KEY_set_group(k: *mut EC_KEY, g: *const EC_GROUP) -> c_int;
    pub fn EC_KEY_set_public_key_affine_coordinates(
        k: *mut EC_KEY,
        x: *mut BIGNUM,
        y: *mut BIGNUM,
    ) -> c_int;
    pub fn EC_KEY_get_ex_data(k: *const EC_KEY, idx: c_int) -> *mut c_void;
    pub fn EC_KEY_set_ex_data(k: *mut EC_KEY, idx: c_int, arg: *mut c_void) -> c_int;
    pub fn EC_GROUP_new_by_curve_name(nid: c_int) -> *mut EC_GROUP;
    pub fn EC_GROUP_free(g: *mut EC_GROUP);
    pub fn EC_KEY_OpenSSL() -> *const EC_KEY_METHOD;
    pub fn EC_KEY_METHOD_new(m: *const EC_KEY_METHOD) -> *mut EC_KEY_METHOD;
    pub fn EC_KEY_METHOD_free(m: *mut EC_KEY_METHOD);
    pub fn EC_KEY_METHOD_get_sign(
        m: *const EC_KEY_METHOD,
        sign: *mut EcSignFn,
        setup: *mut EcSignSetupFn,
        sign_sig: *mut EcSignSigFn,
    );
    pub fn EC_KEY_METHOD_set_sign(
        m: *mut EC_KEY_METHOD,
        sign: EcSignFn,
        setup: EcSignSetupFn,
        sign_sig: EcSignSigFn,
    );
    pub fn EC_KEY_METHOD_get_init(
        m: *const EC_KEY_METHOD,
        init: *mut EcInitFn,
        finish: *mut EcFinishFn,
        copy: *mut EcCopyFn,
        set_group: *mut EcSetGroupFn,
        set_private: *mut EcSetPrivateFn,
        set_public: *mut EcSetPublicFn,
    );
    pub fn EC_KEY_METHOD_set_init(
        m: *mut EC_KEY_METHOD,
        init: EcInitFn,
        finish: EcFinishFn,
        copy: EcCopyFn,
        set_group: EcSetGroupFn,
        set_private: EcSetPrivateFn,
        set_public: EcSetPublicFn,
    );
    pub fn ECDSA_size(k: *const EC_KEY) -> c_int;
    pub fn ECDSA_SIG_new() -> *mut ECDSA_SIG;
    pub fn ECDSA_SIG_free(s: *mut ECDSA_SIG);
    pub fn ECDSA_SIG_set0(s: *mut ECDSA_SIG, r: *mut BIGNUM, s_: *mut BIGNUM) -> c_int;

    pub fn BN_bin2bn(s: *const c_uchar, len: c_int, ret: *mut BIGNUM) -> *mut BIGNUM;
    pub fn BN_free(b: *mut BIGNUM);

    pub fn ERR_get_next_error_library() -> c_int;
    pub fn ERR_load_strings(lib: c_int, strings: *mut ERR_STRING_DATA) -> c_int;
    pub fn ERR_unload_strings(lib: c_int, strings: *mut ERR_STRING_DATA) -> c_int;
    pub fn ERR_new();
    pub fn ERR_set_debug(file: *const c_char, line: c_int, func: *const c_char);
    pub fn ERR_set_error(lib: c_int, reason: c_int, fmt: *const c_char, ...);
}
