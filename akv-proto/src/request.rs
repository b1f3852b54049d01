//! Request builders: a key, an operation and options in; an `http::Request<Vec<u8>>` out.
//! The URL is made only from a validated [`KeyId`], so nothing here can change its host.

use std::fmt;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request};

use crate::algorithm::{EncryptAlgorithm, SignAlgorithm};
pub use crate::api_version::ApiVersion;
use crate::b64;
use crate::key_id::KeyId;
use crate::token::AccessToken;

/// The request type all builders produce.
pub type HttpRequest = Request<Vec<u8>>;
/// The response type all parsers take.
pub type HttpResponse = http::Response<Vec<u8>>;

/// The operation to perform on a key.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyCall {
    /// Fetch the key's public part and attributes.
    GetKey,
    /// Fetch the certificate of the key's name (Key Vault only; Managed HSM keeps none).
    GetCertificate,
    /// Sign a digest.
    Sign {
        /// Algorithm.
        alg: SignAlgorithm,
        /// The digest (already sized for the algorithm).
        digest: Vec<u8>,
    },
    /// Verify a signature remotely (the engine verifies locally; offered for completeness).
    Verify {
        /// Algorithm.
        alg: SignAlgorithm,
        /// Digest.
        digest: Vec<u8>,
        /// Signature in Key Vault's format (raw r||s for ECDSA).
        signature: Vec<u8>,
    },
    /// Encrypt.
    Encrypt {
        /// Algorithm.
        alg: EncryptAlgorithm,
        /// Plaintext.
        plaintext: Vec<u8>,
    },
    /// Decrypt.
    Decrypt {
        /// Algorithm.
        alg: EncryptAlgorithm,
        /// Ciphertext.
        ciphertext: Vec<u8>,
    },
    /// Wrap a key.
    WrapKey {
        /// Algorithm.
        alg: EncryptAlgorithm,
        /// The key to wrap.
        key: Vec<u8>,
    },
    /// Unwrap a key.
    UnwrapKey {
        /// Algorithm.
        alg: EncryptAlgorithm,
        /// The wrapped key.
        wrapped: Vec<u8>,
    },
}

