//! `WWW-Authenticate` challenges: Key Vault's `Bearer authorization=..., resource=...` (or
//! `scope=...`, in either order) and Azure Arc's `Basic realm=PATH`.

use crate::token::{Audience, AudienceError};

/// One challenge: a scheme and its parameters (names lowercased, values unquoted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Scheme (`Bearer`, `Basic`, `PoP`), as sent.
    pub scheme: String,
    /// `name=value` parameters in order.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// The value of a parameter (name compared case-insensitively).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a `WWW-Authenticate` value, which may hold several challenges.
/// Returns what it could parse up to the first syntax error.
pub fn parse_www_authenticate(value: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut p = Parser {
        s: value.as_bytes(),
        i: 0,
    };
    loop {
        p.skip_separators();
        let Some(token) = p.token() else { break };
        p.skip_ws();
        if p.peek() == Some(b'=') {
            // A parameter of the current challenge.
            p.i += 1;
            p.skip_ws();
            let Some(value) = p.value() else { break };
            match out.last_mut() {
                Some(c) => c.params.push((token.to_ascii_lowercase(), value)),
                None => break,
            }
        } else {
            out.push(Challenge {
                scheme: token,
                params: Vec::new(),
            });
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c) {
                self.i += 1;
            } else {
                break;
            }
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn value(&mut self) -> Option<String> {
        if self.peek() != Some(b'"') {
            // token68-ish or bare token; allow '=' padding of token68.
            let start = self.i;
            while let Some(c) = self.peek() {
                if c == b',' || c == b' ' || c == b'\t' {
                    break;
                }
                self.i += 1;
            }
            return Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
        }
        self.i += 1;
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                    self.i += 1;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// A Key Vault bearer challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerChallenge {
    /// The authority URL (`authorization` or `authorization_uri`), e.g.
    /// `https://login.microsoftonline.com/TENANT`.
    pub authority: Option<String>,
    /// The audience from `resource`, else from `scope`.
    pub audience: Audience,
}

/// Why a bearer challenge is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No `Bearer` challenge in the header.
    #[error("the 401 answer carries no Bearer challenge")]
    NoBearer,
    /// Neither `resource` nor `scope`.
    #[error("the Bearer challenge names no resource or scope")]
    NoResource,
    /// The resource is not a valid audience.
    #[error("the Bearer challenge names an unusable resource: {0}")]
    BadResource(#[from] AudienceError),
    /// The resource does not belong to the host that sent it.
    #[error(
        "the Bearer challenge from {host} asks for a token for {audience}, which is not that host's service; refusing to send a token (the Azure SDKs refuse too)"
    )]
    ResourceMismatch {
        /// The host that answered.
        host: String,
        /// The audience it asked for.
        audience: String,
    },
}

impl BearerChallenge {
    /// Finds and reads the Bearer challenge of a `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Result<BearerChallenge, ChallengeError> {
        let challenges = parse_www_authenticate(header);
        let bearer = challenges
            .iter()
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
            .ok_or(ChallengeError::NoBearer)?;
        let raw = bearer
            .param("resource")
            .or_else(|| bearer.param("scope"))
            .ok_or(ChallengeError::NoResource)?;
        Ok(BearerChallenge {
            authority: bearer
                .param("authorization")
                .or_else(|| bearer.param("authorization_uri"))
                .map(|a| crate::text::clean_text(a, 200)),
            audience: Audience::parse(raw)?,
        })
    }

    /// The tenant id: the first path segment of the authority.
    pub fn tenant(&self) -> Option<&str> {
        let authority = self.authority.as_deref()?;
        let rest = authority.split_once("://")?.1;
        let tenant = rest.split('/').nth(1)?;
        (!tenant.is_empty()).then_some(tenant)
    }

    /// The Azure SDKs' check: a token for `audience` may only go to hosts under it
    /// (`host` ends with `.` + the audience's host).
    pub fn verify_host(&self, host: &str) -> Result<(), ChallengeError> {
        let suffix = self.audience.host();
        let ok = host
            .strip_suffix(suffix)
            .is_some_and(|prefix| prefix.ends_with('.'));
        if ok {
            Ok(())
        } else {
            Err(ChallengeError::ResourceMismatch {
                host: host.to_owned(),
                audience: self.audience.to_string(),
            })
        }
    }
}

