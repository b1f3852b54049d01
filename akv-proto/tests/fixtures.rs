//! Every Key Vault response in `tests/fixtures` (real recordings and REST-spec examples,
//! copied from `../shared/fixtures`) goes through our parsers.

use std::path::{Path, PathBuf};

use akv_proto::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn policy() -> EndpointPolicy {
    EndpointPolicy::new(Cloud::Public)
}

/// Parses one recorded response the way the driver would, by the operation in its URL.
fn check_recorded(method: &str, url: &str, status: u16, body: &str, headers: &serde_json::Value) {
    let path = url.split('?').next().unwrap();
    let mut response = http::Response::builder().status(status);
    if let Some(id) = headers.get("x-ms-request-id").and_then(|v| v.as_str()) {
        response = response.header("x-ms-request-id", id);
    }
    let response = response.body(body.as_bytes().to_vec()).unwrap();
    if status >= 400 {
        let e = ServiceError::from_response(&response);
        assert!(e.code.is_some(), "{url}: {e}");
        assert!(e.request_id.is_some(), "{url}: {e}");
        return;
    }
    let op = path.rsplit('/').next().unwrap();
    match (method, op) {
        (_, "sign" | "encrypt" | "decrypt" | "wrapKey" | "unwrapKey") => {
            let r =
                KeyOpResult::from_json(body.as_bytes()).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!r.value.is_empty());
            // The kid in the answer names the same key, so a pinned KeyId can be derived.
            let key = KeyId::parse(path.rsplitn(3, '/').nth(2).unwrap(), &policy()).unwrap();
            key.pinned_from_kid(r.kid.as_deref().unwrap()).unwrap();
            if op == "sign" && path.contains("ES256") {
                assert_eq!(r.value.len(), 64, "ES256/ES256K signatures are raw r||s");
                let der = ecdsa_raw_to_der(Curve::P256, &r.value).unwrap();
                assert_eq!(ecdsa_der_to_raw(Curve::P256, &der).unwrap(), r.value);
            }
        }
        (_, "verify") => assert!(parse_verify_result(body.as_bytes()).unwrap()),
        _ => {
            let bundle =
                KeyBundle::from_json(body.as_bytes()).unwrap_or_else(|e| panic!("{url}: {e}"));
            match &bundle.public_key {
                PublicKey::Rsa { .. } => assert!(bundle.public_key.rsa_bits().unwrap() >= 2048),
                PublicKey::Ec { curve, x, y } => {
                    assert_eq!(x.len(), curve.field_len());
                    assert_eq!(y.len(), curve.field_len());
                }
                PublicKey::Unsupported { reason } => panic!("{url}: {reason}"),
            }
            assert!(bundle.kty.starts_with("RSA") || bundle.kty.starts_with("EC"));
            if url.contains(".managedhsm.") {
                assert!(bundle.kty.ends_with("-HSM"), "{url}");
            }
            let key_path = path.strip_suffix("/create").unwrap_or(path);
            let key = KeyId::parse(key_path, &policy()).unwrap();
            let pinned = key.pinned_from_kid(&bundle.kid).unwrap();
            assert!(pinned.version().is_some());
        }
    }
}

#[test]
fn recorded_real_service_traffic_parses() {
    let mut seen = 0;
    for file in json_files(&fixtures().join("keyvault/recorded/cpp-sdk-7.3")) {
        let doc = read_json(&file);
        for record in doc["networkCallRecords"].as_array().unwrap() {
            let response = &record["Response"];
            let status: u16 = response["STATUS_CODE"].as_str().unwrap().parse().unwrap();
            check_recorded(
                record["Method"].as_str().unwrap(),
                record["Url"].as_str().unwrap(),
                status,
                response["BODY"].as_str().unwrap(),
                response,
            );
            seen += 1;
        }
    }
    assert!(seen >= 40, "only {seen} records");
}

