//! The response headers the protocol reads, and only these: a backend hands the driver an
//! answer that carries these and none of the others the server sent.
//!
//! Key Vault answers with a dozen headers (caching, HSTS, region, network info) that nothing
//! here reads. Making each into `http` values, a `HeaderMap` entry and a drop cost about 470
//! instructions: 10% of a signature on a warm connection (4,700 of 47,000). So the blocking
//! codec ([`crate::h1`]) never makes them, and the async backend drops them with
//! [`keep_read`], so that both backends hand the driver the same answers.
//!
//! Code that reads a response header names it from [`READ_HEADERS`] (adding it there first):
//! a header missing from the list reads as absent on both backends, which the scenario tests
//! then show.

use http::header::{self, HeaderMap, HeaderName};

/// Key Vault's id of the request, quoted in errors so that support can find it.
pub const X_MS_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
/// A delay in milliseconds, before `Retry-After`.
pub const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");
/// The same, as the Azure services also send it.
pub const X_MS_RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");

/// Every response header the protocol and the HTTP/1.1 framing read, most frequent first,
/// each with its text (`HeaderName::as_str` looks a standard name's text up in a table).
pub static READ_HEADERS: [(&str, HeaderName); 9] = [
    ("content-length", header::CONTENT_LENGTH),
    ("date", header::DATE),
    ("x-ms-request-id", X_MS_REQUEST_ID),
    ("www-authenticate", header::WWW_AUTHENTICATE),
    ("retry-after", header::RETRY_AFTER),
    ("retry-after-ms", RETRY_AFTER_MS),
    ("x-ms-retry-after-ms", X_MS_RETRY_AFTER_MS),
    ("transfer-encoding", header::TRANSFER_ENCODING),
    ("connection", header::CONNECTION),
];

/// The name of a read header, given as a server wrote it (a token, in any case); `None` for
/// a header the protocol does not read.
pub(crate) fn read_name(raw: &str) -> Option<&'static HeaderName> {
    // Only the read names of the same length are compared: most of an answer's names have
    // a length no read name has, and are passed over at once.
    let mut candidates = *BY_LENGTH.get(raw.len())?;
    while candidates != 0 {
        let (text, name) = &READ_HEADERS[candidates.trailing_zeros() as usize];
        if same_name(text.as_bytes(), raw.as_bytes()) {
            return Some(name);
        }
        candidates &= candidates - 1;
    }
    None
}

/// For each name length, the read headers of that length (bit `i`: `READ_HEADERS[i]`).
static BY_LENGTH: [u16; 32] = {
    let mut by_length = [0u16; 32];
    let mut i = 0;
    while i < READ_HEADERS.len() {
        // A longer name would be an index out of bounds here: a compile error.
        by_length[READ_HEADERS[i].0.len()] |= 1 << i;
        i += 1;
    }
    by_length
};

/// `headers` with only the read ones, for a backend whose HTTP library made them all.
pub fn keep_read(headers: HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for (name, value) in &headers {
        if READ_HEADERS.iter().any(|(_, read)| read == name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Whether `raw`, a token as httparse checked it, is the lowercase `known` in any case.
/// Setting bit 0x20 lowers a letter and keeps `-` and the digits; no other token character
/// becomes a lowercase letter, `-` or a digit by it (`^` becomes `~`, `_` DEL). Eight bytes
/// at a time: every name of every answer is looked up.
fn same_name(known: &[u8], raw: &[u8]) -> bool {
    const LOWER: u64 = u64::from_ne_bytes([0x20; 8]);
    if known.len() != raw.len() {
        return false;
    }
    let (mut k, mut r) = (known.chunks_exact(8), raw.chunks_exact(8));
    let eight = |b: &[u8]| u64::from_ne_bytes(b.try_into().expect("chunks of 8"));
    (&mut k)
        .zip(&mut r)
        .all(|(k, r)| eight(k) == eight(r) | LOWER)
        && k.remainder()
            .iter()
            .zip(r.remainder())
            .all(|(k, r)| *k == r | 0x20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_match_in_any_case_and_nothing_else() {
        // Every token character against every character of a known name, at every place of
        // a 12-byte name (in the 8-byte word and in the rest): setting 0x20 is the same as a
        // case-insensitive comparison there.
        let tchars =
            (0u8..128).filter(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b));
        for raw in tchars {
            for known in (b'a'..=b'z').chain(b'0'..=b'9').chain([b'-']) {
                for at in 0..12 {
                    let (mut k, mut r) = (*b"x-ms-abc-def", *b"X-Ms-AbC-dEf");
                    (k[at], r[at]) = (known, raw);
                    assert_eq!(same_name(&k, &r), k.eq_ignore_ascii_case(&r), "{k:?} {r:?}");
                }
            }
        }
        assert!(same_name(b"x-ms-request-id", b"X-Ms-Request-Id"));
        assert!(!same_name(b"x-ms-request-id", b"x-ms-request-i"));
        assert!(!same_name(b"content-length", b"content_length"));
    }

    #[test]
    fn read_names_are_found_in_any_case_and_others_are_not() {
        for (text, name) in &READ_HEADERS {
            assert_eq!(*text, name.as_str());
            assert_eq!(read_name(&text.to_ascii_uppercase()), Some(name));
            assert_eq!(read_name(text), Some(name));
        }
        for other in [
            "x-ms-request",
            "x-ms-request-ie",
            "content-lengths",
            "cache-control",
            "x-ms-keyvault-region",
        ] {
            assert_eq!(read_name(other), None, "{other}");
        }
    }

    #[test]
    fn keep_read_keeps_every_value_of_the_read_headers_only() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("x-ms-request-id", "r1"),
            ("cache-control", "no-cache"),
            ("www-authenticate", "Bearer a=1"),
            ("www-authenticate", "Basic realm=x"),
            ("x-ms-keyvault-region", "westeurope"),
            ("retry-after", "3"),
        ] {
            headers.append(name, value.parse().unwrap());
        }
        let kept = keep_read(headers);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept["x-ms-request-id"], "r1");
        assert_eq!(kept["retry-after"], "3");
        let challenges: Vec<_> = kept.get_all("www-authenticate").iter().collect();
        assert_eq!(challenges, ["Bearer a=1", "Basic realm=x"]);
        assert!(!kept.contains_key("cache-control"));
    }
}
