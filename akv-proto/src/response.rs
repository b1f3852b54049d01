//! Parsers for what Key Vault and Managed HSM send back: key bundles (JWK public keys and
//! attributes), operation results, and error bodies. Unknown JSON members are ignored, as the
//! service adds new ones over time.
//!
//! Parse errors never quote the body: a decrypt result is secret, and serde's messages can
//! echo values, so they keep only the position and kind of the problem.

use std::fmt;

use http::StatusCode;
use serde::Deserialize;

use crate::algorithm::Curve;
use crate::b64;
use crate::text::clean_text;

/// Why a response body could not be understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not the JSON shape we expect.
    #[error("{what} is not valid JSON of the expected shape ({detail})")]
    Json {
        /// What we were parsing.
        what: &'static str,
        /// Kind and position of the problem (never the data).
        detail: String,
    },
    /// A field is not valid base64url.
    #[error("{what}: field '{field}' is not valid base64url")]
    Base64 {
        /// What we were parsing.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A required field is missing.
    #[error("{what}: field '{field}' is missing")]
    Missing {
        /// What we were parsing.
        what: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field holds something other than what it should.
    #[error("{what}: field '{field}' holds {detail}")]
    Invalid {
        /// What we were parsing.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// What it holds instead (sizes, never the data).
        detail: String,
    },
    /// The public key's numbers do not make a key we can use.
    #[error("the key's public part is invalid: {reason}")]
    InvalidKey {
        /// Why.
        reason: String,
    },
}

fn json_error(what: &'static str, e: &serde_json::Error) -> ResponseError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O",
        serde_json::error::Category::Syntax => "syntax error",
        serde_json::error::Category::Data => "unexpected type or value",
        serde_json::error::Category::Eof => "truncated",
    };
    ResponseError::Json {
        what,
        detail: format!("{kind} at line {} column {}", e.line(), e.column()),
    }
}

fn decode_field(
    what: &'static str,
    field: &'static str,
    value: Option<&str>,
) -> Result<Vec<u8>, ResponseError> {
    let value = value.ok_or(ResponseError::Missing { what, field })?;
    b64::decode(value).map_err(|_| ResponseError::Base64 { what, field })
}

/// A key as returned by `GET /keys/{name}[/{version}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBundle {
    /// The full key identifier, with version.
    pub kid: String,
    /// The JWK key type as sent (`RSA`, `RSA-HSM`, `EC`, `EC-HSM`, ...).
    pub kty: String,
    /// Permitted operations (`sign`, `decrypt`, ...), as sent.
    pub key_ops: Vec<String>,
    /// The public key.
    pub public_key: PublicKey,
    /// Attributes (enabled, validity period, ...).
    pub attributes: KeyAttributes,
}

/// A certificate as returned by `GET /certificates/{name}[/{version}]`: the X.509
/// certificate the vault holds for the key of the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateBundle {
    /// The certificate identifier, with version.
    pub id: String,
    /// The identifier of the certificate's key, with version (absent for a certificate
    /// imported without its key).
    pub kid: Option<String>,
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Attributes (enabled, validity period, ...).
    pub attributes: KeyAttributes,
}

/// A public key from a JWK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: big-endian modulus and exponent, without leading zero bytes.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// EC: the curve and the affine coordinates, each left-padded to the field size.
    Ec {
        /// Curve.
        curve: Curve,
        /// X coordinate.
        x: Vec<u8>,
        /// Y coordinate.
        y: Vec<u8>,
    },
    /// A key type this engine cannot use (symmetric `oct-HSM`, an unknown curve, ...).
    Unsupported {
        /// Why, in words.
        reason: String,
    },
}

impl PublicKey {
    /// RSA modulus size in bits, if RSA.
    pub fn rsa_bits(&self) -> Option<usize> {
        match self {
            PublicKey::Rsa { n, .. } => {
                let first = *n.first()?;
                Some(n.len() * 8 - first.leading_zeros() as usize)
            }
            _ => None,
        }
    }
}

/// Key attributes. Times are Unix seconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyAttributes {
    /// Whether the key is enabled (absent means enabled).
    pub enabled: Option<bool>,
    /// Not valid before.
    pub not_before: Option<i64>,
    /// Not valid after.
    pub expires: Option<i64>,
    /// Created.
    pub created: Option<i64>,
    /// Updated.
    pub updated: Option<i64>,
    /// Recovery level (`Recoverable+Purgeable`, ...).
    pub recovery_level: Option<String>,
}

