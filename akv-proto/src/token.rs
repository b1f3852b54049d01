//! Bearer tokens and the token cache policy: which audience a token is for, when a cached
//! token is still good, when to refresh it, and that only one fetch per audience runs at a
//! time. The cache holds no lock and reads no clock; a backend wraps it in a mutex and
//! passes `now`.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderValue;

/// A token audience (OAuth resource), such as `https://vault.azure.net`. Its scope is the
/// audience plus `/.default`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Audience(Arc<str>);

/// Why an audience from a 401 challenge was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid token audience {value}: must be an https:// URL of a DNS host")]
pub struct AudienceError {
    value: String,
}

impl Audience {
    pub(crate) fn from_known(url: String) -> Audience {
        Audience(url.into())
    }

    /// Parses an audience from a challenge's `resource` or `scope` (the `/.default` suffix
    /// is removed). Only `https://host[:port][/path]` of plain characters is accepted.
    pub fn parse(value: &str) -> Result<Audience, AudienceError> {
        let err = || AudienceError {
            value: crate::text::shown(value),
        };
        let trimmed = value.strip_suffix("/.default").unwrap_or(value);
        let trimmed = trimmed.trim_end_matches('/');
        let rest = trimmed
            .strip_prefix("https://")
            .filter(|r| !r.is_empty())
            .ok_or_else(err)?;
        let host = rest.split(['/', ':']).next().unwrap_or("");
        let host_ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        let chars_ok = rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'/' | b':' | b'_'));
        if host_ok && chars_ok && trimmed.len() <= 256 {
            Ok(Audience(trimmed.to_ascii_lowercase().into()))
        } else {
            Err(err())
        }
    }

    /// The audience URL.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The audience's host, e.g. `vault.azure.net`.
    pub fn host(&self) -> &str {
        let rest = &self.0["https://".len()..];
        rest.split(['/', ':']).next().unwrap_or(rest)
    }

    /// The OAuth 2 scope: the audience plus `/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.0)
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bearer token and when it expires. Its `Debug` and `Display` never show the secret.
/// Cheap to clone: every request of a process takes a copy of the cached one.
#[derive(Clone)]
pub struct AccessToken {
    secret: Arc<str>,
    /// The `Authorization` value, built once (a token is kilobytes; every request sends it).
    header: Option<HeaderValue>,
    expires_at: Instant,
}

