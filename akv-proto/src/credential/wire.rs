//! The HTTP pieces every token source builds its exchange from: query encoding, form bodies,
//! headers that must never be printed, the Entra ID token endpoint, and which failures are
//! worth another try.

use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request};

use super::source::ServiceUrl;
use crate::request::{HttpRequest, HttpResponse};
use crate::token::Audience;

/// Percent-encodes a query value.
pub(super) fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// An `application/x-www-form-urlencoded` body.
pub(super) fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        serializer.append_pair(k, v);
    }
    serializer.finish().into_bytes()
}

/// A header value that `Debug` and the HTTP stacks' logs show as `Sensitive`.
pub(super) fn sensitive(value: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""));
    v.set_sensitive(true);
    v
}

/// A client-credentials POST to the Entra ID token endpoint of `tenant` for `audience`.
/// Client secret and workload identity differ only in how the client proves itself
/// (`proof`: the last fields of the form).
pub(super) fn entra_token_request(
    authority: &ServiceUrl,
    tenant: &str,
    client_id: &str,
    audience: &Audience,
    proof: &[(&str, &str)],
) -> HttpRequest {
    let scope = audience.scope();
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("scope", scope.as_str()),
    ];
    fields.extend_from_slice(proof);
    Request::builder()
        .method(Method::POST)
        .uri(format!("{}/{tenant}/oauth2/v2.0/token", authority.as_str()))
        .header("accept", "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&fields))
        .expect("validated parts")
}

/// What a failed answer of a token service means for the fetch.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// Worth another try, after the server's delay if it gave one.
    Retry {
        /// What went wrong, for the final error if the retries run out.
        reason: String,
        /// `Retry-After`, if sent.
        delay: Option<Duration>,
    },
    /// This source will not give a token; the reason says why.
    Give(String),
}

/// Another try for a failed answer, after the server's `Retry-After` if it sent one.
pub(super) fn retry(response: &HttpResponse, detail: &str) -> Failure {
    Failure::Retry {
        reason: format!("HTTP {}{detail}", response.status().as_u16()),
        delay: crate::retry_after(response.headers()),
    }
}

/// What a failed answer (not 2xx) of a token service means when only the statuses every
/// service uses for passing trouble are retried (Entra ID; managed identity adds its own
/// cases). `detail` is the service's own code and message, already cleaned.
pub(super) fn judge_failure(response: &HttpResponse, detail: &str) -> Failure {
    let status = response.status().as_u16();
    if matches!(status, 408 | 429 | 500..=599) {
        retry(response, detail)
    } else {
        Failure::Give(format!("HTTP {status}{detail}"))
    }
}
