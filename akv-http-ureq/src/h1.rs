//! Our own HTTP/1.1 exchange on kept connections, for servers reached without a proxy (the
//! vault, the token services: every request of a signing process).
//!
//! ureq's agent cost more than the request itself: measured on loopback, 80-90 µs of client
//! CPU per signature against 22-26 µs for a bare rustls connection sending the same bytes.
//! The difference was its per-request machinery (timings, pool purging, request and
//! response rebuilding, a TLS record for the head and another for the body). What is left
//! here is what a request needs: a pool of open connections per origin, the head and the
//! body written as one TLS record in one `send`, and the answer read into one buffer.
//!
//! The HTTP/1.1 rules (writing the request, the framing of the answer, when a connection
//! may be used again) are `akv_proto::h1`, sans-IO and fuzzed; only the I/O is here.
//! Redirects are never followed: a 3xx is handed back like any other answer.

use std::borrow::Cow;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use akv_proto::h1::{ResponseReader, WireError, write_request};
use akv_proto::{HttpRequest, HttpResponse, TransportError, TransportErrorKind};
use rustls::pki_types::ServerName;

use crate::resolver::{CachingResolver, LookupError};
use crate::tcp::{Socket, is_wait_over};

/// A kept connection unused for longer than this is closed rather than used (servers and
/// middleboxes drop idle connections after a minute or more; a request sent on one that was
/// just dropped fails).
const MAX_IDLE_AGE: Duration = Duration::from_secs(60);

/// A kept connection used again within this long is taken without first checking (a system
/// call) whether the server closed it: servers close idle connections after seconds, not
/// within one. Should one have been closed anyway, the request goes again on a new connection
/// (see `Direct::send`).
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// What is read from the connection at a time.
const READ_CHUNK: usize = 16 * 1024;

const USER_AGENT: &str = concat!("e_akv/", env!("CARGO_PKG_VERSION"));

/// Where a connection goes: requests to the same origin share connections. An origin is the
/// URL's scheme and authority as written (two spellings of one origin only make two pools):
/// comparing them costs less than parsing the port out for every request. A request's origin
/// borrows the authority from the URL; a kept connection's owns it (copied when the
/// connection is opened, not for every request).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin<'a> {
    tls: bool,
    authority: Cow<'a, str>,
}

impl Origin<'_> {
    fn of(uri: &http::Uri) -> Result<Origin<'_>, TransportError> {
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(invalid(uri, "only http and https URLs can be requested")),
        };
        match uri.authority() {
            Some(authority) if uri.host().is_some() => Ok(Origin {
                tls,
                authority: Cow::Borrowed(authority.as_str()),
            }),
            _ => Err(invalid(uri, "the URL has no host")),
        }
    }

    fn into_owned(self) -> Origin<'static> {
        Origin {
            authority: Cow::Owned(self.authority.into_owned()),
            ..self
        }
    }

    /// The host (without the brackets of an IPv6 literal) and the port, for opening a
    /// connection and for naming it in errors.
    fn host_port(&self) -> (String, u16) {
        let default = if self.tls { 443 } else { 80 };
        // It parsed as a part of a URL: it parses alone.
        match self.authority.parse::<http::uri::Authority>() {
            Ok(a) => (
                a.host()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
                a.port_u16().unwrap_or(default),
            ),
            Err(_) => (self.authority.to_string(), default),
        }
    }

    fn name(&self) -> String {
        let (host, port) = self.host_port();
        format!("{host}:{port}")
    }
}

fn invalid(uri: &http::Uri, why: &str) -> TransportError {
    TransportError::new(TransportErrorKind::Other, format!("{uri}: {why}"))
}

/// One connection, with TLS when the origin asks for it.
struct Conn {
    socket: Socket,
    tls: Option<Box<rustls::ClientConnection>>,
    /// What is read from the connection lands here first (allocated and zeroed once).
    scratch: Box<[u8]>,
    /// The request being sent, and the answer's bytes not yet taken.
    out: Vec<u8>,
    input: Vec<u8>,
}

/// A connection waiting for its next request.
struct Idle {
    origin: Origin<'static>,
    conn: Conn,
    since: Instant,
}