impl AccessToken {
    /// Wraps a token secret that expires at `expires_at`.
    pub fn new(secret: impl Into<String>, expires_at: Instant) -> AccessToken {
        let secret: String = secret.into();
        let header = HeaderValue::from_str(&format!("Bearer {secret}"))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        AccessToken {
            secret: secret.into(),
            header,
            expires_at,
        }
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The secret. Callers MUST NOT log it or put it into error messages.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Whether this is the same token as `other` (compares secrets without exposing them).
    pub fn same_as(&self, other: &AccessToken) -> bool {
        self.secret == other.secret
    }

    /// The `Authorization` header value, marked sensitive so that `http`'s `Debug` hides it.
    /// `None` if the secret holds characters a header cannot carry.
    pub fn authorization_header(&self) -> Option<HeaderValue> {
        self.header.clone()
    }

    /// Whether the token can still be sent at `now`. A margin keeps tokens that would expire
    /// while the request travels from being sent.
    pub fn usable_at(&self, now: Instant) -> bool {
        now + SEND_MARGIN < self.expires_at
    }

    /// Whether the token has not expired at `now` (with no margin). A token its source just
    /// gave is sent while this holds, even within the margin, as the Azure SDKs do: a source
    /// that issues short tokens must not fail every operation.
    pub fn valid_at(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a token source could not give a token. Never contains a token or secret: sources
/// build it from status codes, error codes and their own words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {message}")]
pub struct CredentialError {
    /// Which source failed (`managed identity (IMDS)`, `Azure CLI`, ...).
    pub source_name: String,
    /// What went wrong and what to do.
    pub message: String,
}

impl CredentialError {
    /// Builds an error for a source.
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        CredentialError {
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// A token is not sent when less than this remains: the request may take that long to arrive.
pub const SEND_MARGIN: Duration = Duration::from_secs(5);
/// Refresh when less than this remains (for tokens shorter than [`HALF_LIFE_FROM`]).
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Tokens living at least this long are refreshed at half-life instead.
pub const HALF_LIFE_FROM: Duration = Duration::from_secs(2 * 60 * 60);
/// After a failed refresh while the old token is still good, wait this long before the next
/// attempt, so that a broken token endpoint is not hammered by every operation.
pub const FAILED_REFRESH_PAUSE: Duration = Duration::from_secs(10);

/// When a token fetched at `now` should be refreshed.
pub fn refresh_time(token: &AccessToken, now: Instant) -> Instant {
    let lifetime = token.expires_at.saturating_duration_since(now);
    if lifetime >= HALF_LIFE_FROM {
        now + lifetime / 2
    } else {
        // Short tokens: 5 minutes before expiry, but never earlier than half-life, so that a
        // 4-minute token is not refetched for every single operation.
        let five_before = token
            .expires_at
            .checked_sub(REFRESH_BEFORE_EXPIRY)
            .unwrap_or(now);
        five_before.max(now + lifetime / 2)
    }
}

#[derive(Debug)]
struct Entry {
    token: Option<AccessToken>,
    refresh_at: Instant,
    fetching: bool,
    /// No new fetch before this (after a failed refresh).
    pause_until: Option<Instant>,
    generation: u64,
}

/// What to do to get a token for an audience.
#[derive(Debug)]
#[must_use]
pub enum Acquire {
    /// Use this token; nothing else to do.
    Use(AccessToken),
    /// Fetch a new token, then call [`TokenCache::complete`] with the ticket, whether the
    /// fetch worked or not. `fallback` is a still-usable token to use if the fetch fails.
    Fetch {
        /// Proof that this caller is the one fetching.
        ticket: FetchTicket,
        /// The current token, still usable, if any.
        fallback: Option<AccessToken>,
    },
    /// Another caller is fetching and there is no usable token: wait for it to complete,
    /// then acquire again.
    Wait,
}

/// Given to the one caller that fetches a token for an audience.
#[derive(Debug)]
#[must_use = "a ticket must be handed back to TokenCache::complete"]
pub struct FetchTicket {
    audience: Audience,
    generation: u64,
}

/// Tokens per audience, shared by every key and thread of a process (behind a mutex).
#[derive(Debug, Default)]
pub struct TokenCache {
    /// A process asks for one audience or two: a list searched by audience costs less than
    /// hashing it (SipHash) on every operation.
    entries: Vec<(Audience, Entry)>,
    /// Tickets are numbered across the whole cache so that one issued before `clear` can
    /// never be mistaken for a later one.
    tickets_issued: u64,
}

impl TokenCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks up a token for `audience`. `rejected` is a token the service refused (401): it
    /// is dropped, and a fetch is requested even if it looked fresh.
    pub fn acquire(
        &mut self,
        audience: &Audience,
        now: Instant,
        rejected: Option<&AccessToken>,
    ) -> Acquire {
        let at = match self.entries.iter().position(|(a, _)| a == audience) {
            Some(at) => at,
            None => {
                let entry = Entry {
                    token: None,
                    refresh_at: now,
                    fetching: false,
                    pause_until: None,
                    generation: 0,
                };
                self.entries.push((audience.clone(), entry));
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[at].1;
        self.tickets_issued += 1;
        let next_ticket = self.tickets_issued;
        if let (Some(bad), Some(current)) = (rejected, &entry.token) {
            if bad.same_as(current) {
                entry.token = None;
                entry.pause_until = None;
            }
        }
        let usable = entry.token.as_ref().filter(|t| t.usable_at(now)).cloned();
        let paused = entry.pause_until.is_some_and(|until| now < until);
        match usable {
            Some(token) if now < entry.refresh_at || entry.fetching || paused => {
                Acquire::Use(token)
            }
            _ if entry.fetching => Acquire::Wait,
            fallback => {
                entry.fetching = true;
                entry.generation = next_ticket;
                Acquire::Fetch {
                    ticket: FetchTicket {
                        audience: audience.clone(),
                        generation: entry.generation,
                    },
                    fallback,
                }
            }
        }
    }

    /// Hands back a ticket with the fetched token, or `None` when the fetch failed. A failed
    /// refresh keeps the old token while it is usable.
    pub fn complete(&mut self, ticket: FetchTicket, fetched: Option<AccessToken>, now: Instant) {
        let Some((_, entry)) = self.entries.iter_mut().find(|(a, _)| *a == ticket.audience) else {
            return;
        };
        if entry.generation != ticket.generation {
            return;
        }
        entry.fetching = false;
        match fetched {
            Some(token) => {
                entry.refresh_at = refresh_time(&token, now);
                entry.token = Some(token);
                entry.pause_until = None;
            }
            None => {
                entry.pause_until = Some(now + FAILED_REFRESH_PAUSE);
                if !entry.token.as_ref().is_some_and(|t| t.usable_at(now)) {
                    entry.token = None;
                    // Nothing usable: the next caller fetches at once and reports its own error.
                    entry.pause_until = None;
                }
            }
        }
    }

    /// Forgets every token (after a fork or a configuration change).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aud() -> Audience {
        Audience::parse("https://vault.azure.net").unwrap()
    }

    fn fetch(cache: &mut TokenCache, now: Instant) -> FetchTicket {
        match cache.acquire(&aud(), now, None) {
            Acquire::Fetch { ticket, .. } => ticket,
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn audiences_from_challenges() {
        assert_eq!(
            Audience::parse("https://vault.azure.net/.default")
                .unwrap()
                .as_str(),
            "https://vault.azure.net"
        );
        assert_eq!(
            Audience::parse("https://managedhsm.azure.net/")
                .unwrap()
                .host(),
            "managedhsm.azure.net"
        );
        for bad in [
            "http://vault.azure.net",
            "https://",
            "vault.azure.net",
            "https://a b",
            "https://x@y",
            "https://x?y",
        ] {
            assert!(Audience::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_secret() {
        let t = AccessToken::new("eyJ-very-secret", Instant::now());
        assert!(!format!("{t:?}").contains("very-secret"));
        let header = t.authorization_header().unwrap();
        assert!(!format!("{header:?}").contains("very-secret"));
        assert!(header.is_sensitive());
    }

    #[test]
    fn refresh_times() {
        let now = Instant::now();
        let day = AccessToken::new("t", now + Duration::from_secs(86_400));
        assert_eq!(refresh_time(&day, now), now + Duration::from_secs(43_200));
        let hour = AccessToken::new("t", now + Duration::from_secs(3600));
        assert_eq!(refresh_time(&hour, now), now + Duration::from_secs(3300));
        let short = AccessToken::new("t", now + Duration::from_secs(240));
        assert_eq!(refresh_time(&short, now), now + Duration::from_secs(120));
    }

    #[test]
    fn one_fetch_at_a_time_then_cached_until_refresh() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let ticket = fetch(&mut cache, t0);
        assert!(matches!(cache.acquire(&aud(), t0, None), Acquire::Wait));
        cache.complete(
            ticket,
            Some(AccessToken::new("a", t0 + Duration::from_secs(3600))),
            t0,
        );
        let later = t0 + Duration::from_secs(3000);
        assert!(matches!(cache.acquire(&aud(), later, None), Acquire::Use(t) if t.secret() == "a"));
        // Refresh is due after 55 minutes: one caller fetches, the others keep using "a".
        let due = t0 + Duration::from_secs(3400);
        let Acquire::Fetch { ticket, fallback } = cache.acquire(&aud(), due, None) else {
            panic!()
        };
        assert_eq!(fallback.unwrap().secret(), "a");
        assert!(matches!(cache.acquire(&aud(), due, None), Acquire::Use(t) if t.secret() == "a"));
        cache.complete(
            ticket,
            Some(AccessToken::new("b", due + Duration::from_secs(3600))),
            due,
        );
        assert!(matches!(cache.acquire(&aud(), due, None), Acquire::Use(t) if t.secret() == "b"));
    }

    #[test]
    fn each_audience_has_its_own_token() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let hsm = Audience::parse("https://managedhsm.azure.net").unwrap();
        let vault_ticket = fetch(&mut cache, t0);
        let Acquire::Fetch {
            ticket: hsm_ticket, ..
        } = cache.acquire(&hsm, t0, None)
        else {
            panic!("the HSM audience waited for the vault's fetch")
        };
        let hour = t0 + Duration::from_secs(3600);
        cache.complete(hsm_ticket, Some(AccessToken::new("h", hour)), t0);
        assert!(matches!(cache.acquire(&aud(), t0, None), Acquire::Wait));
        cache.complete(vault_ticket, Some(AccessToken::new("v", hour)), t0);
        assert!(matches!(cache.acquire(&aud(), t0, None), Acquire::Use(t) if t.secret() == "v"));
        assert!(matches!(cache.acquire(&hsm, t0, None), Acquire::Use(t) if t.secret() == "h"));
        cache.clear();
        assert!(matches!(
            cache.acquire(&hsm, t0, None),
            Acquire::Fetch { .. }
        ));
    }

    #[test]
    fn failed_refresh_keeps_the_old_token_and_pauses() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let ticket = fetch(&mut cache, t0);
        cache.complete(
            ticket,
            Some(AccessToken::new("a", t0 + Duration::from_secs(3600))),
            t0,
        );
        let due = t0 + Duration::from_secs(3400);
        let ticket = fetch(&mut cache, due);
        cache.complete(ticket, None, due);
        assert!(
            matches!(cache.acquire(&aud(), due + Duration::from_secs(1), None), Acquire::Use(t) if t.secret() == "a")
        );
        // After the pause, try again.
        let _ = fetch(&mut cache, due + FAILED_REFRESH_PAUSE);
    }

    #[test]
    fn an_expired_token_is_never_handed_out() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let ticket = fetch(&mut cache, t0);
        cache.complete(
            ticket,
            Some(AccessToken::new("a", t0 + Duration::from_secs(60))),
            t0,
        );
        let at_expiry = t0 + Duration::from_secs(58);
        let Acquire::Fetch { ticket, fallback } = cache.acquire(&aud(), at_expiry, None) else {
            panic!()
        };
        assert!(fallback.is_none());
        cache.complete(ticket, None, at_expiry);
        assert!(matches!(
            cache.acquire(&aud(), at_expiry, None),
            Acquire::Fetch { fallback: None, .. }
        ));
    }

    #[test]
    fn a_rejected_token_is_dropped() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let ticket = fetch(&mut cache, t0);
        let a = AccessToken::new("a", t0 + Duration::from_secs(3600));
        cache.complete(ticket, Some(a.clone()), t0);
        let Acquire::Fetch { fallback, .. } = cache.acquire(&aud(), t0, Some(&a)) else {
            panic!()
        };
        assert!(fallback.is_none());
    }

    #[test]
    fn a_stale_ticket_is_ignored() {
        let mut cache = TokenCache::new();
        let t0 = Instant::now();
        let old = fetch(&mut cache, t0);
        cache.clear();
        let new = fetch(&mut cache, t0);
        cache.complete(
            old,
            Some(AccessToken::new("old", t0 + Duration::from_secs(3600))),
            t0,
        );
        assert!(matches!(cache.acquire(&aud(), t0, None), Acquire::Wait));
        cache.complete(
            new,
            Some(AccessToken::new("new", t0 + Duration::from_secs(3600))),
            t0,
        );
        assert!(matches!(cache.acquire(&aud(), t0, None), Acquire::Use(t) if t.secret() == "new"));
    }
}
