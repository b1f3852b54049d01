//! Every token source, executed by both backends against local servers: wiremock playing
//! Entra ID, App Service, Azure Arc and IMDS (and the vault), a fake `az`, and the emulator
//! for the long run that must fetch exactly one token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use akv_proto::credential::{CredentialSource, ManagedIdentityEndpoint, Secret, ServiceUrl};
use akv_proto::{KeyCall, OperationConfig, SignAlgorithm};
use akv_tests::backends::{BACKENDS, Client};
use akv_tests::emulator::{Emulator, EmulatorConfig};
use akv_tests::support::TempDir;
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "vault:myvault:k";
const RESULT: &str = r#"{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","value":"AQID"}"#;

fn sign() -> KeyCall {
    KeyCall::Sign {
        alg: SignAlgorithm::ES256,
        digest: vec![9; 32],
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The vault answers only requests carrying `token`.
fn vault_accepting(token: &str) -> Mock {
    Mock::given(path_regex("^/keys/"))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_raw(RESULT, "application/json"))
}

fn url(server: &MockServer, path: &str) -> ServiceUrl {
    ServiceUrl::parse(&format!("{}{path}", server.uri()), "test").unwrap()
}

fn signed(result: Result<akv_proto::Output, akv_proto::Error>, context: &str) {
    match result {
        Ok(out) => assert_eq!(out.into_value().unwrap(), [1, 2, 3], "{context}"),
        Err(e) => panic!("{context}: {e}"),
    }
}

#[test]
fn client_secret_on_both_backends() {
    let rt = runtime();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(method("POST"))
                .and(path("/tenant-1/oauth2/v2.0/token"))
                .and(header("content-type", "application/x-www-form-urlencoded"))
                .and(body_string_contains("grant_type=client_credentials"))
                .and(body_string_contains("client_id=cid"))
                .and(body_string_contains("client_secret=hunter2-secret"))
                .and(body_string_contains("scope=https%3A%2F%2Fvault.azure.net%2F.default"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "entra-token"})))
                .expect(1)
                .mount(&server),
        );
        rt.block_on(vault_accepting("entra-token").expect(2).mount(&server));
        let source = CredentialSource::ClientSecret {
            authority: url(&server, ""),
            tenant: "tenant-1".into(),
            client_id: "cid".into(),
            secret: Secret::new("hunter2-secret"),
        };
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            source,
            None,
        );
        signed(client.run(KEY, sign()), &format!("{backend:?}"));
        signed(
            client.run(KEY, sign()),
            &format!("{backend:?} (cached token)"),
        );
        rt.block_on(server.verify());
    }
}

#[test]
fn client_secret_errors_name_the_reason_never_the_secret() {
    let rt = runtime();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(path("/t/oauth2/v2.0/token"))
                .respond_with(ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})))
                .mount(&server),
        );
        let source = CredentialSource::ClientSecret {
            authority: url(&server, ""),
            tenant: "t".into(),
            client_id: "c".into(),
            secret: Secret::new("hunter2-secret"),
        };
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            source,
            None,
        );
        let e = client.run(KEY, sign()).unwrap_err().to_string();
        assert!(e.contains("AADSTS7000215"), "{backend:?}: {e}");
        assert!(!e.contains("hunter2"), "{backend:?}: {e}");
        let requests = rt.block_on(server.received_requests()).unwrap();
        assert!(
            requests.iter().all(|r| !r.url.path().starts_with("/keys/")),
            "no vault request without a token"
        );
    }
}

