//! `akv-proto`: the Azure Key Vault and Managed HSM keys protocol as data in, data out.
//!
//! This crate turns key strings, configuration, crypto parameters, `now` and HTTP responses
//! into validated key identifiers, `http::Request` values, decisions (get a token, send,
//! wait, done) and typed results. It is shared by the blocking and async HTTP backends and
//! the OpenSSL engine, so they all behave the same by construction.
//!
//! It must never do I/O: no sockets, no files, no environment variables, no clock, no
//! threads, no randomness. Time comes in as an argument; so does everything else.
//!
//! # Plugging in your own HTTP stack
//!
//! A transport is anything that turns a request into a response. Here it is a closure that
//! plays the vault; a real one would send the request over HTTPS.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use akv_proto::*;
//!
//! let policy = EndpointPolicy::new(Cloud::Public);
//! let key = KeyId::parse("vault:myvault:mykey", &policy).unwrap();
//! let (alg, digest) = ecdsa_sign(Curve::P256, &[0x5a; 32]).unwrap();
//!
//! // The transport: asserts what it is asked and answers like Key Vault does.
//! let mut send = |request: HttpRequest| -> Result<HttpResponse, TransportError> {
//!     assert_eq!(request.uri().path(), "/keys/mykey/sign");
//!     assert_eq!(request.headers()["authorization"], "Bearer my-token");
//!     let body = br#"{"kid":"https://myvault.vault.azure.net/keys/mykey/0123456789abcdef0123456789abcdef","value":"AQID"}"#;
//!     Ok(http::Response::builder().status(200).body(body.to_vec()).unwrap())
//! };
//!
//! let mut op = Operation::new(
//!     key,
//!     KeyCall::Sign { alg, digest: digest.into_owned() },
//!     OperationConfig::default(),
//!     ClientRequestId::new("example-1"),
//!     Instant::now(),
//! );
//! let result = loop {
//!     match op.poll(Instant::now()) {
//!         Poll::Token(need) => {
//!             assert_eq!(need.audience.as_str(), "https://vault.azure.net");
//!             let token = AccessToken::new("my-token", Instant::now() + Duration::from_secs(3600));
//!             op.handle_token(Ok(token), Instant::now());
//!         }
//!         Poll::Send(transmit) => match send(transmit.request) {
//!             Ok(response) => op.handle_response(response, Instant::now()),
//!             Err(error) => op.handle_transport_error(error, Instant::now()),
//!         },
//!         Poll::Wait(delay) => std::thread::sleep(delay),
//!         Poll::Done(result) => break result,
//!     }
//! };
//! assert_eq!(result.unwrap().into_value().unwrap(), [1, 2, 3]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod algorithm;
mod api_version;
pub mod b64;
mod breaker;
mod challenge;
mod cloud;
pub mod credential;
pub mod der;
mod driver;
mod ecdsa_der;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod h1;
mod key_id;
mod key_id_error;
pub mod key_ref;
mod names;
pub mod read_headers;
mod request;
mod response;
mod retry_after;
mod text;
mod token;
mod transport_config;
mod typed_call;

pub use algorithm::{
    AlgorithmError, Curve, Digest, EncryptAlgorithm, PssSaltLen, RsaDecryptParams, RsaPadding,
    RsaSignParams, SignAlgorithm, ecdsa_sign, rsa_decrypt, rsa_sign,
};
pub use breaker::{Admit, Breaker, BreakerPolicy, Outcome, Transition};
pub use challenge::{
    BearerChallenge, Challenge, ChallengeError, basic_realm, parse_www_authenticate,
};
pub use cloud::{Cloud, ServiceKind};
pub use driver::{
    Error, Operation, OperationConfig, Output, Poll, RetryPolicy, TokenNeed, Transmit,
    TransportError, TransportErrorKind,
};
pub use ecdsa_der::{
    SignatureFormatError, der_to_raw as ecdsa_der_to_raw, raw_to_der as ecdsa_raw_to_der,
};
pub use key_id::{
    AllowedHost, Endpoint, EndpointPolicy, KeyId, KeyService, MAX_KEY_STRING_LEN, Scheme,
};
pub use key_id_error::{KeyIdError, KeyIdPart};
pub use names::{KeyName, KeyVersion, VaultName};
pub use request::{
    ApiVersion, ClientRequestId, HttpRequest, HttpResponse, KeyCall, authorize, build_request,
};
pub use response::{
    CertificateBundle, KeyAttributes, KeyBundle, KeyOpResult, KeyStateError, PublicKey,
    ResponseError, ServiceError, parse_verify_result,
};
pub use retry_after::{MAX_RETRY_AFTER, retry_after};
pub use text::shown;
pub use token::{
    AccessToken, Acquire, Audience, AudienceError, CredentialError, FetchTicket, TokenCache,
    refresh_time,
};

pub use transport_config::{ProxySetting, TransportConfig};
pub use typed_call::TypedCall;

/// Token cache timing constants.
pub mod token_policy {
    pub use crate::token::{
        FAILED_REFRESH_PAUSE, HALF_LIFE_FROM, REFRESH_BEFORE_EXPIRY, SEND_MARGIN,
    };
}
