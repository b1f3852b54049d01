//! One scenario table, run against both backends (blocking ureq and async hyper) with
//! wiremock playing Key Vault and IMDS. Each scenario asserts the result and the exact
//! requests the server saw: count, method, path, api-version, headers and body.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use akv_proto::credential::CredentialSource;
use akv_proto::{
    EncryptAlgorithm, Error, KeyCall, OperationConfig, Output, PublicKey, SignAlgorithm,
    TransportErrorKind, b64,
};
use akv_tests::backends::{BACKENDS, Backend, Client};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const VERSION: &str = "0123456789abcdef0123456789abcdef";
const CHALLENGE: &str = r#"Bearer authorization="https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net""#;

/// The runtime the mock servers run on, apart from the clients under test.
fn control_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The vault and IMDS are the same mock server.
fn client(backend: Backend, origin: &str, config: OperationConfig) -> Client {
    Client::new(
        backend,
        origin,
        config,
        CredentialSource::imds(origin, None).unwrap(),
        None,
    )
}

fn imds_token(token: &str, expires_in: u64) -> Mock {
    Mock::given(method("GET")).and(path("/metadata/identity/oauth2/token")).respond_with(ResponseTemplate::new(200).set_body_json(json!({
        "access_token": token, "expires_in": expires_in.to_string(), "expires_on": "0", "resource": "https://vault.azure.net", "token_type": "Bearer"
    })))
}

fn op_result(value: &[u8]) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .insert_header("x-ms-request-id", "req-ok")
        .set_body_json(json!({"kid": format!("https://myvault.vault.azure.net/keys/k/{VERSION}"), "value": b64::encode(value)}))
}

fn kv_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-ms-request-id", "req-err")
        .set_body_json(json!({"error": {"code": code, "message": message}}))
}

fn any_key_request() -> wiremock::MockBuilder {
    Mock::given(path_regex("^/keys/"))
}

/// What a request must look like.
#[derive(Clone, Debug)]
struct Seen {
    method: &'static str,
    path: String,
    auth: Option<&'static str>,
    body: Option<Value>,
}

fn token_request() -> Seen {
    Seen {
        method: "GET",
        path: "/metadata/identity/oauth2/token".into(),
        auth: None,
        body: None,
    }
}

fn key_request(method: &'static str, path: &str, auth: &'static str, body: Option<Value>) -> Seen {
    Seen {
        method,
        path: path.into(),
        auth: Some(auth),
        body,
    }
}

fn check_requests(
    server: &MockServer,
    runtime: &tokio::runtime::Runtime,
    expected: &[Seen],
    context: &str,
    one_operation: bool,
) {
    let received = runtime.block_on(server.received_requests()).unwrap();
    let summary: Vec<String> = received
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        received.len(),
        expected.len(),
        "{context}: requests seen: {summary:?}"
    );
    let mut client_request_id = None;
    for (i, (got, want)) in received.iter().zip(expected).enumerate() {
        let ctx = format!("{context}, request {i}");
        assert_eq!(got.method.as_str(), want.method, "{ctx}");
        assert_eq!(got.url.path(), want.path, "{ctx}");
        let query: Vec<(String, String)> = got.url.query_pairs().into_owned().collect();
        if want.path.starts_with("/keys/") || want.path.starts_with("/certificates/") {
            assert_eq!(
                query,
                [("api-version".to_owned(), "2025-07-01".to_owned())],
                "{ctx}"
            );
            let auth = got
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(
                auth.as_deref(),
                want.auth.map(|t| format!("Bearer {t}")).as_deref(),
                "{ctx}"
            );
            let id = got
                .headers
                .get("x-ms-client-request-id")
                .expect("client request id")
                .to_str()
                .unwrap()
                .to_owned();
            // Retries of one operation keep its client request id.
            if let Some(previous) = client_request_id.as_ref().filter(|_| one_operation) {
                assert_eq!(&id, previous, "{ctx}");
            }
            client_request_id = Some(id);
            match &want.body {
                Some(body) => {
                    assert_eq!(
                        got.headers.get("content-type").unwrap(),
                        "application/json",
                        "{ctx}"
                    );
                    assert_eq!(&got.body_json::<Value>().unwrap(), body, "{ctx}");
                }
                None => assert!(got.body.is_empty(), "{ctx}"),
            }
        } else {
            assert_eq!(got.headers.get("metadata").unwrap(), "true", "{ctx}");
            assert!(
                query.contains(&("resource".into(), "https://vault.azure.net".into())),
                "{ctx}: {query:?}"
            );
            assert!(
                got.headers.get("authorization").is_none(),
                "{ctx}: no token goes to IMDS"
            );
        }
    }
}