#[test]
fn workload_identity_rereads_the_rotating_token_file() {
    let rt = runtime();
    let dir = TempDir::new("workload");
    let file = dir.path().join("token");
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        for (assertion, token) in [("assertion-1", "wi-1"), ("assertion-2", "wi-2")] {
            rt.block_on(
                Mock::given(path("/tenant-1/oauth2/v2.0/token"))
                    .and(body_string_contains(format!("client_assertion={assertion}").as_str()))
                    .and(body_string_contains("client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"))
                    // Six seconds: usable for one (five are kept as a send margin).
                    .respond_with(ResponseTemplate::new(200).set_body_json(json!({"token_type": "Bearer", "expires_in": 6, "access_token": token})))
                    .expect(1)
                    .mount(&server),
            );
            rt.block_on(vault_accepting(token).expect(1).mount(&server));
        }
        std::fs::write(&file, "assertion-1\n").unwrap();
        let source = CredentialSource::WorkloadIdentity {
            authority: url(&server, ""),
            tenant: "tenant-1".into(),
            client_id: "cid".into(),
            token_file: file.clone(),
        };
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            source,
            None,
        );
        signed(client.run(KEY, sign()), &format!("{backend:?} first"));
        std::fs::write(&file, "assertion-2\n").unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        signed(
            client.run(KEY, sign()),
            &format!("{backend:?} after rotation"),
        );
        rt.block_on(server.verify());
    }
}

#[test]
fn app_service_managed_identity() {
    let rt = runtime();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(method("GET"))
                .and(path("/msi/token"))
                .and(query_param("api-version", "2019-08-01"))
                .and(query_param("resource", "https://vault.azure.net"))
                .and(query_param("client_id", "uami"))
                .and(header("x-identity-header", "header-secret"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "app-token", "expires_on": "4102444800", "resource": "https://vault.azure.net", "token_type": "Bearer"})))
                .expect(1)
                .mount(&server),
        );
        rt.block_on(vault_accepting("app-token").expect(1).mount(&server));
        let source = CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::AppService {
                endpoint: url(&server, "/msi/token"),
                header: Secret::new("header-secret"),
            },
            identity: Some(akv_proto::credential::UserAssignedId::ClientId(
                "uami".into(),
            )),
        };
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            source,
            None,
        );
        signed(client.run(KEY, sign()), &format!("{backend:?}"));
        rt.block_on(server.verify());
    }
}

fn arc_source(server: &MockServer, folder: &Path) -> CredentialSource {
    CredentialSource::ManagedIdentity {
        endpoint: ManagedIdentityEndpoint::Arc {
            endpoint: url(server, "/metadata/identity/oauth2/token"),
            key_folder: folder.to_path_buf(),
        },
        identity: None,
    }
}

#[test]
fn azure_arc_key_file_challenge() {
    let rt = runtime();
    let dir = TempDir::new("arc");
    let key_file = dir.path().join("challenge.key");
    std::fs::write(&key_file, "arc-secret").unwrap();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(path("/metadata/identity/oauth2/token"))
                .and(header("authorization", "Basic arc-secret"))
                .and(header("metadata", "true"))
                .and(query_param("api-version", "2020-06-01"))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "arc-token", "expires_in": "3600", "token_type": "Bearer"})))
                .with_priority(1)
                .expect(1)
                .mount(&server),
        );
        rt.block_on(
            Mock::given(path("/metadata/identity/oauth2/token"))
                .respond_with(ResponseTemplate::new(401).insert_header(
                    "www-authenticate",
                    format!("Basic realm={}", key_file.display()).as_str(),
                ))
                .with_priority(2)
                .expect(1)
                .mount(&server),
        );
        rt.block_on(vault_accepting("arc-token").expect(1).mount(&server));
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            arc_source(&server, dir.path()),
            None,
        );
        signed(client.run(KEY, sign()), &format!("{backend:?}"));
        rt.block_on(server.verify());
    }
}

