//! The [`TokenFetch`] machine: one token for one audience from one source or a chain, within
//! a time budget. It owns what every source shares (the budget, retries with backoff, moving
//! down a chain, collecting each source's reason for the final error); what a source asks
//! and how its answer reads live in that source's file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::source::{CredentialSource, ManagedIdentityEndpoint, Secret};
use super::wire::{Failure, judge_failure};
use super::{
    arc, azure_cli, client_secret, managed_identity, parse, static_token, workload_identity,
};
use crate::driver::{Transmit, TransportError, TransportErrorKind};
use crate::request::{HttpRequest, HttpResponse};
use crate::token::{AccessToken, Audience, CredentialError};

use super::azure_cli::CommandOutput;

/// What a [`TokenFetch`] needs next.
#[derive(Debug)]
#[must_use]
pub enum FetchPoll {
    /// Send this request; answer with [`TokenFetch::handle_response`] or
    /// [`TokenFetch::handle_transport_error`].
    Send(Transmit),
    /// Read this file (at most `max_len` bytes; a longer file is an error); answer with
    /// [`TokenFetch::handle_file`].
    ReadFile {
        /// Path.
        path: PathBuf,
        /// Size limit.
        max_len: usize,
    },
    /// Run this program without a shell; answer with [`TokenFetch::handle_command`].
    RunCommand {
        /// Program, looked up on `PATH`.
        program: String,
        /// Arguments.
        args: Vec<String>,
        /// Kill it after this long.
        timeout: Duration,
    },
    /// Sleep, then poll again.
    Wait(Duration),
    /// Finished.
    Done(Result<AccessToken, CredentialError>),
}

#[derive(Debug)]
enum Step {
    Start,
    AwaitResponse,
    AwaitArcResponse,
    ReadArcKey(PathBuf),
    AwaitArcKey,
    AwaitAssertion,
    AwaitCommand,
    Backoff(Instant),
    Finished,
}

/// Fetches one token for one audience from one source (or a chain).
#[derive(Debug)]
pub struct TokenFetch {
    sources: Vec<CredentialSource>,
    chained: bool,
    index: usize,
    audience: Audience,
    step: Step,
    deadline: Instant,
    retries: u32,
    failures: Vec<String>,
    result: Option<Result<AccessToken, CredentialError>>,
    arc_key: Option<Secret>,
    assertion: Option<Secret>,
    unix_at_start: u64,
}

