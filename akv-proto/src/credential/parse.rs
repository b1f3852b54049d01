//! Reading what token services answer, shared by every source: token JSON with its numbers
//! sent as numbers or strings, lifetimes, JWT expiry, and error details. Errors never quote
//! a body: it may hold a token.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::b64;
use crate::request::HttpResponse;
use crate::text::clean_text;
use crate::token::AccessToken;

/// A number that token services send either as a JSON number or as a string.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum NumberOrString {
    Number(f64),
    Text(String),
}

impl NumberOrString {
    pub(super) fn seconds(&self) -> Option<u64> {
        match self {
            NumberOrString::Number(n) if n.is_finite() && *n >= 0.0 => Some(*n as u64),
            NumberOrString::Text(t) => t
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as u64),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct RawToken {
    access_token: Option<String>,
    expires_in: Option<NumberOrString>,
    expires_on: Option<NumberOrString>,
}

/// Longest token lifetime believed; anything longer is a clock or parsing problem.
const MAX_LIFETIME: u64 = 7 * 24 * 3600;

/// How long a token lives, from a relative `expires_in` (preferred: immune to clock skew) or
/// an absolute `expires_on`.
pub(super) fn lifetime(
    expires_in: Option<u64>,
    expires_on: Option<u64>,
    unix_now: u64,
) -> Result<Duration, String> {
    let secs = match (expires_in.filter(|s| *s > 0), expires_on) {
        (Some(secs), _) => secs,
        (None, Some(on)) if on > unix_now => on - unix_now,
        (None, Some(_)) => {
            return Err(
                "the token it returned has already expired (check this machine's clock)".into(),
            );
        }
        (None, None) => return Err("the token answer has no expires_in or expires_on".into()),
    };
    Ok(Duration::from_secs(secs.min(MAX_LIFETIME)))
}

/// Parses a token answer of IMDS, App Service, Arc or Entra ID (numbers or strings).
/// Errors never quote the body: it may hold a token.
pub fn parse_token_response(
    body: &[u8],
    now: Instant,
    unix_now: u64,
) -> Result<AccessToken, String> {
    let raw: RawToken = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the token answer is not the expected JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    let token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("the token answer has no access_token")?;
    let life = lifetime(
        raw.expires_in.and_then(|v| v.seconds()),
        raw.expires_on.and_then(|v| v.seconds()),
        unix_now,
    )?;
    Ok(AccessToken::new(token, now + life))
}

/// The `exp` claim of a JWT, read without verifying anything (we only need to know when to
/// refresh; the service verifies the token).
pub fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = b64::decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_u64()
}

/// `": code: description"` from a token service's error body, cleaned and bounded.
pub(super) fn token_error_detail(response: &HttpResponse) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(response.body()) else {
        return String::new();
    };
    let code = v.get("error").and_then(|e| {
        e.as_str()
            .map(str::to_owned)
            .or_else(|| e.get("code").and_then(|c| c.as_str()).map(str::to_owned))
    });
    let message = v
        .get("error_description")
        .or_else(|| v.get("error").and_then(|e| e.get("message")))
        .or_else(|| v.get("message"))
        .and_then(|m| m.as_str());
    match (code, message) {
        (Some(c), Some(m)) => format!(": {}: {}", clean_text(&c, 80), clean_text(m, 300)),
        (Some(c), None) => format!(": {}", clean_text(&c, 80)),
        (None, Some(m)) => format!(": {}", clean_text(m, 300)),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::test_support::UNIX;

    #[test]
    fn token_responses_of_every_shape() {
        let now = Instant::now();
        let text = include_str!("../../tests/fixtures/identity/token-response-samples.json");
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut parsed = 0;
        for sample in doc["samples"].as_array().unwrap() {
            let Some(response) = sample.get("response") else {
                continue;
            };
            let body = serde_json::to_vec(response).unwrap();
            // The recorded expires_on values are in 2019; read them as of just before.
            let t = parse_token_response(&body, now, 1_560_970_130)
                .unwrap_or_else(|e| panic!("{sample}: {e}"));
            assert!(t.expires_at() > now);
            parsed += 1;
        }
        assert!(parsed >= 3);
        let t = parse_token_response(br#"{"access_token":"a","expires_in":"3599"}"#, now, UNIX)
            .unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3599));
        let t = parse_token_response(
            br#"{"access_token":"a","expires_in":"","expires_on":1700000600}"#,
            now,
            UNIX,
        )
        .unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(600));
        let err = parse_token_response(
            br#"{"access_token":"secret-abc","expires_in":"soon"}"#,
            now,
            UNIX,
        )
        .unwrap_err();
        assert!(!err.contains("secret-abc"), "{err}");
        assert!(
            parse_token_response(
                br#"{"access_token":"a","expires_on":"1600000000"}"#,
                now,
                UNIX
            )
            .unwrap_err()
            .contains("expired")
        );
        assert!(parse_token_response(br#"{"expires_in":1}"#, now, UNIX).is_err());
        let err = parse_token_response(br#"{"access_token":"secret-abc","#, now, UNIX).unwrap_err();
        assert!(!err.contains("secret-abc"));
    }
}
