//! Invariant checks over arbitrary input, one per parser or state machine. The cargo-fuzz
//! targets in `fuzz/` call them, and a test replays every corpus file through them, so a
//! finding stays fixed. Each check panics when an invariant breaks.
//!
//! Only compiled with the `fuzzing` feature. Like the rest of the crate it reads no clock:
//! the checks that run time-dependent code take `now` from their caller.

use std::path::Path;
use std::time::{Duration, Instant};

use http::Response;

use crate::credential::{
    CommandOutput, CredentialSource, FetchPoll, ManagedIdentityEndpoint, Secret, ServiceUrl,
    TokenFetch, arc_key_path, jwt_expiry, parse_cli_output, parse_token_response,
};
use crate::{
    AccessToken, Audience, BearerChallenge, CertificateBundle, ClientRequestId, Cloud, Curve,
    EndpointPolicy, KeyBundle, KeyCall, KeyId, KeyOpResult, Operation, OperationConfig, Poll,
    PublicKey, ServiceError, SignAlgorithm, TransportError, TransportErrorKind, basic_realm,
    ecdsa_der_to_raw, ecdsa_raw_to_der, parse_verify_result, parse_www_authenticate, retry_after,
};

/// Planted in inputs to prove that error messages never quote them.
const MARKER: &str = "\"ZQXJ-SECRET-9137\"";

fn policy() -> EndpointPolicy {
    EndpointPolicy::new(Cloud::Public)
        .allow_hosts("127.0.0.1:8443, .allowed.example")
        .expect("policy")
}

fn host_is_allowed(host: &str, port: Option<u16>) -> bool {
    let azure = crate::cloud::Cloud::classify_host(host).is_some();
    let listed = (host == "127.0.0.1" && port == Some(8443))
        || host
            .strip_suffix(".allowed.example")
            .is_some_and(|p| !p.is_empty() && !p.ends_with('.'));
    azure || listed
}

/// Key strings and key URLs: whatever is accepted names an allowed host, smuggles no
/// userinfo, query, fragment or escape into the URL, and round-trips.
pub fn key_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = policy();
    if let Ok(key) = KeyId::parse(text, &policy) {
        let url = key.url();
        assert!(
            !url.contains(['@', '?', '#', '%', '\\', ' ', '\n', '\r', '\t']),
            "{url}"
        );
        let uri: http::Uri = url.parse().expect("a valid URI");
        assert_eq!(uri.host(), Some(key.endpoint().host()), "{url}");
        assert!(
            host_is_allowed(key.endpoint().host(), key.endpoint().port()),
            "{text:?} -> {url}"
        );
        let again = KeyId::parse(&url, &policy).expect("the URL of an accepted key parses");
        assert_eq!(again.url(), url);
        // A kid from the service can pin a version but never move the host.
        if let Ok(pinned) = key.pinned_from_kid(text) {
            assert_eq!(pinned.endpoint(), key.endpoint());
        }
    }
    let _ = crate::AllowedHost::parse(text);
}

/// Key bundles: parse or fail cleanly; EC coordinates are full width; RSA sizes are sane.
pub fn key_bundle(data: &[u8]) {
    if let Ok(bundle) = KeyBundle::from_json(data) {
        match &bundle.public_key {
            PublicKey::Ec { curve, x, y } => {
                assert_eq!(x.len(), curve.field_len());
                assert_eq!(y.len(), curve.field_len());
            }
            PublicKey::Rsa { n, e } => {
                assert!(!n.is_empty() && n[0] != 0 && n.len() <= 2048);
                assert!(!e.is_empty() && e.len() <= 8);
                assert!(bundle.public_key.rsa_bits().is_some());
            }
            PublicKey::Unsupported { reason } => assert!(!reason.is_empty()),
        }
        let _ = bundle.attributes.check_usable(0);
        let _ = bundle.allows("sign");
    }
}

