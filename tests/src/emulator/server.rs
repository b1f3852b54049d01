//! The emulator's HTTP side: accept loop, TLS, routing, authentication, faults, counters.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use akv_proto::b64;
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::keys::{self, KeyStore, OpError};
use super::{EmulatorConfig, Fault, Faults, Shared, Stats, TlsFiles, lock};

/// An emulator bound to its port, ready to serve.
pub struct Prepared {
    pub(crate) addr: SocketAddr,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) tls_files: Option<TlsFiles>,
    pub(crate) shared: Arc<Shared>,
}

impl Prepared {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The TLS files, for HTTPS.
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls_files.as_ref()
    }

    /// The base URL.
    pub fn base_url(&self) -> String {
        lock(&self.shared.base_url).clone()
    }

    /// Where the public key of `name` is exported.
    pub fn public_key_pem(&self, name: &str) -> std::path::PathBuf {
        lock(&self.shared.keys).public_pem_path(name)
    }
}

/// Creates keys and TLS files and binds the port.
pub fn prepare(config: EmulatorConfig) -> std::io::Result<Prepared> {
    if !config.listen.ip().is_loopback() {
        return Err(std::io::Error::other(format!(
            "the emulator listens on loopback only, not {}",
            config.listen
        )));
    }
    std::fs::create_dir_all(&config.state_dir)?;
    let mut store = KeyStore::open(&config.state_dir)?;
    for (name, spec) in &config.keys {
        store.ensure(name, *spec)?;
    }
    let tls_files = if config.tls {
        Some(super::tls::ensure(&config.state_dir)?)
    } else {
        None
    };
    let listener = std::net::TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls { "https" } else { "http" };
    let shared = Arc::new(Shared {
        base_url: Mutex::new(format!("{scheme}://{addr}")),
        config,
        keys: Mutex::new(store),
        tokens: Mutex::new(HashMap::new()),
        faults: Mutex::new(Faults::default()),
        stats: Mutex::new(Stats::default()),
        key_requests: AtomicU64::new(0),
        signature_cache: Mutex::new(HashMap::new()),
    });
    Ok(Prepared {
        addr,
        listener,
        tls_files,
        shared,
    })
}

/// Serves until `shutdown` completes.
pub async fn serve(prepared: Prepared, shutdown: impl Future<Output = ()>) {
    prepared
        .listener
        .set_nonblocking(true)
        .expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(prepared.listener).expect("listener");
    let acceptor = prepared.tls_files.as_ref().map(|files| {
        tokio_rustls::TlsAcceptor::from(
            super::tls::server_config(files).expect("TLS configuration"),
        )
    });
    let shared = prepared.shared;
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        lock(&shared.stats).connections += 1;
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { handle(shared, req).await }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

type Reply = Response<Full<Bytes>>;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

fn reply(status: u16, body: &Value, client_request_id: Option<&str>) -> Reply {
    let id = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "x-ms-request-id",
            format!("00000000-0000-4000-8000-{id:012x}"),
        )
        .header("x-ms-keyvault-service-version", "1.9.0.0 (akv-emulator)")
        // The rest of what Key Vault sends with every answer (see the recordings in
        // ../shared/fixtures): a client pays for reading each header, and an emulator that
        // sends fewer than the service hides that cost from the benchmark.
        .header("cache-control", "no-cache")
        .header("pragma", "no-cache")
        .header("expires", "-1")
        .header("x-ms-keyvault-region", "westeurope")
        .header(
            "x-ms-keyvault-network-info",
            "conn_type=Ipv4;addr=127.0.0.1;act_addr_fam=InterNetwork;",
        )
        .header(
            "strict-transport-security",
            "max-age=31536000;includeSubDomains",
        )
        .header("x-content-type-options", "nosniff");
    if let Some(c) = client_request_id {
        builder = builder.header("x-ms-client-request-id", c);
    }
    builder
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).expect("json"),
        )))
        .expect("response")
}

