//! ECDSA signature encodings: Key Vault sends and takes the raw fixed-width `r||s`
//! (JWS style); OpenSSL and X.509 want DER `SEQUENCE { INTEGER r, INTEGER s }`.

use crate::algorithm::Curve;

/// Why a signature could not be converted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFormatError {
    /// A raw signature of the wrong length for the curve.
    #[error("raw ECDSA signature of {got} bytes; {curve} signatures are {want} bytes (r||s)")]
    RawLength {
        /// Curve.
        curve: Curve,
        /// Expected length.
        want: usize,
        /// Given length.
        got: usize,
    },
    /// Not a strict DER ECDSA signature for the curve.
    #[error("not a DER ECDSA signature for {curve}: {reason}")]
    Der {
        /// Curve.
        curve: Curve,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Converts a raw `r||s` signature to DER.
pub fn raw_to_der(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, SignatureFormatError> {
    let width = curve.field_len();
    if raw.len() != 2 * width {
        return Err(SignatureFormatError::RawLength {
            curve,
            want: 2 * width,
            got: raw.len(),
        });
    }
    let (r, s) = (DerInteger::of(&raw[..width]), DerInteger::of(&raw[width..]));
    let body = r.encoded_len() + s.encoded_len();
    // Written into one buffer of the final size: this runs for every ECDSA signature.
    let mut out = Vec::with_capacity(1 + len_len(body) + body);
    out.push(0x30);
    push_len(&mut out, body);
    r.write(&mut out);
    s.write(&mut out);
    Ok(out)
}

/// A non-negative big-endian integer as a DER INTEGER: its minimal magnitude, after a 0x00
/// byte when the magnitude's top bit is set.
struct DerInteger<'a> {
    magnitude: &'a [u8],
    pad: bool,
}

impl<'a> DerInteger<'a> {
    fn of(bytes: &'a [u8]) -> DerInteger<'a> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let magnitude = match &bytes[start..] {
            [] => &[0][..],
            m => m,
        };
        DerInteger {
            magnitude,
            pad: magnitude[0] & 0x80 != 0,
        }
    }

    fn content_len(&self) -> usize {
        self.magnitude.len() + self.pad as usize
    }

    /// Tag, length and content.
    fn encoded_len(&self) -> usize {
        1 + len_len(self.content_len()) + self.content_len()
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(0x02);
        push_len(out, self.content_len());
        if self.pad {
            out.push(0);
        }
        out.extend_from_slice(self.magnitude);
    }
}

/// How many bytes `push_len` writes for `len`.
fn len_len(len: usize) -> usize {
    if len < 0x80 { 1 } else { 2 }
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Our values are at most 2 * (66 + 3) + 2 bytes, so one length byte always suffices
    // in long form.
    if len < 0x80 {
        out.push(len as u8);
    } else {
        out.push(0x81);
        out.push(len as u8);
    }
}

/// Converts a DER signature to raw `r||s`. Strict: minimal lengths and integers, no trailing
/// bytes, positive values that fit the curve.
pub fn der_to_raw(curve: Curve, der: &[u8]) -> Result<Vec<u8>, SignatureFormatError> {
    let err = |reason| SignatureFormatError::Der { curve, reason };
    let (tag, body, rest) = read_tlv(der).ok_or(err("bad tag or length"))?;
    if tag != 0x30 || !rest.is_empty() {
        return Err(err("not a single SEQUENCE"));
    }
    let width = curve.field_len();
    let mut raw = vec![0u8; 2 * width];
    let mut remaining = body;
    for slot in 0..2 {
        let (tag, int, rest) = read_tlv(remaining).ok_or(err("bad INTEGER length"))?;
        if tag != 0x02 || int.is_empty() {
            return Err(err("expected an INTEGER"));
        }
        if int[0] & 0x80 != 0 {
            return Err(err("negative INTEGER"));
        }
        if int.len() > 1 && int[0] == 0 && int[1] & 0x80 == 0 {
            return Err(err("INTEGER not minimally encoded"));
        }
        let magnitude = if int[0] == 0 { &int[1..] } else { int };
        if magnitude.len() > width {
            return Err(err("INTEGER larger than the curve"));
        }
        let end = (slot + 1) * width;
        raw[end - magnitude.len()..end].copy_from_slice(magnitude);
        remaining = rest;
    }
    if !remaining.is_empty() {
        return Err(err("trailing bytes in the SEQUENCE"));
    }
    Ok(raw)
}

/// Reads one DER TLV with a definite, minimal length of at most two bytes.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = match first {
        0..=0x7f => (first as usize, rest),
        0x81 => {
            let (&len, rest) = rest.split_first()?;
            if len < 0x80 {
                return None;
            }
            (len as usize, rest)
        }
        0x82 => {
            let (&hi, rest) = rest.split_first()?;
            let (&lo, rest) = rest.split_first()?;
            let len = (hi as usize) << 8 | lo as usize;
            if len < 0x100 {
                return None;
            }
            (len, rest)
        }
        _ => return None,
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1;
        raw[32] = 0x80;
        let der = raw_to_der(Curve::P256, &raw).unwrap();
        let mut want = vec![0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
        want.extend(vec![0u8; 31]);
        assert_eq!(der, want);
        assert_eq!(der_to_raw(Curve::P256, &der).unwrap(), raw);
        // P-521 signatures need the long length form.
        let raw = vec![0x01u8; 132];
        let der = raw_to_der(Curve::P521, &raw).unwrap();
        assert_eq!(&der[..3], &[0x30, 0x81, 136]);
        assert_eq!(der_to_raw(Curve::P521, &der).unwrap(), raw);
    }

    #[test]
    fn recorded_es256_signature_converts() {
        // The ES256 signature Key Vault returned in the recorded RemoteSignVerifyES256 test.
        let raw = crate::b64::decode("Yv8roPtq25vK8g8-jUXmh00aHS_t8YdPD93WW93qjFm96DTB4yKfE4PooHLGkLKfwdp5j3b0Js1mt3GYjGGMzQ").unwrap();
        let der = raw_to_der(Curve::P256, &raw).unwrap();
        assert_eq!(der_to_raw(Curve::P256, &der).unwrap(), raw);
    }

    #[test]
    fn rejects() {
        assert!(raw_to_der(Curve::P256, &[0; 63]).is_err());
        let bad: &[&[u8]] = &[
            &[],
            &[0x30],
            &[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x00],
            &[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            &[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x01],
            &[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x01],
            &[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01],
            &[0x30, 0x03, 0x02, 0x01, 0x01],
            &[0x30, 0x08, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x05, 0x00],
        ];
        for der in bad {
            assert!(der_to_raw(Curve::P256, der).is_err(), "{der:02x?}");
        }
        let mut too_big = vec![0x30, 0x25, 0x02, 0x21];
        too_big.extend(vec![0x11u8; 33]);
        too_big.extend([0x02, 0x01, 0x01]);
        assert!(der_to_raw(Curve::P256, &too_big).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(curve in prop::sample::select(Curve::ALL.to_vec()), seed in prop::collection::vec(any::<u8>(), 132)) {
            let raw = &seed[..2 * curve.field_len()];
            let der = raw_to_der(curve, raw).unwrap();
            prop_assert_eq!(der_to_raw(curve, &der).unwrap(), raw);
        }

        #[test]
        fn der_parser_never_panics(input in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = der_to_raw(Curve::P384, &input);
        }
    }
}
