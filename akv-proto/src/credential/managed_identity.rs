//! Managed identity through IMDS (VMs, scale sets, AKS nodes), App Service (also Functions
//! and Container Apps) and Azure Arc: one request shape with per-endpoint API versions,
//! headers and identity parameters, and the managed identity rules for failed answers. The
//! Arc key-file challenge has its own file, `arc.rs`.

use std::time::Duration;

use http::header::AUTHORIZATION;
use http::{Method, Request};

use super::source::{ManagedIdentityEndpoint, Secret, UserAssignedId};
use super::wire::{self, Failure, encode, sensitive};
use crate::request::{HttpRequest, HttpResponse};
use crate::token::Audience;

/// The default IMDS origin. Tests MUST configure another one.
pub const IMDS_ORIGIN: &str = "http://169.254.169.254";

/// How long a chain waits for IMDS before deciding it is not on an Azure VM.
pub(super) const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl UserAssignedId {
    /// The query parameter naming this identity; App Service spells two of them its own way.
    fn query(&self, appservice: bool) -> (&'static str, &str) {
        match self {
            UserAssignedId::ClientId(v) => ("client_id", v),
            UserAssignedId::ObjectId(v) if appservice => ("principal_id", v),
            UserAssignedId::ObjectId(v) => ("object_id", v),
            UserAssignedId::ResourceId(v) if appservice => ("mi_res_id", v),
            UserAssignedId::ResourceId(v) => ("msi_res_id", v),
        }
    }
}

/// The token request for `audience` at `endpoint`. `arc_key` is the contents of the key file
/// an Arc challenge named (sent back as Basic credentials); `None` on the first try.
pub(super) fn request(
    endpoint: &ManagedIdentityEndpoint,
    identity: Option<&UserAssignedId>,
    audience: &Audience,
    arc_key: Option<&Secret>,
) -> HttpRequest {
    let (base, api_version, appservice) = match endpoint {
        ManagedIdentityEndpoint::Imds { origin } => (
            format!("{}/metadata/identity/oauth2/token", origin.as_str()),
            "2018-02-01",
            false,
        ),
        ManagedIdentityEndpoint::AppService { endpoint, .. } => {
            (endpoint.as_str().to_owned(), "2019-08-01", true)
        }
        ManagedIdentityEndpoint::Arc { endpoint, .. } => {
            (endpoint.as_str().to_owned(), "2020-06-01", false)
        }
    };
    let mut url = format!(
        "{base}?api-version={api_version}&resource={}",
        encode(audience.as_str())
    );
    if let Some(id) = identity {
        let (name, value) = id.query(appservice);
        url.push_str(&format!("&{name}={}", encode(value)));
    }
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(url)
        .header("accept", "application/json");
    builder = match endpoint {
        ManagedIdentityEndpoint::AppService { header, .. } => {
            builder.header("x-identity-header", sensitive(header.expose()))
        }
        _ => builder.header("metadata", "true"),
    };
    if let Some(key) = arc_key {
        builder = builder.header(AUTHORIZATION, sensitive(&format!("Basic {}", key.expose())));
    }
    builder.body(Vec::new()).expect("validated parts")
}

/// What a failed answer (not 2xx, not an Arc challenge) means. `detail` is the service's
/// own code and message, already cleaned.
pub(super) fn judge_failure(
    endpoint: &ManagedIdentityEndpoint,
    response: &HttpResponse,
    detail: &str,
) -> Failure {
    let status = response.status().as_u16();
    let imds = matches!(endpoint, ManagedIdentityEndpoint::Imds { .. });
    // IMDS answers 404 and 410 while it is starting up or updating (PROTOCOL.md section 3).
    if imds && matches!(status, 404 | 410) {
        wire::retry(response, detail)
    } else if status == 400 {
        Failure::Give(format!(
            "HTTP 400{detail}: no managed identity is assigned to this machine, or not the one requested (check AZURE_CLIENT_ID / the configured identity)"
        ))
    } else {
        wire::judge_failure(response, detail)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::credential::test_support::*;
    use crate::credential::{
        CredentialSource, FetchPoll, SourceChoice, TokenFetch, UserAssignedId,
    };

    #[test]
    fn imds_request_retry_and_token() {
        let now = Instant::now();
        let source = CredentialSource::imds(
            "http://127.0.0.1:7777",
            Some(UserAssignedId::ClientId("abc".into())),
        )
        .unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:7777/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=abc"
        );
        assert_eq!(r.headers()["metadata"], "true");
        f.handle_response(answer(410, ""), now, UNIX);
        let FetchPoll::Wait(d) = f.poll(now) else {
            panic!()
        };
        let now = now + d;
        let _ = expect_send(&mut f, now);
        f.handle_response(answer(200, r#"{"access_token":"tok","expires_in":"86399","expires_on":"0","token_type":"Bearer"}"#), now, UNIX);
        let t = expect_done(&mut f, now).unwrap();
        assert_eq!(t.secret(), "tok");
        assert_eq!(t.expires_at(), now + Duration::from_secs(86399));
    }

    #[test]
    fn imds_without_identity_is_a_clear_error() {
        let now = Instant::now();
        let source = CredentialSource::imds("http://127.0.0.1:7777", None).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let _ = expect_send(&mut f, now);
        f.handle_response(
            answer(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            ),
            now,
            UNIX,
        );
        let e = expect_done(&mut f, now).unwrap_err().to_string();
        assert!(e.contains("managed identity (IMDS): HTTP 400: invalid_request: Identity not found: no managed identity is assigned"), "{e}");
    }

    #[test]
    fn app_service_request() {
        let now = Instant::now();
        let env = env_of(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41741/MSI/token/"),
            ("IDENTITY_HEADER", "hdr-secret"),
            ("AZURE_CLIENT_ID", "cid"),
        ]);
        let source = inputs(&env).source(SourceChoice::ManagedIdentity).unwrap();
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert_eq!(
            r.uri().to_string(),
            "http://127.0.0.1:41741/MSI/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net&client_id=cid"
        );
        assert_eq!(r.headers()["x-identity-header"], "hdr-secret");
        assert!(r.headers()["x-identity-header"].is_sensitive());
        f.handle_response(answer(200, r#"{"access_token":"t","expires_on":"1700000900","resource":"https://vault.azure.net","token_type":"Bearer"}"#), now, UNIX);
        assert_eq!(
            expect_done(&mut f, now).unwrap().expires_at(),
            now + Duration::from_secs(900)
        );
    }
}
