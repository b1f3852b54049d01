//! Reading and writing `OSSL_PARAM` arrays in Rust. The provider must not call libcrypto's
//! `OSSL_PARAM_*` helpers (it may be loaded by a libcrypto it was not linked against), so the
//! few conversions it needs are here: integers, UTF-8 strings, octet strings and big
//! unsigned integers (native byte order).

use std::ffi::{CStr, c_char, c_void};

use crate::abi::{
    OSSL_PARAM, OSSL_PARAM_INTEGER, OSSL_PARAM_OCTET_STRING, OSSL_PARAM_UNMODIFIED,
    OSSL_PARAM_UNSIGNED_INTEGER, OSSL_PARAM_UTF8_PTR, OSSL_PARAM_UTF8_STRING,
};

/// A template entry (for `gettable`/`settable` lists): a name and a type, no data.
pub const fn template(key: &'static CStr, data_type: u32) -> OSSL_PARAM {
    OSSL_PARAM {
        key: key.as_ptr(),
        data_type,
        data: std::ptr::null_mut(),
        data_size: 0,
        return_size: OSSL_PARAM_UNMODIFIED,
    }
}

/// The entry that ends an array.
pub const END: OSSL_PARAM = OSSL_PARAM {
    key: std::ptr::null(),
    data_type: 0,
    data: std::ptr::null_mut(),
    data_size: 0,
    return_size: 0,
};

/// The entries of a NULL-terminated array.
///
/// # Safety
/// `params` is NULL or a valid array ending with an entry whose key is NULL, alive and not
/// otherwise borrowed for `'a`.
pub unsafe fn entries<'a>(params: *mut OSSL_PARAM) -> &'a mut [OSSL_PARAM] {
    if params.is_null() {
        return &mut [];
    }
    let mut n = 0;
    // SAFETY: the array is terminated, per the contract.
    while !unsafe { (*params.add(n)).key }.is_null() {
        n += 1;
    }
    // SAFETY: n entries before the terminator.
    unsafe { std::slice::from_raw_parts_mut(params, n) }
}

/// The name of an entry. The name is the caller's, not the entry's, so it stays readable
/// while the entry is written (for the duration of the call that passed the array).
pub fn name<'a>(p: &OSSL_PARAM) -> &'a CStr {
    // SAFETY: entries of a live array have NUL-terminated keys.
    unsafe { CStr::from_ptr(p.key) }
}

/// The first entry called `key`.
pub fn locate<'a>(params: &'a mut [OSSL_PARAM], key: &CStr) -> Option<&'a mut OSSL_PARAM> {
    params.iter_mut().find(|p| name(p) == key)
}

/// Why a parameter could not be read or written.
#[derive(Debug, PartialEq, Eq)]
pub enum ParamError {
    /// The entry has another type than this conversion handles.
    WrongType,
    /// The value does not fit the entry's size or range.
    DoesNotFit,
    /// The string is not UTF-8.
    NotUtf8,
}

/// Reads an integer (signed or unsigned, 4 or 8 bytes).
pub fn get_int(p: &OSSL_PARAM) -> Result<i64, ParamError> {
    if p.data.is_null() {
        return Err(ParamError::DoesNotFit);
    }
    // SAFETY: data holds data_size bytes of the entry's type.
    unsafe {
        match (p.data_type, p.data_size) {
            (OSSL_PARAM_INTEGER, 4) => Ok(i64::from(*(p.data as *const i32))),
            (OSSL_PARAM_INTEGER, 8) => Ok(*(p.data as *const i64)),
            (OSSL_PARAM_UNSIGNED_INTEGER, 4) => Ok(i64::from(*(p.data as *const u32))),
            (OSSL_PARAM_UNSIGNED_INTEGER, 8) => {
                i64::try_from(*(p.data as *const u64)).map_err(|_| ParamError::DoesNotFit)
            }
            (OSSL_PARAM_INTEGER | OSSL_PARAM_UNSIGNED_INTEGER, _) => Err(ParamError::DoesNotFit),
            _ => Err(ParamError::WrongType),
        }
    }
}

