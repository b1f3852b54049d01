//! The process's tokens for threads: one [`SharedSupply`] (which an async client of the same
//! process may share), waits on its condition variable, fetches run through the transport.

use std::sync::Arc;
use std::time::{Duration, Instant};

use akv_local::{SharedSupply, read_file_capped, unix_now};
use akv_proto::credential::{CredentialSource, FetchPoll, Supply, TokenFetch};
use akv_proto::{AccessToken, CredentialError, TokenNeed};

use crate::local::run_command;
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

    /// The supply this provider takes tokens from.
    pub fn supply(&self) -> Arc<SharedSupply> {
        self.shared.clone()
    }

    /// Forgets every cached token (after a fork, say).
    pub fn clear(&self) {
        self.shared.lock().clear();
    }

    /// A token for `need`, waiting for another thread's fetch when one is under way.
    pub fn token(
        &self,
        need: &TokenNeed,
        transport: &Transport,
    ) -> Result<AccessToken, CredentialError> {
        let mut rejected = need.rejected.clone();
        let mut supply = self.shared.lock();
        loop {
            let now = Instant::now();
            match supply.next(&need.audience, rejected.take().as_ref(), now, unix_now()) {
                Supply::Use(token) => return Ok(token),
                Supply::Wait => {
                    // Bounded wait: if the fetching thread died, `next` hands us the fetch.
                    let budget = supply.budget();
                    supply = self.shared.wait(supply, budget);
                }
                Supply::Fetch(mut fetch, claim) => {
                    drop(supply);
                    let result = drive(&mut fetch, transport);
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
