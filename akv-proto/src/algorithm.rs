//! From what OpenSSL tells a key method (padding mode, digest, PSS salt length, MGF1 digest,
//! curve, input) to the Key Vault algorithm and the exact bytes to send, or a clear reason why
//! the operation cannot be done remotely. Pure functions: the engine calls them, the tests
//! drive them with tables.

use std::borrow::Cow;
use std::fmt;

/// An ECDSA curve Key Vault supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Curve {
    /// NIST P-256 (prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// secp256k1.
    P256K,
}

impl Curve {
    /// Every supported curve.
    pub const ALL: [Curve; 4] = [Curve::P256, Curve::P384, Curve::P521, Curve::P256K];

    /// The JWK `crv` name.
    pub fn jwk_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
            Curve::P256K => "P-256K",
        }
    }

    /// Parses a JWK `crv` name (`SECP256K1` is an older spelling of `P-256K`).
    pub fn from_jwk_name(name: &str) -> Option<Curve> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            "P-521" => Some(Curve::P521),
            "P-256K" | "SECP256K1" => Some(Curve::P256K),
            _ => None,
        }
    }

    /// Bytes of a field element / scalar (the width of `r` and `s`).
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 | Curve::P256K => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    /// The Key Vault signing algorithm for this curve.
    pub fn sign_algorithm(self) -> SignAlgorithm {
        match self {
            Curve::P256 => SignAlgorithm::ES256,
            Curve::P384 => SignAlgorithm::ES384,
            Curve::P521 => SignAlgorithm::ES512,
            Curve::P256K => SignAlgorithm::ES256K,
        }
    }
}

impl fmt::Display for Curve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.jwk_name())
    }
}

/// Key Vault signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // The names are the standard JWA names.
pub enum SignAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES256K,
    ES384,
    ES512,
}

impl SignAlgorithm {
    /// The JWA name sent as `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignAlgorithm::RS256 => "RS256",
            SignAlgorithm::RS384 => "RS384",
            SignAlgorithm::RS512 => "RS512",
            SignAlgorithm::PS256 => "PS256",
            SignAlgorithm::PS384 => "PS384",
            SignAlgorithm::PS512 => "PS512",
            SignAlgorithm::ES256 => "ES256",
            SignAlgorithm::ES256K => "ES256K",
            SignAlgorithm::ES384 => "ES384",
            SignAlgorithm::ES512 => "ES512",
        }
    }

    /// The digest length Key Vault requires with this algorithm.
    pub fn digest_len(self) -> usize {
        match self {
            SignAlgorithm::RS256
            | SignAlgorithm::PS256
            | SignAlgorithm::ES256
            | SignAlgorithm::ES256K => 32,
            SignAlgorithm::RS384 | SignAlgorithm::PS384 | SignAlgorithm::ES384 => 48,
            SignAlgorithm::RS512 | SignAlgorithm::PS512 | SignAlgorithm::ES512 => 64,
        }
    }
}

/// Key Vault encryption / key-wrapping algorithms for RSA keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncryptAlgorithm {
    /// PKCS#1 v1.5 (`RSA1_5`).
    Rsa1_5,
    /// OAEP with SHA-1 and MGF1-SHA-1 (`RSA-OAEP`).
    RsaOaep,
    /// OAEP with SHA-256 and MGF1-SHA-256 (`RSA-OAEP-256`).
    RsaOaep256,
}

impl EncryptAlgorithm {
    /// The JWA name sent as `alg`.
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptAlgorithm::Rsa1_5 => "RSA1_5",
            EncryptAlgorithm::RsaOaep => "RSA-OAEP",
            EncryptAlgorithm::RsaOaep256 => "RSA-OAEP-256",
        }
    }
}

/// A message digest as OpenSSL names it. The engine maps OpenSSL NIDs to this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Digest {
    /// MD5.
    Md5,
    /// SHA-1.
    Sha1,
    /// The MD5+SHA-1 concatenation of TLS 1.0/1.1.
    Md5Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// Anything else (SHA-3, SHA-512/256, SM3, ...).
    Other,
}

