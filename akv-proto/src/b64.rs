//! Base64url as Key Vault uses it: no padding when we send; when we read, padding and the
//! standard alphabet are tolerated too (a published spec example uses `+` and `/`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes bytes as unpadded base64url.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Appends bytes to `out` as unpadded base64url.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + bytes.len().div_ceil(3) * 4, 0);
    // Sized for the padded form, so it never runs short; the unpadded one may be shorter.
    let written = URL_SAFE_NO_PAD
        .encode_slice(bytes, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

/// Decodes base64url, with or without padding, also accepting the standard alphabet.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let text = text.trim_end_matches('=');
    // Base64url as the service sends it decodes at the first try, without a copy or a scan
    // for the other alphabet (a signature's text is hundreds of characters).
    let first = URL_SAFE_NO_PAD.decode(text);
    if first.is_ok() || !text.bytes().any(|b| b == b'+' || b == b'/') {
        return first;
    }
    let normalized: Vec<u8> = text
        .bytes()
        .map(|b| match b {
            b'+' => b'-',
            b'/' => b'_',
            b => b,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lenient_decoding() {
        assert_eq!(super::decode("AQAB").unwrap(), [1, 0, 1]);
        assert_eq!(super::decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(super::decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(super::decode("-/8").unwrap(), [0xfb, 0xff]);
        assert!(super::decode("+/8*").is_err());
        assert!(super::decode("A").is_err());
        assert!(super::decode("a b").is_err());
        assert_eq!(super::encode(&[0xfb, 0xff]), "-_8");
        for n in 0..40 {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            let mut out = b"x".to_vec();
            super::encode_into(&bytes, &mut out);
            assert_eq!(out[1..], *super::encode(&bytes).as_bytes(), "{n}");
        }
    }
}