/// Sends requests on kept connections; shared by the clones of one transport.
pub(crate) struct Direct {
    tls: Arc<rustls::ClientConfig>,
    resolver: Arc<CachingResolver>,
    idle: Mutex<Vec<Idle>>,
    connect_timeout: Duration,
    max_idle_per_host: usize,
    max_body_bytes: u64,
}

impl std::fmt::Debug for Direct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Direct")
            .field("connect_timeout", &self.connect_timeout)
            .field("max_idle_per_host", &self.max_idle_per_host)
            .field("max_body_bytes", &self.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl Direct {
    pub(crate) fn new(
        tls: rustls::ClientConfig,
        resolver: Arc<CachingResolver>,
        connect_timeout: Duration,
        max_idle_per_host: usize,
        max_body_bytes: u64,
    ) -> Direct {
        Direct {
            tls: Arc::new(tls),
            resolver,
            idle: Mutex::new(Vec::new()),
            connect_timeout,
            max_idle_per_host: max_idle_per_host.max(1),
            max_body_bytes,
        }
    }

    /// Sends `request` and reads the whole answer, all within `timeout`.
    pub(crate) fn send(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, TransportError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let target = Origin::of(request.uri())?;
        let (origin, mut conn, kept) = match self.take_idle(&target, started) {
            Some(Idle { origin, conn, .. }) => (origin, conn, true),
            None => {
                let origin = target.into_owned();
                let conn = self.open(&origin, deadline)?;
                (origin, conn, false)
            }
        };
        let mut result = conn.exchange(&request, deadline, self.max_body_bytes);
        if kept && matches!(result, Err(Exchange::Unanswered(_))) {
            // A kept connection that the server had closed (or reset) while it sat idle:
            // nothing came back, so the request goes again on a new connection, once. Sending
            // a key operation twice is harmless should the server have read it after all.
            conn = self.open(&origin, deadline)?;
            result = conn.exchange(&request, deadline, self.max_body_bytes);
        }
        let (response, reusable) =
            result.map_err(|e| e.into_failure().into_transport_error(&origin))?;
        if reusable {
            // Idle from the start of this exchange, a little earlier than its end: the
            // connection counts as older, never younger, than it is.
            self.give_back(origin, conn, started);
        }
        Ok(response)
    }

    /// The connection to `origin` used last, if it is still open and not too old.
    fn take_idle(&self, origin: &Origin<'_>, now: Instant) -> Option<Idle> {
        loop {
            let found = {
                let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
                idle.retain(|i| now.duration_since(i.since) < MAX_IDLE_AGE);
                let at = idle.iter().rposition(|i| i.origin == *origin)?;
                idle.remove(at)
            };
            // Checked (a system call) and, when dead, closed with the lock released: the
            // other threads of the process take and return their connections meanwhile.
            if now.duration_since(found.since) < CHECK_AFTER_IDLE || found.conn.socket.is_open() {
                return Some(found);
            }
        }
    }

    fn give_back(&self, origin: Origin<'static>, conn: Conn, since: Instant) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.iter().filter(|i| i.origin == origin).count() >= self.max_idle_per_host
            && let Some(oldest) = idle.iter().position(|i| i.origin == origin)
        {
            idle.remove(oldest);
        }
        idle.push(Idle {
            origin,
            conn,
            since,
        });
    }

    /// Opens a connection: looks the host up (cached, see `resolver.rs`), connects within the
    /// connect timeout, and prepares TLS (its handshake goes out with the first request).
    fn open(&self, origin: &Origin<'_>, deadline: Instant) -> Result<Conn, TransportError> {
        let connect_by = deadline.min(Instant::now() + self.connect_timeout);
        let left = connect_by.saturating_duration_since(Instant::now());
        let (host, port) = origin.host_port();
        let addrs = self
            .resolver
            .addrs(&host, port, Some(left))
            .map_err(|e| match e {
                LookupError::Timeout => TransportError::new(
                    TransportErrorKind::Timeout,
                    format!("looking up {host} took too long"),
                ),
                LookupError::NotFound(e) => TransportError::new(
                    TransportErrorKind::Connect,
                    format!("cannot look up {host}: {e}"),
                ),
            })?;
        let socket = Socket::connect(&addrs, connect_by).map_err(|e| {
            let kind = if e.kind() == io::ErrorKind::TimedOut {
                TransportErrorKind::Timeout
            } else {
                TransportErrorKind::Connect
            };
            TransportError::new(kind, format!("connecting to {}: {e}", origin.name()))
        })?;
        let tls = if origin.tls {
            let tls_error = |e: String| {
                TransportError::new(TransportErrorKind::Tls, format!("{}: {e}", origin.name()))
            };
            let name = ServerName::try_from(host)
                .map_err(|e| tls_error(format!("not a TLS server name: {e}")))?;
            let conn = rustls::ClientConnection::new(self.tls.clone(), name)
                .map_err(|e| tls_error(e.to_string()))?;
            Some(Box::new(conn))
        } else {
            None
        };
        Ok(Conn {
            socket,
            tls,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            out: Vec::new(),
            input: Vec::new(),
        })
    }
}

/// How an exchange failed.
#[derive(Debug)]
enum Exchange {
    /// The connection was closed or reset before the first byte of the answer: what a kept
    /// connection does when the server dropped it while it sat idle.
    Unanswered(Failure),
    Failed(Failure),
}

impl Exchange {
    fn unanswered_if_closed(failure: Failure) -> Exchange {
        let closed = matches!(
            &failure,
            Failure::Io(_, e) if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
                    | io::ErrorKind::UnexpectedEof
            )
        );
        if closed {
            Exchange::Unanswered(failure)
        } else {
            Exchange::Failed(failure)
        }
    }

    fn into_failure(self) -> Failure {
        match self {
            Exchange::Unanswered(f) | Exchange::Failed(f) => f,
        }
    }
}

