//! The operation driver: runs one key operation from first request to result, deciding
//! tokens, retries, the 401 challenge and the time budget. It performs no I/O and reads no
//! clock (quinn-proto style).
//!
//! Use: create an [`Operation`], then loop on [`Operation::poll`]:
//! - [`Poll::Token`]: get a token for the audience (from a [`crate::TokenCache`] and a
//!   credential source) and hand it to [`Operation::handle_token`];
//! - [`Poll::Send`]: send the request with the given timeout and hand the outcome to
//!   [`Operation::handle_response`] or [`Operation::handle_transport_error`];
//! - [`Poll::Wait`]: sleep that long, then poll again;
//! - [`Poll::Done`]: the result. The operation is finished.
//!
//! Every `handle_*` call MUST answer the `Poll` that asked for it; `now` MUST come from a
//! monotonic clock and never go backwards.

use std::fmt;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::breaker::{BreakerPolicy, Outcome};
use crate::challenge::{BearerChallenge, ChallengeError};
use crate::key_id::KeyId;
use crate::request::{
    ApiVersion, ClientRequestId, HttpRequest, HttpResponse, KeyCall, build_request,
};
use crate::response::{
    CertificateBundle, KeyBundle, KeyOpResult, ResponseError, ServiceError, parse_verify_result,
};
use crate::retry_after::retry_after;
use crate::token::{AccessToken, Audience, CredentialError};

/// How hard to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubles each retry.
    pub base_delay: Duration,
    /// Backoff cap (a server's Retry-After may ask for more; the budget still applies).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
        }
    }
}

/// Settings of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationConfig {
    /// `api-version` of every request.
    pub api_version: ApiVersion,
    /// Total time for the operation, retries and waits included. Short by default: a TLS
    /// handshake is waiting on it.
    pub budget: Duration,
    /// Timeout of a single HTTP exchange (cut to what is left of the budget).
    pub request_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The per-vault circuit breaker's policy (`None`: no breaker). Applied by the client
    /// that runs operations, which keeps one breaker per vault for the process.
    pub breaker: Option<BreakerPolicy>,
}

impl Default for OperationConfig {
    fn default() -> Self {
        OperationConfig {
            api_version: ApiVersion::default(),
            budget: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            breaker: Some(BreakerPolicy::default()),
        }
    }
}

/// What a caller needs to do next.
#[derive(Debug)]
#[must_use]
pub enum Poll {
    /// Get a token for `need.audience` and call [`Operation::handle_token`].
    Token(TokenNeed),
    /// Send this request and call [`Operation::handle_response`] or
    /// [`Operation::handle_transport_error`].
    Send(Transmit),
    /// Sleep this long, then poll again.
    Wait(Duration),
    /// Finished.
    Done(Result<Output, Error>),
}

/// A token request from the driver.
#[derive(Debug, Clone)]
pub struct TokenNeed {
    /// Audience the token must be for.
    pub audience: Audience,
    /// A token the service refused: do not hand it out again.
    pub rejected: Option<AccessToken>,
}

/// A request to send.
#[derive(Debug)]
pub struct Transmit {
    /// The request. Its `Authorization` header, if any, is marked sensitive.
    pub request: HttpRequest,
    /// Give up on this exchange after this long and report [`TransportErrorKind::Timeout`].
    pub timeout: Duration,
}

/// What kind of transport failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (refused, unreachable, DNS).
    Connect,
    /// The exchange took longer than the timeout.
    Timeout,
    /// The connection broke mid-exchange.
    Io,
    /// TLS failed (certificate, protocol). Not retried: it will not fix itself.
    Tls,
    /// The response body exceeded the backend's cap.
    BodyTooLarge,
    /// Anything else.
    Other,
}

/// A failure below HTTP, reported by the backend.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind_text(*.kind))]
pub struct TransportError {
    /// Kind.
    pub kind: TransportErrorKind,
    /// Details (never a token).
    pub message: String,
}

fn kind_text(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Connect => "cannot connect",
        TransportErrorKind::Timeout => "timed out",
        TransportErrorKind::Io => "connection failed",
        TransportErrorKind::Tls => "TLS failed",
        TransportErrorKind::BodyTooLarge => "response too large",
        TransportErrorKind::Other => "transport failed",
    }
}

impl TransportError {
    /// Builds an error.
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }

    /// What this failure tells the circuit breaker: a failed connect or a timeout means the
    /// vault is unreachable; a TLS or certificate error or an oversized answer says nothing
    /// about that, and a broken connection is not counted either (a pooled connection the
    /// server closed while idle fails that way on first use, and the retry on a new one works).
    pub fn outcome(&self) -> Option<Outcome> {
        match self.kind {
            TransportErrorKind::Connect | TransportErrorKind::Timeout => {
                Some(Outcome::Unreachable(self.to_string()))
            }
            _ => None,
        }
    }

    fn retryable(&self) -> bool {
        matches!(
            self.kind,
            TransportErrorKind::Connect | TransportErrorKind::Timeout | TransportErrorKind::Io
        )
    }
}