fn error_body(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

fn count(shared: &Shared, route: &str) {
    *lock(&shared.stats)
        .requests
        .entry(route.to_owned())
        .or_insert(0) += 1;
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Reply, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 1 << 20).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(reply(
                413,
                &error_body("BadParameter", "request body too large"),
                None,
            ));
        }
    };
    let client_id = parts
        .headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();

    if path == "/metadata/identity/oauth2/token" && parts.method == Method::GET {
        return Ok(imds(&shared, &parts.headers, &query));
    }
    if path.ends_with("/oauth2/v2.0/token") && parts.method == Method::POST {
        return Ok(entra(&shared, &body));
    }
    if let Some(control) = path.strip_prefix("/_emulator/") {
        return Ok(control_route(&shared, &parts.method, control, &body));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if !matches!(segments.first(), Some(&"keys" | &"certificates")) || segments.len() < 2 {
        return Ok(reply(
            404,
            &error_body("NotFound", "The requested resource was not found"),
            client_id.as_deref(),
        ));
    }
    if query_param(&query, "api-version").is_none_or(|v| v.is_empty()) {
        count(&shared, "missing_api_version");
        return Ok(reply(
            400,
            &error_body(
                "BadParameter",
                "The api-version query parameter is required.",
            ),
            client_id.as_deref(),
        ));
    }
    // Authentication, as Key Vault: no or bad token -> 401 with the Bearer challenge.
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let valid = bearer.as_deref().is_some_and(|t| {
        lock(&shared.tokens)
            .get(t)
            .is_some_and(|exp| Instant::now() < *exp)
            || shared.config.accept_tokens.iter().any(|a| a == t)
    });
    if !valid {
        count(&shared, "unauthorized");
        let message = if bearer.is_some() {
            "AKV10032: Invalid issuer or expired token."
        } else {
            "AKV10000: Request is missing a Bearer or PoP token."
        };
        let mut r = reply(
            401,
            &error_body("Unauthorized", message),
            client_id.as_deref(),
        );
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000\", resource=\"{}\"",
            shared.config.challenge_resource
        );
        r.headers_mut()
            .insert("www-authenticate", challenge.parse().expect("header"));
        return Ok(r);
    }
    // Faults.
    let (latency, fault) = next_fault(&shared);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(fault) = fault {
        lock(&shared.stats).faults_injected += 1;
        match fault {
            Fault::Drop => return Err(DropConnection),
            Fault::Status {
                status,
                retry_after,
            } => {
                let body = if status == 429 {
                    error_body(
                        "Throttled",
                        "Request was not processed because too many requests were received. Reason: VaultRequestTypeLimitReached",
                    )
                } else {
                    error_body(
                        "ServiceUnavailable",
                        "The service is temporarily unavailable.",
                    )
                };
                let mut r = reply(status, &body, client_id.as_deref());
                if let Some(secs) = retry_after {
                    r.headers_mut()
                        .insert("retry-after", secs.to_string().parse().expect("header"));
                }
                return Ok(r);
            }
        }
    }
    let base = lock(&shared.base_url).clone();
    let result = if segments[0] == "certificates" {
        certificate_route(&shared, &parts.method, &segments[1..], &base)
    } else {
        key_route(&shared, &parts.method, &segments[1..], &body, &base)
    };
    Ok(match result {
        Ok((route, value)) => {
            count(&shared, route);
            reply(200, &value, client_id.as_deref())
        }
        Err((route, e)) => {
            count(&shared, route);
            reply(
                e.status,
                &error_body(e.code, &e.message),
                client_id.as_deref(),
            )
        }
    })
}

/// `GET /certificates/NAME[/VERSION]` for the keys configured with a certificate.
fn certificate_route(
    shared: &Shared,
    method: &Method,
    segments: &[&str],
    base: &str,
) -> Result<(&'static str, Value), (&'static str, OpError)> {
    const ROUTE: &str = "get_certificate";
    let name = segments[0];
    let not_found = || OpError {
        status: 404,
        code: "CertificateNotFound",
        message: format!(
            "A certificate with (name/id) {name} was not found in this key vault. If you recently deleted this certificate you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
        ),
    };
    if method != Method::GET || segments.len() > 2 {
        return Err((
            ROUTE,
            OpError {
                status: 405,
                code: "BadParameter",
                message: "The emulator serves GET /certificates/NAME[/VERSION] only.".into(),
            },
        ));
    }
    if !shared
        .config
        .certificates
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name))
    {
        return Err((ROUTE, not_found()));
    }
    let store = lock(&shared.keys);
    let (key, data) = store
        .find(name, segments.get(1).copied())
        .map_err(|_| (ROUTE, not_found()))?;
    let der = keys::certificate_der(&store, key, data).map_err(|e| {
        (
            ROUTE,
            OpError {
                status: 500,
                code: "InternalError",
                message: format!("emulator: cannot make the certificate: {e}"),
            },
        )
    })?;
    Ok((ROUTE, keys::certificate_bundle(base, key, data, &der)))
}