/// One row of the table.
struct Scenario {
    name: &'static str,
    mocks: fn() -> Vec<Mock>,
    call: fn() -> KeyCall,
    config: fn() -> OperationConfig,
    check: fn(&Result<Output, Error>, Duration),
    requests: fn() -> Vec<Seen>,
}

fn default_config() -> OperationConfig {
    OperationConfig::default()
}

fn sign_es256() -> KeyCall {
    KeyCall::Sign {
        alg: SignAlgorithm::ES256,
        digest: vec![0xab; 32],
    }
}

fn sign_body() -> Option<Value> {
    Some(json!({"alg": "ES256", "value": b64::encode(&[0xab; 32])}))
}

fn signed(result: &Result<Output, Error>, _: Duration) {
    assert_eq!(
        result.as_ref().unwrap().clone().into_value().unwrap(),
        [1, 2, 3]
    );
}

fn sign_path() -> String {
    "/keys/k/sign".into()
}

const RSA_BUNDLE: &str = r#"{"key":{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","kty":"RSA","key_ops":["sign","decrypt"],"n":"2HJAE5fU3Cw2Rt9hEuq-F6XjINKGa-zskfISVqopqUy60GOs2eyhxbWbJBeUXNor_gf-tXtNeuqeBgitLeVa640UDvnEjYTKWjCniTxZRaU7ewY8BfTSk-7KxoDdLsPSpX_MX4rwlAx-_1UGk5t4sQgTbm9T6Fm2oqFd37dsz5-Gj27UP2GTAShfJPFD7MqU_zIgOI0pfqsbNL5xTQVM29K6rX4jSPtylZV3uWJtkoQIQnrIHhk1d0SC0KwlBV3V7R_LVYjiXLyIXsFzSNYgQ68ZjAwt8iL7I8Osa-ehQLM13DVvLASaf7Jnu3sC3CWl3Gyirgded6cfMmswJzY87w","e":"AQAB","future_member":{"x":1}},"attributes":{"enabled":true,"created":1,"updated":2,"recoveryLevel":"Recoverable","hsmPlatform":"0","key_size":2048},"tags":{"a":"b"},"unknown":[1,2]}"#;

