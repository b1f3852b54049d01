//! A ready token handed to us (`AZURE_CLI_ACCESS_TOKEN`, as Microsoft's engine accepted):
//! nothing to fetch, only its lifetime to read.

use std::time::{Duration, Instant};

use super::parse::jwt_expiry;
use super::source::Secret;
use crate::token::AccessToken;

/// The token, living until its JWT `exp`; an opaque token is assumed to live an hour (a 401
/// then ends the operation with the service's reason).
pub(super) fn token(token: &Secret, now: Instant, unix_now: u64) -> Result<AccessToken, String> {
    let life = match jwt_expiry(token.expose()) {
        Some(exp) if exp <= unix_now => {
            return Err("the token in AZURE_CLI_ACCESS_TOKEN has expired; get a new one".into());
        }
        Some(exp) => Duration::from_secs(exp - unix_now),
        None => Duration::from_secs(3600),
    };
    Ok(AccessToken::new(token.expose(), now + life))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::b64;
    use crate::credential::test_support::*;
    use crate::credential::{CredentialSource, Secret, TokenFetch};

    #[test]
    fn static_tokens_use_the_jwt_expiry() {
        let now = Instant::now();
        let payload = b64::encode(
            format!(
                r#"{{"aud":"https://vault.azure.net","exp":{}}}"#,
                UNIX + 1234
            )
            .as_bytes(),
        );
        let jwt = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        let source = CredentialSource::Static {
            token: Secret::new(jwt.clone()),
        };
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(1234));
        let mut f = TokenFetch::new(
            &source,
            &aud(),
            Duration::from_secs(10),
            None,
            now,
            UNIX + 2000,
        );
        assert!(
            expect_done(&mut f, now)
                .unwrap_err()
                .to_string()
                .contains("expired")
        );
        let opaque = CredentialSource::Static {
            token: Secret::new("opaque"),
        };
        let mut f = TokenFetch::new(&opaque, &aud(), Duration::from_secs(10), None, now, UNIX);
        assert_eq!(
            expect_done(&mut f, now).unwrap().expires_at(),
            now + Duration::from_secs(3600)
        );
    }
}