/// Azure Arc's `Basic realm=PATH` challenge: the path of the key file to read.
pub fn basic_realm(header: &str) -> Option<String> {
    parse_www_authenticate(header)
        .into_iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("basic"))
        .and_then(|c| c.param("realm").map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orders_and_scope() {
        let a = BearerChallenge::parse(r#"Bearer authorization="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47", resource="https://vault.azure.net""#).unwrap();
        let b = BearerChallenge::parse(r#"Bearer resource="https://vault.azure.net", authorization="https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47""#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.tenant(), Some("72f988bf-86f1-41af-91ab-2d7cd011db47"));
        let c = BearerChallenge::parse(r#"Bearer authorization_uri="https://login.microsoftonline.com/t/", scope="https://managedhsm.azure.net/.default""#).unwrap();
        assert_eq!(c.audience.as_str(), "https://managedhsm.azure.net");
        assert_eq!(c.tenant(), Some("t"));
        // Several challenges in one header; unquoted values.
        let d = BearerChallenge::parse(r#"PoP nonce="abc", Bearer resource=https://vault.azure.cn, authorization=https://login.chinacloudapi.cn/t"#).unwrap();
        assert_eq!(d.audience.as_str(), "https://vault.azure.cn");
    }

    #[test]
    fn host_verification() {
        let c = BearerChallenge::parse(r#"Bearer resource="https://vault.azure.net""#).unwrap();
        assert!(c.verify_host("myvault.vault.azure.net").is_ok());
        assert!(c.verify_host("vault.azure.net").is_err());
        assert!(c.verify_host("evilvault.azure.net").is_err());
        assert!(c.verify_host("myvault.managedhsm.azure.net").is_err());
    }

    #[test]
    fn unusable_challenges() {
        assert_eq!(BearerChallenge::parse(""), Err(ChallengeError::NoBearer));
        assert_eq!(
            BearerChallenge::parse("Basic realm=\"x\""),
            Err(ChallengeError::NoBearer)
        );
        assert_eq!(
            BearerChallenge::parse("Bearer authorization=\"x\""),
            Err(ChallengeError::NoResource)
        );
        assert!(matches!(
            BearerChallenge::parse("Bearer resource=\"http://x\""),
            Err(ChallengeError::BadResource(_))
        ));
        assert!(matches!(
            BearerChallenge::parse("Bearer resource=\"https://x"),
            Err(ChallengeError::NoResource)
        ));
    }

    #[test]
    fn arc_realm() {
        assert_eq!(
            basic_realm(r#"Basic realm="/var/opt/azcmagent/tokens/abc.key""#).as_deref(),
            Some("/var/opt/azcmagent/tokens/abc.key")
        );
        assert_eq!(
            basic_realm("Basic realm=/var/opt/azcmagent/tokens/x.key").as_deref(),
            Some("/var/opt/azcmagent/tokens/x.key")
        );
        assert_eq!(basic_realm("Bearer realm=x"), None);
    }

    #[test]
    fn every_fixture_challenge_parses() {
        let text = include_str!("../tests/fixtures/challenges/www-authenticate-samples.json");
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut bearer = 0;
        for sample in json["samples"].as_array().unwrap() {
            let Some(header) = sample.get("header").and_then(|h| h.as_str()) else {
                continue;
            };
            if header
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("bearer")
            {
                let c = BearerChallenge::parse(header).unwrap_or_else(|e| panic!("{header}: {e}"));
                assert!(c.audience.as_str().starts_with("https://"));
                bearer += 1;
            } else if header
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("basic")
            {
                assert!(basic_realm(header).is_some(), "{header}");
            }
        }
        assert!(bearer >= 3);
    }
}
