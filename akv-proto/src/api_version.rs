//! The `api-version` every Key Vault request names.

use std::fmt;
use std::sync::Arc;

/// A Key Vault REST `api-version`, such as `7.5` or `2025-07-01`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApiVersion(Arc<str>);

impl ApiVersion {
    /// The version used unless configured otherwise: the newest stable one.
    pub const DEFAULT: &'static str = "2025-07-01";

    /// Validates an api-version: `N.N` or `YYYY-MM-DD`, optionally `-preview`.
    pub fn parse(value: &str) -> Result<ApiVersion, String> {
        let base = value.strip_suffix("-preview").unwrap_or(value);
        let dotted = base
            .split_once('.')
            .is_some_and(|(a, b)| is_digits(a, 1..=2) && is_digits(b, 1..=2));
        let dated = {
            let parts: Vec<&str> = base.split('-').collect();
            parts.len() == 3
                && is_digits(parts[0], 4..=4)
                && is_digits(parts[1], 2..=2)
                && is_digits(parts[2], 2..=2)
        };
        if dotted || dated {
            Ok(ApiVersion(value.into()))
        } else {
            Err(format!(
                "invalid api-version {}: expected N.N (e.g. 7.5) or YYYY-MM-DD (e.g. 2025-07-01), optionally with -preview",
                crate::text::shown(value)
            ))
        }
    }

    /// The version string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_digits(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

impl Default for ApiVersion {
    fn default() -> Self {
        ApiVersion(Self::DEFAULT.into())
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        for ok in [
            "7.4",
            "7.5",
            "7.6-preview",
            "2025-07-01",
            "2026-03-01-preview",
        ] {
            assert!(ApiVersion::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "7", "7.x", "2025-7-1", "7.5&x=1", "2025-07-01 "] {
            assert!(ApiVersion::parse(bad).is_err(), "{bad}");
        }
    }
}