/// Certificate bundles: a parsed one holds a bounded DER SEQUENCE and its attributes.
pub fn certificate_bundle(data: &[u8]) {
    if let Ok(c) = CertificateBundle::from_json(data) {
        assert_eq!(c.der.first(), Some(&0x30));
        assert!(c.der.len() <= 64 * 1024);
        let _ = c.attributes.check_usable(0);
    }
}

/// Operation results and verify results.
pub fn op_result(data: &[u8]) {
    // Parse errors never echo the body (it may be a decrypted secret).
    let mut marked = data.to_vec();
    marked.extend_from_slice(MARKER.as_bytes());
    if let Err(e) = KeyOpResult::from_json(&marked) {
        assert!(!e.to_string().contains(MARKER), "{e}");
    }
    let _ = KeyOpResult::from_json(data);
    let _ = parse_verify_result(data);
}

/// Error bodies of any status: the message is printable and bounded.
pub fn error_body(data: &[u8]) {
    let status = 400 + data.first().copied().unwrap_or(0) as u16 % 200;
    let response = Response::builder()
        .status(status)
        .header("x-ms-request-id", "r")
        .body(data.get(1..).unwrap_or_default().to_vec())
        .expect("response");
    let e = ServiceError::from_response(&response);
    let text = e.to_string();
    assert!(!text.chars().any(|c| c.is_control()), "{text:?}");
    assert!(text.chars().count() < 1200, "{}", text.len());
}

/// `WWW-Authenticate` values: challenges parse or fail cleanly; an accepted audience is an
/// https URL; Arc realms outside the agent's folder are refused.
pub fn www_authenticate(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_www_authenticate(text);
    if let Ok(challenge) = BearerChallenge::parse(text) {
        assert!(challenge.audience.as_str().starts_with("https://"));
        assert!(!challenge.audience.as_str().contains(['@', '?', '#', ' ']));
        if challenge.verify_host("myvault.vault.azure.net").is_ok() {
            assert!(
                "myvault.vault.azure.net".ends_with(&format!(".{}", challenge.audience.host()))
            );
        }
        let _ = challenge.tenant();
    }
    if let Some(realm) = basic_realm(text) {
        let folder = Path::new("/var/opt/azcmagent/tokens");
        if let Ok(path) = arc_key_path(&realm, folder) {
            assert_eq!(path.parent(), Some(folder));
            assert!(!realm.contains("/../") && !realm.contains("/./"));
        }
    }
}

/// Token answers of every source (IMDS, App Service, Arc, Entra, Azure CLI) and JWT expiry.
pub fn token_response(data: &[u8], now: Instant) {
    for unix in [0, 1_700_000_000] {
        if let Ok(t) = parse_token_response(data, now, unix) {
            assert!(t.expires_at() > now);
            assert!(t.expires_at() <= now + Duration::from_secs(7 * 24 * 3600));
            assert!(
                !format!("{t:?}").contains(t.secret())
                    || t.secret().is_empty()
                    || t.secret().len() < 3
            );
        }
        // Errors never quote the body: a marker planted in it never shows up in the error.
        let mut marked = data.to_vec();
        marked.extend_from_slice(MARKER.as_bytes());
        if let Err(e) = parse_token_response(&marked, now, unix) {
            assert!(!e.contains(MARKER), "errors never quote the body");
        }
        if let Err(e) = parse_cli_output(&marked, now, unix) {
            assert!(!e.contains(MARKER), "errors never quote the output");
        }
        let _ = parse_cli_output(data, now, unix);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = jwt_expiry(text);
    }
}

/// `Retry-After` family: any values give a bounded delay.
pub fn retry_after_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let mut headers = http::HeaderMap::new();
    for name in ["retry-after", "retry-after-ms", "date"] {
        if let Some(value) = parts
            .next()
            .and_then(|v| http::HeaderValue::from_str(v).ok())
        {
            headers.insert(name, value);
        }
    }
    if let Some(d) = retry_after(&headers) {
        assert!(d <= crate::MAX_RETRY_AFTER);
    }
}