impl KeyCall {
    /// The operation's name as Key Vault's URL and `key_ops` spell it.
    pub fn name(&self) -> &'static str {
        match self {
            KeyCall::GetKey => "get",
            KeyCall::GetCertificate => "getCertificate",
            KeyCall::Sign { .. } => "sign",
            KeyCall::Verify { .. } => "verify",
            KeyCall::Encrypt { .. } => "encrypt",
            KeyCall::Decrypt { .. } => "decrypt",
            KeyCall::WrapKey { .. } => "wrapKey",
            KeyCall::UnwrapKey { .. } => "unwrapKey",
        }
    }

    /// Where a key keeps this operation's request URI (see `KeyId::request_uri`).
    fn slot(&self) -> usize {
        match self {
            KeyCall::GetKey => 0,
            KeyCall::GetCertificate => 1,
            KeyCall::Sign { .. } => 2,
            KeyCall::Verify { .. } => 3,
            KeyCall::Encrypt { .. } => 4,
            KeyCall::Decrypt { .. } => 5,
            KeyCall::WrapKey { .. } => 6,
            KeyCall::UnwrapKey { .. } => 7,
        }
    }

    /// The JSON body of an operation (none for the GETs), written straight from a struct: no
    /// JSON tree is built per request.
    fn body(&self) -> Option<Vec<u8>> {
        let (alg, digest, value): (&str, Option<&[u8]>, &[u8]) = match self {
            KeyCall::GetKey | KeyCall::GetCertificate => return None,
            KeyCall::Sign { alg, digest } => (alg.as_str(), None, digest),
            KeyCall::Verify {
                alg,
                digest,
                signature,
            } => (alg.as_str(), Some(digest), signature),
            KeyCall::Encrypt { alg, plaintext: v }
            | KeyCall::Decrypt { alg, ciphertext: v }
            | KeyCall::WrapKey { alg, key: v }
            | KeyCall::UnwrapKey { alg, wrapped: v } => (alg.as_str(), None, v),
        };
        // Written as text: the algorithms' names are JWA names and base64url has nothing JSON
        // escapes, so serde's escaping scan and field machinery had nothing to do but cost
        // 1,500 instructions a signature.
        let encoded = |n: usize| n.div_ceil(3) * 4;
        let mut body = Vec::with_capacity(
            40 + alg.len() + encoded(value.len()) + digest.map_or(0, |d| 12 + encoded(d.len())),
        );
        body.extend_from_slice(br#"{"alg":""#);
        body.extend_from_slice(alg.as_bytes());
        if let Some(digest) = digest {
            body.extend_from_slice(br#"","digest":""#);
            b64::encode_into(digest, &mut body);
        }
        body.extend_from_slice(br#"","value":""#);
        b64::encode_into(value, &mut body);
        body.extend_from_slice(br#""}"#);
        Some(body)
    }
}

impl fmt::Debug for KeyCall {
    /// Names the operation and sizes only: plaintexts and keys never reach logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyCall::GetKey => f.write_str("GetKey"),
            KeyCall::GetCertificate => f.write_str("GetCertificate"),
            KeyCall::Sign { alg, digest } => {
                write!(f, "Sign({}, {} bytes)", alg.as_str(), digest.len())
            }
            KeyCall::Verify { alg, .. } => write!(f, "Verify({})", alg.as_str()),
            KeyCall::Encrypt { alg, plaintext } => {
                write!(f, "Encrypt({}, {} bytes)", alg.as_str(), plaintext.len())
            }
            KeyCall::Decrypt { alg, ciphertext } => {
                write!(f, "Decrypt({}, {} bytes)", alg.as_str(), ciphertext.len())
            }
            KeyCall::WrapKey { alg, key } => {
                write!(f, "WrapKey({}, {} bytes)", alg.as_str(), key.len())
            }
            KeyCall::UnwrapKey { alg, wrapped } => {
                write!(f, "UnwrapKey({}, {} bytes)", alg.as_str(), wrapped.len())
            }
        }
    }
}

/// A client request id (`x-ms-client-request-id`): the caller makes it unique (proto has
/// no randomness); only characters safe in a header are kept. Held inline, not on the heap:
/// one is made for every operation.
#[derive(Clone)]
pub struct ClientRequestId {
    bytes: [u8; ClientRequestId::MAX],
    len: u8,
}

impl ClientRequestId {
    const MAX: usize = 64;

    /// Keeps `[0-9A-Za-z-]`, at most 64 characters.
    pub fn new(id: &str) -> ClientRequestId {
        let mut kept = ClientRequestId {
            bytes: [0; ClientRequestId::MAX],
            len: 0,
        };
        for b in id
            .bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'-')
            .take(ClientRequestId::MAX)
        {
            kept.bytes[usize::from(kept.len)] = b;
            kept.len += 1;
        }
        kept
    }

    /// Formats a UUID-shaped id from 128 caller-supplied random or unique bits.
    pub fn from_u128(bits: u128) -> ClientRequestId {
        // Where each byte's two hex digits go in `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
        const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        let mut id = ClientRequestId {
            bytes: [b'-'; ClientRequestId::MAX],
            len: 36,
        };
        // A byte's two digits from one table: an id is made for every operation.
        for (byte, at) in bits.to_be_bytes().into_iter().zip(AT) {
            id.bytes[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
        }
        id
    }

    /// The id's bytes: ASCII letters, digits and dashes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes())
            .expect("a request id holds ASCII letters, digits and dashes only")
    }
}

/// The two lowercase hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    pairs
};

/// Equal when the ids are (the bytes after them are whatever each constructor left).
impl PartialEq for ClientRequestId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ClientRequestId {}

impl std::fmt::Debug for ClientRequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClientRequestId")
            .field(&self.as_str())
            .finish()
    }
}

const CLIENT_REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-client-request-id");

