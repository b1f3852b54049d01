//! The operation driver under a fake clock: each scenario scripts the server's answers and
//! checks the result, the requests sent, the tokens asked for and the time spent.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use akv_proto::*;

/// A scripted answer to one request.
enum Answer {
    Response(http::Response<Vec<u8>>),
    Transport(TransportErrorKind),
    /// The server takes this long, then answers (or the timeout hits first).
    Slow(Duration, http::Response<Vec<u8>>),
}

fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    Answer::Response(b.body(body.as_bytes().to_vec()).unwrap())
}

const SIGNED: &str = r#"{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","value":"AQID"}"#;
const CHALLENGE: &str = r#"Bearer authorization="https://login.microsoftonline.com/tenant", resource="https://vault.azure.net""#;

struct World {
    answers: VecDeque<Answer>,
    now: Instant,
    start: Instant,
    sent: Vec<http::Request<Vec<u8>>>,
    timeouts: Vec<Duration>,
    token_needs: Vec<TokenNeed>,
    waits: Vec<Duration>,
    token_lifetime: Duration,
    token_error: Option<CredentialError>,
}

impl World {
    fn new(answers: Vec<Answer>) -> World {
        let now = Instant::now();
        World {
            answers: answers.into(),
            now,
            start: now,
            sent: Vec::new(),
            timeouts: Vec::new(),
            token_needs: Vec::new(),
            waits: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            token_error: None,
        }
    }

    fn run(&mut self, key: &str, call: KeyCall, config: OperationConfig) -> Result<Output, Error> {
        let policy = EndpointPolicy::new(Cloud::Public)
            .allow_host("127.0.0.1:8443")
            .unwrap();
        let key = KeyId::parse(key, &policy).unwrap();
        let mut op = Operation::new(key, call, config, ClientRequestId::new("test-1"), self.now);
        for _ in 0..100 {
            match op.poll(self.now) {
                Poll::Token(need) => {
                    let n = self.token_needs.len();
                    self.token_needs.push(need);
                    let token = match &self.token_error {
                        Some(e) => Err(e.clone()),
                        None => Ok(AccessToken::new(
                            format!("token-{n}"),
                            self.now + self.token_lifetime,
                        )),
                    };
                    op.handle_token(token, self.now);
                }
                Poll::Send(t) => {
                    self.timeouts.push(t.timeout);
                    self.sent.push(t.request);
                    match self
                        .answers
                        .pop_front()
                        .expect("more requests than scripted answers")
                    {
                        Answer::Response(r) => op.handle_response(r, self.now),
                        Answer::Transport(kind) => op.handle_transport_error(
                            TransportError::new(kind, "scripted"),
                            self.now,
                        ),
                        Answer::Slow(delay, r) => {
                            if delay >= t.timeout {
                                self.now += t.timeout;
                                op.handle_transport_error(
                                    TransportError::new(TransportErrorKind::Timeout, "scripted"),
                                    self.now,
                                );
                            } else {
                                self.now += delay;
                                op.handle_response(r, self.now);
                            }
                        }
                    }
                }
                Poll::Wait(d) => {
                    self.waits.push(d);
                    self.now += d;
                }
                Poll::Done(result) => {
                    assert!(
                        self.answers.is_empty(),
                        "{} scripted answers left over",
                        self.answers.len()
                    );
                    assert!(matches!(
                        op.poll(self.now),
                        Poll::Done(Err(Error::Misuse(_)))
                    ));
                    return result;
                }
            }
        }
        panic!("the driver did not finish in 100 steps");
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn auth(&self, i: usize) -> Option<String> {
        self.sent[i]
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

fn sign() -> KeyCall {
    KeyCall::Sign {
        alg: SignAlgorithm::ES256,
        digest: vec![7; 32],
    }
}

fn signature(result: Result<Output, Error>) -> Vec<u8> {
    result.unwrap().into_value().unwrap()
}

#[test]
fn sign_happy_path() {
    let mut w = World::new(vec![response(200, &[], SIGNED)]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.sent.len(), 1);
    let r = &w.sent[0];
    assert_eq!(r.method(), "POST");
    assert_eq!(
        r.uri().to_string(),
        "https://myvault.vault.azure.net/keys/k/sign?api-version=2025-07-01"
    );
    assert_eq!(w.auth(0).as_deref(), Some("Bearer token-0"));
    assert_eq!(r.headers()["x-ms-client-request-id"], "test-1");
    let body: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"alg": "ES256", "value": b64::encode(&[7; 32])})
    );
    assert_eq!(w.token_needs.len(), 1);
    assert_eq!(
        w.token_needs[0].audience.as_str(),
        "https://vault.azure.net"
    );
    assert!(w.waits.is_empty());
}