/// ECDSA signature encodings: DER parsing is strict and round-trips.
pub fn ecdsa(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let curve = Curve::ALL[selector as usize % 4];
    if let Ok(raw) = ecdsa_der_to_raw(curve, rest) {
        assert_eq!(raw.len(), 2 * curve.field_len());
        let der = ecdsa_raw_to_der(curve, &raw).expect("raw from DER converts back");
        assert_eq!(der, rest, "strict DER: one encoding per signature");
    }
    if rest.len() == 2 * curve.field_len() {
        let der = ecdsa_raw_to_der(curve, rest).expect("right length");
        assert_eq!(ecdsa_der_to_raw(curve, &der).expect("our DER parses"), rest);
    }
}

/// A byte source for the state-machine checks.
struct Script<'a> {
    data: &'a [u8],
}

impl Script<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = (self.byte() as usize).min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }
    fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(&self.bytes(max)).into_owned()
    }
}

const CHALLENGES: [&str; 5] = [
    r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://vault.azure.net""#,
    r#"Bearer authorization="https://login.microsoftonline.com/t", resource="https://evil.example""#,
    r#"Bearer scope="https://managedhsm.azure.net/.default""#,
    "Bearer",
    "Basic realm=/etc/shadow",
];
const STATUSES: [u16; 12] = [200, 200, 401, 403, 404, 408, 429, 500, 502, 503, 504, 400];

fn response(script: &mut Script<'_>) -> http::Response<Vec<u8>> {
    let status = STATUSES[script.byte() as usize % STATUSES.len()];
    let mut b = Response::builder().status(status);
    let flags = script.byte();
    if flags & 1 != 0 {
        b = b.header(
            "www-authenticate",
            CHALLENGES[script.byte() as usize % CHALLENGES.len()],
        );
    }
    if flags & 2 != 0 {
        let v = script.text(16);
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            b = b.header("retry-after", value);
        }
    }
    if flags & 4 != 0 {
        let v = script.text(64);
        if let Ok(value) = http::HeaderValue::from_str(&v) {
            b = b.header("www-authenticate", value);
        }
    }
    let body = if flags & 8 != 0 {
        br#"{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","value":"AQID"}"#.to_vec()
    } else {
        script.bytes(200)
    };
    b.body(body).expect("response")
}

/// The operation driver fed arbitrary answers: it always finishes, within its budget, and
/// never sends a request (or a token) anywhere but the key's own host.
pub fn driver(data: &[u8], start: Instant) {
    let mut script = Script { data };
    let keys = [
        "vault:myvault:k",
        "managedHsm:myhsm:k:0123456789abcdef0123456789abcdef",
        "https://127.0.0.1:8443/keys/k",
    ];
    let key = KeyId::parse(keys[script.byte() as usize % keys.len()], &policy()).expect("key");
    let budget = Duration::from_millis(100 + 100 * (script.byte() as u64 % 50));
    let config = OperationConfig {
        budget,
        ..OperationConfig::default()
    };
    let call = KeyCall::Sign {
        alg: SignAlgorithm::ES256,
        digest: vec![1; 32],
    };
    let mut now = start;
    let mut op = Operation::new(key.clone(), call, config, ClientRequestId::new("fuzz"), now);
    let mut tokens_given: Vec<AccessToken> = Vec::new();
    for step in 0..100 {
        match op.poll(now) {
            Poll::Token(need) => {
                assert!(need.audience.as_str().starts_with("https://"));
                let choice = script.byte();
                let result = if choice % 7 == 0 {
                    Err(crate::CredentialError::new("fuzz", "no token"))
                } else {
                    let lifetime = Duration::from_secs((choice as u64 % 20) * 60);
                    Ok(AccessToken::new(format!("token-{step}"), now + lifetime))
                };
                if let Ok(t) = &result {
                    tokens_given.push(t.clone());
                }
                op.handle_token(result, now);
            }
            Poll::Send(t) => {
                let uri = t.request.uri();
                assert_eq!(
                    uri.host(),
                    Some(key.endpoint().host()),
                    "requests go to the key's host only"
                );
                assert!(t.timeout <= budget);
                if let Some(auth) = t.request.headers().get("authorization") {
                    assert!(auth.is_sensitive());
                    let secret = auth.to_str().unwrap_or("").trim_start_matches("Bearer ");
                    let token = tokens_given
                        .iter()
                        .find(|tk| tk.secret() == secret)
                        .expect("a token we gave");
                    assert!(token.valid_at(now), "never an expired token");
                }
                match script.byte() % 4 {
                    0 => {
                        let kind = [
                            TransportErrorKind::Connect,
                            TransportErrorKind::Timeout,
                            TransportErrorKind::Io,
                            TransportErrorKind::Tls,
                        ][script.byte() as usize % 4];
                        if kind == TransportErrorKind::Timeout {
                            now += t.timeout;
                        }
                        op.handle_transport_error(TransportError::new(kind, "fuzz"), now);
                    }
                    _ => {
                        now += t.timeout.min(Duration::from_millis(script.byte() as u64));
                        op.handle_response(response(&mut script), now);
                    }
                }
            }
            Poll::Wait(d) => {
                assert!(now + d <= start + budget, "never waits past the budget");
                now += d;
            }
            Poll::Done(_) => {
                assert!(now <= start + budget, "finished within the budget");
                return;
            }
        }
    }
    panic!("the driver did not finish in 100 steps");
}

