//! Workload identity (AKS, GitHub Actions, any OIDC federation): the federated token in
//! `AZURE_FEDERATED_TOKEN_FILE` is re-read on every fetch (it rotates) and exchanged at the
//! tenant's Entra ID token endpoint as a client assertion.

use super::source::{Secret, ServiceUrl};
use super::wire::entra_token_request;
use crate::request::HttpRequest;
use crate::token::Audience;

/// Largest federated token file accepted.
pub const MAX_ASSERTION_LEN: usize = 64 * 1024;

/// The assertion from the file's contents (or why the file was no good).
pub(super) fn assertion_from_file(contents: Result<Vec<u8>, String>) -> Result<Secret, String> {
    let bytes = contents.map_err(|e| format!("cannot read AZURE_FEDERATED_TOKEN_FILE: {e}"))?;
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    if text.is_empty() {
        return Err("the federated token file is empty".into());
    }
    Ok(Secret::new(text))
}

/// The token request.
pub(super) fn request(
    authority: &ServiceUrl,
    tenant: &str,
    client_id: &str,
    assertion: &Secret,
    audience: &Audience,
) -> HttpRequest {
    const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    entra_token_request(
        authority,
        tenant,
        client_id,
        audience,
        &[
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion.expose()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use crate::credential::test_support::*;
    use crate::credential::{FetchPoll, SourceChoice, TokenFetch};

    #[test]
    fn workload_identity_rereads_its_file_and_posts_an_assertion() {
        let now = Instant::now();
        let env = env_of(&[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "cid"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/secrets/token"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:5555/"),
        ]);
        let source = inputs(&env).source(SourceChoice::WorkloadIdentity).unwrap();
        for round in 0..2 {
            let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
            let FetchPoll::ReadFile { path, .. } = f.poll(now) else {
                panic!()
            };
            assert_eq!(path, PathBuf::from("/var/run/secrets/token"));
            f.handle_file(Ok(format!("assertion-{round}").into_bytes()));
            let r = expect_send(&mut f, now);
            assert_eq!(r.method(), "POST");
            assert_eq!(
                r.uri().to_string(),
                "http://127.0.0.1:5555/tenant-1/oauth2/v2.0/token"
            );
            let body = String::from_utf8(r.body().clone()).unwrap();
            assert!(
                body.contains(&format!("client_assertion=assertion-{round}")),
                "{body}"
            );
            assert!(
                body.contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"),
                "{body}"
            );
            assert!(body.contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"));
            f.handle_response(
                answer(
                    200,
                    r#"{"token_type":"Bearer","expires_in":86399,"access_token":"t"}"#,
                ),
                now,
                UNIX,
            );
            assert!(expect_done(&mut f, now).is_ok());
        }
    }

    #[test]
    fn an_empty_or_unreadable_file_is_named() {
        let e = super::assertion_from_file(Ok(b" \n".to_vec())).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = super::assertion_from_file(Err("no such file".into())).unwrap_err();
        assert!(
            e.contains("AZURE_FEDERATED_TOKEN_FILE: no such file"),
            "{e}"
        );
    }
}