fn table() -> Vec<Scenario> {
    let mut rows = vec![
        Scenario {
            name: "get key (unknown JSON members ignored)",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    Mock::given(method("GET"))
                        .and(path("/keys/k"))
                        .respond_with(
                            ResponseTemplate::new(200).set_body_raw(RSA_BUNDLE, "application/json"),
                        ),
                ]
            },
            call: || KeyCall::GetKey,
            config: default_config,
            check: |r, _| {
                let key = r.as_ref().unwrap().clone().into_key().unwrap();
                assert_eq!(key.public_key.rsa_bits(), Some(2048));
                assert!(matches!(key.public_key, PublicKey::Rsa { .. }));
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("GET", "/keys/k", "tok-1", None),
                ]
            },
        },
        Scenario {
            name: "get certificate",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    Mock::given(method("GET"))
                        .and(path("/certificates/k"))
                        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                            "id": "https://myvault.vault.azure.net/certificates/k/0123456789abcdef0123456789abcdef",
                            "kid": "https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef",
                            "cer": "MAMCAQE=",
                            "attributes": {"enabled": true},
                        }))),
                ]
            },
            call: || KeyCall::GetCertificate,
            config: default_config,
            check: |r, _| {
                let c = r.as_ref().unwrap().clone().into_certificate().unwrap();
                assert_eq!(c.der, [0x30, 3, 2, 1, 1]);
                assert!(
                    c.kid
                        .unwrap()
                        .ends_with("/keys/k/0123456789abcdef0123456789abcdef")
                );
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("GET", "/certificates/k", "tok-1", None),
                ]
            },
        },
        Scenario {
            name: "verify",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(
                        ResponseTemplate::new(200).set_body_json(json!({"value": true})),
                    ),
                ]
            },
            call: || KeyCall::Verify {
                alg: SignAlgorithm::PS256,
                digest: vec![1; 32],
                signature: vec![2; 256],
            },
            config: default_config,
            check: |r, _| assert_eq!(r.as_ref().unwrap(), &Output::Verified(true)),
            requests: || {
                vec![
                    token_request(),
                    key_request(
                        "POST",
                        "/keys/k/verify",
                        "tok-1",
                        Some(
                            json!({"alg": "PS256", "digest": b64::encode(&[1; 32]), "value": b64::encode(&[2; 256])}),
                        ),
                    ),
                ]
            },
        },
        Scenario {
            name: "401 challenge, fresh token, success",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600).up_to_n_times(1).with_priority(1),
                    imds_token("tok-2", 3600).with_priority(2),
                    any_key_request()
                        .respond_with(
                            kv_error(401, "Unauthorized", "AKV10032: Invalid issuer.")
                                .insert_header("www-authenticate", CHALLENGE),
                        )
                        .up_to_n_times(1)
                        .with_priority(1),
                    any_key_request()
                        .respond_with(op_result(&[1, 2, 3]))
                        .with_priority(2),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: signed,
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                    token_request(),
                    key_request("POST", &sign_path(), "tok-2", sign_body()),
                ]
            },
        },
        Scenario {
            name: "401 twice: the service's reason, no third try",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(
                        kv_error(401, "Unauthorized", "AKV10032: Invalid issuer.")
                            .insert_header("www-authenticate", CHALLENGE),
                    ),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| {
                let e = r.as_ref().unwrap_err().to_string();
                assert!(
                    e.contains("401") && e.contains("AKV10032") && e.contains("req-err"),
                    "{e}"
                );
                assert!(!e.contains("tok-1"), "no token in errors: {e}");
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "429 with Retry-After: 1",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(kv_error(429, "Throttled", "Request was not processed because too many requests were received.").insert_header("retry-after", "1")).up_to_n_times(1).with_priority(1),
                    any_key_request().respond_with(op_result(&[1, 2, 3])).with_priority(2),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, elapsed| {
                signed(r, elapsed);
                assert!(
                    elapsed >= Duration::from_secs(1),
                    "Retry-After honoured: {elapsed:?}"
                );
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "429 without Retry-After backs off briefly",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request()
                        .respond_with(kv_error(429, "Throttled", "slow down"))
                        .up_to_n_times(1)
                        .with_priority(1),
                    any_key_request()
                        .respond_with(op_result(&[1, 2, 3]))
                        .with_priority(2),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, elapsed| {
                signed(r, elapsed);
                assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "500, 503, then success",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request()
                        .respond_with(kv_error(500, "InternalError", "boom"))
                        .up_to_n_times(1)
                        .with_priority(1),
                    any_key_request()
                        .respond_with(ResponseTemplate::new(503))
                        .up_to_n_times(1)
                        .with_priority(2),
                    any_key_request()
                        .respond_with(op_result(&[1, 2, 3]))
                        .with_priority(3),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: signed,
            requests: || {
                let k = || key_request("POST", &sign_path(), "tok-1", sign_body());
                vec![token_request(), k(), k(), k()]
            },
        },
        Scenario {
            name: "retries exhausted",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(kv_error(503, "ServiceUnavailable", "down")),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| {
                let e = r.as_ref().unwrap_err();
                assert!(
                    matches!(e, Error::RetriesExhausted { attempts: 4, .. }),
                    "{e}"
                );
                assert_eq!(
                    e.service_error().unwrap().code.as_deref(),
                    Some("ServiceUnavailable")
                );
            },
            requests: || {
                let k = || key_request("POST", &sign_path(), "tok-1", sign_body());
                vec![token_request(), k(), k(), k(), k()]
            },
        },
        Scenario {
            name: "slow server exhausts the per-operation budget",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request()
                        .respond_with(op_result(&[1]).set_delay(Duration::from_secs(3))),
                ]
            },
            call: sign_es256,
            config: || OperationConfig {
                budget: Duration::from_millis(800),
                ..OperationConfig::default()
            },
            check: |r, elapsed| {
                let e = r.as_ref().unwrap_err();
                assert!(matches!(e, Error::BudgetExhausted { .. }), "{e}");
                assert!(e.to_string().contains("timed out"), "{e}");
                assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "malformed JSON is not retried",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(
                        ResponseTemplate::new(200)
                            .set_body_raw(r#"{"kid":"x","value":"#, "application/json"),
                    ),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| {
                assert!(
                    matches!(
                        r,
                        Err(Error::InvalidResponse {
                            operation: "sign",
                            ..
                        })
                    ),
                    "{r:?}"
                )
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "empty 200 body",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(ResponseTemplate::new(200)),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| assert!(matches!(r, Err(Error::InvalidResponse { .. })), "{r:?}"),
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "oversized body is refused, not retried",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(
                        ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 2 * 1024 * 1024]),
                    ),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| match r {
                Err(Error::Transport(t)) => {
                    assert_eq!(t.kind, TransportErrorKind::BodyTooLarge, "{t}")
                }
                other => panic!("{other:?}"),
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "404 KeyNotFound is final and explained",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(kv_error(
                        404,
                        "KeyNotFound",
                        "A key with (name/id) k was not found in this key vault.",
                    )),
                ]
            },
            call: || KeyCall::GetKey,
            config: default_config,
            check: |r, _| {
                let e = r.as_ref().unwrap_err().to_string();
                assert!(
                    e.contains("404")
                        && e.contains("KeyNotFound")
                        && e.contains("req-err")
                        && e.contains("check the vault or HSM name"),
                    "{e}"
                );
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("GET", "/keys/k", "tok-1", None),
                ]
            },
        },
        Scenario {
            name: "403 ForbiddenByRbac names the missing role",
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(
                        ResponseTemplate::new(403).set_body_json(json!({"error": {"code": "Forbidden", "message": "Caller is not authorized to perform action on resource.", "innererror": {"code": "ForbiddenByRbac"}}})),
                    ),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| {
                let e = r.as_ref().unwrap_err().to_string();
                assert!(
                    e.contains("ForbiddenByRbac") && e.contains("Key Vault Crypto User"),
                    "{e}"
                );
            },
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
        Scenario {
            name: "no managed identity: IMDS 400, no key request",
            mocks: || {
                vec![Mock::given(path("/metadata/identity/oauth2/token")).respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_request", "error_description": "Identity not found"})))]
            },
            call: sign_es256,
            config: default_config,
            check: |r, _| {
                let e = r.as_ref().unwrap_err().to_string();
                assert!(
                    e.contains("Identity not found")
                        && e.contains("no managed identity is assigned"),
                    "{e}"
                );
            },
            requests: || vec![token_request()],
        },
        Scenario {
            name: "IMDS 500 retried, then a token",
            mocks: || {
                vec![
                    Mock::given(path("/metadata/identity/oauth2/token"))
                        .respond_with(ResponseTemplate::new(500))
                        .up_to_n_times(1)
                        .with_priority(1),
                    imds_token("tok-1", 3600).with_priority(2),
                    any_key_request().respond_with(op_result(&[1, 2, 3])),
                ]
            },
            call: sign_es256,
            config: default_config,
            check: signed,
            requests: || {
                vec![
                    token_request(),
                    token_request(),
                    key_request("POST", &sign_path(), "tok-1", sign_body()),
                ]
            },
        },
    ];
    // Every operation and algorithm.
    rows.extend(operation_rows());
    rows
}

