//! HTTP/1.1 on the wire, for a backend that does its own I/O (the blocking one): a request
//! written as bytes, and an answer read from bytes as they arrive. Data in, data out, like
//! the rest of this crate; the caller owns the connection, the clock and the buffers.
//!
//! Only what a client of Key Vault and the token services needs: no `Expect: 100-continue`,
//! no upgrades, no compression (it asks for `identity`), no pipelining, and of the answer's
//! headers only those the protocol reads ([`crate::read_headers`]). The framing of the
//! answer follows RFC 9112 section 6.3: no body for `HEAD`, 1xx, 204 and 304; chunked when
//! the last transfer coding says so; Content-Length (one value, or a list of equal ones);
//! else until the server closes. An answer with anything doubtful about its end (both
//! Transfer-Encoding and Content-Length, a close-delimited body, HTTP/1.0, `Connection:
//! close`) is read whole but its connection is not used again.

use std::mem::MaybeUninit;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

use crate::read_headers::read_name;
use crate::{HttpRequest, HttpResponse};

/// A response head larger than this is refused (Key Vault's are well under 2 KiB).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// More header lines than this in one head are refused.
const MAX_HEADERS: usize = 100;

/// A chunk-size line (with its extensions) longer than this is refused.
const MAX_CHUNK_LINE: usize = 1024;

/// Why a request cannot be written or an answer cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The request cannot be sent as HTTP/1.1 (no host in its URL).
    #[error("the request cannot be sent: {0}")]
    Request(&'static str),
    /// The answer is not HTTP/1.1 as a server must write it.
    #[error("the server's answer is not valid HTTP/1.1: {0}")]
    Malformed(String),
    /// The head is larger than [`MAX_HEAD_BYTES`] or has too many header lines.
    #[error(
        "the server's response head is larger than {MAX_HEAD_BYTES} bytes or {MAX_HEADERS} lines"
    )]
    HeadTooLarge,
    /// The body is larger than the reader's limit.
    #[error("the server sent a body larger than {0} bytes")]
    BodyTooLarge(u64),
    /// The connection closed before the answer ended.
    #[error("the server closed the connection {0}")]
    Closed(&'static str),
}