impl From<Failure> for Exchange {
    fn from(failure: Failure) -> Exchange {
        Exchange::Failed(failure)
    }
}

/// Why an exchange failed; made into a [`TransportError`] with the origin's name.
#[derive(Debug)]
enum Failure {
    Io(&'static str, io::Error),
    Tls(rustls::Error),
    Wire(WireError),
}

impl Failure {
    fn into_transport_error(self, origin: &Origin<'_>) -> TransportError {
        let name = origin.name();
        let (kind, message) = match self {
            Failure::Io(doing, e) => {
                let kind = match e.kind() {
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                        TransportErrorKind::Timeout
                    }
                    _ => TransportErrorKind::Io,
                };
                (kind, format!("{doing} {name}: {e}"))
            }
            Failure::Tls(e) => (TransportErrorKind::Tls, format!("{name}: {e}")),
            Failure::Wire(e) => {
                let kind = match e {
                    WireError::BodyTooLarge(_) => TransportErrorKind::BodyTooLarge,
                    WireError::Request(_) => TransportErrorKind::Other,
                    _ => TransportErrorKind::Io,
                };
                (kind, format!("{name}: {e}"))
            }
        };
        TransportError::new(kind, message)
    }
}

impl Conn {
    /// One request and its whole answer; with whether the connection may be used again.
    fn exchange(
        &mut self,
        request: &HttpRequest,
        deadline: Instant,
        max_body: u64,
    ) -> Result<(HttpResponse, bool), Exchange> {
        // The head and the body in one buffer: one TLS record, one `send`. The connection's
        // buffers are used again by each of its requests.
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        write_request(request, USER_AGENT, &mut out)
            .map_err(|e| Exchange::Failed(Failure::Wire(e)))?;
        let sent = self.send_all(&out, deadline);
        self.out = out;
        sent.map_err(Exchange::unanswered_if_closed)?;
        let mut reader = ResponseReader::new(request.method(), max_body);
        let mut input = std::mem::take(&mut self.input);
        input.clear();
        let result = self.receive(&mut reader, &mut input, deadline);
        self.input = input;
        result
    }

