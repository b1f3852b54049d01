//! What the credential tests share: a fixed wall clock, environments from pairs, canned
//! answers, and polling helpers that say what they expected.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::auto::CredentialInputs;
use super::fetch::{FetchPoll, TokenFetch};
use crate::Cloud;
use crate::request::{HttpRequest, HttpResponse};
use crate::token::{AccessToken, Audience, CredentialError};

pub(super) const UNIX: u64 = 1_700_000_000;

pub(super) fn aud() -> Audience {
    Audience::parse("https://vault.azure.net").unwrap()
}

pub(super) fn inputs<'a>(env: &'a dyn Fn(&str) -> Option<String>) -> CredentialInputs<'a> {
    CredentialInputs {
        env,
        arc_agent_installed: false,
        cloud: Cloud::Public,
        identity: None,
        cli_timeout: Duration::from_secs(10),
    }
}

pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

pub(super) fn answer(status: u16, body: &str) -> HttpResponse {
    http::Response::builder()
        .status(status)
        .body(body.as_bytes().to_vec())
        .unwrap()
}

pub(super) fn expect_send(fetch: &mut TokenFetch, now: Instant) -> HttpRequest {
    match fetch.poll(now) {
        FetchPoll::Send(t) => t.request,
        other => panic!("expected a request, got {other:?}"),
    }
}

pub(super) fn expect_done(
    fetch: &mut TokenFetch,
    now: Instant,
) -> Result<AccessToken, CredentialError> {
    match fetch.poll(now) {
        FetchPoll::Done(r) => r,
        other => panic!("expected done, got {other:?}"),
    }
}
