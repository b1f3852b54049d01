//! The process's tokens for async callers: one cache shared by every task, one fetch at a
//! time per audience, fetches run through the same transport.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use akv_proto::credential::{CredentialSource, FetchPoll, TokenFetch};
use akv_proto::{AccessToken, Acquire, CredentialError, TokenCache, TokenNeed};
use tokio::sync::Notify;

use crate::local::{read_file_capped, run_command};
use crate::transport::Transport;

/// Gives tokens to operations: from the cache, or fetched from the credential source.
#[derive(Debug)]
pub struct TokenProvider {
    source: CredentialSource,
    budget: Duration,
    cache: Mutex<TokenCache>,
    fetched: Notify,
    preferred: Mutex<Option<usize>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenProvider {
    /// A provider for `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> TokenProvider {
        TokenProvider {
            source,
            budget,
            cache: Mutex::new(TokenCache::new()),
            fetched: Notify::new(),
            preferred: Mutex::new(None),
        }
    }

    /// The configured source.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// A token for `need`, waiting for another task's fetch when one is under way.
    pub async fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        loop {
            let (acquire, notified) = {
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                // Created under the lock: it sees every notification sent after this point.
                let notified = self.fetched.notified();
                (
                    cache.acquire(&need.audience, Instant::now(), rejected.take().as_ref()),
                    notified,
                )
            };
            match acquire {
                Acquire::Use(token) => return Ok(token),
                Acquire::Wait => {
                    let _ = tokio::time::timeout(self.budget, notified).await;
                }
                Acquire::Fetch { ticket, fallback } => {
                    let result = self.fetch(need, transport).await;
                    self.cache
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .complete(ticket, result.as_ref().ok().cloned(), Instant::now());
                    self.fetched.notify_waiters();
                    return match (result, fallback) {
                        (Ok(token), _) => Ok(token),
                        (Err(_), Some(old)) if old.usable_at(Instant::now()) => Ok(old),
                        (Err(e), _) => Err(e),
                    };
                }
            }
        }
    }

    async fn fetch(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let preferred = *self.preferred.lock().unwrap_or_else(|p| p.into_inner());
        let mut fetch = TokenFetch::new(
            &self.source,
            &need.audience,
            self.budget,
            preferred,
            Instant::now(),
            unix_now(),
        );
        loop {
            match fetch.poll(Instant::now()) {
                FetchPoll::Send(t) => match transport.send(t.request, t.timeout).await {
                    Ok(response) => fetch.handle_response(response, Instant::now(), unix_now()),
                    Err(e) => fetch.handle_transport_error(e, Instant::now()),
                },
                FetchPoll::ReadFile { path, max_len } => {
                    fetch.handle_file(read_file_capped(path, max_len).await)
                }
                FetchPoll::RunCommand {
                    program,
                    args,
                    timeout,
                } => {
                    let output = run_command(&program, &args, timeout).await;
                    fetch.handle_command(output, Instant::now(), unix_now());
                }
                FetchPoll::Wait(d) => tokio::time::sleep(d).await,
                FetchPoll::Done(result) => {
                    if result.is_ok() {
                        *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) =
                            fetch.source_index(&self.source);
                    }
                    return result;
                }
            }
        }
    }
}