    fn receive(
        &mut self,
        reader: &mut ResponseReader,
        input: &mut Vec<u8>,
        deadline: Instant,
    ) -> Result<(HttpResponse, bool), Exchange> {
        // Nothing of the answer yet: a close or reset now is how a kept connection shows
        // that the server dropped it while it sat idle.
        let mut answered = false;
        loop {
            let got = match self.fill(input, deadline) {
                Ok(0) if !answered => {
                    return Err(Exchange::Unanswered(Failure::Wire(WireError::Closed(
                        "before the response head ended",
                    ))));
                }
                Err(e) if !answered => return Err(Exchange::unanswered_if_closed(e)),
                got => got?,
            };
            answered = true;
            if got == 0 {
                let answer = reader.closed().map_err(Failure::Wire)?;
                return Ok((answer.response, false));
            }
            let (used, answer) = reader.read(input).map_err(Failure::Wire)?;
            input.drain(..used);
            if let Some(answer) = answer {
                // Bytes after the answer were never asked for: the connection is not reused.
                let reusable = answer.reusable && input.is_empty();
                return Ok((answer.response, reusable));
            }
        }
    }

    /// Sends `bytes` (through TLS when there is TLS), by `deadline`.
    fn send_all(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), Failure> {
        let Some(tls) = &mut self.tls else {
            return (self.socket)
                .write_all_by(bytes, deadline)
                .map_err(|e| Failure::Io("sending to", e));
        };
        // Before the handshake, rustls keeps the plaintext and sends it once it is done.
        tls.writer()
            .write_all(bytes)
            .map_err(|e| Failure::Io("sending to", e))?;
        // With a new connection this sends the hello; the rest of the handshake and the
        // request go out as the answer is read.
        flush_tls(tls, &mut self.socket, deadline)
    }

    /// Reads what arrives next onto the end of `input`: 0 when the server has closed.
    fn fill(&mut self, input: &mut Vec<u8>, deadline: Instant) -> Result<usize, Failure> {
        let Conn {
            socket,
            tls,
            scratch,
            ..
        } = self;
        let n = match tls {
            None => socket
                .read_by(scratch, deadline)
                .map_err(|e| Failure::Io("reading from", e))?,
            Some(tls) => read_tls_some(tls, socket, scratch, deadline)?,
        };
        input.extend_from_slice(&scratch[..n]);
        Ok(n)
    }
}

/// Reads the plaintext that arrives next through TLS: 0 when the server has closed.
fn read_tls_some(
    tls: &mut rustls::ClientConnection,
    socket: &mut Socket,
    into: &mut [u8],
    deadline: Instant,
) -> Result<usize, Failure> {
    loop {
        // Handshake messages, alerts, and the request while it waits for the handshake.
        flush_tls(tls, socket, deadline)?;
        match tls.reader().read(into) {
            Ok(n) => return Ok(n),
            // Closed without TLS's goodbye: an end like any other; the framing of the
            // answer tells whether it came too early.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Failure::Io("reading from", e)),
        }
        socket
            .read_deadline(deadline)
            .map_err(|e| Failure::Io("waiting for", e))?;
        match tls.read_tls(socket) {
            Ok(0) => return Ok(0),
            Ok(_) => {
                tls.process_new_packets().map_err(|e| {
                    // Tell the server why (an alert), as far as it can be told at once.
                    let _ = tls.write_tls(socket);
                    Failure::Tls(e)
                })?;
            }
            Err(e) if is_wait_over(&e) || e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io("reading from", e)),
        }
    }
}