/// Reads a UTF-8 string (held or pointed to).
pub fn get_utf8(p: &OSSL_PARAM) -> Result<&str, ParamError> {
    let bytes: &[u8] = match p.data_type {
        OSSL_PARAM_UTF8_STRING => {
            if p.data.is_null() {
                return Err(ParamError::DoesNotFit);
            }
            // SAFETY: data holds data_size bytes; the string may or may not include its NUL.
            let all = unsafe { std::slice::from_raw_parts(p.data as *const u8, p.data_size) };
            all.split(|b| *b == 0).next().unwrap_or(&[])
        }
        OSSL_PARAM_UTF8_PTR => {
            // SAFETY: data points at a `const char *`.
            let s = unsafe { *(p.data as *const *const c_char) };
            if s.is_null() {
                return Err(ParamError::DoesNotFit);
            }
            // SAFETY: a NUL-terminated string owned by the caller.
            unsafe { CStr::from_ptr(s) }.to_bytes()
        }
        _ => return Err(ParamError::WrongType),
    };
    std::str::from_utf8(bytes).map_err(|_| ParamError::NotUtf8)
}

/// Reads an octet string.
pub fn get_octets(p: &OSSL_PARAM) -> Result<&[u8], ParamError> {
    if p.data_type != OSSL_PARAM_OCTET_STRING {
        return Err(ParamError::WrongType);
    }
    if p.data.is_null() {
        return Ok(&[]);
    }
    // SAFETY: data holds data_size bytes.
    Ok(unsafe { std::slice::from_raw_parts(p.data as *const u8, p.data_size) })
}

/// Writes an integer into a signed or unsigned entry of 4 or 8 bytes.
pub fn set_int(p: &mut OSSL_PARAM, value: i64) -> Result<(), ParamError> {
    match p.data_type {
        OSSL_PARAM_INTEGER | OSSL_PARAM_UNSIGNED_INTEGER => {}
        _ => return Err(ParamError::WrongType),
    }
    if p.data.is_null() {
        p.return_size = 8;
        return Ok(());
    }
    let unsigned = p.data_type == OSSL_PARAM_UNSIGNED_INTEGER;
    if unsigned && value < 0 {
        return Err(ParamError::DoesNotFit);
    }
    // SAFETY: data holds data_size bytes of the entry's type.
    unsafe {
        match (unsigned, p.data_size) {
            (false, 4) => {
                *(p.data as *mut i32) = i32::try_from(value).map_err(|_| ParamError::DoesNotFit)?
            }
            (false, 8) => *(p.data as *mut i64) = value,
            (true, 4) => {
                *(p.data as *mut u32) = u32::try_from(value).map_err(|_| ParamError::DoesNotFit)?
            }
            (true, 8) => *(p.data as *mut u64) = value as u64,
            _ => return Err(ParamError::DoesNotFit),
        }
    }
    p.return_size = p.data_size;
    Ok(())
}

/// Writes a UTF-8 string (with its NUL when there is room for it); with no buffer, tells the
/// size needed.
pub fn set_utf8(p: &mut OSSL_PARAM, value: &str) -> Result<(), ParamError> {
    write_bytes(p, OSSL_PARAM_UTF8_STRING, value.as_bytes())
}

/// Writes an octet string; with no buffer, tells the size needed.
pub fn set_octets(p: &mut OSSL_PARAM, value: &[u8]) -> Result<(), ParamError> {
    write_bytes(p, OSSL_PARAM_OCTET_STRING, value)
}

/// Copies `value` into an entry of type `data_type`, NUL-terminating strings when the
/// buffer has room; `return_size` always says the length, so a NULL buffer asks the size.
fn write_bytes(p: &mut OSSL_PARAM, data_type: u32, value: &[u8]) -> Result<(), ParamError> {
    if p.data_type != data_type {
        return Err(ParamError::WrongType);
    }
    p.return_size = value.len();
    if p.data.is_null() {
        return Ok(());
    }
    if p.data_size < value.len() {
        return Err(ParamError::DoesNotFit);
    }
    // SAFETY: data holds data_size >= len bytes.
    unsafe {
        std::ptr::copy_nonoverlapping(value.as_ptr(), p.data as *mut u8, value.len());
        if data_type == OSSL_PARAM_UTF8_STRING && p.data_size > value.len() {
            *(p.data as *mut u8).add(value.len()) = 0;
        }
    }
    Ok(())
}