#[test]
fn unauthorized_then_fresh_token_succeeds() {
    let mut w = World::new(vec![
        response(
            401,
            &[("www-authenticate", CHALLENGE)],
            r#"{"error":{"code":"Unauthorized","message":"expired"}}"#,
        ),
        response(200, &[], SIGNED),
    ]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.sent.len(), 2);
    assert_eq!(w.token_needs.len(), 2);
    assert!(
        w.token_needs[1]
            .rejected
            .as_ref()
            .is_some_and(|t| t.secret() == "token-0")
    );
    assert_eq!(w.auth(1).as_deref(), Some("Bearer token-1"));
}

#[test]
fn unauthorized_twice_fails_with_the_service_error() {
    let body = r#"{"error":{"code":"Unauthorized","message":"AKV10032: Invalid issuer."}}"#;
    let mut w = World::new(vec![
        response(401, &[("www-authenticate", CHALLENGE)], body),
        response(
            401,
            &[("www-authenticate", CHALLENGE), ("x-ms-request-id", "r-2")],
            body,
        ),
    ]);
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("401") && text.contains("AKV10032") && text.contains("r-2"),
        "{text}"
    );
    assert!(!text.contains("token-"), "{text}");
    assert_eq!(w.sent.len(), 2);
}

#[test]
fn custom_host_learns_its_audience_from_the_challenge() {
    let hsm_challenge = r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://managedhsm.azure.net""#;
    let mut w = World::new(vec![
        response(401, &[("www-authenticate", hsm_challenge)], ""),
        response(200, &[], SIGNED),
    ]);
    let out = w.run(
        "https://127.0.0.1:8443/keys/k",
        sign(),
        OperationConfig::default(),
    );
    assert_eq!(signature(out), [1, 2, 3]);
    assert_eq!(
        w.auth(0),
        None,
        "the first request to a custom host carries no token"
    );
    assert_eq!(
        w.token_needs[0].audience.as_str(),
        "https://managedhsm.azure.net"
    );
    assert_eq!(w.auth(1).as_deref(), Some("Bearer token-0"));
    assert_eq!(
        w.sent[1].uri().to_string(),
        "https://127.0.0.1:8443/keys/k/sign?api-version=2025-07-01"
    );
}

#[test]
fn a_challenge_for_another_service_is_refused() {
    let evil = r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://evil.example.com""#;
    let mut w = World::new(vec![response(401, &[("www-authenticate", evil)], "")]);
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Challenge(ChallengeError::ResourceMismatch { .. })
        ),
        "{err}"
    );
    assert_eq!(w.sent.len(), 1);
    assert_eq!(w.token_needs.len(), 1);
}

#[test]
fn a_custom_host_without_a_challenge_gets_no_token() {
    let mut w = World::new(vec![response(401, &[], "")]);
    let err = w
        .run(
            "https://127.0.0.1:8443/keys/k",
            sign(),
            OperationConfig::default(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::Service(e) if e.status == 401),
        "{err}"
    );
    assert!(w.token_needs.is_empty());
}

#[test]
fn throttled_with_retry_after_waits_as_asked() {
    let throttled = r#"{"error":{"code":"Throttled","message":"Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached"}}"#;
    let mut w = World::new(vec![
        response(429, &[("retry-after", "2")], throttled),
        response(200, &[], SIGNED),
    ]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.waits, [Duration::from_secs(2)]);
    assert_eq!(w.sent.len(), 2);
    assert_eq!(
        w.token_needs.len(),
        1,
        "the cached token is reused for the retry"
    );
    assert_eq!(w.auth(1).as_deref(), Some("Bearer token-0"));
}

