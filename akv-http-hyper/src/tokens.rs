//! The process's tokens for async callers: one [`TokenSupply`] behind a mutex (never held
//! across an await), waits on a `Notify`, fetches run through the same transport.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use akv_local::unix_now;
use akv_proto::credential::{CredentialSource, FetchPoll, Supply, TokenFetch, TokenSupply};
use akv_proto::{AccessToken, CredentialError, TokenNeed};
use tokio::sync::Notify;

use crate::local::{read_file_capped, run_command};
use crate::transport::Transport;

/// Gives tokens to operations: from the cache, or fetched from the credential source.
#[derive(Debug)]
pub struct TokenProvider {
    supply: Mutex<TokenSupply>,
    fetched: Notify,
}

impl TokenProvider {
    /// A provider for `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> TokenProvider {
        TokenProvider {
            supply: Mutex::new(TokenSupply::new(source, budget)),
            fetched: Notify::new(),
        }
    }

    /// A token for `need`, waiting for another task's fetch when one is under way.
    pub async fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        loop {
            let (next, notified, budget) = {
                let mut supply = self.supply.lock().unwrap_or_else(|p| p.into_inner());
                // Created under the lock: it sees every notification sent after this point.
                let notified = self.fetched.notified();
                let now = Instant::now();
                let next = supply.next(&need.audience, rejected.take().as_ref(), now, unix_now());
                (next, notified, supply.budget())
            };
            match next {
                Supply::Use(token) => return Ok(token),
                Supply::Wait => {
                    let _ = tokio::time::timeout(budget, notified).await;
                }
                Supply::Fetch(mut fetch, claim) => {
                    let result = drive(&mut fetch, transport).await;
                    let result = self
                        .supply
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .complete(claim, &fetch, result, Instant::now());
                    self.fetched.notify_waiters();
                    return result;
                }
            }
        }
    }
}

/// Performs what the fetch asks until it is done, without blocking the runtime.
async fn drive(
    fetch: &mut TokenFetch,
    transport: &Transport,
) -> Result<AccessToken, CredentialError> {
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
            FetchPoll::Done(result) => return result,
        }
    }
}