/// Writes `request` as HTTP/1.1 onto the end of `out`: the request line, `Host` (from the URL
/// unless the request has one), the request's own headers, `User-Agent` and
/// `Accept-Encoding: identity` unless it has them, the body's `Content-Length`, and the body.
/// Framing headers the request carries (`Content-Length`, `Transfer-Encoding`, `Connection`)
/// are not copied: the length written is always the body's own.
pub fn write_request(
    request: &HttpRequest,
    user_agent: &str,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let uri = request.uri();
    let host = uri
        .authority()
        .ok_or(WireError::Request("the URL has no host"))?;
    if host.as_str().contains('@') {
        return Err(WireError::Request("the URL carries user information"));
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    let headers = request.headers();
    let body = request.body();
    out.reserve(256 + body.len() + headers.len() * 64);
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(header::HOST) {
        // The authority without a port the scheme implies. (Matched as text: parsing the
        // port cost 700 instructions per request.)
        let default_port = match uri.scheme_str() {
            Some("https") => ":443",
            Some("http") => ":80",
            _ => "",
        };
        let shown = match host.as_str().strip_suffix(default_port) {
            Some(bare) if !default_port.is_empty() => bare,
            _ => host.as_str(),
        };
        line(out, b"host", shown.as_bytes());
    }
    // Noted on the way rather than looked up in the map again.
    let (mut has_user_agent, mut has_accept_encoding) = (false, false);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        has_user_agent |= name == header::USER_AGENT;
        has_accept_encoding |= name == header::ACCEPT_ENCODING;
        line(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_user_agent {
        line(out, b"user-agent", user_agent.as_bytes());
    }
    if !has_accept_encoding {
        line(out, b"accept-encoding", b"identity");
    }
    let method = request.method();
    if !body.is_empty() || *method == Method::POST || *method == Method::PUT {
        let mut digits = itoa::Buffer::new();
        line(out, b"content-length", digits.format(body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    // Names and values come from `http`'s types or from checked URLs: no CR or LF.
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A whole answer, and whether its connection may carry another request.
#[derive(Debug)]
pub struct Answer {
    /// The response.
    pub response: HttpResponse,
    /// False when the server closes, asked to close, or framed the answer doubtfully.
    pub reusable: bool,
}

/// Reads one answer from the bytes of a connection as they arrive.
#[derive(Debug)]
pub struct ResponseReader {
    no_body: bool,
    max_body: u64,
    state: State,
}

#[derive(Debug)]
enum State {
    Head,
    Body {
        head: http::response::Parts,
        framing: Framing,
        body: Vec<u8>,
        reusable: bool,
    },
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Framing {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// The chunk-size line.
    Size,
    /// Data of the current chunk still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines, up to the empty line.
    Trailers,
}

impl ResponseReader {
    /// A reader for the answer to a `method` request, refusing bodies over `max_body` bytes.
    pub fn new(method: &Method, max_body: u64) -> ResponseReader {
        ResponseReader {
            no_body: *method == Method::HEAD,
            max_body,
            state: State::Head,
        }
    }

    /// Reads from the front of `input`: how many bytes it used (the caller drops them), and
    /// the answer once it is complete. Bytes it did not use after a complete answer were not
    /// asked for. Call again with more input while it returns `None`.
    pub fn read(&mut self, input: &[u8]) -> Result<(usize, Option<Answer>), WireError> {
        let mut used = 0;
        loop {
            match &mut self.state {
                State::Done => return Err(WireError::Malformed("read after the end".into())),
                State::Head => match parse_head(&input[used..])? {
                    Head::Partial => return Ok((used, None)),
                    // A 1xx: the answer follows.
                    Head::Interim(n) => used += n,
                    Head::Complete(n, head, framers) => {
                        used += n;
                        self.state = self.after_head(head, framers)?;
                    }
                },
                State::Body { framing, body, .. } => {
                    let (n, ended) = read_body(framing, body, &input[used..], self.max_body)?;
                    used += n;
                    if !ended {
                        return Ok((used, None));
                    }
                    return Ok((used, Some(self.finish())));
                }
            }
            if let State::Body {
                framing: Framing::Length(0),
                ..
            } = self.state
            {
                return Ok((used, Some(self.finish())));
            }
        }
    }

    /// The connection closed: ends a body that runs until the close, else fails.
    pub fn closed(&mut self) -> Result<Answer, WireError> {
        match &self.state {
            State::Head => Err(WireError::Closed("before the response head ended")),
            State::Body {
                framing: Framing::UntilClose,
                ..
            } => Ok(self.finish()),
            State::Body { .. } => Err(WireError::Closed("before the response body ended")),
            State::Done => Err(WireError::Malformed("read after the end".into())),
        }
    }

    fn after_head(
        &self,
        head: http::response::Parts,
        framers: Framers,
    ) -> Result<State, WireError> {
        let status = head.status;
        let mut reusable = head.version == Version::HTTP_11
            && !(framers.connection && has_token(&head.headers, header::CONNECTION, "close"));
        let framing = if self.no_body
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if framers.transfer_encoding {
            // With a Content-Length too, the length is ignored and the connection dropped.
            reusable &= !framers.content_length;
            if last_coding_is_chunked(&head.headers) {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::UntilClose
            }
        } else if let Some(length) = framers
            .content_length
            .then(|| content_length(&head.headers))
            .transpose()?
            .flatten()
        {
            if length > self.max_body {
                return Err(WireError::BodyTooLarge(self.max_body));
            }
            Framing::Length(length)
        } else {
            Framing::UntilClose
        };
        if matches!(framing, Framing::UntilClose) {
            reusable = false;
        }
        let capacity = match framing {
            Framing::Length(n) => n as usize,
            _ => 0,
        };
        Ok(State::Body {
            head,
            framing,
            body: Vec::with_capacity(capacity),
            reusable,
        })
    }

    fn finish(&mut self) -> Answer {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Body {
                head,
                body,
                reusable,
                ..
            } => Answer {
                response: HttpResponse::from_parts(head, body),
                reusable,
            },
            _ => unreachable!("finish is called with a body state"),
        }
    }
}

/// What the front of the input holds.
enum Head {
    /// Not yet a whole head.
    Partial,
    /// An interim (1xx) answer of this many bytes, to skip.
    Interim(usize),
    /// The head, of this many bytes.
    Complete(usize, http::response::Parts, Framers),
}

/// Which framing headers a head has, noted while its lines are read: most answers have only
/// Content-Length, and looking each name up again in the map costs more than noting it.
#[derive(Debug, Default, Clone, Copy)]
struct Framers {
    connection: bool,
    transfer_encoding: bool,
    content_length: bool,
}

fn parse_head(input: &[u8]) -> Result<Head, WireError> {
    // Left uninitialized: httparse fills what it uses, and writing 100 empty slots (3.2 KiB)
    // for every answer cost more than parsing Key Vault's 13 headers into them.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let n = match config.parse_response_with_uninit_headers(&mut parsed, input, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if input.len() > MAX_HEAD_BYTES => {
            return Err(WireError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Head::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    if n > MAX_HEAD_BYTES {
        return Err(WireError::HeadTooLarge);
    }
    let code = parsed.code.unwrap_or(0);
    let status =
        StatusCode::from_u16(code).map_err(|_| WireError::Malformed(format!("status {code}")))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(WireError::Malformed(
            "101 Switching Protocols, never asked for".into(),
        ));
    }
    if status.is_informational() {
        return Ok(Head::Interim(n));
    }
    let (mut head, ()) = http::Response::new(()).into_parts();
    head.status = status;
    head.version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // The values are slices of one copy of the head rather than a copy each.
    let copy = bytes::Bytes::copy_from_slice(&input[..n]);
    let start = input.as_ptr() as usize;
    let mut framers = Framers::default();
    for h in parsed.headers.iter() {
        // Headers the protocol does not read are left out (see `read_headers`).
        let Some(name) = read_name(h.name) else {
            continue;
        };
        // httparse's values are slices of `input`'s first `n` bytes; should one not be (an
        // empty value may point anywhere), it is copied on its own.
        let value = match (h.value.as_ptr() as usize).checked_sub(start) {
            Some(at) if at + h.value.len() <= n => {
                HeaderValue::from_maybe_shared(copy.slice(at..at + h.value.len()))
            }
            _ => HeaderValue::from_bytes(h.value),
        }
        .map_err(|_| WireError::Malformed(format!("value of header {name}")))?;
        if name == header::CONTENT_LENGTH {
            framers.content_length = true;
        } else if name == header::TRANSFER_ENCODING {
            framers.transfer_encoding = true;
        } else if name == header::CONNECTION {
            framers.connection = true;
        }
        head.headers.append(name.clone(), value);
    }
    Ok(Head::Complete(n, head, framers))
}

/// Moves body bytes from `input` into `body`: the bytes used, and whether the body ended.
fn read_body(
    framing: &mut Framing,
    body: &mut Vec<u8>,
    input: &[u8],
    max_body: u64,
) -> Result<(usize, bool), WireError> {
    match framing {
        Framing::Length(left) => {
            let take = (*left).min(input.len() as u64) as usize;
            body.extend_from_slice(&input[..take]);
            *left -= take as u64;
            Ok((take, *left == 0))
        }
        Framing::UntilClose => {
            if (body.len() + input.len()) as u64 > max_body {
                return Err(WireError::BodyTooLarge(max_body));
            }
            body.extend_from_slice(input);
            Ok((input.len(), false))
        }
        Framing::Chunked(chunk) => read_chunked(chunk, body, input, max_body),
    }
}

fn read_chunked(
    chunk: &mut Chunk,
    body: &mut Vec<u8>,
    input: &[u8],
    max_body: u64,
) -> Result<(usize, bool), WireError> {
    let mut used = 0;
    loop {
        let rest = &input[used..];
        match chunk {
            Chunk::Size => {
                let Some(end) = find_crlf(rest, MAX_CHUNK_LINE)? else {
                    return Ok((used, false));
                };
                let size = chunk_size(&rest[..end])?;
                used += end + 2;
                if size == 0 {
                    *chunk = Chunk::Trailers;
                } else {
                    if body.len() as u64 + size > max_body {
                        return Err(WireError::BodyTooLarge(max_body));
                    }
                    *chunk = Chunk::Data(size);
                }
            }
            Chunk::Data(left) => {
                if rest.is_empty() {
                    return Ok((used, false));
                }
                let take = (*left).min(rest.len() as u64) as usize;
                body.extend_from_slice(&rest[..take]);
                used += take;
                *left -= take as u64;
                if *left == 0 {
                    *chunk = Chunk::DataEnd;
                }
            }
            Chunk::DataEnd => {
                if rest.len() < 2 {
                    return Ok((used, false));
                }
                if &rest[..2] != b"\r\n" {
                    return Err(WireError::Malformed(
                        "a chunk does not end with CRLF".into(),
                    ));
                }
                used += 2;
                *chunk = Chunk::Size;
            }
            Chunk::Trailers => {
                let Some(end) = find_crlf(rest, MAX_HEAD_BYTES)? else {
                    return Ok((used, false));
                };
                used += end + 2;
                if end == 0 {
                    return Ok((used, true));
                }
                // Trailer fields are read past, not kept: nothing we use comes in them.
            }
        }
    }
}

/// Where the first CRLF of `input` starts, if it is there; a line longer than `limit` is an
/// error. A bare LF is refused: it is how requests are smuggled past proxies.
fn find_crlf(input: &[u8], limit: usize) -> Result<Option<usize>, WireError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(0) => Err(WireError::Malformed(
            "a bare LF in the chunked framing".into(),
        )),
        Some(lf) if input[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(WireError::Malformed(
            "a bare LF in the chunked framing".into(),
        )),
        None if input.len() > limit => Err(WireError::Malformed(format!(
            "a chunked-framing line longer than {limit} bytes"
        ))),
        None => Ok(None),
    }
}

/// The size of a chunk-size line (hex digits, then optional `;extensions`).
fn chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = digits.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return Err(WireError::Malformed(
            "a chunk size that is not a number".into(),
        ));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = (d as char)
            .to_digit(16)
            .ok_or_else(|| WireError::Malformed("a chunk size that is not a number".into()))?;
        size = size * 16 + u64::from(v);
    }
    Ok(size)
}

/// The Content-Length: one value, or several equal ones (RFC 9110 section 8.6).
fn content_length(headers: &http::HeaderMap) -> Result<Option<u64>, WireError> {
    let mut found = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            let n = (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
                .ok_or_else(|| {
                    WireError::Malformed("a Content-Length that is not a number".into())
                })?;
            if found.is_some_and(|f| f != n) {
                return Err(WireError::Malformed(
                    "Content-Length values that differ".into(),
                ));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

fn last_coding_is_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|v| v.as_bytes().split(|&b| b == b',').next_back())
        .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

fn has_token(headers: &http::HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Reads `bytes` fed in pieces of `step` bytes, as a connection might deliver them: the
/// answer and how many bytes were left after it (for the tests and the fuzz target, which
/// compare this with the bytes fed whole).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_in_pieces(
    method: &Method,
    bytes: &[u8],
    step: usize,
    max_body: u64,
) -> Result<(Answer, usize), WireError> {
    let mut reader = ResponseReader::new(method, max_body);
    let mut buffer = Vec::new();
    let mut fed = 0;
    loop {
        let (used, answer) = reader.read(&buffer)?;
        assert!(used <= buffer.len(), "used {used} of {}", buffer.len());
        buffer.drain(..used);
        if let Some(answer) = answer {
            return Ok((answer, buffer.len() + bytes.len() - fed));
        }
        if fed == bytes.len() {
            return reader.closed().map(|a| (a, 0));
        }
        let next = (fed + step.max(1)).min(bytes.len());
        buffer.extend_from_slice(&bytes[fed..next]);
        fed = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn written(request: HttpRequest) -> String {
        let mut out = Vec::new();
        write_request(&request, "e_akv/test", &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn requests_are_written_with_host_length_and_defaults() {
        let post = Request::post("https://myvault.vault.azure.net/keys/k/sign?api-version=7.4")
            .header("content-type", "application/json")
            .header("content-length", "999")
            .header("transfer-encoding", "chunked")
            .body(b"{\"a\":1}".to_vec())
            .unwrap();
        assert_eq!(
            written(post),
            "POST /keys/k/sign?api-version=7.4 HTTP/1.1\r\nhost: myvault.vault.azure.net\r\n\
             content-type: application/json\r\nuser-agent: e_akv/test\r\n\
             accept-encoding: identity\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let get = Request::get("http://127.0.0.1:8080")
            .header("user-agent", "mine")
            .body(Vec::new())
            .unwrap();
        assert_eq!(
            written(get),
            "GET / HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nuser-agent: mine\r\naccept-encoding: identity\r\n\r\n"
        );
        let v6 = Request::get("https://[::1]:443/x")
            .body(Vec::new())
            .unwrap();
        assert!(written(v6).starts_with("GET /x HTTP/1.1\r\nhost: [::1]\r\n"));
        // Only the scheme's own port is left out.
        for (url, host) in [
            ("http://h.example:80/", "h.example"),
            ("https://h.example:80/", "h.example:80"),
            ("http://h.example:180/", "h.example:180"),
            ("https://h.example:8443/", "h.example:8443"),
            ("https://h.example/", "h.example"),
        ] {
            let request = Request::get(url).body(Vec::new()).unwrap();
            assert!(
                written(request).starts_with(&format!("GET / HTTP/1.1\r\nhost: {host}\r\n")),
                "{url}"
            );
        }
        let mut out = Vec::new();
        let relative = Request::get("/only/a/path").body(Vec::new()).unwrap();
        assert_eq!(
            write_request(&relative, "x", &mut out),
            Err(WireError::Request("the URL has no host"))
        );
        let userinfo = Request::get("https://user:pw@h/").body(Vec::new()).unwrap();
        assert!(write_request(&userinfo, "x", &mut out).is_err());
    }

    fn read_all_ways(method: Method, bytes: &[u8], max: u64) -> Result<(Answer, usize), WireError> {
        let whole = read_in_pieces(&method, bytes, bytes.len().max(1), max);
        for step in [1, 2, 3, 7, 64] {
            let piecewise = read_in_pieces(&method, bytes, step, max);
            match (&whole, &piecewise) {
                (Ok((a, l)), Ok((b, m))) => {
                    assert_eq!(
                        (a.response.status(), a.response.body(), a.reusable, l),
                        (b.response.status(), b.response.body(), b.reusable, m),
                        "step {step}"
                    );
                }
                (Err(a), Err(b)) => assert_eq!(a, b, "step {step}"),
                (a, b) => panic!("step {step}: {a:?} vs {b:?}"),
            }
        }
        whole
    }

    fn body_of(bytes: &[u8]) -> (Vec<u8>, bool, usize) {
        let (answer, left) = read_all_ways(Method::GET, bytes, 1024).unwrap();
        (answer.response.into_body(), answer.reusable, left)
    }

    #[test]
    fn every_framing_in_pieces_or_whole() {
        assert_eq!(
            body_of(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-ms-request-id: r1\r\n\r\nhelloEXTRA"
            ),
            (b"hello".to_vec(), true, 5)
        );
        assert_eq!(
            body_of(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n"),
            (b"abc0123456789".to_vec(), true, 0)
        );
        assert_eq!(
            body_of(b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nConnection: close\r\n\r\nabc"),
            (b"abc".to_vec(), false, 0)
        );
        assert_eq!(
            body_of(b"HTTP/1.0 200 OK\r\n\r\nuntil the close"),
            (b"until the close".to_vec(), false, 0)
        );
        assert_eq!(
            body_of(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"),
            (Vec::new(), true, 0)
        );
        assert_eq!(
            body_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
            (b"x".to_vec(), false, 0)
        );
        let (answer, _) = read_all_ways(
            Method::HEAD,
            b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n",
            1024,
        )
        .unwrap();
        assert!(answer.response.body().is_empty());
        let (answer, _) = read_all_ways(
            Method::GET,
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer authorization=\"x\"\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
            1024,
        )
        .unwrap();
        assert_eq!(answer.response.status(), 401);
        assert_eq!(answer.response.headers()["retry-after"], "3");
        assert_eq!(
            answer.response.headers()["www-authenticate"],
            "Bearer authorization=\"x\""
        );
        let (answer, _) = read_all_ways(
            Method::GET,
            b"HTTP/1.1 200 OK\r\nRetry-After:\r\nx-ms-request-id:   v  \r\nContent-Length: 0\r\n\r\n",
            1024,
        )
        .unwrap();
        assert_eq!(answer.response.headers()["retry-after"], "");
        assert_eq!(answer.response.headers()["x-ms-request-id"], "v");
    }

    #[test]
    fn only_the_headers_the_protocol_reads_are_kept() {
        let (answer, _) = read_all_ways(
            Method::GET,
            b"HTTP/1.1 200 OK\r\nX-MS-Request-Id: a\r\nx-ms-keyvault-region: b\r\n\
              Cache-Control: no-cache\r\nDate: Mon, 30 Nov 2026 12:00:00 GMT\r\n\
              x-ms-request-i: near\r\nContent-Length: 0\r\n\r\n",
            1024,
        )
        .unwrap();
        let headers = answer.response.headers();
        let names: Vec<_> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-ms-request-id", "date", "content-length"]);
        assert_eq!(headers["x-ms-request-id"], "a");
        assert!(headers.values().all(|v| !v.is_sensitive()));
    }

    #[test]
    fn broken_or_oversized_answers_are_refused() {
        let err = |bytes: &[u8]| read_all_ways(Method::GET, bytes, 16).unwrap_err();
        assert_eq!(
            err(b""),
            WireError::Closed("before the response head ended")
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"),
            WireError::Closed("before the response body ended")
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n"),
            WireError::BodyTooLarge(16)
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n"),
            WireError::BodyTooLarge(16)
        );
        assert_eq!(
            err(b"HTTP/1.0 200 OK\r\n\r\n01234567890123456789"),
            WireError::BodyTooLarge(16)
        );
        for bad in [
            &b"NOT HTTP\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxyz",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        ] {
            assert!(
                matches!(err(bad), WireError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        while huge.len() <= MAX_HEAD_BYTES {
            huge.extend_from_slice(b"x-filler: 0123456789012345678901234567890123456789\r\n");
        }
        assert_eq!(
            read_in_pieces(&Method::GET, &huge, 4096, 16).unwrap_err(),
            WireError::HeadTooLarge
        );
    }
}