impl Digest {
    /// Output length in bytes (`None` for [`Digest::Other`]).
    pub fn output_len(self) -> Option<usize> {
        match self {
            Digest::Md5 => Some(16),
            Digest::Sha1 => Some(20),
            Digest::Md5Sha1 => Some(36),
            Digest::Sha224 => Some(28),
            Digest::Sha256 => Some(32),
            Digest::Sha384 => Some(48),
            Digest::Sha512 => Some(64),
            Digest::Other => None,
        }
    }

    /// Maps an OpenSSL NID (`NID_sha256` = 672, ...) to a digest.
    pub fn from_openssl_nid(nid: i32) -> Digest {
        match nid {
            4 => Digest::Md5,
            64 => Digest::Sha1,
            114 => Digest::Md5Sha1,
            675 => Digest::Sha224,
            672 => Digest::Sha256,
            673 => Digest::Sha384,
            674 => Digest::Sha512,
            _ => Digest::Other,
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Digest::Md5 => "MD5",
            Digest::Sha1 => "SHA-1",
            Digest::Md5Sha1 => "MD5-SHA1",
            Digest::Sha224 => "SHA-224",
            Digest::Sha256 => "SHA-256",
            Digest::Sha384 => "SHA-384",
            Digest::Sha512 => "SHA-512",
            Digest::Other => "this digest",
        })
    }
}

/// RSA padding mode, as OpenSSL's `RSA_*_PADDING` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RsaPadding {
    /// `RSA_PKCS1_PADDING` (1).
    Pkcs1,
    /// `RSA_NO_PADDING` (3): raw RSA.
    None,
    /// `RSA_PKCS1_OAEP_PADDING` (4).
    Oaep,
    /// `RSA_X931_PADDING` (5).
    X931,
    /// `RSA_PKCS1_PSS_PADDING` (6).
    Pss,
    /// Any other value.
    Other(i32),
}

impl RsaPadding {
    /// Maps OpenSSL's padding number.
    pub fn from_openssl(value: i32) -> RsaPadding {
        match value {
            1 => RsaPadding::Pkcs1,
            3 => RsaPadding::None,
            4 => RsaPadding::Oaep,
            5 => RsaPadding::X931,
            6 => RsaPadding::Pss,
            other => RsaPadding::Other(other),
        }
    }
}

/// PSS salt length as OpenSSL expresses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PssSaltLen {
    /// `RSA_PSS_SALTLEN_DIGEST` (-1): as long as the digest.
    Digest,
    /// `RSA_PSS_SALTLEN_AUTO` (-2): for signing, the maximum.
    Auto,
    /// `RSA_PSS_SALTLEN_MAX` (-3): the maximum.
    Max,
    /// `RSA_PSS_SALTLEN_AUTO_DIGEST_MAX` (-4, OpenSSL 3.1+): the digest length if it fits.
    AutoDigestMax,
    /// An explicit length in bytes.
    Bytes(u32),
}

impl PssSaltLen {
    /// Maps OpenSSL's salt length value (`None` for values OpenSSL itself rejects).
    pub fn from_openssl(value: i32) -> Option<PssSaltLen> {
        match value {
            -1 => Some(PssSaltLen::Digest),
            -2 => Some(PssSaltLen::Auto),
            -3 => Some(PssSaltLen::Max),
            -4 => Some(PssSaltLen::AutoDigestMax),
            n if n >= 0 => Some(PssSaltLen::Bytes(n as u32)),
            _ => None,
        }
    }
}

