//! The process's tokens for threads: one [`TokenSupply`] behind a mutex, waits on a condition
//! variable, fetches run through the same transport.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use akv_local::{read_file_capped, unix_now};
use akv_proto::credential::{CredentialSource, FetchPoll, Supply, TokenFetch, TokenSupply};
use akv_proto::{AccessToken, CredentialError, TokenNeed};

use crate::local::run_command;
use crate::transport::Transport;

/// Gives tokens to operations: from the cache, or fetched from the credential source.
#[derive(Debug)]
pub struct TokenProvider {
    supply: Mutex<TokenSupply>,
    fetched: Condvar,
}

impl TokenProvider {
    /// A provider for `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> TokenProvider {
        TokenProvider {
            supply: Mutex::new(TokenSupply::new(source, budget)),
            fetched: Condvar::new(),
        }
    }

    /// Forgets every cached token (after a fork, say).
    pub fn clear(&self) {
        self.supply
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// A token for `need`, waiting for another thread's fetch when one is under way.
    pub fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        let mut supply = self.supply.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            match supply.next(&need.audience, rejected.take().as_ref(), now, unix_now()) {
                Supply::Use(token) => return Ok(token),
                Supply::Wait => {
                    // Bounded wait: if the fetching thread died, `next` hands us the fetch.
                    let budget = supply.budget();
                    supply = self
                        .fetched
                        .wait_timeout(supply, budget)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Supply::Fetch(mut fetch, claim) => {
                    drop(supply);
                    let result = drive(&mut fetch, transport);
                    let result = self
                        .supply
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .complete(claim, &fetch, result, Instant::now());
                    self.fetched.notify_all();
                    return result;
                }
            }
        }
    }
}

/// Performs what the fetch asks until it is done.
fn drive(fetch: &mut TokenFetch, transport: &Transport) -> Result<AccessToken, CredentialError> {
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
            FetchPoll::Done(result) => return result,
        }
    }
}