/// Sends what TLS has ready to go, by `deadline`.
fn flush_tls(
    tls: &mut rustls::ClientConnection,
    socket: &mut Socket,
    deadline: Instant,
) -> Result<(), Failure> {
    while tls.wants_write() {
        match tls.write_tls(socket) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket
                .wait_writable(deadline)
                .map_err(|e| Failure::Io("sending to", e))?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::Io("sending to", e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    use http::Request;

    use super::*;

    /// What the server does with a request.
    enum Step {
        /// Answers and waits for the next request on the connection.
        Keep(&'static [u8]),
        /// Answers (possibly nothing) and closes the connection.
        Close(&'static [u8]),
    }
    use Step::{Close, Keep};

    /// A server that reads requests (head and Content-Length body) and follows the script,
    /// one step per request. Reports the requests it read.
    fn server(script: Vec<Step>) -> (String, mpsc::Receiver<String>, JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::spawn(move || {
            let mut script = script.into_iter();
            let mut connections = 0;
            'connections: while let Ok((mut stream, _)) = listener.accept() {
                connections += 1;
                loop {
                    let Some(request) = read_request(&mut stream) else {
                        continue 'connections;
                    };
                    tx.send(request).unwrap();
                    match script.next() {
                        Some(Keep(bytes)) => stream.write_all(bytes).unwrap(),
                        Some(Close(bytes)) => {
                            stream.write_all(bytes).unwrap();
                            if script.len() == 0 {
                                return connections;
                            }
                            continue 'connections;
                        }
                        None => return connections,
                    }
                }
            }
            connections
        });
        (origin, rx, handle)
    }

    fn read_request(stream: &mut TcpStream) -> Option<String> {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            got.push(byte[0]);
        }
        let head = String::from_utf8(got).unwrap();
        let len = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        stream.read_exact(&mut body).ok()?;
        Some(head + &String::from_utf8(body).unwrap())
    }

    fn direct(max_body_bytes: u64) -> Direct {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Direct::new(
            tls,
            Arc::default(),
            Duration::from_secs(2),
            2,
            max_body_bytes,
        )
    }

    #[test]
    fn origins_compare_as_written_and_give_host_and_port() {
        let origin = |url: &str| Origin::of(&url.parse().unwrap()).map(Origin::into_owned);
        let cases = [
            (
                "https://myvault.vault.azure.net/keys/k",
                "myvault.vault.azure.net",
                443,
            ),
            ("http://127.0.0.1:39193/keys/k", "127.0.0.1", 39193),
            ("http://localhost/x", "localhost", 80),
            ("https://[::1]:8443/x", "::1", 8443),
            ("https://[::1]/x", "::1", 443),
        ];
        for (url, host, port) in cases {
            let o = origin(url).unwrap();
            assert_eq!(o.host_port(), (host.to_owned(), port), "{url}");
            assert_eq!(o.name(), format!("{host}:{port}"));
        }
        assert_eq!(origin("https://a.b/x"), origin("https://a.b/y?z=1"));
        assert_ne!(origin("https://a.b/x"), origin("http://a.b/x"));
        assert_ne!(origin("https://a.b/x"), origin("https://a.b:444/x"));
        for bad in ["ftp://a.b/x", "/no/host"] {
            let e = origin(bad).unwrap_err();
            assert_eq!(e.kind, TransportErrorKind::Other, "{bad}: {e}");
        }
    }

    fn get(d: &Direct, url: &str) -> Result<HttpResponse, TransportError> {
        d.send(
            Request::get(url).body(Vec::new()).unwrap(),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn bodies_of_every_framing_and_connection_reuse() {
        let (origin, requests, server) = server(vec![
            Keep(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
            // A 1xx first, then a chunked body in three chunks.
            Keep(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"),
            // A redirect is handed back, not followed.
            Keep(b"HTTP/1.1 302 Found\r\nlocation: http://elsewhere.invalid/\r\nx-ms-request-id: r3\r\ncontent-length: 0\r\n\r\n"),
            // No length: the body ends when the server closes (and so does the connection).
            Close(b"HTTP/1.0 200 OK\r\n\r\nuntil close"),
        ]);
        let d = direct(1024);
        let post = Request::post(format!("{origin}/keys/k/sign"))
            .header("content-type", "application/json")
            .body(b"{\"alg\":\"ES256\"}".to_vec())
            .unwrap();
        let r = d.send(post, Duration::from_secs(2)).unwrap();
        assert_eq!(
            (r.status().as_u16(), r.body().as_slice()),
            (200, &b"hello"[..])
        );
        let r = get(&d, &format!("{origin}/two")).unwrap();
        assert_eq!(
            (r.status().as_u16(), r.body().as_slice()),
            (201, &b"abcdef"[..])
        );
        let r = get(&d, &format!("{origin}/three")).unwrap();
        assert_eq!(r.status().as_u16(), 302);
        assert_eq!(r.headers()["x-ms-request-id"], "r3");

        let r = get(&d, &format!("{origin}/four")).unwrap();
        assert_eq!(r.body().as_slice(), b"until close");
        let first = requests.recv().unwrap();
        assert!(
            first.starts_with("POST /keys/k/sign HTTP/1.1\r\n"),
            "{first}"
        );
        let first = first.to_ascii_lowercase();
        for expected in [
            "content-length: 15\r\n",
            "user-agent: e_akv/",
            "accept-encoding: identity\r\n",
            "host: 127.0.0.1:",
        ] {
            assert!(first.contains(expected), "{expected} in {first}");
        }
        assert!(first.ends_with("\r\n\r\n{\"alg\":\"es256\"}"), "{first}");
        for path in ["/two", "/three", "/four"] {
            assert!(
                requests
                    .recv()
                    .unwrap()
                    .starts_with(&format!("GET {path} "))
            );
        }
        assert_eq!(server.join().unwrap(), 1, "one connection served all four");
        assert!(
            d.idle.lock().unwrap().is_empty(),
            "not kept after a close-delimited body"
        );
    }

    #[test]
    fn a_kept_connection_closed_by_the_server_is_replaced_at_once() {
        // The first answer keeps the connection (HTTP/1.1, a length, no `Connection: close`)
        // but the server closes it: the next request, sent within a second and so without a
        // check, finds it closed and goes again on a new connection.
        let (origin, requests, server) = server(vec![
            Close(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            Close(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nagain"),
        ]);
        let d = direct(1024);
        let r = get(&d, &format!("{origin}/one")).unwrap();
        assert_eq!(r.body().as_slice(), b"ok");
        // Let the server's close arrive before the next request is sent.
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let r = get(&d, &format!("{origin}/two")).unwrap();
        assert_eq!(r.body().as_slice(), b"again");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "no wait, no backoff"
        );
        assert!(requests.recv().unwrap().starts_with("GET /one "));
        assert!(requests.recv().unwrap().starts_with("GET /two "));
        assert_eq!(
            server.join().unwrap(),
            2,
            "the closed connection was replaced"
        );
    }

    #[test]
    fn broken_answers_are_errors_of_the_right_kind() {
        let big_chunk = format!(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n800\r\n{}\r\n0\r\n\r\n",
            "x".repeat(0x800)
        );
        let big_chunk: &'static [u8] = Box::leak(big_chunk.into_bytes().into_boxed_slice());
        let (origin, _requests, server) = server(vec![
            Close(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\ncut short"),
            Close(b""),
            Close(b"HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n"),
            Close(big_chunk),
            Close(b"NOT HTTP AT ALL\r\n\r\n"),
        ]);
        let d = direct(1024);
        let url = format!("{origin}/x");
        let kind = |r: Result<HttpResponse, TransportError>| {
            let e = r.unwrap_err();
            assert!(!e.message.is_empty());
            (e.kind, e.message)
        };
        let (k, m) = kind(get(&d, &url));
        assert_eq!(k, TransportErrorKind::Io);
        assert!(m.contains("before the response body ended"), "{m}");
        let (k, m) = kind(get(&d, &url));
        assert_eq!(k, TransportErrorKind::Io);
        assert!(m.contains("before the response head ended"), "{m}");
        // Content-Length over the cap: refused before reading it.
        let (k, m) = kind(get(&d, &url));
        assert_eq!(k, TransportErrorKind::BodyTooLarge, "{m}");
        // A chunked body that grows over the cap.
        let (k, m) = kind(get(&d, &url));
        assert_eq!(k, TransportErrorKind::BodyTooLarge, "{m}");
        let (k, m) = kind(get(&d, &url));
        assert_eq!(k, TransportErrorKind::Io, "{m}");
        assert_eq!(server.join().unwrap(), 5, "a connection per answer");
    }

    #[test]
    fn a_silent_server_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/slow", listener.local_addr().unwrap());
        let d = direct(1024);
        let started = Instant::now();
        let e = d
            .send(
                Request::get(&url).body(Vec::new()).unwrap(),
                Duration::from_millis(300),
            )
            .unwrap_err();
        assert_eq!(e.kind, TransportErrorKind::Timeout, "{e}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        drop(listener);
        let e = get(&d, &url).unwrap_err();
        assert_eq!(e.kind, TransportErrorKind::Connect, "{e}");
        let e = get(&d, "ftp://127.0.0.1/x").unwrap_err();
        assert_eq!(e.kind, TransportErrorKind::Other, "{e}");
    }
}