#[test]
fn throttled_without_retry_after_backs_off() {
    let mut w = World::new(vec![response(429, &[], "{}"), response(200, &[], SIGNED)]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.waits.len(), 1);
    assert!(
        w.waits[0] >= Duration::from_millis(50) && w.waits[0] <= Duration::from_millis(100),
        "{:?}",
        w.waits
    );
}

#[test]
fn unavailable_three_times_then_success() {
    let mut w = World::new(vec![
        response(503, &[], ""),
        response(503, &[], ""),
        response(503, &[], ""),
        response(200, &[], SIGNED),
    ]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.sent.len(), 4);
    assert_eq!(w.waits.len(), 3);
    for (i, wait) in w.waits.iter().enumerate() {
        let cap = Duration::from_millis(100 << i);
        assert!(*wait >= cap / 2 && *wait <= cap, "wait {i}: {wait:?}");
    }
    // Every attempt is the same request.
    assert!(
        w.sent
            .windows(2)
            .all(|p| p[0].uri() == p[1].uri() && p[0].body() == p[1].body())
    );
}

#[test]
fn retries_exhausted() {
    let mut w = World::new(
        (0..4)
            .map(|_| {
                response(
                    500,
                    &[("x-ms-request-id", "r")],
                    r#"{"error":{"code":"InternalError","message":"boom"}}"#,
                )
            })
            .collect(),
    );
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::RetriesExhausted { attempts: 4, .. }),
        "{err}"
    );
    assert_eq!(
        err.service_error().unwrap().code.as_deref(),
        Some("InternalError")
    );
    assert!(err.to_string().contains("gave up after 4 attempts"));
}