macro_rules! op_row {
    ($name:expr, $call:expr, $path:expr, $body:expr) => {
        Scenario {
            name: $name,
            mocks: || {
                vec![
                    imds_token("tok-1", 3600),
                    any_key_request().respond_with(op_result(&[1, 2, 3])),
                ]
            },
            call: || $call,
            config: default_config,
            check: signed,
            requests: || {
                vec![
                    token_request(),
                    key_request("POST", $path, "tok-1", Some($body)),
                ]
            },
        }
    };
}

fn operation_rows() -> Vec<Scenario> {
    fn d(n: usize) -> String {
        b64::encode(&vec![0x11; n])
    }
    vec![
        op_row!(
            "sign RS256",
            KeyCall::Sign {
                alg: SignAlgorithm::RS256,
                digest: vec![0x11; 32]
            },
            "/keys/k/sign",
            json!({"alg": "RS256", "value": d(32)})
        ),
        op_row!(
            "sign RS384",
            KeyCall::Sign {
                alg: SignAlgorithm::RS384,
                digest: vec![0x11; 48]
            },
            "/keys/k/sign",
            json!({"alg": "RS384", "value": d(48)})
        ),
        op_row!(
            "sign RS512",
            KeyCall::Sign {
                alg: SignAlgorithm::RS512,
                digest: vec![0x11; 64]
            },
            "/keys/k/sign",
            json!({"alg": "RS512", "value": d(64)})
        ),
        op_row!(
            "sign PS256",
            KeyCall::Sign {
                alg: SignAlgorithm::PS256,
                digest: vec![0x11; 32]
            },
            "/keys/k/sign",
            json!({"alg": "PS256", "value": d(32)})
        ),
        op_row!(
            "sign PS384",
            KeyCall::Sign {
                alg: SignAlgorithm::PS384,
                digest: vec![0x11; 48]
            },
            "/keys/k/sign",
            json!({"alg": "PS384", "value": d(48)})
        ),
        op_row!(
            "sign PS512",
            KeyCall::Sign {
                alg: SignAlgorithm::PS512,
                digest: vec![0x11; 64]
            },
            "/keys/k/sign",
            json!({"alg": "PS512", "value": d(64)})
        ),
        op_row!(
            "sign ES256",
            KeyCall::Sign {
                alg: SignAlgorithm::ES256,
                digest: vec![0x11; 32]
            },
            "/keys/k/sign",
            json!({"alg": "ES256", "value": d(32)})
        ),
        op_row!(
            "sign ES256K",
            KeyCall::Sign {
                alg: SignAlgorithm::ES256K,
                digest: vec![0x11; 32]
            },
            "/keys/k/sign",
            json!({"alg": "ES256K", "value": d(32)})
        ),
        op_row!(
            "sign ES384",
            KeyCall::Sign {
                alg: SignAlgorithm::ES384,
                digest: vec![0x11; 48]
            },
            "/keys/k/sign",
            json!({"alg": "ES384", "value": d(48)})
        ),
        op_row!(
            "sign ES512",
            KeyCall::Sign {
                alg: SignAlgorithm::ES512,
                digest: vec![0x11; 64]
            },
            "/keys/k/sign",
            json!({"alg": "ES512", "value": d(64)})
        ),
        op_row!(
            "decrypt RSA1_5",
            KeyCall::Decrypt {
                alg: EncryptAlgorithm::Rsa1_5,
                ciphertext: vec![0x11; 256]
            },
            "/keys/k/decrypt",
            json!({"alg": "RSA1_5", "value": d(256)})
        ),
        op_row!(
            "decrypt RSA-OAEP",
            KeyCall::Decrypt {
                alg: EncryptAlgorithm::RsaOaep,
                ciphertext: vec![0x11; 256]
            },
            "/keys/k/decrypt",
            json!({"alg": "RSA-OAEP", "value": d(256)})
        ),
        op_row!(
            "decrypt RSA-OAEP-256",
            KeyCall::Decrypt {
                alg: EncryptAlgorithm::RsaOaep256,
                ciphertext: vec![0x11; 256]
            },
            "/keys/k/decrypt",
            json!({"alg": "RSA-OAEP-256", "value": d(256)})
        ),
        op_row!(
            "encrypt RSA-OAEP-256",
            KeyCall::Encrypt {
                alg: EncryptAlgorithm::RsaOaep256,
                plaintext: vec![0x11; 16]
            },
            "/keys/k/encrypt",
            json!({"alg": "RSA-OAEP-256", "value": d(16)})
        ),
        op_row!(
            "wrapKey RSA-OAEP",
            KeyCall::WrapKey {
                alg: EncryptAlgorithm::RsaOaep,
                key: vec![0x11; 32]
            },
            "/keys/k/wrapKey",
            json!({"alg": "RSA-OAEP", "value": d(32)})
        ),
        op_row!(
            "unwrapKey RSA-OAEP-256",
            KeyCall::UnwrapKey {
                alg: EncryptAlgorithm::RsaOaep256,
                wrapped: vec![0x11; 256]
            },
            "/keys/k/unwrapKey",
            json!({"alg": "RSA-OAEP-256", "value": d(256)})
        ),
    ]
}