/// A successful result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// From [`KeyCall::GetKey`].
    Key(KeyBundle),
    /// From [`KeyCall::GetCertificate`].
    Certificate(CertificateBundle),
    /// From sign, encrypt, decrypt, wrap and unwrap.
    Value(KeyOpResult),
    /// From verify.
    Verified(bool),
}

impl Output {
    /// The key bundle, if this is one.
    pub fn into_key(self) -> Option<KeyBundle> {
        match self {
            Output::Key(k) => Some(k),
            _ => None,
        }
    }

    /// The certificate bundle, if this is one.
    pub fn into_certificate(self) -> Option<CertificateBundle> {
        match self {
            Output::Certificate(c) => Some(c),
            _ => None,
        }
    }

    /// The operation's value (signature, plaintext, ...), if this is one.
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Output::Value(v) => Some(v.value),
            _ => None,
        }
    }
}

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service refused (not retryable, or 401 after a fresh token).
    #[error("{0}")]
    Service(ServiceError),
    /// A 401 challenge that is unusable or points elsewhere.
    #[error("authentication challenge refused: {0}")]
    Challenge(#[from] ChallengeError),
    /// No token could be obtained.
    #[error("cannot get a token: {0}")]
    Credential(CredentialError),
    /// The network failed in a way retrying does not fix.
    #[error("{0}")]
    Transport(TransportError),
    /// A success status with a body we cannot read.
    #[error("unreadable answer to {operation} (status {status}{}): {error}", request_id.as_deref().map(|r| format!(", x-ms-request-id {r}")).unwrap_or_default())]
    InvalidResponse {
        /// Operation.
        operation: &'static str,
        /// Status.
        status: StatusCode,
        /// What was wrong.
        error: ResponseError,
        /// `x-ms-request-id`.
        request_id: Option<String>,
    },
    /// Every allowed retry failed.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Requests sent.
        attempts: u32,
        /// The last failure.
        last: Box<Error>,
    },
    /// The time budget ran out.
    #[error("gave up after {attempts} attempts because the {budget:?} budget for one operation was spent{}; raise the budget setting if the vault is slow or throttled", last.as_deref().map(|l| format!(" (last: {l})")).unwrap_or_default())]
    BudgetExhausted {
        /// The budget.
        budget: Duration,
        /// Requests sent.
        attempts: u32,
        /// The last failure, if any.
        last: Option<Box<Error>>,
    },
    /// The vault's circuit is open: it stopped answering, and operations on it fail at once
    /// instead of waiting for the budget, until a probe finds it answering again.
    #[error("vault {host} unreachable ({cause}); failing fast, next probe in {}", seconds(*retry_in))]
    Unreachable {
        /// The vault's origin.
        host: String,
        /// The failure that opened the circuit (or failed the last probe).
        cause: String,
        /// Until the next probe may go.
        retry_in: Duration,
    },
    /// The driver was called out of order (a bug in the caller).
    #[error("operation driver misuse: {0}")]
    Misuse(&'static str),
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

impl Error {
    /// The service error behind this failure, if any (through retries).
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Error::Service(e) => Some(e),
            Error::RetriesExhausted { last, .. } => last.service_error(),
            Error::BudgetExhausted { last, .. } => last.as_deref().and_then(Error::service_error),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum State {
    Start,
    AwaitToken { rejected: Option<AccessToken> },
    Ready,
    AwaitResponse,
    Backoff { until: Instant },
    Finished,
}

/// One key operation in progress.
pub struct Operation {
    key: KeyId,
    call: KeyCall,
    config: OperationConfig,
    request_id: ClientRequestId,
    deadline: Instant,
    state: State,
    audience: Option<Audience>,
    token: Option<AccessToken>,
    /// The token came from the source for this operation: sent while it has not expired,
    /// even within the send margin.
    token_fresh: bool,
    refreshed_after_401: bool,
    attempts: u32,
    retries: u32,
    last_error: Option<Error>,
    result: Option<Result<Output, Error>>,
    rng: u64,
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation")
            .field("key", &self.key.to_string())
            .field("call", &self.call)
            .field("request_id", &self.request_id.as_str())
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl Operation {
    /// Starts an operation at `now`; its budget runs from here.
    pub fn new(
        key: KeyId,
        call: KeyCall,
        config: OperationConfig,
        request_id: ClientRequestId,
        now: Instant,
    ) -> Operation {
        // Jitter needs some randomness; the request id is unique per operation, which is
        // enough to keep concurrent retries (e.g. all nginx workers) from moving in step.
        let rng = request_id
            .as_str()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
            | 1;
        Operation {
            audience: key.audience(),
            deadline: now + config.budget,
            key,
            call,
            config,
            request_id,
            state: State::Start,
            token: None,
            token_fresh: false,
            refreshed_after_401: false,
            attempts: 0,
            retries: 0,
            last_error: None,
            result: None,
            rng,
        }
    }

    /// Requests sent so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The key this operation is for.
    pub fn key(&self) -> &KeyId {
        &self.key
    }

    /// The client request id sent with every attempt.
    pub fn request_id(&self) -> &ClientRequestId {
        &self.request_id
    }

    /// What to do next.
    pub fn poll(&mut self, now: Instant) -> Poll {
        loop {
            match std::mem::replace(&mut self.state, State::Finished) {
                State::Finished => {
                    return Poll::Done(
                        self.result
                            .take()
                            .unwrap_or(Err(Error::Misuse("polled after the operation finished"))),
                    );
                }
                State::Start => {
                    if let Some(audience) = self.audience.clone() {
                        self.state = State::AwaitToken { rejected: None };
                        return Poll::Token(TokenNeed {
                            audience,
                            rejected: None,
                        });
                    }
                    // Custom host: the first request goes without a token to learn the
                    // audience from the 401 challenge.
                    self.state = State::Ready;
                }
                State::AwaitToken { rejected } => {
                    // Reached after a 401 or an expired token; also when polled again
                    // before the token arrived, which simply repeats the question.
                    let audience = self.audience.clone().expect("set before asking");
                    self.state = State::AwaitToken {
                        rejected: rejected.clone(),
                    };
                    return Poll::Token(TokenNeed { audience, rejected });
                }
                State::Ready => {
                    if now >= self.deadline {
                        self.finish_budget();
                        continue;
                    }
                    if let Some(token) = &self.token {
                        let fresh_enough = self.token_fresh && token.valid_at(now);
                        if !token.usable_at(now) && !fresh_enough {
                            // It expired while we waited to retry: never send it.
                            self.token = None;
                            self.state = State::AwaitToken { rejected: None };
                            continue;
                        }
                    }
                    let request = build_request(
                        &self.key,
                        &self.call,
                        &self.config.api_version,
                        &self.request_id,
                        self.token.as_ref(),
                    );
                    self.attempts += 1;
                    self.state = State::AwaitResponse;
                    let timeout = self
                        .config
                        .request_timeout
                        .min(self.deadline.saturating_duration_since(now));
                    return Poll::Send(Transmit { request, timeout });
                }
                State::AwaitResponse => {
                    self.state = State::AwaitResponse;
                    return Poll::Done(Err(Error::Misuse(
                        "polled while a response is outstanding",
                    )));
                }
                State::Backoff { until } => {
                    if now < until {
                        self.state = State::Backoff { until };
                        return Poll::Wait(until - now);
                    }
                    self.state = State::Ready;
                }
            }
        }
    }

    /// Answers [`Poll::Token`].
    pub fn handle_token(&mut self, token: Result<AccessToken, CredentialError>, now: Instant) {
        if !matches!(self.state, State::AwaitToken { .. }) {
            return self.finish(Err(Error::Misuse("token handed in without a request")));
        }
        match token {
            Ok(token) if token.valid_at(now) && token.authorization_header().is_some() => {
                self.token_fresh = !token.usable_at(now);
                self.token = Some(token);
                self.state = State::Ready;
            }
            Ok(token) if !token.valid_at(now) => self.finish(Err(Error::Credential(
                CredentialError::new("token source", "returned a token that has already expired"),
            ))),
            Ok(_) => self.finish(Err(Error::Credential(CredentialError::new(
                "token source",
                "returned a token with characters an HTTP header cannot carry",
            )))),
            Err(e) => self.finish(Err(Error::Credential(e))),
        }
    }

    /// Answers [`Poll::Send`] when the request was not sent because the vault's circuit is
    /// open ([`crate::Admit::FailFast`]): the operation ends at once.
    pub fn handle_circuit_open(&mut self, retry_in: Duration, cause: String) {
        if !matches!(self.state, State::AwaitResponse) {
            return self.finish(Err(Error::Misuse("circuit refusal without a request")));
        }
        self.attempts = self.attempts.saturating_sub(1);
        self.finish(Err(Error::Unreachable {
            host: self.key.endpoint().origin(),
            cause,
            retry_in,
        }));
    }

    /// Answers [`Poll::Send`] with the service's response (any status).
    pub fn handle_response(&mut self, response: HttpResponse, now: Instant) {
        if !matches!(self.state, State::AwaitResponse) {
            return self.finish(Err(Error::Misuse("response handed in without a request")));
        }
        let status = response.status();
        if status.is_success() {
            let result = self.parse_success(&response);
            return self.finish(result);
        }
        let service_error = ServiceError::from_response(&response);
        match status.as_u16() {
            401 => self.handle_unauthorized(&response, service_error),
            408 | 429 | 500 | 502 | 503 | 504 => {
                let delay = retry_after(response.headers());
                self.retry(Error::Service(service_error), delay, now);
            }
            _ => self.finish(Err(Error::Service(service_error))),
        }
    }

    /// Answers [`Poll::Send`] when no response arrived.
    pub fn handle_transport_error(&mut self, error: TransportError, now: Instant) {
        if !matches!(self.state, State::AwaitResponse) {
            return self.finish(Err(Error::Misuse(
                "transport error handed in without a request",
            )));
        }
        if error.retryable() {
            self.retry(Error::Transport(error), None, now);
        } else {
            self.finish(Err(Error::Transport(error)));
        }
    }

    fn parse_success(&self, response: &HttpResponse) -> Result<Output, Error> {
        let body = response.body();
        let parsed = match self.call {
            KeyCall::GetKey => KeyBundle::from_json(body).map(Output::Key),
            KeyCall::GetCertificate => CertificateBundle::from_json(body).map(Output::Certificate),
            KeyCall::Verify { .. } => parse_verify_result(body).map(Output::Verified),
            _ => KeyOpResult::from_json(body).map(Output::Value),
        };
        parsed.map_err(|error| Error::InvalidResponse {
            operation: self.call.name(),
            status: response.status(),
            error,
            request_id: response
                .headers()
                .get(crate::read_headers::X_MS_REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(|v| crate::text::clean_text(v, 64)),
        })
    }

    fn handle_unauthorized(&mut self, response: &HttpResponse, service_error: ServiceError) {
        let challenge = response
            .headers()
            .get(http::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(BearerChallenge::parse);
        let challenge = match challenge {
            Some(Ok(c)) => Some(c),
            // A token was refused and the challenge is unreadable: still refresh once.
            Some(Err(_)) | None if self.token.is_some() => None,
            Some(Err(e)) => return self.finish(Err(Error::Challenge(e))),
            None => return self.finish(Err(Error::Service(service_error))),
        };
        if let Some(challenge) = &challenge {
            if self.key.endpoint_is_azure() {
                // Azure host: the challenge may name the audience, but only one the host
                // belongs to.
                if let Err(e) = challenge.verify_host(self.key.endpoint().host()) {
                    return self.finish(Err(Error::Challenge(e)));
                }
                self.audience = Some(challenge.audience.clone());
            } else if self.audience.is_none() {
                // Operator-allowed host without a known service: trust its challenge.
                self.audience = Some(challenge.audience.clone());
            }
        }
        match self.token.take() {
            None if self.audience.is_some() && self.attempts == 1 => {
                self.state = State::AwaitToken { rejected: None };
            }
            Some(rejected) if !self.refreshed_after_401 => {
                self.refreshed_after_401 = true;
                self.state = State::AwaitToken {
                    rejected: Some(rejected),
                };
            }
            _ => self.finish(Err(Error::Service(service_error))),
        }
    }

    fn retry(&mut self, error: Error, server_delay: Option<Duration>, now: Instant) {
        self.retries += 1;
        if self.retries > self.config.retry.max_retries {
            return self.finish(Err(Error::RetriesExhausted {
                attempts: self.attempts,
                last: Box::new(error),
            }));
        }
        let delay = server_delay.unwrap_or_else(|| self.backoff());
        self.last_error = Some(error);
        match now.checked_add(delay) {
            Some(until) if until < self.deadline => self.state = State::Backoff { until },
            _ => self.finish_budget(),
        }
    }

    /// Capped exponential backoff with jitter in [50%, 100%].
    fn backoff(&mut self) -> Duration {
        let policy = &self.config.retry;
        let exp = policy
            .base_delay
            .saturating_mul(1u32 << (self.retries - 1).min(16))
            .min(policy.max_delay);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let fraction = 0.5 + (self.rng % 1000) as f64 / 2000.0;
        exp.mul_f64(fraction)
    }

    fn finish_budget(&mut self) {
        let last = self.last_error.take().map(Box::new);
        self.finish(Err(Error::BudgetExhausted {
            budget: self.config.budget,
            attempts: self.attempts,
            last,
        }));
    }

    fn finish(&mut self, result: Result<Output, Error>) {
        self.state = State::Finished;
        self.result = Some(result);
    }
}