#[test]
fn retry_after_beyond_the_budget_gives_up_at_once() {
    let mut w = World::new(vec![response(
        429,
        &[("retry-after", "30")],
        r#"{"error":{"code":"Throttled","message":"slow down"}}"#,
    )]);
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert!(
        matches!(&err, Error::BudgetExhausted { attempts: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("Throttled"), "{err}");
    assert_eq!(w.elapsed(), Duration::ZERO, "no pointless wait");
}

#[test]
fn a_slow_server_exhausts_the_budget() {
    let config = OperationConfig {
        budget: Duration::from_secs(3),
        request_timeout: Duration::from_secs(2),
        ..OperationConfig::default()
    };
    let slow = || Answer::Slow(Duration::from_secs(60), http::Response::new(Vec::new()));
    let mut w = World::new(vec![slow(), slow()]);
    let err = w.run("vault:myvault:k", sign(), config).unwrap_err();
    assert!(matches!(&err, Error::BudgetExhausted { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(w.elapsed() <= Duration::from_secs(3), "{:?}", w.elapsed());
    assert_eq!(w.timeouts[0], Duration::from_secs(2));
    assert!(
        w.timeouts[1] < Duration::from_secs(1),
        "the second timeout is cut to the budget left: {:?}",
        w.timeouts
    );
}

#[test]
fn malformed_json_is_an_error_not_a_retry() {
    for body in [
        r#"{"kid":"x","value":"#,
        "",
        "<html>",
        r#"{"kid":"x"}"#,
        r#"{"value":"!!"}"#,
    ] {
        let mut w = World::new(vec![response(200, &[("x-ms-request-id", "req-9")], body)]);
        let err = w
            .run("vault:myvault:k", sign(), OperationConfig::default())
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::InvalidResponse {
                    operation: "sign",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("req-9"));
        assert_eq!(w.sent.len(), 1);
    }
}

#[test]
fn not_found_is_final() {
    let mut w = World::new(vec![response(
        404,
        &[],
        r#"{"error":{"code":"KeyNotFound","message":"A key with (name/id) k was not found in this key vault."}}"#,
    )]);
    let err = w
        .run(
            "vault:myvault:k",
            KeyCall::GetKey,
            OperationConfig::default(),
        )
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("404")
            && text.contains("KeyNotFound")
            && text.contains("check the vault or HSM name"),
        "{text}"
    );
}

#[test]
fn connection_reset_then_success_but_tls_errors_are_final() {
    let mut w = World::new(vec![
        Answer::Transport(TransportErrorKind::Io),
        Answer::Transport(TransportErrorKind::Connect),
        response(200, &[], SIGNED),
    ]);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    let mut w = World::new(vec![Answer::Transport(TransportErrorKind::Tls)]);
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Transport(TransportError {
            kind: TransportErrorKind::Tls,
            ..
        })
    ));
}

#[test]
fn a_token_that_expires_during_a_wait_is_not_sent() {
    let mut w = World::new(vec![
        response(503, &[("retry-after", "4")], ""),
        response(200, &[], SIGNED),
    ]);
    w.token_lifetime = Duration::from_secs(8);
    assert_eq!(
        signature(w.run("vault:myvault:k", sign(), OperationConfig::default())),
        [1, 2, 3]
    );
    assert_eq!(w.token_needs.len(), 2);
    assert_eq!(w.auth(1).as_deref(), Some("Bearer token-1"));
}

#[test]
fn credential_failures_and_bad_tokens_end_the_operation() {
    let mut w = World::new(vec![]);
    w.token_error = Some(CredentialError::new(
        "managed identity (IMDS)",
        "no identity is assigned to this VM",
    ));
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot get a token: managed identity (IMDS): no identity is assigned to this VM"
    );
    assert!(w.sent.is_empty());

    let mut w = World::new(vec![]);
    w.token_lifetime = Duration::ZERO;
    let err = w
        .run("vault:myvault:k", sign(), OperationConfig::default())
        .unwrap_err();
    assert!(err.to_string().contains("already expired"), "{err}");
}

/// A source that issues short tokens (2 s, inside the 5 s send margin): each one is still
/// valid, so it is sent, as the Azure SDKs do, instead of failing the operation.
#[test]
fn short_lived_tokens_are_used_while_valid() {
    for lifetime in [
        Duration::from_millis(500),
        Duration::from_secs(2),
        Duration::from_secs(4),
    ] {
        let mut w = World::new(vec![response(200, &[], SIGNED)]);
        w.token_lifetime = lifetime;
        let out = w.run("vault:myvault:k", sign(), OperationConfig::default());
        assert!(out.is_ok(), "{lifetime:?}: {out:?}");
        assert_eq!(w.sent.len(), 1);
    }
}

#[test]
fn get_key_and_verify_outputs() {
    let bundle = r#"{"key":{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","kty":"EC","crv":"P-256","x":"AbEovQDDJonNdMThNpJvsOA67GDXelIHBdJLIM8xqrY","y":"qnsQsjgpxdtwrIKPLY1KlMX1Ol6se4s49i2Nb-zPs4I"}}"#;
    let mut w = World::new(vec![response(200, &[], bundle)]);
    let key = w
        .run(
            "vault:myvault:k",
            KeyCall::GetKey,
            OperationConfig::default(),
        )
        .unwrap()
        .into_key()
        .unwrap();
    assert!(matches!(
        key.public_key,
        PublicKey::Ec {
            curve: Curve::P256,
            ..
        }
    ));
    assert_eq!(w.sent[0].method(), "GET");
    assert!(w.sent[0].body().is_empty());

    let mut w = World::new(vec![response(200, &[], r#"{"value":false}"#)]);
    let call = KeyCall::Verify {
        alg: SignAlgorithm::ES256,
        digest: vec![0; 32],
        signature: vec![0; 64],
    };
    assert_eq!(
        w.run("vault:myvault:k", call, OperationConfig::default()),
        Ok(Output::Verified(false))
    );
}

#[test]
fn out_of_order_calls_are_reported_not_panics() {
    let key = KeyId::parse("vault:myvault:k", &EndpointPolicy::default()).unwrap();
    let now = Instant::now();
    let mut op = Operation::new(
        key,
        sign(),
        OperationConfig::default(),
        ClientRequestId::new("x"),
        now,
    );
    op.handle_response(http::Response::new(Vec::new()), now);
    assert!(matches!(op.poll(now), Poll::Done(Err(Error::Misuse(_)))));
}