/// Why a key cannot be used now, by its attributes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStateError {
    /// `enabled: false`.
    #[error(
        "the key is disabled in the vault; enable it (az keyvault key set-attributes --enabled true) or use another version"
    )]
    Disabled,
    /// Before `nbf`.
    #[error(
        "the key is not valid before {not_before} (Unix time); its activation date is in the future"
    )]
    NotYetValid {
        /// nbf.
        not_before: i64,
    },
    /// After `exp`.
    #[error(
        "the key expired at {expires} (Unix time); rotate to a new version or extend its expiry"
    )]
    Expired {
        /// exp.
        expires: i64,
    },
}

impl KeyAttributes {
    /// Whether the key may be used at `unix_now`.
    pub fn check_usable(&self, unix_now: i64) -> Result<(), KeyStateError> {
        if self.enabled == Some(false) {
            return Err(KeyStateError::Disabled);
        }
        if let Some(nbf) = self.not_before.filter(|nbf| unix_now < *nbf) {
            return Err(KeyStateError::NotYetValid { not_before: nbf });
        }
        if let Some(exp) = self.expires.filter(|exp| unix_now >= *exp) {
            return Err(KeyStateError::Expired { expires: exp });
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct RawBundle {
    key: Option<RawJwk>,
    #[serde(default)]
    attributes: RawAttributes,
}

#[derive(Deserialize)]
struct RawJwk {
    kid: Option<String>,
    kty: Option<String>,
    #[serde(default)]
    key_ops: Vec<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAttributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
    created: Option<i64>,
    updated: Option<i64>,
    #[serde(rename = "recoveryLevel")]
    recovery_level: Option<String>,
}

#[derive(Deserialize)]
struct RawCertificateBundle {
    id: Option<String>,
    kid: Option<String>,
    cer: Option<String>,
    #[serde(default)]
    attributes: RawAttributes,
}

const CERTIFICATE: &str = "certificate bundle";

/// Largest certificate we accept; real ones are a few kilobytes.
const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

impl CertificateBundle {
    /// Parses a certificate bundle body. The certificate is only checked to be one DER
    /// SEQUENCE of a sane size: OpenSSL parses it where it is used.
    pub fn from_json(body: &[u8]) -> Result<CertificateBundle, ResponseError> {
        let raw: RawCertificateBundle =
            serde_json::from_slice(body).map_err(|e| json_error(CERTIFICATE, &e))?;
        let id = raw.id.ok_or(ResponseError::Missing {
            what: CERTIFICATE,
            field: "id",
        })?;
        let der = decode_field(CERTIFICATE, "cer", raw.cer.as_deref())?;
        if der.first() != Some(&0x30) || der.len() > MAX_CERTIFICATE_BYTES {
            return Err(ResponseError::Invalid {
                what: CERTIFICATE,
                field: "cer",
                detail: format!("{} bytes that are not a DER certificate", der.len()),
            });
        }
        Ok(CertificateBundle {
            id,
            kid: raw.kid,
            der,
            attributes: raw.attributes.into(),
        })
    }
}

impl From<RawAttributes> for KeyAttributes {
    fn from(a: RawAttributes) -> KeyAttributes {
        KeyAttributes {
            enabled: a.enabled,
            not_before: a.nbf,
            expires: a.exp,
            created: a.created,
            updated: a.updated,
            recovery_level: a.recovery_level,
        }
    }
}

const BUNDLE: &str = "key bundle";

/// Largest RSA modulus we accept (Key Vault's largest is 4096 bits).
const MAX_RSA_BYTES: usize = 16384 / 8;

impl KeyBundle {
    /// Parses a key bundle body.
    pub fn from_json(body: &[u8]) -> Result<KeyBundle, ResponseError> {
        let raw: RawBundle = serde_json::from_slice(body).map_err(|e| json_error(BUNDLE, &e))?;
        let jwk = raw.key.ok_or(ResponseError::Missing {
            what: BUNDLE,
            field: "key",
        })?;
        let kid = jwk.kid.clone().ok_or(ResponseError::Missing {
            what: BUNDLE,
            field: "kid",
        })?;
        let kty = jwk.kty.clone().ok_or(ResponseError::Missing {
            what: BUNDLE,
            field: "kty",
        })?;
        let public_key = public_key_from_jwk(&kty, &jwk)?;
        Ok(KeyBundle {
            kid,
            kty,
            key_ops: jwk.key_ops,
            public_key,
            attributes: raw.attributes.into(),
        })
    }

    /// Whether `key_ops` lists `op` (case-insensitive). An empty list allows everything, as
    /// the service does not always send it.
    pub fn allows(&self, op: &str) -> bool {
        self.key_ops.is_empty() || self.key_ops.iter().any(|o| o.eq_ignore_ascii_case(op))
    }
}

fn public_key_from_jwk(kty: &str, jwk: &RawJwk) -> Result<PublicKey, ResponseError> {
    match kty {
        "RSA" | "RSA-HSM" => {
            let n = strip_zeros(decode_field(BUNDLE, "n", jwk.n.as_deref())?);
            let e = strip_zeros(decode_field(BUNDLE, "e", jwk.e.as_deref())?);
            if n.len() < 64 || n.len() > MAX_RSA_BYTES {
                return Err(ResponseError::InvalidKey {
                    reason: format!(
                        "RSA modulus of {} bytes (expected 512 to 16384 bits)",
                        n.len()
                    ),
                });
            }
            if e.is_empty() || e.len() > 8 || e[e.len() - 1] & 1 == 0 {
                return Err(ResponseError::InvalidKey {
                    reason: "RSA public exponent must be odd and at most 64 bits".into(),
                });
            }
            Ok(PublicKey::Rsa { n, e })
        }
        "EC" | "EC-HSM" => {
            let crv = jwk.crv.as_deref().ok_or(ResponseError::Missing {
                what: BUNDLE,
                field: "crv",
            })?;
            let Some(curve) = Curve::from_jwk_name(crv) else {
                return Ok(PublicKey::Unsupported {
                    reason: format!("curve {:?} is not supported", crate::text::shown(crv)),
                });
            };
            let x = fixed_width(decode_field(BUNDLE, "x", jwk.x.as_deref())?, curve, "x")?;
            let y = fixed_width(decode_field(BUNDLE, "y", jwk.y.as_deref())?, curve, "y")?;
            Ok(PublicKey::Ec { curve, x, y })
        }
        other => Ok(PublicKey::Unsupported {
            reason: format!(
                "key type {} is not an RSA or EC key",
                crate::text::shown(other)
            ),
        }),
    }
}

fn strip_zeros(mut bytes: Vec<u8>) -> Vec<u8> {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    bytes.drain(..zeros);
    bytes
}

/// JWK coordinates are fixed-width; some producers drop leading zeros, which we restore.
fn fixed_width(bytes: Vec<u8>, curve: Curve, field: &str) -> Result<Vec<u8>, ResponseError> {
    let width = curve.field_len();
    let bytes = strip_zeros(bytes);
    if bytes.len() > width {
        return Err(ResponseError::InvalidKey {
            reason: format!(
                "EC coordinate {field} is {} bytes, longer than {} for {curve}",
                bytes.len(),
                width
            ),
        });
    }
    let mut out = vec![0u8; width - bytes.len()];
    out.extend_from_slice(&bytes);
    Ok(out)
}

/// The result of sign, encrypt, decrypt, wrap and unwrap: `{"kid","value"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyOpResult {
    /// The key identifier the service used, if sent.
    pub kid: Option<String>,
    /// The decoded value (signature, ciphertext, plaintext or key).
    pub value: Vec<u8>,
}

impl fmt::Debug for KeyOpResult {
    /// Never prints the value: it may be a decrypted secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOpResult")
            .field("kid", &self.kid)
            .field("value_len", &self.value.len())
            .finish()
    }
}

#[derive(Deserialize)]
struct RawOpResult<'a> {
    kid: Option<String>,
    /// Borrowed from the body when it holds no escapes (base64url never does): decoded
    /// from there, not from a copy.
    #[serde(borrow)]
    value: Option<Text<'a>>,
}