/// Builds the request for `call` on `key`. With a token, the `Authorization` header is set
/// and marked sensitive. Without one, the request is the unauthenticated first request that
/// draws the service's 401 challenge.
pub fn build_request(
    key: &KeyId,
    call: &KeyCall,
    api_version: &ApiVersion,
    request_id: &ClientRequestId,
    token: Option<&AccessToken>,
) -> HttpRequest {
    let make_uri = || {
        let mut url = match call {
            KeyCall::GetKey => key.url(),
            KeyCall::GetCertificate => key.certificate_url(),
            other => {
                let mut url = key.url();
                url.push('/');
                url.push_str(other.name());
                url
            }
        };
        url.push_str("?api-version=");
        url.push_str(api_version.as_str());
        // The URL is made of a parsed KeyId and fixed parts; it always parses. (From the
        // String itself, which the URI keeps, rather than from a copy.)
        http::Uri::try_from(url).expect("a KeyId's URL is a valid URI")
    };
    let uri = key.request_uri(call.slot(), api_version, make_uri);
    // Operations POST a JSON body; the GETs have none.
    let body = call.body();
    let post = body.is_some();
    let mut request = Request::new(body.unwrap_or_default());
    if post {
        *request.method_mut() = Method::POST;
    }
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    headers.reserve(4);
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    // Request ids hold only [0-9A-Za-z-] (see ClientRequestId::new). The id is not asked
    // back (`x-ms-return-client-request-id`): nothing reads the echo (see `read_headers`).
    if let Ok(id) = HeaderValue::from_bytes(request_id.as_bytes()) {
        headers.insert(CLIENT_REQUEST_ID, id);
    }
    if post {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some(value) = token.and_then(|t| t.authorization_header()) {
        headers.insert(AUTHORIZATION, value);
    }
    request
}

/// Adds or replaces the `Authorization` header of a request.
pub fn authorize(request: &mut HttpRequest, token: &AccessToken) -> bool {
    match token.authorization_header() {
        Some(value) => {
            request.headers_mut().insert(AUTHORIZATION, value);
            true
        }
        None => {
            request.headers_mut().remove(AUTHORIZATION);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::KeyVersion;
    use crate::{Cloud, EndpointPolicy};
    use std::time::{Duration, Instant};

    fn key(s: &str) -> KeyId {
        KeyId::parse(s, &EndpointPolicy::new(Cloud::Public)).unwrap()
    }

    fn id() -> ClientRequestId {
        ClientRequestId::from_u128(0x0123456789abcdef0123456789abcdef)
    }

    #[test]
    fn request_ids_are_uuid_shaped() {
        let id = ClientRequestId::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(id.as_str(), "01234567-89ab-cdef-fedc-ba9876543210");
        assert_eq!(
            ClientRequestId::from_u128(0).as_str(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert_eq!(
            ClientRequestId::from_u128(u128::MAX).as_str(),
            "ffffffff-ffff-ffff-ffff-ffffffffffff"
        );
        // The same id however it was made.
        assert_eq!(ClientRequestId::new(id.as_str()), id);
        assert_ne!(ClientRequestId::new("01234567"), id);
    }

    #[test]
    fn get_key_with_and_without_version() {
        let r = build_request(
            &key("vault:v12:k"),
            &KeyCall::GetKey,
            &ApiVersion::default(),
            &id(),
            None,
        );
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri().to_string(),
            "https://v12.vault.azure.net/keys/k?api-version=2025-07-01"
        );
        assert!(r.body().is_empty());
        assert!(r.headers().get(AUTHORIZATION).is_none());
        assert_eq!(
            r.headers()["x-ms-client-request-id"],
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        let r = build_request(
            &key("vault:v12:k:0123456789abcdef0123456789abcdef"),
            &KeyCall::GetKey,
            &ApiVersion::parse("7.5").unwrap(),
            &id(),
            None,
        );
        assert_eq!(r.uri().path(), "/keys/k/0123456789abcdef0123456789abcdef");
        assert_eq!(r.uri().query(), Some("api-version=7.5"));
    }

    #[test]
    fn a_keys_kept_uris_follow_the_operation_the_version_and_the_api_version() {
        let k = key("vault:v12:k");
        let sign = || KeyCall::Sign {
            alg: SignAlgorithm::RS256,
            digest: vec![0; 32],
        };
        let uri = |k: &KeyId, call: &KeyCall, api: &str| {
            let api = ApiVersion::parse(api).unwrap();
            build_request(k, call, &api, &id(), None).uri().to_string()
        };
        let base = "https://v12.vault.azure.net/keys/k";
        for _ in 0..2 {
            assert_eq!(
                uri(&k, &sign(), "7.5"),
                format!("{base}/sign?api-version=7.5")
            );
            assert_eq!(
                uri(&k, &KeyCall::GetKey, "7.5"),
                format!("{base}?api-version=7.5")
            );
            // Another api-version on the same key: made anew, not the kept one.
            assert_eq!(
                uri(&k, &sign(), "7.4"),
                format!("{base}/sign?api-version=7.4")
            );
        }
        // A clone shares them; the key pinned to a version has its own.
        assert_eq!(
            uri(&k.clone(), &sign(), "7.5"),
            format!("{base}/sign?api-version=7.5")
        );
        let pinned = k.with_version(KeyVersion::parse("0123456789abcdef0123456789abcdef").unwrap());
        assert_eq!(
            uri(&pinned, &sign(), "7.5"),
            format!("{base}/0123456789abcdef0123456789abcdef/sign?api-version=7.5")
        );
        let other = "fedcba9876543210fedcba9876543210";
        let repinned = pinned.with_version(KeyVersion::parse(other).unwrap());
        assert_eq!(
            uri(&repinned, &sign(), "7.5"),
            format!("{base}/{other}/sign?api-version=7.5")
        );
        assert_eq!(k, k.clone());
    }

    #[test]
    fn get_certificate_names_the_certificate_of_the_key() {
        for (key_string, path) in [
            ("vault:v12:k", "/certificates/k"),
            (
                "vault:v12:k:0123456789abcdef0123456789abcdef",
                "/certificates/k/0123456789abcdef0123456789abcdef",
            ),
        ] {
            let r = build_request(
                &key(key_string),
                &KeyCall::GetCertificate,
                &ApiVersion::default(),
                &id(),
                None,
            );
            assert_eq!(r.method(), Method::GET);
            assert_eq!(r.uri().host(), Some("v12.vault.azure.net"));
            assert_eq!(r.uri().path(), path);
            assert!(r.body().is_empty());
        }
    }

    #[test]
    fn operation_bodies() {
        let k = key("managedHsm:h12:k:0123456789abcdef0123456789abcdef");
        let token = AccessToken::new("tok", Instant::now() + Duration::from_secs(60));
        let cases = [
            (
                KeyCall::Sign {
                    alg: SignAlgorithm::ES256,
                    digest: vec![0xfb; 32],
                },
                "sign",
                r#"{"alg":"ES256","value":"-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s"}"#,
            ),
            (
                KeyCall::Decrypt {
                    alg: EncryptAlgorithm::RsaOaep256,
                    ciphertext: vec![1, 2, 3],
                },
                "decrypt",
                r#"{"alg":"RSA-OAEP-256","value":"AQID"}"#,
            ),
            (
                KeyCall::Encrypt {
                    alg: EncryptAlgorithm::Rsa1_5,
                    plaintext: vec![1],
                },
                "encrypt",
                r#"{"alg":"RSA1_5","value":"AQ"}"#,
            ),
            (
                KeyCall::WrapKey {
                    alg: EncryptAlgorithm::RsaOaep,
                    key: vec![1],
                },
                "wrapKey",
                r#"{"alg":"RSA-OAEP","value":"AQ"}"#,
            ),
            (
                KeyCall::UnwrapKey {
                    alg: EncryptAlgorithm::RsaOaep,
                    wrapped: vec![1],
                },
                "unwrapKey",
                r#"{"alg":"RSA-OAEP","value":"AQ"}"#,
            ),
            (
                KeyCall::Verify {
                    alg: SignAlgorithm::RS256,
                    digest: vec![1],
                    signature: vec![2],
                },
                "verify",
                r#"{"alg":"RS256","digest":"AQ","value":"Ag"}"#,
            ),
        ];
        for (call, op, body) in cases {
            let r = build_request(&k, &call, &ApiVersion::default(), &id(), Some(&token));
            assert_eq!(r.method(), Method::POST);
            assert_eq!(
                r.uri().to_string(),
                format!(
                    "https://h12.managedhsm.azure.net/keys/k/0123456789abcdef0123456789abcdef/{op}?api-version=2025-07-01"
                )
            );
            // Byte for byte, and as JSON that serde reads back.
            assert_eq!(std::str::from_utf8(r.body()), Ok(body), "{op}");
            serde_json::from_slice::<serde_json::Value>(r.body()).unwrap();
            assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
            let auth = &r.headers()[AUTHORIZATION];
            assert_eq!(auth, "Bearer tok");
            assert!(auth.is_sensitive());
            assert!(!format!("{r:?}").contains("tok\""));
        }
        let unversioned = build_request(
            &key("vault:v12:k"),
            &KeyCall::Sign {
                alg: SignAlgorithm::RS256,
                digest: vec![0; 32],
            },
            &ApiVersion::default(),
            &id(),
            None,
        );
        assert_eq!(unversioned.uri().path(), "/keys/k/sign");
    }

    #[test]
    fn debug_of_calls_hides_data() {
        let call = KeyCall::Encrypt {
            alg: EncryptAlgorithm::RsaOaep,
            plaintext: b"hunter2".to_vec(),
        };
        assert_eq!(format!("{call:?}"), "Encrypt(RSA-OAEP, 7 bytes)");
    }

    #[test]
    fn request_ids_are_header_safe() {
        assert_eq!(ClientRequestId::new("a b\r\nc-1").as_str(), "abc-1");
    }
}