fn next_fault(shared: &Shared) -> (Duration, Option<Fault>) {
    let n = shared.key_requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut faults = lock(&shared.faults);
    let latency = Duration::from_millis(faults.latency_ms);
    if let Some(f) = faults.next.pop_front() {
        return (latency, Some(f));
    }
    let every = |k: u64| k != 0 && n % k == 0;
    let fault = if every(faults.drop_every) {
        Some(Fault::Drop)
    } else if every(faults.throttle_every) {
        Some(Fault::Status {
            status: 429,
            retry_after: faults.throttle_retry_after,
        })
    } else if every(faults.unavailable_every) {
        Some(Fault::Status {
            status: 503,
            retry_after: None,
        })
    } else {
        None
    };
    (latency, fault)
}

fn imds(shared: &Shared, headers: &http::HeaderMap, query: &str) -> Reply {
    if headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        count(shared, "token_rejected");
        return reply(
            400,
            &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
            None,
        );
    }
    let Some(resource) = query_param(query, "resource").filter(|r| !r.is_empty()) else {
        count(shared, "token_rejected");
        return reply(
            400,
            &json!({"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"}),
            None,
        );
    };
    let (token, lifetime) = issue_token(shared, "emu");
    let now = unix_now();
    // IMDS sends every number as a string.
    reply(
        200,
        &json!({
            "access_token": token,
            "client_id": "00000000-0000-0000-0000-00000000e4a1",
            "expires_in": lifetime.as_secs().to_string(),
            "expires_on": (now + lifetime.as_secs()).to_string(),
            "ext_expires_in": lifetime.as_secs().to_string(),
            "not_before": now.to_string(),
            "resource": resource,
            "token_type": "Bearer"
        }),
        None,
    )
}

/// Makes a random token the key routes will accept until it expires, and counts it.
fn issue_token(shared: &Shared, prefix: &str) -> (String, Duration) {
    let mut bytes = [0u8; 24];
    openssl::rand::rand_bytes(&mut bytes).expect("randomness");
    let token = format!("{prefix}.{}", b64::encode(&bytes));
    let lifetime = shared.config.token_lifetime;
    lock(&shared.tokens).insert(token.clone(), Instant::now() + lifetime);
    lock(&shared.stats).token_requests += 1;
    count(shared, "token");
    (token, lifetime)
}

/// Entra ID's client-credentials grant: a client secret or a federated assertion.
fn entra(shared: &Shared, body: &[u8]) -> Reply {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |n: &str| form.get(n).cloned().unwrap_or_default();
    let proof = if form.contains_key("client_assertion") {
        field("client_assertion")
    } else {
        field("client_secret")
    };
    let known = shared
        .config
        .entra_clients
        .iter()
        .any(|(id, secret)| *id == field("client_id") && *secret == proof);
    if field("grant_type") != "client_credentials"
        || !field("scope").ends_with("/.default")
        || !known
    {
        count(shared, "token_rejected");
        return reply(
            401,
            &json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: 00000000"}),
            None,
        );
    }
    let (token, lifetime) = issue_token(shared, "entra");
    // Entra sends numbers as numbers.
    reply(
        200,
        &json!({"token_type": "Bearer", "expires_in": lifetime.as_secs(), "ext_expires_in": lifetime.as_secs(), "access_token": token}),
        None,
    )
}