#[test]
fn azure_arc_refuses_key_files_outside_its_folder() {
    let rt = runtime();
    let dir = TempDir::new("arc-refuse");
    let outside = TempDir::new("arc-outside");
    let planted = outside.path().join("stolen.key");
    std::fs::write(&planted, "not-for-you").unwrap();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(path("/metadata/identity/oauth2/token"))
                .respond_with(ResponseTemplate::new(401).insert_header(
                    "www-authenticate",
                    format!("Basic realm={}", planted.display()).as_str(),
                ))
                .mount(&server),
        );
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            arc_source(&server, dir.path()),
            None,
        );
        let e = client.run(KEY, sign()).unwrap_err().to_string();
        assert!(
            e.contains("refusing the Arc key file") && e.contains("is not directly in"),
            "{backend:?}: {e}"
        );
        let requests = rt.block_on(server.received_requests()).unwrap();
        assert_eq!(
            requests.len(),
            1,
            "the file was not read, nothing was sent: {backend:?}"
        );
        assert!(requests[0].headers.get("authorization").is_none());
    }
}

#[test]
fn imds_retries_410_and_429() {
    let rt = runtime();
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        let imds =
            || Mock::given(path("/metadata/identity/oauth2/token")).and(header("metadata", "true"));
        rt.block_on(
            imds()
                .respond_with(ResponseTemplate::new(410))
                .up_to_n_times(1)
                .with_priority(1)
                .mount(&server),
        );
        rt.block_on(
            imds()
                .respond_with(ResponseTemplate::new(429))
                .up_to_n_times(1)
                .with_priority(2)
                .mount(&server),
        );
        rt.block_on(
            imds()
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "imds-token", "expires_in": "86399", "expires_on": "4102444800"})))
                .with_priority(3)
                .mount(&server),
        );
        rt.block_on(vault_accepting("imds-token").expect(1).mount(&server));
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            CredentialSource::imds(&server.uri(), None).unwrap(),
            None,
        );
        signed(client.run(KEY, sign()), &format!("{backend:?}"));
        let token_requests = rt
            .block_on(server.received_requests())
            .unwrap()
            .iter()
            .filter(|r| r.url.path().contains("identity"))
            .count();
        assert_eq!(token_requests, 3, "{backend:?}");
        rt.block_on(server.verify());
    }
}

/// A fake `az` that records its arguments and prints what the test wants.
fn fake_az(dir: &Path, script_body: &str) -> PathBuf {
    let az = dir.join("az");
    std::fs::write(
        &az,
        format!(
            "#!/bin/sh\necho \"$@\" > \"{}/args\"\n{script_body}\n",
            dir.display()
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&az).unwrap().permissions(),
        0o755,
    );
    let mut perms = std::fs::metadata(&az).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&az, perms).unwrap();
    az
}