/// Why an operation cannot be done by Key Vault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlgorithmError {
    /// Raw RSA or another padding Key Vault does not offer.
    #[error(
        "RSA padding {0:?} is not possible remotely: Key Vault signs with PKCS#1 v1.5 or PSS and decrypts PKCS#1 v1.5 or OAEP only"
    )]
    Padding(RsaPadding),
    /// A digest Key Vault cannot sign with.
    #[error(
        "{digest} cannot be signed remotely: Key Vault RSA signatures use SHA-256, SHA-384 or SHA-512"
    )]
    Digest {
        /// The digest.
        digest: Digest,
    },
    /// The data handed in does not match the digest length.
    #[error("input of {got} bytes does not match the {digest} digest length of {want} bytes")]
    InputLength {
        /// The digest.
        digest: Digest,
        /// Bytes expected.
        want: usize,
        /// Bytes given.
        got: usize,
    },
    /// PKCS#1 signing without a digest and the input is not a recognised DigestInfo.
    #[error(
        "PKCS#1 signing without a digest needs a SHA-256/384/512 DigestInfo as input ({got} bytes given); set a digest (e.g. -digest sha256 or -pkeyopt digest:sha256)"
    )]
    NoDigest {
        /// Bytes given.
        got: usize,
    },
    /// PSS with parameters Key Vault does not use.
    #[error(
        "PSS with {what} is not possible remotely: Key Vault uses MGF1 with the message digest and a salt as long as the digest (set -pkeyopt rsa_pss_saltlen:digest)"
    )]
    PssParameters {
        /// What was wrong, in words.
        what: String,
    },
    /// OAEP with parameters Key Vault does not use.
    #[error(
        "OAEP with {what} is not possible remotely: Key Vault decrypts RSA-OAEP (SHA-1) and RSA-OAEP-256 (SHA-256 with MGF1-SHA-256), without a label"
    )]
    OaepParameters {
        /// What was wrong, in words.
        what: String,
    },
    /// An ECDSA digest longer than Key Vault accepts for the curve.
    #[error("a {got}-byte digest cannot be signed with {curve} remotely (at most {max} bytes)")]
    EcdsaDigestTooLong {
        /// Curve.
        curve: Curve,
        /// Bytes given.
        got: usize,
        /// Limit.
        max: usize,
    },
}

/// What OpenSSL asks of an RSA sign operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaSignParams {
    /// Padding mode.
    pub padding: RsaPadding,
    /// The signature digest, if set on the context.
    pub digest: Option<Digest>,
    /// PSS salt length (ignored for PKCS#1).
    pub salt_len: PssSaltLen,
    /// PSS MGF1 digest; `None` means "same as the digest".
    pub mgf1: Option<Digest>,
    /// The key's modulus size in bits (decides what "maximum salt" means).
    pub modulus_bits: usize,
}

/// DER prefixes of the DigestInfo structures PKCS#1 v1.5 wraps around SHA-2 digests
/// (RFC 8017 section 9.2, note 1).
const DIGEST_INFO_PREFIXES: [(Digest, &[u8]); 3] = [
    (
        Digest::Sha256,
        &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
    ),
    (
        Digest::Sha384,
        &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
    ),
    (
        Digest::Sha512,
        &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
    ),
];

fn rsa_algorithm(pss: bool, digest: Digest) -> Result<SignAlgorithm, AlgorithmError> {
    Ok(match (pss, digest) {
        (false, Digest::Sha256) => SignAlgorithm::RS256,
        (false, Digest::Sha384) => SignAlgorithm::RS384,
        (false, Digest::Sha512) => SignAlgorithm::RS512,
        (true, Digest::Sha256) => SignAlgorithm::PS256,
        (true, Digest::Sha384) => SignAlgorithm::PS384,
        (true, Digest::Sha512) => SignAlgorithm::PS512,
        (_, digest) => return Err(AlgorithmError::Digest { digest }),
    })
}

fn check_len(digest: Digest, input: &[u8]) -> Result<(), AlgorithmError> {
    match digest.output_len() {
        Some(want) if want == input.len() => Ok(()),
        Some(want) => Err(AlgorithmError::InputLength {
            digest,
            want,
            got: input.len(),
        }),
        None => Err(AlgorithmError::Digest { digest }),
    }
}

