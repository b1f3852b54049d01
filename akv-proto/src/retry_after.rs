//! How long the service asks us to wait: `retry-after-ms`, `x-ms-retry-after-ms`, then
//! `Retry-After` (seconds, or an HTTP date read against the response's own `Date` header,
//! so no clock is needed).

use std::time::Duration;

use http::HeaderMap;

use crate::read_headers::{RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};

/// Longer waits than this are treated as this: the caller's budget decides anyway, and
/// absurd values must not overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The delay the response asks for, if any.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    for name in [RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS] {
        if let Some(ms) = headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_number)
        {
            return Some(Duration::from_secs_f64(ms / 1000.0).min(MAX_RETRY_AFTER));
        }
    }
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    if let Some(secs) = parse_number(value) {
        return Some(Duration::from_secs_f64(
            secs.min(MAX_RETRY_AFTER.as_secs_f64()),
        ));
    }
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let date = headers
        .get(http::header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())?;
    Some(
        at.duration_since(date)
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

fn parse_number(value: &str) -> Option<f64> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = value.parse().ok()?;
    n.is_finite()
        .then_some(n.min(MAX_RETRY_AFTER.as_secs_f64() * 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", " 0 ")])),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("x-ms-retry-after-ms", "1500")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after", "Wed, 21 Oct 2015 07:28:10 GMT"),
                ("date", "Wed, 21 Oct 2015 07:28:00 GMT")
            ])),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&headers(&[
                ("retry-after", "Wed, 21 Oct 2015 07:27:00 GMT"),
                ("date", "Wed, 21 Oct 2015 07:28:00 GMT")
            ])),
            Some(Duration::ZERO)
        );
        // A date without our own reference point is unusable.
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:10 GMT"
            )])),
            None
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "99999999999999999999")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}
