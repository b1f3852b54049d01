//! A process's token supply, as one value a backend keeps behind one mutex: the shared
//! [`TokenCache`], the configured source, and which entry of a chain worked last. The
//! backend only waits (for another caller's fetch) and performs the fetch's I/O; who fetches,
//! what a fetch starts from and what its result means are decided here, once.

use std::time::{Duration, Instant};

use super::fetch::TokenFetch;
use super::source::CredentialSource;
use crate::token::{AccessToken, Acquire, Audience, CredentialError, FetchTicket, TokenCache};

/// Tokens for every key and thread of a process.
#[derive(Debug)]
pub struct TokenSupply {
    cache: TokenCache,
    source: CredentialSource,
    budget: Duration,
    /// The chain entry that gave the last token: tried first next time, so that a machine
    /// without IMDS does not probe for it on every refresh.
    preferred: Option<usize>,
}

/// What a caller of [`TokenSupply::next`] does.
#[derive(Debug)]
#[must_use]
pub enum Supply {
    /// Use this token.
    Use(AccessToken),
    /// Another caller is fetching: wait until it completes (at most the budget), then ask
    /// again.
    Wait,
    /// Drive this fetch (without holding the supply's lock), then hand its result to
    /// [`TokenSupply::complete`] together with the claim.
    Fetch(Box<TokenFetch>, FetchClaim),
}

/// Proof that the holder is the one fetching, with the token to fall back on.
#[derive(Debug)]
#[must_use = "a claim must be handed back to TokenSupply::complete"]
pub struct FetchClaim {
    ticket: FetchTicket,
    fallback: Option<AccessToken>,
}

impl TokenSupply {
    /// A supply from `source`; each fetch may take at most `budget`.
    pub fn new(source: CredentialSource, budget: Duration) -> TokenSupply {
        TokenSupply {
            cache: TokenCache::new(),
            source,
            budget,
            preferred: None,
        }
    }

    /// The configured source.
    pub fn source(&self) -> &CredentialSource {
        &self.source
    }

    /// How long one fetch may take; also the longest wait for another caller's fetch.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Forgets every cached token (after a fork, say).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    /// A token for `audience`, or what to do to get one. `rejected` is a token the service
    /// refused: it is never handed out again.
    pub fn next(
        &mut self,
        audience: &Audience,
        rejected: Option<&AccessToken>,
        now: Instant,
        unix_now: u64,
    ) -> Supply {
        match self.cache.acquire(audience, now, rejected) {
            Acquire::Use(token) => Supply::Use(token),
            Acquire::Wait => Supply::Wait,
            // Boxed: rare, and it keeps the common answers small.
            Acquire::Fetch { ticket, fallback } => Supply::Fetch(
                Box::new(TokenFetch::new(
                    &self.source,
                    audience,
                    self.budget,
                    self.preferred,
                    now,
                    unix_now,
                )),
                FetchClaim { ticket, fallback },
            ),
        }
    }

    /// Records a finished fetch and gives the caller its answer: the new token, or the old
    /// one while it is still usable when the refresh failed, or the fetch's error.
    pub fn complete(
        &mut self,
        claim: FetchClaim,
        fetch: &TokenFetch,
        result: Result<AccessToken, CredentialError>,
        now: Instant,
    ) -> Result<AccessToken, CredentialError> {
        if result.is_ok() {
            self.preferred = fetch.source_index(&self.source);
        }
        self.cache
            .complete(claim.ticket, result.as_ref().ok().cloned(), now);
        match (result, claim.fallback) {
            (Ok(token), _) => Ok(token),
            (Err(_), Some(old)) if old.usable_at(now) => Ok(old),
            (Err(e), _) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::credential::test_support::*;
    use crate::credential::{FetchPoll, SourceChoice};

    #[test]
    fn one_fetch_at_a_time_and_the_chain_remembers_what_worked() {
        let now = Instant::now();
        let env = env_of(&[("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:1")]);
        let source = inputs(&env).source(SourceChoice::Auto).unwrap();
        let mut supply = TokenSupply::new(source, Duration::from_secs(10));
        let Supply::Fetch(mut fetch, claim) = supply.next(&aud(), None, now, UNIX) else {
            panic!("an empty cache fetches")
        };
        assert!(matches!(supply.next(&aud(), None, now, UNIX), Supply::Wait));
        // IMDS is absent: the chain moves to the CLI, which works.
        let FetchPoll::Send(_) = fetch.poll(now) else {
            panic!()
        };
        fetch.handle_transport_error(
            crate::TransportError::new(crate::TransportErrorKind::Connect, "refused"),
            now,
        );
        let FetchPoll::RunCommand { .. } = fetch.poll(now) else {
            panic!()
        };
        fetch.handle_command(
            Ok(crate::credential::CommandOutput {
                exit_code: Some(0),
                stdout: br#"{"accessToken":"cli","expires_on":1700003600}"#.to_vec(),
                stderr: vec![],
            }),
            now,
            UNIX,
        );
        let FetchPoll::Done(result) = fetch.poll(now) else {
            panic!()
        };
        let token = supply.complete(claim, &fetch, result, now).unwrap();
        assert_eq!(token.secret(), "cli");
        let Supply::Use(cached) = supply.next(&aud(), None, now, UNIX) else {
            panic!("the token is cached")
        };
        assert_eq!(cached.secret(), "cli");

        // Refused by the service: fetch again, starting with the CLI this time.
        let Supply::Fetch(mut fetch, claim) = supply.next(&aud(), Some(&cached), now, UNIX) else {
            panic!("a rejected token is not handed out")
        };
        let FetchPoll::RunCommand { .. } = fetch.poll(now) else {
            panic!("the source that worked goes first")
        };
        fetch.handle_command(Err("gone".into()), now, UNIX);
        let _ = fetch.poll(now);
        let result = Err(CredentialError::new("x", "failed"));
        assert!(supply.complete(claim, &fetch, result, now).is_err());
    }
}
