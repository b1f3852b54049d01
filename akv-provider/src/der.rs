//! The DER `AlgorithmIdentifier` of each signature this provider makes, for the
//! `algorithm-id` parameter that `req`, `x509`, `ca` and `cms` write into certificates and
//! signed data. Byte-for-byte what OpenSSL's default provider writes, including the full
//! RSASSA-PSS parameters (hash, MGF1 with its hash, salt length).

use akv_proto::Digest;
use akv_proto::der::tlv;

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(body: &[u8]) -> Vec<u8> {
    tlv(0x06, body)
}

const NULL: [u8; 2] = [0x05, 0x00];
const PKCS1: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
const ECDSA_WITH: [u8; 6] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];
const NIST_HASH: [u8; 8] = [0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

fn with_last(prefix: &[u8], last: &[u8]) -> Vec<u8> {
    [prefix, last].concat()
}

/// The OID of a hash, as `AlgorithmIdentifier` with NULL parameters (as OpenSSL writes them
/// inside RSASSA-PSS parameters).
fn hash_algorithm(digest: Digest) -> Option<Vec<u8>> {
    let body = match digest {
        Digest::Sha1 => vec![0x2b, 0x0e, 0x03, 0x02, 0x1a],
        Digest::Sha224 => with_last(&NIST_HASH, &[0x04]),
        Digest::Sha256 => with_last(&NIST_HASH, &[0x01]),
        Digest::Sha384 => with_last(&NIST_HASH, &[0x02]),
        Digest::Sha512 => with_last(&NIST_HASH, &[0x03]),
        _ => return None,
    };
    Some(sequence(&[&oid(&body), &NULL]))
}

/// `sha256WithRSAEncryption` and its siblings, NULL parameters.
pub fn rsa_pkcs1(digest: Digest) -> Option<Vec<u8>> {
    let last = match digest {
        Digest::Sha1 => 0x05,
        Digest::Sha224 => 0x0e,
        Digest::Sha256 => 0x0b,
        Digest::Sha384 => 0x0c,
        Digest::Sha512 => 0x0d,
        _ => return None,
    };
    Some(sequence(&[&oid(&with_last(&PKCS1, &[last])), &NULL]))
}

/// `id-RSASSA-PSS` with its parameters; fields equal to their DEFAULT (SHA-1, MGF1 with
/// SHA-1, salt 20) are left out, as DER requires.
pub fn rsa_pss(digest: Digest, mgf1: Digest, salt_len: usize) -> Option<Vec<u8>> {
    let mut fields = Vec::new();
    if digest != Digest::Sha1 {
        fields.extend(tlv(0xa0, &hash_algorithm(digest)?));
    }
    if mgf1 != Digest::Sha1 {
        let mgf = sequence(&[&oid(&with_last(&PKCS1, &[0x08])), &hash_algorithm(mgf1)?]);
        fields.extend(tlv(0xa1, &mgf));
    }
    if salt_len != 20 {
        fields.extend(tlv(0xa2, &integer(salt_len)));
    }
    Some(sequence(&[
        &oid(&with_last(&PKCS1, &[0x0a])),
        &tlv(0x30, &fields),
    ]))
}

/// `ecdsa-with-SHA256` and its siblings, no parameters.
pub fn ecdsa(digest: Digest) -> Option<Vec<u8>> {
    let body = match digest {
        Digest::Sha1 => with_last(&ECDSA_WITH, &[0x01]),
        Digest::Sha224 => with_last(&ECDSA_WITH, &[0x03, 0x01]),
        Digest::Sha256 => with_last(&ECDSA_WITH, &[0x03, 0x02]),
        Digest::Sha384 => with_last(&ECDSA_WITH, &[0x03, 0x03]),
        Digest::Sha512 => with_last(&ECDSA_WITH, &[0x03, 0x04]),
        _ => return None,
    };
    Some(sequence(&[&oid(&body)]))
}

/// A non-negative INTEGER.
fn integer(value: usize) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut content = bytes[first..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn identifiers_match_what_openssl_writes() {
        // From certificates made by OpenSSL 3.0's default provider (`openssl req -x509`).
        assert_eq!(
            hex(&rsa_pss(Digest::Sha256, Digest::Sha256, 32).unwrap()),
            "304106092a864886f70d01010a3034a00f300d06096086480165030402010500a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120"
        );
        assert_eq!(
            hex(&rsa_pkcs1(Digest::Sha256).unwrap()),
            "300d06092a864886f70d01010b0500"
        );
        assert_eq!(
            hex(&ecdsa(Digest::Sha256).unwrap()),
            "300a06082a8648ce3d040302"
        );
        assert_eq!(
            hex(&ecdsa(Digest::Sha384).unwrap()),
            "300a06082a8648ce3d040303"
        );
        assert!(rsa_pkcs1(Digest::Other).is_none());
    }

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(0), vec![2, 1, 0]);
        assert_eq!(integer(128), vec![2, 2, 0, 128]);
    }
}