/// Token fetches of every source fed arbitrary answers: they finish, read only the files
/// and run only the program they are configured with, and talk only to their endpoints.
pub fn token_fetch(data: &[u8], start: Instant) {
    let mut script = Script { data };
    let arc_folder = Path::new("/var/opt/azcmagent/tokens");
    let url = |s: &str| ServiceUrl::parse(s, "fuzz").expect("url");
    let sources = [
        CredentialSource::imds("http://127.0.0.1:1", None).expect("imds"),
        CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::AppService {
                endpoint: url("http://127.0.0.1:2/msi/token"),
                header: Secret::new("h"),
            },
            identity: None,
        },
        CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::Arc {
                endpoint: url("http://127.0.0.1:3/metadata/identity/oauth2/token"),
                key_folder: arc_folder.to_path_buf(),
            },
            identity: None,
        },
        CredentialSource::ClientSecret {
            authority: url("https://login.microsoftonline.com"),
            tenant: "t".into(),
            client_id: "c".into(),
            secret: Secret::new("s3cret"),
        },
        CredentialSource::WorkloadIdentity {
            authority: url("https://login.microsoftonline.com"),
            tenant: "t".into(),
            client_id: "c".into(),
            token_file: "/var/run/token".into(),
        },
        CredentialSource::AzureCli {
            program: "az".into(),
            tenant: None,
            timeout: Duration::from_secs(5),
        },
    ];
    let chain = CredentialSource::Chain(sources.to_vec());
    let choice = script.byte() as usize % (sources.len() + 1);
    let source = if choice == sources.len() {
        chain
    } else {
        sources[choice].clone()
    };
    let audience = Audience::parse("https://vault.azure.net").expect("audience");
    let mut now = start;
    let budget = Duration::from_secs(10);
    let mut fetch = TokenFetch::new(&source, &audience, budget, None, now, 1_700_000_000);
    let hosts = ["127.0.0.1", "login.microsoftonline.com"];
    for _ in 0..200 {
        match fetch.poll(now) {
            FetchPoll::Send(t) => {
                assert!(
                    hosts.contains(&t.request.uri().host().unwrap_or("")),
                    "{}",
                    t.request.uri()
                );
                assert!(
                    !t.request.uri().to_string().contains("s3cret"),
                    "secrets never go into URLs"
                );
                if script.byte() % 5 == 0 {
                    fetch.handle_transport_error(
                        TransportError::new(TransportErrorKind::Connect, "fuzz"),
                        now,
                    );
                } else {
                    let status =
                        [200u16, 200, 400, 401, 404, 410, 429, 500][script.byte() as usize % 8];
                    let mut b = Response::builder().status(status);
                    if status == 401 {
                        let realm = if script.byte() % 2 == 0 {
                            "Basic realm=/var/opt/azcmagent/tokens/a.key".to_owned()
                        } else {
                            format!("Basic realm={}", script.text(40))
                        };
                        if let Ok(v) = http::HeaderValue::from_str(&realm) {
                            b = b.header("www-authenticate", v);
                        }
                    }
                    fetch.handle_response(
                        b.body(script.bytes(200)).expect("response"),
                        now,
                        1_700_000_000,
                    );
                }
            }
            FetchPoll::ReadFile { path, .. } => {
                let arc = path.parent() == Some(arc_folder)
                    && path.extension().is_some_and(|e| e == "key");
                assert!(
                    arc || path == Path::new("/var/run/token"),
                    "unexpected file {}",
                    path.display()
                );
                fetch.handle_file(if script.byte() % 3 == 0 {
                    Err("fuzz".into())
                } else {
                    Ok(script.bytes(100))
                });
            }
            FetchPoll::RunCommand { program, .. } => {
                assert_eq!(program, "az");
                let out = CommandOutput {
                    exit_code: Some(script.byte() as i32 % 2),
                    stdout: script.bytes(200),
                    stderr: script.bytes(50),
                };
                fetch.handle_command(Ok(out), now, 1_700_000_000);
            }
            FetchPoll::Wait(d) => {
                assert!(d <= budget);
                now += d;
            }
            FetchPoll::Done(result) => {
                if let Err(e) = result {
                    assert!(!e.to_string().contains("s3cret"));
                }
                return;
            }
        }
    }
    panic!("the token fetch did not finish in 200 steps");
}