#[test]
fn azure_cli_success_failure_and_timeout() {
    let rt = runtime();
    let dir = TempDir::new("fake-az");
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    for backend in BACKENDS {
        let server = rt.block_on(MockServer::start());
        rt.block_on(vault_accepting("cli-token").mount(&server));
        let cli = |script: &str, timeout: Duration| CredentialSource::AzureCli {
            program: fake_az(dir.path(), script).display().to_string(),
            tenant: Some("tenant-9".into()),
            timeout,
        };
        let ok = cli(
            &format!(
                r#"echo '{{"accessToken":"cli-token","expiresOn":"2030-01-02 03:04:05.000000","expires_on":{expires},"tokenType":"Bearer"}}'"#
            ),
            Duration::from_secs(10),
        );
        let client = Client::new(backend, &server.uri(), OperationConfig::default(), ok, None);
        signed(client.run(KEY, sign()), &format!("{backend:?}"));
        let args = std::fs::read_to_string(dir.path().join("args")).unwrap();
        assert_eq!(
            args.trim(),
            "account get-access-token --output json --resource https://vault.azure.net --tenant tenant-9"
        );

        let failing = cli(
            "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1",
            Duration::from_secs(10),
        );
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            failing,
            None,
        );
        let e = client.run(KEY, sign()).unwrap_err().to_string();
        assert!(
            e.contains("Azure CLI") && e.contains("Please run 'az login'"),
            "{backend:?}: {e}"
        );

        let hanging = cli("sleep 30", Duration::from_millis(300));
        let client = Client::new(
            backend,
            &server.uri(),
            OperationConfig::default(),
            hanging,
            None,
        );
        let started = std::time::Instant::now();
        let e = client.run(KEY, sign()).unwrap_err().to_string();
        assert!(e.contains("did not finish"), "{backend:?}: {e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn ten_thousand_operations_fetch_one_token() {
    let dir = TempDir::new("ten-thousand");
    let mut config = EmulatorConfig::new(dir.path());
    config.keys.push(("p256".into(), "p256".parse().unwrap()));
    config.cache_signatures = true;
    let emulator = Emulator::start(config).unwrap();
    let source = CredentialSource::imds(&emulator.base_url(), None).unwrap();
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), b"same digest")
        .unwrap()
        .to_vec();
    // Blocking backend: 8 threads share one client, 1,250 signatures each.
    let client = Arc::new(Client::new(
        akv_tests::backends::Backend::Ureq,
        &emulator.base_url(),
        OperationConfig::default(),
        source.clone(),
        emulator.ca_cert(),
    ));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            let digest = digest.clone();
            std::thread::spawn(move || {
                for _ in 0..1250 {
                    client
                        .run(
                            "vault:myvault:p256",
                            KeyCall::Sign {
                                alg: SignAlgorithm::ES256,
                                digest: digest.clone(),
                            },
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = emulator.stats();
    assert_eq!(stats.route("sign"), 10_000);
    assert_eq!(
        stats.token_requests, 1,
        "one token for 10,000 operations from 8 threads: {stats:?}"
    );
    assert!(
        stats.connections <= 8,
        "at most one connection per thread: {stats:?}"
    );
}

/// A token source that issues 2-second tokens (less than the 5 s send margin): every
/// operation succeeds on both backends, each new operation getting a fresh token, and every
/// signature verifies with the vault key's public key.
#[test]
fn two_second_tokens_serve_every_operation() {
    let dir = TempDir::new("short-tokens");
    let mut config = EmulatorConfig::new(dir.path());
    config.keys.push(("p256".into(), "p256".parse().unwrap()));
    config.token_lifetime = Duration::from_secs(2);
    let emulator = Emulator::start(config).unwrap();
    let public = openssl::pkey::PKey::public_key_from_pem(
        &std::fs::read(emulator.public_key_pem("p256")).unwrap(),
    )
    .unwrap();
    let digest = openssl::hash::hash(openssl::hash::MessageDigest::sha256(), b"short")
        .unwrap()
        .to_vec();
    for backend in BACKENDS {
        let source = CredentialSource::imds(&emulator.base_url(), None).unwrap();
        let client = Client::new(
            backend,
            &emulator.base_url(),
            OperationConfig::default(),
            source,
            emulator.ca_cert(),
        );
        let before = emulator.stats().token_requests;
        for i in 0..6 {
            let out = client.run(
                "vault:myvault:p256",
                KeyCall::Sign {
                    alg: SignAlgorithm::ES256,
                    digest: digest.clone(),
                },
            );
            let raw = out
                .unwrap_or_else(|e| panic!("{backend:?}: operation {i}: {e}"))
                .into_value()
                .unwrap();
            let der = akv_proto::ecdsa_raw_to_der(akv_proto::Curve::P256, &raw).unwrap();
            let mut verifier = openssl::pkey_ctx::PkeyCtx::new(&public).unwrap();
            verifier.verify_init().unwrap();
            assert!(verifier.verify(&digest, &der).unwrap(), "{backend:?}: {i}");
            std::thread::sleep(Duration::from_millis(700));
        }
        let fetched = emulator.stats().token_requests - before;
        assert!(
            fetched >= 2,
            "{backend:?}: tokens are refreshed as they age: {fetched}"
        );
    }
}