/// Writes a big unsigned integer given big-endian, in the entry's native byte order and
/// width; with no buffer, tells the size needed.
pub fn set_big_unsigned(p: &mut OSSL_PARAM, big_endian: &[u8]) -> Result<(), ParamError> {
    if p.data_type != OSSL_PARAM_UNSIGNED_INTEGER {
        return Err(ParamError::WrongType);
    }
    let digits = strip_zeros(big_endian);
    let native = native_order(digits, digits.len().max(1));
    p.return_size = native.len();
    if p.data.is_null() {
        return Ok(());
    }
    if p.data_size < native.len() {
        return Err(ParamError::DoesNotFit);
    }
    let padded = native_order(digits, p.data_size);
    // SAFETY: data holds data_size bytes.
    unsafe { std::ptr::copy_nonoverlapping(padded.as_ptr(), p.data as *mut u8, padded.len()) };
    p.return_size = padded.len();
    Ok(())
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A big-endian number as `width` bytes in this machine's byte order.
pub fn native_order(big_endian: &[u8], width: usize) -> Vec<u8> {
    let mut out = vec![0u8; width.saturating_sub(big_endian.len())];
    out.extend_from_slice(big_endian);
    if cfg!(target_endian = "little") {
        out.reverse();
    }
    out
}

/// Owns the buffers of a parameter array built here (for export callbacks).
pub struct Built {
    params: Vec<OSSL_PARAM>,
    _buffers: Vec<Vec<u8>>,
}

impl Built {
    /// The array, terminated.
    pub fn as_ptr(&self) -> *const OSSL_PARAM {
        self.params.as_ptr()
    }
}

/// Builds a parameter array.
#[derive(Default)]
pub struct Builder {
    entries: Vec<(&'static CStr, u32, Vec<u8>)>,
}

impl Builder {
    /// Adds a big unsigned integer given big-endian.
    pub fn big_unsigned(mut self, key: &'static CStr, big_endian: &[u8]) -> Self {
        let digits = strip_zeros(big_endian);
        let native = native_order(digits, digits.len().max(1));
        self.entries
            .push((key, OSSL_PARAM_UNSIGNED_INTEGER, native));
        self
    }

    /// Adds a UTF-8 string.
    pub fn utf8(mut self, key: &'static CStr, value: &str) -> Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.entries.push((key, OSSL_PARAM_UTF8_STRING, bytes));
        self
    }

    /// Adds an octet string.
    pub fn octets(mut self, key: &'static CStr, value: &[u8]) -> Self {
        self.entries
            .push((key, OSSL_PARAM_OCTET_STRING, value.to_vec()));
        self
    }

    /// Adds a native `int`.
    pub fn int(mut self, key: &'static CStr, value: i32) -> Self {
        self.entries
            .push((key, OSSL_PARAM_INTEGER, value.to_ne_bytes().to_vec()));
        self
    }

    /// The array.
    pub fn build(self) -> Built {
        let mut buffers = Vec::with_capacity(self.entries.len());
        let mut params = Vec::with_capacity(self.entries.len() + 1);
        for (key, data_type, mut data) in self.entries {
            // A UTF-8 string's size excludes its NUL.
            let size = if data_type == OSSL_PARAM_UTF8_STRING {
                data.len() - 1
            } else {
                data.len()
            };
            params.push(OSSL_PARAM {
                key: key.as_ptr(),
                data_type,
                data: data.as_mut_ptr() as *mut c_void,
                data_size: size,
                return_size: OSSL_PARAM_UNMODIFIED,
            });
            // The Vec's heap buffer does not move when the Vec itself is moved.
            buffers.push(data);
        }
        params.push(END);
        Built {
            params,
            _buffers: buffers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_through_ints_and_longs() {
        let mut small = 0i32;
        let mut p = OSSL_PARAM {
            key: c"bits".as_ptr(),
            data_type: OSSL_PARAM_INTEGER,
            data: (&mut small as *mut i32).cast(),
            data_size: 4,
            return_size: OSSL_PARAM_UNMODIFIED,
        };
        set_int(&mut p, 2048).unwrap();
        assert_eq!(small, 2048);
        assert_eq!(get_int(&p).unwrap(), 2048);
        assert_eq!(set_int(&mut p, 1 << 40), Err(ParamError::DoesNotFit));
        let mut big = 0u64;
        let mut q = OSSL_PARAM {
            data_type: OSSL_PARAM_UNSIGNED_INTEGER,
            data: (&mut big as *mut u64).cast(),
            data_size: 8,
            ..p
        };
        set_int(&mut q, 7).unwrap();
        assert_eq!(big, 7);
        assert_eq!(set_int(&mut q, -1), Err(ParamError::DoesNotFit));
    }

    #[test]
    fn strings_report_their_size_and_refuse_small_buffers() {
        let mut buf = [0xffu8; 8];
        let mut p = OSSL_PARAM {
            key: c"digest".as_ptr(),
            data_type: OSSL_PARAM_UTF8_STRING,
            data: std::ptr::null_mut(),
            data_size: 0,
            return_size: OSSL_PARAM_UNMODIFIED,
        };
        set_utf8(&mut p, "SHA256").unwrap();
        assert_eq!(p.return_size, 6);
        p.data = buf.as_mut_ptr().cast();
        p.data_size = buf.len();
        set_utf8(&mut p, "SHA256").unwrap();
        assert_eq!(&buf[..7], b"SHA256\0");
        assert_eq!(get_utf8(&p).unwrap(), "SHA256");
        assert_eq!(
            set_utf8(&mut p, "SHA2-512/256"),
            Err(ParamError::DoesNotFit)
        );
        let text = c"PSS";
        let ptr = text.as_ptr();
        let q = OSSL_PARAM {
            data_type: OSSL_PARAM_UTF8_PTR,
            data: (&ptr as *const *const c_char) as *mut c_void,
            data_size: 0,
            ..p
        };
        assert_eq!(get_utf8(&q).unwrap(), "PSS");
        assert_eq!(get_int(&q), Err(ParamError::WrongType));
    }

    #[test]
    fn big_numbers_are_written_in_native_order() {
        let mut buf = [0u8; 4];
        let mut p = OSSL_PARAM {
            key: c"e".as_ptr(),
            data_type: OSSL_PARAM_UNSIGNED_INTEGER,
            data: std::ptr::null_mut(),
            data_size: 0,
            return_size: OSSL_PARAM_UNMODIFIED,
        };
        set_big_unsigned(&mut p, &[0, 1, 0, 1]).unwrap();
        assert_eq!(p.return_size, 3);
        p.data = buf.as_mut_ptr().cast();
        p.data_size = 4;
        set_big_unsigned(&mut p, &[0, 1, 0, 1]).unwrap();
        assert_eq!(u32::from_ne_bytes(buf), 65537);
    }

    #[test]
    fn built_arrays_are_terminated_and_readable() {
        let built = Builder::default()
            .utf8(c"group", "prime256v1")
            .int(c"bits", 256)
            .big_unsigned(c"e", &[1, 0, 1])
            .build();
        // SAFETY: the array is terminated and alive.
        let all = unsafe { entries(built.as_ptr() as *mut OSSL_PARAM) };
        assert_eq!(all.len(), 3);
        assert_eq!(get_utf8(&all[0]).unwrap(), "prime256v1");
        assert_eq!(get_int(&all[1]).unwrap(), 256);
        assert_eq!(name(&all[2]), c"e");
        assert!(locate(all, c"bits").is_some());
    }
}