/// A key reference file: reading arbitrary bytes never panics; what it yields writes back to
/// the same key string; and the name never leads to a host outside the allowed set.
pub fn key_ref(data: &[u8]) {
    use crate::key_ref::{from_der, from_pem, to_der, to_pem};
    for read in [from_pem(data), from_der(data)] {
        let Ok(key) = read else { continue };
        assert_eq!(
            from_pem(to_pem(&key).as_bytes()).as_deref(),
            Ok(key.as_str())
        );
        assert_eq!(from_der(&to_der(&key)).as_deref(), Ok(key.as_str()));
        if let Ok(id) = KeyId::parse(&key, &policy()) {
            assert!(
                host_is_allowed(id.endpoint().host(), id.endpoint().port()),
                "{key:?} names a host outside the allowed set"
            );
        }
    }
}

/// HTTP/1.1 answers as a connection delivers them: fed in pieces of any size, the reader
/// gives the same answer (or the same error) as when fed all at once, takes no more than it
/// was given, and never returns a body over its limit. The first byte picks the piece size
/// and the request method.
pub fn h1_response(data: &[u8]) {
    const MAX_BODY: u64 = 4096;
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let method = if selector & 0x80 != 0 {
        http::Method::HEAD
    } else {
        http::Method::GET
    };
    let read = |step: usize| crate::h1::read_in_pieces(&method, bytes, step, MAX_BODY);
    let whole = read(bytes.len().max(1));
    let pieces = read(usize::from(selector & 0x3f) + 1);
    match (&whole, &pieces) {
        (Ok((a, left_a)), Ok((b, left_b))) => {
            assert!(a.response.body().len() as u64 <= MAX_BODY);
            assert_eq!(a.response.status(), b.response.status());
            assert_eq!(a.response.headers(), b.response.headers());
            assert_eq!(a.response.body(), b.response.body());
            assert_eq!((a.reusable, left_a), (b.reusable, left_b));
            if method == http::Method::HEAD {
                assert!(a.response.body().is_empty());
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole: {a:?}, in pieces: {b:?}"),
    }
}