#[test]
fn scenario_table_on_both_backends() {
    let control = control_runtime();
    let mut ran = 0;
    for scenario in table() {
        for backend in BACKENDS {
            let context = format!("{} [{backend:?}]", scenario.name);
            let server = control.block_on(MockServer::start());
            for mock in (scenario.mocks)() {
                control.block_on(server.register(mock));
            }
            let client = client(backend, &server.uri(), (scenario.config)());
            let started = Instant::now();
            let result = client.run("vault:myvault:k", (scenario.call)());
            let elapsed = started.elapsed();
            (scenario.check)(&result, elapsed);
            check_requests(&server, &control, &(scenario.requests)(), &context, true);
            ran += 1;
        }
    }
    assert_eq!(ran, table().len() * 2);
}

#[test]
fn token_is_cached_then_refreshed_after_expiry_on_both_backends() {
    let control = control_runtime();
    for backend in BACKENDS {
        let server = control.block_on(MockServer::start());
        // A 6-second token: usable for 1 s (5 s send margin), so the third operation, after
        // 1.2 s, must fetch a new one.
        control.block_on(server.register(imds_token("tok-1", 6).up_to_n_times(1).with_priority(1)));
        control.block_on(server.register(imds_token("tok-2", 3600).with_priority(2)));
        control.block_on(server.register(any_key_request().respond_with(op_result(&[1, 2, 3]))));
        let client = client(backend, &server.uri(), OperationConfig::default());
        client.run("vault:myvault:k", sign_es256()).unwrap();
        client.run("vault:myvault:k", sign_es256()).unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        client.run("vault:myvault:k", sign_es256()).unwrap();
        let k = |t| key_request("POST", &sign_path(), t, sign_body());
        let expected = vec![
            token_request(),
            k("tok-1"),
            k("tok-1"),
            token_request(),
            k("tok-2"),
        ];
        check_requests(
            &server,
            &control,
            &expected,
            &format!("token refresh [{backend:?}]"),
            false,
        );
    }
}