/// Chooses the Key Vault algorithm for an RSA signature and returns it with the digest to
/// send. `input` is what OpenSSL passes to the sign callback: the digest, or (PKCS#1 without
/// a digest set) a DigestInfo. The digest is a part of `input`, not a copy.
pub fn rsa_sign<'a>(
    params: &RsaSignParams,
    input: &'a [u8],
) -> Result<(SignAlgorithm, &'a [u8]), AlgorithmError> {
    match params.padding {
        RsaPadding::Pkcs1 => match params.digest {
            Some(digest) => {
                let alg = rsa_algorithm(false, digest)?;
                check_len(digest, input)?;
                Ok((alg, input))
            }
            None => {
                for (digest, prefix) in DIGEST_INFO_PREFIXES {
                    if let Some(hash) = input.strip_prefix(prefix) {
                        if Some(hash.len()) == digest.output_len() {
                            return Ok((rsa_algorithm(false, digest)?, hash));
                        }
                    }
                }
                Err(AlgorithmError::NoDigest { got: input.len() })
            }
        },
        RsaPadding::Pss => {
            let digest = params.digest.ok_or_else(|| AlgorithmError::PssParameters {
                what: "no digest set".into(),
            })?;
            let alg = rsa_algorithm(true, digest)?;
            check_len(digest, input)?;
            if let Some(mgf1) = params.mgf1.filter(|m| *m != digest) {
                return Err(AlgorithmError::PssParameters {
                    what: format!("MGF1 using {mgf1} while the digest is {digest}"),
                });
            }
            let hash_len = alg.digest_len();
            // EMSA-PSS: emLen = ceil((modBits - 1) / 8); the largest salt is emLen - hLen - 2.
            let em_len = params.modulus_bits.saturating_sub(1).div_ceil(8);
            let max_salt = em_len.saturating_sub(hash_len + 2);
            let salt = match params.salt_len {
                PssSaltLen::Digest | PssSaltLen::AutoDigestMax => hash_len,
                PssSaltLen::Auto | PssSaltLen::Max => max_salt,
                PssSaltLen::Bytes(n) => n as usize,
            };
            if salt != hash_len {
                return Err(AlgorithmError::PssParameters {
                    what: format!("a salt of {salt} bytes ({hash_len} needed)"),
                });
            }
            Ok((alg, input))
        }
        other => Err(AlgorithmError::Padding(other)),
    }
}

/// What OpenSSL asks of an RSA decrypt operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RsaDecryptParams {
    /// Padding mode.
    pub padding: RsaPadding,
    /// OAEP digest (`None` = OpenSSL's default, SHA-1).
    pub oaep_digest: Option<Digest>,
    /// OAEP MGF1 digest (`None` = same as the OAEP digest).
    pub mgf1: Option<Digest>,
    /// Length of the OAEP label; Key Vault supports none.
    pub label_len: usize,
}

/// Chooses the Key Vault algorithm for an RSA decryption.
pub fn rsa_decrypt(params: &RsaDecryptParams) -> Result<EncryptAlgorithm, AlgorithmError> {
    match params.padding {
        RsaPadding::Pkcs1 => Ok(EncryptAlgorithm::Rsa1_5),
        RsaPadding::Oaep => {
            if params.label_len != 0 {
                return Err(AlgorithmError::OaepParameters {
                    what: format!("a {}-byte label", params.label_len),
                });
            }
            let digest = params.oaep_digest.unwrap_or(Digest::Sha1);
            let mgf1 = params.mgf1.unwrap_or(digest);
            match (digest, mgf1) {
                (Digest::Sha1, Digest::Sha1) => Ok(EncryptAlgorithm::RsaOaep),
                (Digest::Sha256, Digest::Sha256) => Ok(EncryptAlgorithm::RsaOaep256),
                (d, m) => Err(AlgorithmError::OaepParameters {
                    what: format!("{d} and MGF1 {m}"),
                }),
            }
        }
        other => Err(AlgorithmError::Padding(other)),
    }
}