#[test]
fn spec_examples_parse() {
    for file in json_files(&fixtures().join("keyvault/spec-examples")) {
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let doc = read_json(&file);
        let body = serde_json::to_vec(&doc["responses"]["200"]["body"]).unwrap();
        if name.contains("GetKey") {
            let b = KeyBundle::from_json(&body).unwrap();
            assert_eq!(b.public_key.rsa_bits(), Some(2048));
            assert!(b.allows("sign"));
            assert_eq!(b.attributes.enabled, Some(true));
        } else if name.contains("verify") {
            assert!(parse_verify_result(&body).unwrap());
        } else {
            // wrapKey-example uses the standard base64 alphabet; we accept it.
            let r = KeyOpResult::from_json(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!r.value.is_empty(), "{name}");
        }
    }
}

#[test]
fn managed_hsm_bundles_in_alphabetical_order_parse() {
    let doc = read_json(
        &fixtures().join("keyvault/recorded/cpp-sdk-7.3/KeyVaultKeyClient.CreateRsaHsmKey.json"),
    );
    let body = doc["networkCallRecords"][1]["Response"]["BODY"]
        .as_str()
        .unwrap();
    assert!(body.starts_with("{\"attributes\""));
    let b = KeyBundle::from_json(body.as_bytes()).unwrap();
    assert_eq!(b.kty, "RSA-HSM");
}

#[test]
fn error_bodies_keep_code_message_and_inner_code() {
    let doc = read_json(&fixtures().join("errors/error-bodies.json"));
    let mut checked = 0;
    for sample in doc["samples"].as_array().unwrap() {
        let status = sample["status"].as_u64().unwrap() as u16;
        let Some(body) = sample
            .get("body")
            .or_else(|| sample.get("body_reconstructed"))
            .and_then(|b| b.as_str())
        else {
            continue;
        };
        let response = http::Response::builder()
            .status(status)
            .header("x-ms-request-id", "00000000-0000-0000-0000-000000000001")
            .body(body.as_bytes().to_vec())
            .unwrap();
        let e = ServiceError::from_response(&response);
        let text = e.to_string();
        assert!(text.contains(&status.to_string()), "{text}");
        assert!(text.contains("x-ms-request-id 00000000-0000-0000-0000-000000000001"));
        assert!(!text.contains('\r') && !text.contains('\n'), "{text:?}");
        if body.is_empty() {
            assert_eq!(e.code, None);
        } else {
            let code = e.code.as_deref().unwrap();
            let want = serde_json::from_str::<serde_json::Value>(body).unwrap()["error"]["code"]
                .as_str()
                .unwrap()
                .to_owned();
            assert_eq!(code, want);
            assert!(e.message.is_some());
        }
        if status == 403 {
            assert_eq!(e.inner_code.as_deref(), Some("ForbiddenByRbac"), "{text}");
        }
        checked += 1;
    }
    assert!(checked >= 7);
}

/// Real `GET /certificates/...` responses parse: the certificate, its key's id and the
/// attributes, with the service's JSON escapes in the base64.
#[test]
fn recorded_certificate_bundles() {
    for path in json_files(&fixtures().join("certificates")) {
        let body = std::fs::read(&path).unwrap();
        let c = CertificateBundle::from_json(&body).unwrap();
        let raw = read_json(&path);
        assert_eq!(c.id, raw["id"].as_str().unwrap());
        assert_eq!(c.kid.as_deref(), raw["kid"].as_str());
        // A DER SEQUENCE whose length header covers exactly the bytes decoded.
        assert_eq!(&c.der[..2], &[0x30, 0x82]);
        assert_eq!(
            c.der.len(),
            4 + u16::from_be_bytes([c.der[2], c.der[3]]) as usize
        );
        assert_eq!(c.attributes.enabled, Some(true));
        assert!(c.attributes.expires.is_some());
        // The key id names the same name and version as the certificate id.
        let tail = |url: &str, kind: &str| url.split_once(kind).unwrap().1.to_string();
        assert_eq!(
            tail(&c.id, "/certificates/"),
            tail(c.kid.as_deref().unwrap(), "/keys/")
        );
    }
}