/// A raw server that answers each connection with the next scripted bytes (or just closes),
/// for what wiremock cannot do: connections reset mid-response, truncated bodies.
fn raw_server(script: Vec<Option<Vec<u8>>>) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut served = 0;
        for answer in script {
            let Ok((mut stream, _)) = listener.accept() else {
                break;
            };
            let mut buf = [0u8; 8192];
            let mut request = Vec::new();
            // Read the head and the body (Content-Length) of one request.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                if let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            if let Some(bytes) = answer {
                let _ = stream.write_all(&bytes);
            }
            served += 1;
            // Dropping the stream closes the connection (mid-response for partial answers).
        }
        served
    });
    (origin, handle)
}

fn http_response(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

#[test]
fn connection_reset_and_truncated_bodies_on_both_backends() {
    let token = r#"{"access_token":"tok-1","expires_in":"3600"}"#;
    let result =
        format!(r#"{{"kid":"https://myvault.vault.azure.net/keys/k/{VERSION}","value":"AQID"}}"#);
    for backend in BACKENDS {
        // token; reset before any byte; truncated body (Content-Length says more); success.
        let script = vec![
            Some(http_response(token)),
            None,
            Some(b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n{\"kid\":".to_vec()),
            Some(http_response(&result)),
        ];
        let (origin, server) = raw_server(script);
        let client = client(backend, &origin, OperationConfig::default());
        let out = client.run("vault:myvault:k", sign_es256()).unwrap();
        assert_eq!(out.into_value().unwrap(), [1, 2, 3], "{backend:?}");
        assert_eq!(
            server.join().unwrap(),
            4,
            "{backend:?}: every scripted connection was used"
        );
    }
}

/// A vault whose port refuses connections, on both backends: the first operation's retries
/// open the vault's circuit (two refused connects), so it ends saying the vault is
/// unreachable instead of retrying for its budget, and the next operations fail at once.
#[test]
fn refused_connections_open_the_circuit_on_both_backends() {
    let control = control_runtime();
    for backend in BACKENDS {
        let imds = control.block_on(MockServer::start());
        control.block_on(imds.register(imds_token("tok-1", 3600)));
        // A port that was free a moment ago: connects are refused.
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let client = Client::new(
            backend,
            &format!("http://{closed}"),
            OperationConfig::default(),
            CredentialSource::imds(&imds.uri(), None).unwrap(),
            None,
        );
        let started = Instant::now();
        let first = client.run("vault:myvault:k", sign_es256()).unwrap_err();
        assert!(
            matches!(first, Error::Unreachable { .. })
                && first.to_string().contains("cannot connect"),
            "{backend:?}: {first}"
        );
        let then = Instant::now();
        for _ in 0..20 {
            let e = client.run("vault:myvault:k", sign_es256()).unwrap_err();
            assert!(matches!(e, Error::Unreachable { .. }), "{backend:?}: {e}");
        }
        assert!(
            then.elapsed() < Duration::from_millis(500),
            "{backend:?}: 20 operations failed at once, not in {:?}",
            then.elapsed()
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{backend:?}");
    }
}