/// Chooses the algorithm for an ECDSA signature and the digest bytes to send.
///
/// Key Vault wants exactly 32/48/64 bytes for ES256(K)/ES384/ES512. ECDSA uses the leftmost
/// bits of a digest longer than the group order, so a longer digest is cut to the curve size
/// (P-256 and P-384 orders are whole bytes). A shorter digest is left-padded with zeros,
/// which leaves the integer ECDSA derives from it unchanged. Only a padded digest is a copy.
pub fn ecdsa_sign(
    curve: Curve,
    digest: &[u8],
) -> Result<(SignAlgorithm, Cow<'_, [u8]>), AlgorithmError> {
    let alg = curve.sign_algorithm();
    let want = alg.digest_len();
    let bytes = if digest.len() >= want {
        if curve == Curve::P521 && digest.len() > want {
            // P-521's order is 521 bits: a digest over 64 bytes would be cut at a bit
            // position no 64-byte input can express.
            return Err(AlgorithmError::EcdsaDigestTooLong {
                curve,
                got: digest.len(),
                max: want,
            });
        }
        Cow::Borrowed(&digest[..want])
    } else {
        let mut padded = vec![0u8; want - digest.len()];
        padded.extend_from_slice(digest);
        Cow::Owned(padded)
    };
    Ok((alg, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkcs1(digest: Option<Digest>) -> RsaSignParams {
        RsaSignParams {
            padding: RsaPadding::Pkcs1,
            digest,
            salt_len: PssSaltLen::Digest,
            mgf1: None,
            modulus_bits: 2048,
        }
    }

    fn pss(
        digest: Digest,
        salt_len: PssSaltLen,
        mgf1: Option<Digest>,
        bits: usize,
    ) -> RsaSignParams {
        RsaSignParams {
            padding: RsaPadding::Pss,
            digest: Some(digest),
            salt_len,
            mgf1,
            modulus_bits: bits,
        }
    }

    #[test]
    fn rsa_sign_table() {
        use super::Digest::*;
        use PssSaltLen::{Auto, AutoDigestMax, Bytes, Max};
        use SignAlgorithm::*;
        let ok: &[(RsaSignParams, usize, SignAlgorithm)] = &[
            (pkcs1(Some(Sha256)), 32, RS256),
            (pkcs1(Some(Sha384)), 48, RS384),
            (pkcs1(Some(Sha512)), 64, RS512),
            (pss(Sha256, PssSaltLen::Digest, None, 2048), 32, PS256),
            (
                pss(Sha384, PssSaltLen::Digest, Some(Sha384), 3072),
                48,
                PS384,
            ),
            (pss(Sha512, Bytes(64), None, 4096), 64, PS512),
            (pss(Sha256, AutoDigestMax, None, 2048), 32, PS256),
            // Keys of 522..=529 bits have emLen 66 and a largest salt of 66 - 32 - 2 = 32
            // bytes: only there does "max" mean the same as "digest" for SHA-256.
            (pss(Sha256, Max, None, 528), 32, PS256),
            (pss(Sha256, Auto, None, 525), 32, PS256),
        ];
        for (params, len, want) in ok {
            let input = vec![7u8; *len];
            let (alg, sent) = rsa_sign(params, &input).unwrap();
            assert_eq!(alg, *want, "{params:?}");
            assert_eq!(sent.len(), want.digest_len());
        }
        let bad: &[(RsaSignParams, usize, &str)] = &[
            (pkcs1(Some(Sha1)), 20, "SHA-1 cannot be signed"),
            (pkcs1(Some(Md5Sha1)), 36, "MD5-SHA1 cannot"),
            (pkcs1(Some(Sha224)), 28, "SHA-224"),
            (pkcs1(Some(Other)), 32, "this digest"),
            (pkcs1(Some(Sha256)), 33, "33 bytes does not match"),
            (pkcs1(None), 32, "DigestInfo"),
            (pss(Sha256, Max, None, 2048), 32, "salt of 222 bytes"),
            (pss(Sha256, Max, None, 521), 32, "salt of 31 bytes"),
            (pss(Sha256, Auto, None, 2048), 32, "salt of 222 bytes"),
            (pss(Sha256, Bytes(20), None, 2048), 32, "salt of 20 bytes"),
            (
                pss(Sha256, PssSaltLen::Digest, Some(Sha1), 2048),
                32,
                "MGF1 using SHA-1",
            ),
            (
                RsaSignParams {
                    padding: RsaPadding::None,
                    ..pkcs1(Some(Sha256))
                },
                256,
                "not possible remotely",
            ),
            (
                RsaSignParams {
                    padding: RsaPadding::X931,
                    ..pkcs1(Some(Sha256))
                },
                32,
                "X931",
            ),
            (
                RsaSignParams {
                    digest: None,
                    ..pss(Sha256, PssSaltLen::Digest, None, 2048)
                },
                32,
                "no digest",
            ),
        ];
        for (params, len, want) in bad {
            let err = rsa_sign(params, &vec![7u8; *len]).unwrap_err().to_string();
            assert!(err.contains(want), "{params:?}: {err}");
        }
    }

    #[test]
    fn pkcs1_digest_info_without_a_digest() {
        for (digest, prefix) in DIGEST_INFO_PREFIXES {
            let hash = vec![9u8; digest.output_len().unwrap()];
            let mut input = prefix.to_vec();
            input.extend_from_slice(&hash);
            let (alg, sent) = rsa_sign(&pkcs1(None), &input).unwrap();
            assert_eq!(alg.digest_len(), hash.len());
            assert!(alg.as_str().starts_with("RS"));
            assert_eq!(sent, hash);
        }
        // A prefix with the wrong length behind it is not a DigestInfo.
        let mut short = DIGEST_INFO_PREFIXES[0].1.to_vec();
        short.extend_from_slice(&[1; 31]);
        assert!(rsa_sign(&pkcs1(None), &short).is_err());
    }

    #[test]
    fn rsa_decrypt_table() {
        use super::Digest::*;
        let p = |padding, oaep_digest, mgf1, label_len| RsaDecryptParams {
            padding,
            oaep_digest,
            mgf1,
            label_len,
        };
        let table: &[(RsaDecryptParams, Result<EncryptAlgorithm, &str>)] = &[
            (
                p(RsaPadding::Pkcs1, None, None, 0),
                Ok(EncryptAlgorithm::Rsa1_5),
            ),
            (
                p(RsaPadding::Oaep, None, None, 0),
                Ok(EncryptAlgorithm::RsaOaep),
            ),
            (
                p(RsaPadding::Oaep, Some(Sha1), Some(Sha1), 0),
                Ok(EncryptAlgorithm::RsaOaep),
            ),
            (
                p(RsaPadding::Oaep, Some(Sha256), None, 0),
                Ok(EncryptAlgorithm::RsaOaep256),
            ),
            (
                p(RsaPadding::Oaep, Some(Sha256), Some(Sha256), 0),
                Ok(EncryptAlgorithm::RsaOaep256),
            ),
            (
                p(RsaPadding::Oaep, Some(Sha256), Some(Sha1), 0),
                Err("SHA-256 and MGF1 SHA-1"),
            ),
            (p(RsaPadding::Oaep, Some(Sha384), None, 0), Err("SHA-384")),
            (p(RsaPadding::Oaep, None, None, 5), Err("5-byte label")),
            (
                p(RsaPadding::None, None, None, 0),
                Err("not possible remotely"),
            ),
            (p(RsaPadding::Pss, None, None, 0), Err("Pss")),
        ];
        for (params, want) in table {
            match (rsa_decrypt(params), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want),
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{e}"),
                (got, want) => panic!("{params:?}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn ecdsa_table() {
        let digest: Vec<u8> = (1..=64).collect();
        let table: &[(Curve, usize, SignAlgorithm, usize)] = &[
            (Curve::P256, 32, SignAlgorithm::ES256, 32),
            (Curve::P256, 48, SignAlgorithm::ES256, 32),
            (Curve::P256, 64, SignAlgorithm::ES256, 32),
            (Curve::P256, 20, SignAlgorithm::ES256, 32),
            (Curve::P256K, 32, SignAlgorithm::ES256K, 32),
            (Curve::P384, 48, SignAlgorithm::ES384, 48),
            (Curve::P384, 64, SignAlgorithm::ES384, 48),
            (Curve::P384, 32, SignAlgorithm::ES384, 48),
            (Curve::P521, 64, SignAlgorithm::ES512, 64),
            (Curve::P521, 32, SignAlgorithm::ES512, 64),
        ];
        for (curve, len, want_alg, sent_len) in table {
            let (alg, sent) = ecdsa_sign(*curve, &digest[..*len]).unwrap();
            assert_eq!(alg, *want_alg);
            assert_eq!(sent.len(), *sent_len);
            if *len >= *sent_len {
                assert!(
                    matches!(sent, Cow::Borrowed(b) if b == &digest[..*sent_len]),
                    "truncation keeps the leftmost bytes, without a copy"
                );
            } else {
                assert!(sent[..sent_len - len].iter().all(|b| *b == 0));
                assert_eq!(sent[sent_len - len..], digest[..*len]);
            }
        }
        assert!(ecdsa_sign(Curve::P521, &[1u8; 66]).is_err());
    }

    #[test]
    fn openssl_numbers() {
        assert_eq!(Digest::from_openssl_nid(672), Digest::Sha256);
        assert_eq!(Digest::from_openssl_nid(1096), Digest::Other);
        assert_eq!(RsaPadding::from_openssl(6), RsaPadding::Pss);
        assert_eq!(PssSaltLen::from_openssl(-1), Some(PssSaltLen::Digest));
        assert_eq!(PssSaltLen::from_openssl(32), Some(PssSaltLen::Bytes(32)));
        assert_eq!(PssSaltLen::from_openssl(-9), None);
    }
}