fn control_route(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> Reply {
    match (method, path) {
        (&Method::GET, "stats") => reply(
            200,
            &serde_json::to_value(lock(&shared.stats).clone()).expect("json"),
            None,
        ),
        (&Method::POST, "stats/reset") => {
            *lock(&shared.stats) = Stats::default();
            reply(200, &json!({}), None)
        }
        (&Method::POST, "faults") => match serde_json::from_slice::<Faults>(body) {
            Ok(f) => {
                *lock(&shared.faults) = f;
                shared.key_requests.store(0, Ordering::SeqCst);
                reply(200, &json!({}), None)
            }
            Err(e) => reply(400, &json!({"error": e.to_string()}), None),
        },
        (&Method::POST, "tokens/revoke") => {
            lock(&shared.tokens).clear();
            reply(200, &json!({}), None)
        }
        (&Method::POST, p) if p.starts_with("keys/") => {
            // keys/NAME/enable or keys/NAME/disable
            let parts: Vec<&str> = p.split('/').collect();
            match parts.as_slice() {
                ["keys", name, action @ ("enable" | "disable")] => {
                    let ok = lock(&shared.keys)
                        .set_enabled(name, *action == "enable")
                        .unwrap_or(false);
                    if ok {
                        reply(200, &json!({}), None)
                    } else {
                        reply(404, &json!({"error": "no such key"}), None)
                    }
                }
                _ => reply(404, &json!({"error": "unknown control route"}), None),
            }
        }
        _ => reply(404, &json!({"error": "unknown control route"}), None),
    }
}

type RouteResult = Result<(&'static str, Value), (&'static str, OpError)>;

const OPS: [&str; 6] = [
    "sign",
    "verify",
    "encrypt",
    "decrypt",
    "wrapkey",
    "unwrapkey",
];

fn key_route(
    shared: &Shared,
    method: &Method,
    segs: &[&str],
    body: &[u8],
    base: &str,
) -> RouteResult {
    let (name, version, op) = match (method, segs) {
        (&Method::GET, [name]) | (&Method::GET, [name, ""]) => (*name, None, None),
        (&Method::GET, [name, version]) => (*name, Some(*version), None),
        (&Method::POST, [name, op]) if OPS.contains(&op.to_ascii_lowercase().as_str()) => {
            (*name, None, Some(op.to_ascii_lowercase()))
        }
        (&Method::POST, [name, version, op]) if OPS.contains(&op.to_ascii_lowercase().as_str()) => {
            (*name, Some(*version), Some(op.to_ascii_lowercase()))
        }
        _ => {
            return Err((
                "unknown",
                OpError {
                    status: 404,
                    code: "NotFound",
                    message: "The requested resource was not found".into(),
                },
            ));
        }
    };
    let store = lock(&shared.keys);
    let Some(op) = op else {
        let (key, data) = store.find(name, version).map_err(|e| ("get_key", e))?;
        return Ok(("get_key", keys::key_bundle(base, key, data)));
    };
    let route: &'static str = match op.as_str() {
        "sign" => "sign",
        "verify" => "verify",
        "encrypt" => "encrypt",
        "decrypt" => "decrypt",
        "wrapkey" => "wrapKey",
        _ => "unwrapKey",
    };
    let fail = |e: OpError| (route, e);
    let (key, data) = store.find(name, version).map_err(fail)?;
    if !key.enabled {
        return Err(fail(OpError {
            status: 403,
            code: "Forbidden",
            message: format!("Operation {route} is not allowed on a disabled key."),
        }));
    }
    if !key.key_ops.iter().any(|o| o.eq_ignore_ascii_case(route)) {
        return Err(fail(OpError {
            status: 403,
            code: "Forbidden",
            message: format!("Operation {route} is not permitted on this key."),
        }));
    }
    let request: Value = serde_json::from_slice(body).map_err(|_| {
        fail(OpError {
            status: 400,
            code: "BadParameter",
            message: "Request body is not valid JSON".into(),
        })
    })?;
    let alg = request
        .get("alg")
        .and_then(|a| a.as_str())
        .unwrap_or("")
        .to_owned();
    let field = |n: &str| -> Result<Vec<u8>, (&'static str, OpError)> {
        let text = request.get(n).and_then(|v| v.as_str()).ok_or_else(|| {
            fail(OpError {
                status: 400,
                code: "BadParameter",
                message: format!("Property {n} is required"),
            })
        })?;
        b64::decode(text).map_err(|_| {
            fail(OpError {
                status: 400,
                code: "BadParameter",
                message: format!("Property {n} is not base64url"),
            })
        })
    };
    let kid = format!("{base}/keys/{}/{}", key.name, data.version);
    let value = match route {
        "sign" => {
            let digest = field("value")?;
            let cache_key = (data.version.clone(), alg.clone(), digest.clone());
            let cached = shared
                .config
                .cache_signatures
                .then(|| lock(&shared.signature_cache).get(&cache_key).cloned())
                .flatten();
            let sig = match cached {
                Some(sig) => sig,
                None => {
                    let sig = keys::sign(&data.pkey, &alg, &digest).map_err(fail)?;
                    if shared.config.cache_signatures {
                        lock(&shared.signature_cache).insert(cache_key, sig.clone());
                    }
                    sig
                }
            };
            json!({"kid": kid, "value": b64::encode(&sig)})
        }
        "verify" => {
            let ok = keys::verify(&data.pkey, &alg, &field("digest")?, &field("value")?)
                .map_err(fail)?;
            json!({"value": ok})
        }
        "encrypt" | "wrapKey" => {
            json!({"kid": kid, "value": b64::encode(&keys::encrypt(&data.pkey, &alg, &field("value")?).map_err(fail)?)})
        }
        _ => {
            json!({"kid": kid, "value": b64::encode(&keys::decrypt(&data.pkey, &alg, &field("value")?).map_err(fail)?)})
        }
    };
    Ok((route, value))
}