/// Retries of one managed identity or Entra request.
const MAX_RETRIES: u32 = 3;
/// Longest wait for one token service answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl TokenFetch {
    /// Starts a fetch. `budget` bounds the whole fetch; `preferred` is the chain entry that
    /// worked last time (see [`TokenFetch::source_index`]).
    pub fn new(
        source: &CredentialSource,
        audience: &Audience,
        budget: Duration,
        preferred: Option<usize>,
        now: Instant,
        unix_now: u64,
    ) -> TokenFetch {
        let (mut sources, chained) = match source {
            CredentialSource::Chain(list) => (list.clone(), true),
            other => (vec![other.clone()], false),
        };
        if let Some(i) = preferred.filter(|i| *i < sources.len()) {
            // Try the one that worked first, keeping the others as fallbacks.
            let chosen = sources.remove(i);
            sources.insert(0, chosen);
        }
        TokenFetch {
            sources,
            chained,
            index: 0,
            audience: audience.clone(),
            step: Step::Start,
            deadline: now + budget,
            retries: 0,
            failures: Vec::new(),
            result: None,
            arc_key: None,
            assertion: None,
            unix_at_start: unix_now,
        }
    }

    /// After success, the chain entry that produced the token (for `preferred`).
    pub fn source_index(&self, original: &CredentialSource) -> Option<usize> {
        let current = self.sources.get(self.index)?;
        match original {
            CredentialSource::Chain(list) => list.iter().position(|s| s == current),
            _ => Some(0),
        }
    }

    /// The name of the source being tried (or that succeeded).
    pub fn source_name(&self) -> String {
        self.sources
            .get(self.index)
            .map(|s| s.name())
            .unwrap_or_default()
    }

    fn source(&self) -> &CredentialSource {
        &self.sources[self.index]
    }

    /// What to do next.
    pub fn poll(&mut self, now: Instant) -> FetchPoll {
        loop {
            match std::mem::replace(&mut self.step, Step::Finished) {
                Step::Finished => {
                    return FetchPoll::Done(self.result.take().unwrap_or_else(|| {
                        Err(CredentialError::new(
                            "token fetch",
                            "polled after it finished",
                        ))
                    }));
                }
                Step::ReadArcKey(path) => {
                    self.step = Step::AwaitArcKey;
                    return FetchPoll::ReadFile {
                        path,
                        max_len: arc::ARC_MAX_KEY_LEN,
                    };
                }
                Step::Backoff(until) if now < until => {
                    self.step = Step::Backoff(until);
                    return FetchPoll::Wait(until - now);
                }
                Step::Backoff(_) | Step::Start => {
                    if now >= self.deadline {
                        self.fail_source("the time budget for getting a token was spent".into());
                        continue;
                    }
                    if let Some(poll) = self.begin(now) {
                        return poll;
                    }
                }
                other => {
                    self.step = other;
                    return FetchPoll::Done(Err(CredentialError::new(
                        "token fetch",
                        "polled while an answer is outstanding",
                    )));
                }
            }
        }
    }

    fn timeout(&self, now: Instant) -> Duration {
        let left = self.deadline.saturating_duration_since(now);
        // A chain only probes for IMDS: off Azure nothing answers at its address.
        let imds_probe = self.chained && self.retries == 0 && self.source().is_imds();
        if imds_probe {
            left.min(managed_identity::IMDS_PROBE_TIMEOUT)
        } else {
            left.min(REQUEST_TIMEOUT)
        }
    }

    /// The current source's next request, file or command; `None` when the source settled
    /// at once (a static token) and the machine should be polled again.
    fn begin(&mut self, now: Instant) -> Option<FetchPoll> {
        let timeout = self.timeout(now);
        let request = match self.source().clone() {
            CredentialSource::Static { token } => {
                match static_token::token(&token, now, self.unix_at_start) {
                    Ok(token) => self.succeed(token),
                    Err(reason) => self.fail_source(reason),
                }
                return None;
            }
            CredentialSource::AzureCli {
                program,
                tenant,
                timeout,
            } => {
                self.step = Step::AwaitCommand;
                return Some(FetchPoll::RunCommand {
                    program,
                    args: azure_cli::arguments(&self.audience, tenant.as_deref()),
                    timeout: timeout.min(self.deadline.saturating_duration_since(now)),
                });
            }
            CredentialSource::WorkloadIdentity { token_file, .. } if self.assertion.is_none() => {
                self.step = Step::AwaitAssertion;
                return Some(FetchPoll::ReadFile {
                    path: token_file,
                    max_len: workload_identity::MAX_ASSERTION_LEN,
                });
            }
            source => self.request(&source),
        };
        self.step = if self.arc_key.is_none() && self.source().is_arc() {
            Step::AwaitArcResponse
        } else {
            Step::AwaitResponse
        };
        Some(FetchPoll::Send(Transmit { request, timeout }))
    }

    fn request(&self, source: &CredentialSource) -> HttpRequest {
        match source {
            CredentialSource::ManagedIdentity { endpoint, identity } => managed_identity::request(
                endpoint,
                identity.as_ref(),
                &self.audience,
                self.arc_key.as_ref(),
            ),
            CredentialSource::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => client_secret::request(authority, tenant, client_id, secret, &self.audience),
            CredentialSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                ..
            } => workload_identity::request(
                authority,
                tenant,
                client_id,
                self.assertion.as_ref().expect("read before the request"),
                &self.audience,
            ),
            _ => unreachable!("only HTTP sources build requests"),
        }
    }

    /// Answers [`FetchPoll::Send`]. `unix_now` is the wall clock in Unix seconds, to read
    /// absolute `expires_on` values.
    pub fn handle_response(&mut self, response: HttpResponse, now: Instant, unix_now: u64) {
        let step = std::mem::replace(&mut self.step, Step::Finished);
        let status = response.status().as_u16();
        match step {
            Step::AwaitArcResponse if status == 401 => {
                let CredentialSource::ManagedIdentity {
                    endpoint: ManagedIdentityEndpoint::Arc { key_folder, .. },
                    ..
                } = self.source()
                else {
                    unreachable!("AwaitArcResponse is only entered for Arc")
                };
                match arc::challenge_key_file(&response, key_folder) {
                    Ok(path) => self.step = Step::ReadArcKey(path),
                    Err(e) => self.fail_source(e),
                }
            }
            Step::AwaitResponse | Step::AwaitArcResponse => {
                if (200..300).contains(&status) {
                    match parse::parse_token_response(response.body(), now, unix_now) {
                        Ok(token) => self.succeed(token),
                        Err(e) => self.fail_source(e),
                    }
                    return;
                }
                let detail = parse::token_error_detail(&response);
                let failure = match self.source() {
                    CredentialSource::ManagedIdentity { endpoint, .. } => {
                        managed_identity::judge_failure(endpoint, &response, &detail)
                    }
                    _ => judge_failure(&response, &detail),
                };
                match failure {
                    Failure::Retry { reason, delay } => self.retry(now, reason, delay),
                    Failure::Give(reason) => self.fail_source(reason),
                }
            }
            _ => self.misuse(),
        }
    }

    /// Answers [`FetchPoll::Send`] when no response arrived.
    pub fn handle_transport_error(&mut self, error: TransportError, now: Instant) {
        match std::mem::replace(&mut self.step, Step::Finished) {
            Step::AwaitResponse | Step::AwaitArcResponse => {
                if self.chained
                    && self.source().is_imds()
                    && self.retries == 0
                    && matches!(
                        error.kind,
                        TransportErrorKind::Connect | TransportErrorKind::Timeout
                    )
                {
                    // Probing: no IMDS here, so not on an Azure VM. Move on at once.
                    return self.fail_source(format!(
                        "not reachable ({error}); not running on an Azure VM?"
                    ));
                }
                if matches!(
                    error.kind,
                    TransportErrorKind::Connect
                        | TransportErrorKind::Timeout
                        | TransportErrorKind::Io
                ) {
                    self.retry(now, error.to_string(), None);
                } else {
                    self.fail_source(error.to_string());
                }
            }
            _ => self.misuse(),
        }
    }

    /// The file [`FetchPoll::ReadFile`] asked for, or why it could not be read.
    pub fn handle_file(&mut self, contents: Result<Vec<u8>, String>) {
        let (read, slot) = match std::mem::replace(&mut self.step, Step::Finished) {
            Step::AwaitArcKey => (arc::key_from_file(contents), &mut self.arc_key),
            Step::AwaitAssertion => (
                workload_identity::assertion_from_file(contents),
                &mut self.assertion,
            ),
            _ => return self.misuse(),
        };
        match read {
            Ok(secret) => {
                *slot = Some(secret);
                self.step = Step::Start;
            }
            Err(reason) => self.fail_source(reason),
        }
    }

    /// The result of [`FetchPoll::RunCommand`], or why it could not run.
    pub fn handle_command(
        &mut self,
        output: Result<CommandOutput, String>,
        now: Instant,
        unix_now: u64,
    ) {
        if !matches!(
            std::mem::replace(&mut self.step, Step::Finished),
            Step::AwaitCommand
        ) {
            return self.misuse();
        }
        match azure_cli::token_from_output(output, now, unix_now) {
            Ok(token) => self.succeed(token),
            Err(reason) => self.fail_source(reason),
        }
    }

    fn misuse(&mut self) {
        self.result = Some(Err(CredentialError::new(
            "token fetch",
            "answer handed in without a matching request",
        )));
        self.step = Step::Finished;
    }

    fn succeed(&mut self, token: AccessToken) {
        self.result = Some(Ok(token));
        self.step = Step::Finished;
    }

    fn retry(&mut self, now: Instant, reason: String, server_delay: Option<Duration>) {
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            return self.fail_source(format!("{reason} (after {MAX_RETRIES} retries)"));
        }
        let delay = server_delay.unwrap_or(Duration::from_millis(200) * (1 << (self.retries - 1)));
        match now.checked_add(delay) {
            Some(until) if until < self.deadline => self.step = Step::Backoff(until),
            _ => self.fail_source(format!("{reason}; no time left in the budget to retry")),
        }
    }

    /// Records why this source failed and moves to the next one of a chain.
    fn fail_source(&mut self, reason: String) {
        let name = self.source_name();
        self.failures.push(format!("{name}: {reason}"));
        self.retries = 0;
        self.arc_key = None;
        self.assertion = None;
        if self.index + 1 < self.sources.len() {
            self.index += 1;
            self.step = Step::Start;
        } else {
            let (source, message) = if self.chained {
                (
                    "no credential source worked".to_owned(),
                    self.failures.join("; "),
                )
            } else {
                (name, reason)
            };
            self.result = Some(Err(CredentialError::new(source, message)));
            self.step = Step::Finished;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::SourceChoice;
    use crate::credential::test_support::*;

    #[test]
    fn chain_moves_past_a_missing_imds_and_reports_every_failure() {
        let now = Instant::now();
        let env = env_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")]);
        let source = inputs(&env).source(SourceChoice::Auto).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let FetchPoll::Send(t) = f.poll(now) else {
            panic!()
        };
        assert_eq!(t.timeout, managed_identity::IMDS_PROBE_TIMEOUT);
        f.handle_transport_error(
            TransportError::new(TransportErrorKind::Connect, "refused"),
            now,
        );
        let FetchPoll::RunCommand { program, args, .. } = f.poll(now) else {
            panic!()
        };
        assert_eq!(program, "az");
        assert_eq!(
            args,
            [
                "account",
                "get-access-token",
                "--output",
                "json",
                "--resource",
                "https://vault.azure.net"
            ]
        );
        f.handle_command(
            Ok(CommandOutput {
                exit_code: Some(1),
                stdout: vec![],
                stderr: b"ERROR: Please run 'az login' to setup account.\n".to_vec(),
            }),
            now,
            UNIX,
        );
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert!(
            e.starts_with("no credential source worked: managed identity (IMDS): not reachable"),
            "{e}"
        );
        assert!(
            e.contains(
                "Azure CLI: az failed (exit code 1): ERROR: Please run 'az login' to setup account."
            ),
            "{e}"
        );
    }

    #[test]
    fn chain_remembers_what_worked() {
        let now = Instant::now();
        let env = env_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")]);
        let source = inputs(&env).source(SourceChoice::Auto).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), Some(1), now, UNIX);
        let FetchPoll::RunCommand { .. } = f.poll(now) else {
            panic!("the preferred source goes first")
        };
        f.handle_command(
            Ok(CommandOutput {
                exit_code: Some(0),
                stdout:
                    br#"{"accessToken":"cli-token","expires_on":1700003600,"tokenType":"Bearer"}"#
                        .to_vec(),
                stderr: vec![],
            }),
            now,
            UNIX,
        );
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3600));
        assert_eq!(f.source_index(&source), Some(1));
    }
}