/// A JSON string borrowed from the input when it can be, else owned. (serde's own `Cow`
/// always copies when inside an `Option`.)
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a str>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(v.to_owned().into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(v.into()))
            }
        }
        d.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

impl KeyOpResult {
    /// Parses an operation result body.
    pub fn from_json(body: &[u8]) -> Result<KeyOpResult, ResponseError> {
        const WHAT: &str = "operation result";
        let raw: RawOpResult = serde_json::from_slice(body).map_err(|e| json_error(WHAT, &e))?;
        let value = decode_field(WHAT, "value", raw.value.as_ref().map(|t| &*t.0))?;
        Ok(KeyOpResult {
            kid: raw.kid,
            value,
        })
    }
}

/// Parses a verify result body `{"value": true|false}`.
pub fn parse_verify_result(body: &[u8]) -> Result<bool, ResponseError> {
    const WHAT: &str = "verify result";
    #[derive(Deserialize)]
    struct Raw {
        value: Option<bool>,
    }
    let raw: Raw = serde_json::from_slice(body).map_err(|e| json_error(WHAT, &e))?;
    raw.value.ok_or(ResponseError::Missing {
        what: WHAT,
        field: "value",
    })
}

/// An error answer from the service, with everything an operator needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceError {
    /// HTTP status.
    pub status: StatusCode,
    /// Azure error code (`KeyNotFound`, `Forbidden`, `Throttled`, ...).
    pub code: Option<String>,
    /// The innermost `innererror.code` (`ForbiddenByRbac`, ...).
    pub inner_code: Option<String>,
    /// The service's message, cleaned of control characters and cut to a readable length.
    pub message: Option<String>,
    /// `x-ms-request-id`, for support cases.
    pub request_id: Option<String>,
}

