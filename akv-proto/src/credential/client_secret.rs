//! Entra ID client credentials with a client secret (`AZURE_CLIENT_SECRET`): one form POST
//! to the tenant's token endpoint. The secret goes into the body only, never into text.

use super::source::{Secret, ServiceUrl};
use super::wire::entra_token_request;
use crate::request::HttpRequest;
use crate::token::Audience;

/// The token request.
pub(super) fn request(
    authority: &ServiceUrl,
    tenant: &str,
    client_id: &str,
    secret: &Secret,
    audience: &Audience,
) -> HttpRequest {
    entra_token_request(
        authority,
        tenant,
        client_id,
        audience,
        &[("client_secret", secret.expose())],
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::credential::test_support::*;
    use crate::credential::{SourceChoice, TokenFetch};

    #[test]
    fn client_secret_errors_carry_the_aadsts_reason_not_the_secret() {
        let now = Instant::now();
        let env = env_of(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "hunter2-secret"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:5555"),
        ]);
        let source = inputs(&env).source(SourceChoice::ClientSecret).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert!(String::from_utf8_lossy(r.body()).contains("client_secret=hunter2-secret"));
        f.handle_response(answer(401, r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#), now, UNIX);
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert_eq!(
            e,
            "client secret: HTTP 401: invalid_client: AADSTS7000215: Invalid client secret provided."
        );
    }
}
