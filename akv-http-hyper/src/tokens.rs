//! The process's tokens for async callers: one [`SharedSupply`] (which a blocking client of
//! the same process may share; its lock is never held across an await), waits on its waker
//! list, fetches run through the transport.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_local::{SharedSupply, unix_now};
use akv_proto::credential::{CredentialSource, FetchPoll, Supply, TokenFetch};
use akv_proto::{AccessToken, CredentialError, TokenNeed};

use crate::local::{read_file_capped, run_command};
use crate::transport::Transport;

/// Gives tokens to operations: from the cache, or fetched from the credential source.
#[derive(Debug)]
pub struct TokenProvider {
    shared: Arc<SharedSupply>,
}

impl TokenProvider {
    /// A provider for `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> TokenProvider {
        TokenProvider::sharing(Arc::new(SharedSupply::new(source, budget)))
    }

    /// A provider taking tokens from `shared`, which other providers may use too.
    pub fn sharing(shared: Arc<SharedSupply>) -> TokenProvider {
        TokenProvider { shared }
    }

    /// A token for `need`, waiting for another task's fetch when one is under way.
    pub async fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        loop {
            let (next, seen, budget) = {
                let mut supply = self.shared.lock();
                // Read under the lock: every fetch completed after this point moves it.
                let seen = self.shared.completed();
                let now = Instant::now();
                let next = supply.next(&need.audience, rejected.take().as_ref(), now, unix_now());
                (next, seen, supply.budget())
            };
            match next {
                Supply::Use(token) => return Ok(token),
                Supply::Wait => {
                    // Bounded: if the fetching caller died, `next` hands us the fetch.
                    let _ = tokio::time::timeout(budget, self.shared.fetched_since(seen)).await;
                }
                Supply::Fetch(mut fetch, claim) => {
                    let result = drive(&mut fetch, transport).await;
                    let result = self
                        .shared
                        .lock()
                        .complete(claim, &fetch, result, Instant::now());
                    self.shared.notify_fetched();
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
