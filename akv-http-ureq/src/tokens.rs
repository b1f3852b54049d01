//! The process's tokens: one [`TokenCache`] shared by every key and thread, one fetch at a
//! time per audience, fetches run through the same transport.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use akv_proto::credential::{CredentialSource, FetchPoll, TokenFetch};
use akv_proto::{AccessToken, Acquire, CredentialError, TokenCache, TokenNeed};

use crate::local::{read_file_capped, run_command};
use crate::transport::Transport;

/// Gives tokens to operations: from the cache, or fetched from the credential source.
#[derive(Debug)]
pub struct TokenProvider {
    source: CredentialSource,
    budget: Duration,
    cache: Mutex<TokenCache>,
    fetched: Condvar,
    preferred: Mutex<Option<usize>>,
}

pub(crate) fn unix_now() -> u64 {
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
            fetched: Condvar::new(),
            preferred: Mutex::new(None),
        }
    }

    /// The configured source.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// Forgets every cached token (after a fork, say).
    pub fn clear(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A token for `need`, waiting for another thread's fetch when one is under way.
    pub fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match cache.acquire(&need.audience, Instant::now(), rejected.take().as_ref()) {
                Acquire::Use(token) => return Ok(token),
                Acquire::Wait => {
                    // Bounded wait: if the fetching thread died, acquire hands us the ticket.
                    cache = self
                        .fetched
                        .wait_timeout(cache, self.budget)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Acquire::Fetch { ticket, fallback } => {
                    drop(cache);
                    let result = self.fetch(need, transport);
                    let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                    cache.complete(ticket, result.as_ref().ok().cloned(), Instant::now());
                    drop(cache);
                    self.fetched.notify_all();
                    return match (result, fallback) {
                        (Ok(token), _) => Ok(token),
                        (Err(_), Some(old)) if old.usable_at(Instant::now()) => Ok(old),
                        (Err(e), _) => Err(e),
                    };
                }
            }
        }
    }

    fn fetch(
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
                FetchPoll::Send(t) => match transport.send(t.request, t.timeout) {
                    Ok(response) => fetch.handle_response(response, Instant::now(), unix_now()),
                    Err(e) => fetch.handle_transport_error(e, Instant::now()),
                },
                FetchPoll::ReadFile { path, max_len } => {
                    fetch.handle_file(read_file_capped(&path, max_len))
                }
                FetchPoll::RunCommand {
                    program,
                    args,
                    timeout,
                } => {
                    let output = run_command(&program, &args, timeout);
                    fetch.handle_command(output, Instant::now(), unix_now());
                }
                FetchPoll::Wait(d) => std::thread::sleep(d),
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
