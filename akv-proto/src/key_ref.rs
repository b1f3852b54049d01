//! Key reference files: a PEM block that names a vault key and holds no secret, for programs
//! that read keys only from files (HAProxy, Apache, nginx with a file, Python's `ssl`). The
//! provider's decoder reads it into the same key object as the store; its encoder writes it
//! when OpenSSL is asked to write one of its private keys. Pure data in, data out: the
//! reading is fuzzed (`fuzzing::key_ref`).
//!
//! ```text
//! # An Azure Key Vault key reference: it names the key, it holds no secret.
//! -----BEGIN AZURE KEY VAULT KEY-----
//! MBgCAQEME3ZhdWx0Om15dmF1bHQ6bXlrZXk=
//! -----END AZURE KEY VAULT KEY-----
//! ```
//!
//! The body is DER: `SEQUENCE { version INTEGER (1), key UTF8String }`, the key being any key
//! string the engine accepts (`vault:NAME:KEY[:VERSION]`, `managedHsm:...`, a key URL). A
//! reference is only a name: using it still needs the machine's identity and a role on the
//! key, and a name outside the allowed hosts is refused like any key string.

use crate::der::tlv;

/// The PEM label.
pub const LABEL: &str = "AZURE KEY VAULT KEY";
const BEGIN: &str = "-----BEGIN AZURE KEY VAULT KEY-----";
const END: &str = "-----END AZURE KEY VAULT KEY-----";
/// Longest key string a reference may hold (as for key strings given directly).
const MAX_KEY: usize = 4096;
/// Longest file looked at.
pub const MAX_FILE: usize = 64 * 1024;

/// Why a file is not a usable key reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid Azure Key Vault key reference: {0}")]
pub struct KeyRefError(String);

fn bad(why: impl Into<String>) -> KeyRefError {
    KeyRefError(why.into())
}

/// The reference file for `key_string`.
pub fn to_pem(key_string: &str) -> String {
    let body = crate::b64::encode_standard(&to_der(key_string));
    let mut out =
        String::from("# An Azure Key Vault key reference: it names the key, it holds no secret.\n");
    out.push_str(BEGIN);
    out.push('\n');
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// Whether `text` holds a reference block at all (to leave other PEM files to other decoders
/// without an error).
pub fn is_reference(text: &[u8]) -> bool {
    text.windows(BEGIN.len()).any(|w| w == BEGIN.as_bytes())
}

/// Reads the key string from a reference file's text.
pub fn from_pem(text: &[u8]) -> Result<String, KeyRefError> {
    if text.len() > MAX_FILE {
        return Err(bad(format!(
            "{} bytes is more than a reference file holds",
            text.len()
        )));
    }
    let text = std::str::from_utf8(text).map_err(|_| bad("the file is not text"))?;
    let start = text
        .find(BEGIN)
        .ok_or_else(|| bad(format!("no {BEGIN} line")))?
        + BEGIN.len();
    let end = text[start..]
        .find(END)
        .ok_or_else(|| bad(format!("no {END} line")))?
        + start;
    let body: String = text[start..end].split_whitespace().collect();
    let der =
        crate::b64::decode_standard(body.as_bytes()).map_err(|_| bad("the body is not base64"))?;
    from_der(&der)
}

/// The DER body for `key_string`.
pub fn to_der(key_string: &str) -> Vec<u8> {
    let mut content = vec![0x02, 0x01, 0x01];
    content.extend(tlv(0x0c, key_string.as_bytes()));
    tlv(0x30, &content)
}

/// Reads one DER element of `tag` at the start of `input`; returns its content and the rest.
fn element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), KeyRefError> {
    let (&got, rest) = input
        .split_first()
        .ok_or_else(|| bad("the body ends early"))?;
    if got != tag {
        return Err(bad(format!(
            "expected DER tag {tag:#04x}, found {got:#04x}"
        )));
    }
    let (&first, rest) = rest
        .split_first()
        .ok_or_else(|| bad("the body ends early"))?;
    let (len, rest) = match first {
        n if n < 0x80 => (n as usize, rest),
        0x81 => match rest {
            [n, rest @ ..] if *n >= 0x80 => (*n as usize, rest),
            _ => return Err(bad("a DER length is not minimal")),
        },
        0x82 => match rest {
            [a, b, rest @ ..] if *a != 0 => (((*a as usize) << 8) | *b as usize, rest),
            _ => return Err(bad("a DER length is not minimal")),
        },
        _ => return Err(bad("a DER length is too long")),
    };
    if rest.len() < len {
        return Err(bad("the body ends early"));
    }
    Ok(rest.split_at(len))
}

/// Reads the key string from a DER body.
pub fn from_der(der: &[u8]) -> Result<String, KeyRefError> {
    let (sequence, trailing) = element(der, 0x30)?;
    if !trailing.is_empty() {
        return Err(bad("bytes after the reference"));
    }
    let (version, rest) = element(sequence, 0x02)?;
    if version != [1] {
        return Err(bad("unknown version (this e_akv reads version 1)"));
    }
    let (key, rest) = element(rest, 0x0c)?;
    if !rest.is_empty() {
        return Err(bad("unexpected fields after the key"));
    }
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(bad(format!("a key name of {} bytes", key.len())));
    }
    let key = std::str::from_utf8(key).map_err(|_| bad("the key name is not UTF-8"))?;
    if key.chars().any(char::is_control) {
        return Err(bad("the key name holds control characters"));
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_pem() {
        for key in [
            "vault:myvault:mykey",
            "managedHsm:h:k:0123456789abcdef0123456789abcdef",
            &format!("vault:v:{}", "k".repeat(300)),
        ] {
            let pem = to_pem(key);
            assert!(is_reference(pem.as_bytes()));
            assert_eq!(from_pem(pem.as_bytes()).unwrap(), key);
        }
        assert_eq!(
            to_pem("vault:myvault:mykey").lines().nth(2).unwrap(),
            "MBgCAQEME3ZhdWx0Om15dmF1bHQ6bXlrZXk="
        );
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        let ok = to_der("vault:v:k");
        let mut trailing = ok.clone();
        trailing.push(0);
        let mut version2 = ok.clone();
        version2[4] = 2;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "ends early"),
            (vec![0x31, 0], "expected DER tag"),
            (trailing, "bytes after"),
            (version2, "unknown version"),
            (to_der(""), "0 bytes"),
            (to_der("vault:v:\u{1b}[31m"), "control characters"),
            (vec![0x30, 0x84, 0, 0, 0, 1], "too long"),
            (vec![0x30, 0x81, 0x05], "not minimal"),
            (vec![0x30, 0x05, 0x02], "ends early"),
        ];
        for (der, want) in cases {
            let e = from_der(&der).unwrap_err().to_string();
            assert!(e.contains(want), "{der:?}: {e}");
            assert!(
                e.starts_with("not a valid Azure Key Vault key reference"),
                "{e}"
            );
        }
        let e = from_pem(
            b"-----BEGIN AZURE KEY VAULT KEY-----\n!!!\n-----END AZURE KEY VAULT KEY-----\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("base64"), "{e}");
        assert!(!is_reference(b"-----BEGIN PRIVATE KEY-----\n"));
    }
}