#[derive(Deserialize)]
struct RawErrorBody {
    error: Option<RawError>,
}

#[derive(Deserialize)]
struct RawError {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<Box<RawError>>,
}

impl ServiceError {
    /// Builds the error from any non-success response; the body may be empty or not JSON.
    pub fn from_response(response: &http::Response<Vec<u8>>) -> ServiceError {
        let parsed: Option<RawErrorBody> = serde_json::from_slice(response.body()).ok();
        let error = parsed.and_then(|b| b.error);
        let (code, message, inner_code) = match error {
            Some(e) => {
                let mut inner = e.innererror.as_deref();
                let mut inner_code = None;
                // innererror nests; the innermost code is the most specific.
                let mut depth = 0;
                while let Some(i) = inner {
                    if i.code.is_some() {
                        inner_code = i.code.clone();
                    }
                    inner = i.innererror.as_deref();
                    depth += 1;
                    if depth > 8 {
                        break;
                    }
                }
                (e.code, e.message, inner_code)
            }
            None => {
                let text = String::from_utf8_lossy(response.body());
                let message = (!text.trim().is_empty()).then(|| text.into_owned());
                (None, message, None)
            }
        };
        let request_id = response
            .headers()
            .get(crate::read_headers::X_MS_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(|v| clean_text(v, 64));
        ServiceError {
            status: response.status(),
            code: code.map(|c| clean_text(&c, 64)),
            inner_code: inner_code.map(|c| clean_text(&c, 64)),
            message: message.map(|m| clean_text(&m, 400)),
            request_id,
        }
    }

    /// What the operator can do about it.
    pub fn hint(&self) -> &'static str {
        match (self.status.as_u16(), self.code.as_deref()) {
            (401, _) => {
                "check that the identity can get tokens for this vault's tenant and that the credential settings are right"
            }
            (403, _) => {
                "grant the identity a role that allows this operation on the key (for example 'Key Vault Crypto User'), or an access policy with the key permission, and check the vault's firewall"
            }
            (404, _) => "check the vault or HSM name, the key name and the version",
            (429, _) => {
                "the vault is throttling: spread load over more vaults or keys, or raise the per-operation budget"
            }
            (400, _) => {
                "the key cannot do this operation with these parameters (algorithm, key type or key_ops)"
            }
            (409, _) => "the key is in a conflicting state (being deleted or recovered)",
            (s, _) if s >= 500 => "the service failed; retry later",
            _ => "see the service's message",
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key Vault answered {}", self.status)?;
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        if let Some(inner) = &self.inner_code {
            write!(f, " ({inner})")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(id) = &self.request_id {
            write!(f, " [x-ms-request-id {id}]")?;
        }
        write!(f, "; {}", self.hint())
    }
}

impl std::error::Error for ServiceError {}

#[cfg(test)]
mod tests {

    #[test]
    fn certificate_bundles_refuse_what_is_not_a_certificate() {
        let ok = br#"{"id":"https://v.vault.azure.net/certificates/c/1","cer":"MAMCAQE="}"#;
        let c = CertificateBundle::from_json(ok).unwrap();
        assert_eq!(c.der, [0x30, 3, 2, 1, 1]);
        assert_eq!(c.kid, None);
        for (body, says) in [
            (&br#"{"cer":"MAMCAQE="}"#[..], "field 'id' is missing"),
            (br#"{"id":"i"}"#, "field 'cer' is missing"),
            (br#"{"id":"i","cer":"!!"}"#, "not valid base64url"),
            (
                br#"{"id":"i","cer":"AgEB"}"#,
                "3 bytes that are not a DER certificate",
            ),
            (
                br#"{"id":"i","cer":""}"#,
                "0 bytes that are not a DER certificate",
            ),
            (br#"{"id":5,"cer":"MAMCAQE="}"#, "not valid JSON"),
        ] {
            let e = CertificateBundle::from_json(body).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
        let huge = format!(r#"{{"id":"i","cer":"MII{}"}}"#, "A".repeat(100_000));
        assert!(CertificateBundle::from_json(huge.as_bytes()).is_err());
    }

    use super::*;

    #[test]
    fn ec_bundle_with_unknown_members() {
        let body = br#"{"attributes":{"created":1,"enabled":true,"exportable":false,"hsmPlatform":"0","key_size":256,"recoveryLevel":"Recoverable","updated":2},
            "key":{"crv":"P-256","key_ops":["verify","sign"],"kid":"https://h.managedhsm.azure.net/keys/k/0123456789abcdef0123456789abcdef","kty":"EC-HSM",
            "x":"AbEovQDDJonNdMThNpJvsOA67GDXelIHBdJLIM8xqrY","y":"qnsQsjgpxdtwrIKPLY1KlMX1Ol6se4s49i2Nb-zPs4I","future":{"a":[1]}},"managed":true}"#;
        let b = KeyBundle::from_json(body).unwrap();
        assert_eq!(b.kty, "EC-HSM");
        assert!(b.allows("SIGN"));
        assert!(!b.allows("decrypt"));
        match b.public_key {
            PublicKey::Ec { curve, x, y } => {
                assert_eq!(curve, Curve::P256);
                assert_eq!((x.len(), y.len()), (32, 32));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.attributes.enabled, Some(true));
    }

    #[test]
    fn short_ec_coordinates_are_padded_long_ones_refused() {
        let bundle = |x: &str| {
            format!(r#"{{"key":{{"kid":"k","kty":"EC","crv":"P-256","x":"{x}","y":"AQ"}}}}"#)
        };
        let b = KeyBundle::from_json(bundle("AQ").as_bytes()).unwrap();
        let PublicKey::Ec { x, .. } = b.public_key else {
            panic!()
        };
        assert_eq!(x.len(), 32);
        assert_eq!(x[31], 1);
        let long = b64::encode(&[1u8; 33]);
        assert!(matches!(
            KeyBundle::from_json(bundle(&long).as_bytes()),
            Err(ResponseError::InvalidKey { .. })
        ));
    }

    #[test]
    fn unsupported_types_parse_but_say_why() {
        let b = KeyBundle::from_json(br#"{"key":{"kid":"k","kty":"oct-HSM"}}"#).unwrap();
        assert!(
            matches!(b.public_key, PublicKey::Unsupported { reason } if reason.contains("oct-HSM"))
        );
        let b = KeyBundle::from_json(
            br#"{"key":{"kid":"k","kty":"EC","crv":"P-192","x":"AQ","y":"AQ"}}"#,
        )
        .unwrap();
        assert!(matches!(b.public_key, PublicKey::Unsupported { .. }));
    }

    #[test]
    fn broken_bundles() {
        for (body, want) in [
            (&b"{"[..], "truncated"),
            (b"", "truncated"),
            (b"[]", "unexpected type"),
            (b"{}", "'key' is missing"),
            (br#"{"key":{"kty":"RSA"}}"#, "'kid' is missing"),
            (
                br#"{"key":{"kid":"k","kty":"RSA","e":"AQAB"}}"#,
                "'n' is missing",
            ),
            (
                br#"{"key":{"kid":"k","kty":"RSA","n":"!!","e":"AQAB"}}"#,
                "base64",
            ),
            (
                br#"{"key":{"kid":"k","kty":"RSA","n":"AQAB","e":"AQAB"}}"#,
                "modulus",
            ),
            (
                br#"{"key":{"kid":"k","kty":"EC","x":"AQ","y":"AQ"}}"#,
                "'crv' is missing",
            ),
            (
                br#"{"key":{"kid":"k","kty":"RSA"},"attributes":{"nbf":"soon"}}"#,
                "unexpected type",
            ),
        ] {
            let err = KeyBundle::from_json(body).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "{}: {err}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn parse_errors_do_not_echo_the_body() {
        let err = KeyOpResult::from_json(br#"{"value":12345678, "kid":"SECRET-PLAINTEXT"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("12345678"), "{err}");
        let err = KeyOpResult::from_json(br#"{"value":"SECRET PLAINTEXT"}"#)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("SECRET"), "{err}");
        let r = KeyOpResult::from_json(br#"{"value":"c2VjcmV0"}"#).unwrap();
        assert!(!format!("{r:?}").contains("secret"));
        // JSON escapes in the value (legal, though the service sends none) are undone first.
        let r = KeyOpResult::from_json(br#"{"value":"c2Vj\u0063mV0","kid":"k"}"#).unwrap();
        assert_eq!(
            (r.value.as_slice(), r.kid.as_deref()),
            (&b"secret"[..], Some("k"))
        );
    }

    #[test]
    fn attributes_decide_usability() {
        let a = KeyAttributes {
            enabled: Some(true),
            not_before: Some(100),
            expires: Some(200),
            ..Default::default()
        };
        assert_eq!(a.check_usable(150), Ok(()));
        assert_eq!(
            a.check_usable(99),
            Err(KeyStateError::NotYetValid { not_before: 100 })
        );
        assert_eq!(
            a.check_usable(200),
            Err(KeyStateError::Expired { expires: 200 })
        );
        let off = KeyAttributes {
            enabled: Some(false),
            ..Default::default()
        };
        assert_eq!(off.check_usable(0), Err(KeyStateError::Disabled));
        assert_eq!(KeyAttributes::default().check_usable(0), Ok(()));
    }

    #[test]
    fn service_errors() {
        let response = http::Response::builder()
            .status(403)
            .header("x-ms-request-id", "abc-123")
            .body(br#"{"error":{"code":"Forbidden","message":"Caller is not authorized.\n","innererror":{"code":"ForbiddenByRbac"}}}"#.to_vec())
            .unwrap();
        let e = ServiceError::from_response(&response);
        assert_eq!(e.code.as_deref(), Some("Forbidden"));
        assert_eq!(e.inner_code.as_deref(), Some("ForbiddenByRbac"));
        let text = e.to_string();
        assert!(
            text.contains("403 Forbidden Forbidden (ForbiddenByRbac): Caller is not authorized."),
            "{text}"
        );
        assert!(text.contains("x-ms-request-id abc-123"));
        assert!(text.contains("Key Vault Crypto User"));

        let empty = http::Response::builder()
            .status(401)
            .body(Vec::new())
            .unwrap();
        let e = ServiceError::from_response(&empty);
        assert_eq!((e.code, e.message), (None, None));

        let html = http::Response::builder()
            .status(502)
            .body(b"<html>\x1b[31mBad gateway</html>".to_vec())
            .unwrap();
        let e = ServiceError::from_response(&html);
        assert_eq!(e.message.as_deref(), Some("<html> [31mBad gateway</html>"));
    }

    #[test]
    fn rsa_bits() {
        let mut n = vec![0x80u8];
        n.extend(vec![0u8; 255]);
        assert_eq!(
            PublicKey::Rsa {
                n,
                e: vec![1, 0, 1]
            }
            .rsa_bits(),
            Some(2048)
        );
    }
}
