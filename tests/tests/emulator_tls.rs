//! Both backends, over real TLS to the emulator, sign with every key type and decrypt with
//! every RSA padding; each signature is verified and each ciphertext made with plain OpenSSL
//! and the public key the emulator exported.

use std::sync::Arc;
use std::time::Duration;

use akv_proto::credential::CredentialSource;
use akv_proto::{
    Cloud, Curve, EncryptAlgorithm, EndpointPolicy, KeyCall, KeyId, OperationConfig, PublicKey,
    SignAlgorithm,
};
use akv_tests::emulator::{Emulator, EmulatorConfig};
use akv_tests::support::{TempDir, digest_for, public_key};
use openssl::hash::hash;
use openssl::md::Md;
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sign::RsaPssSaltlen;

const RSA_KEYS: [&str; 3] = ["rsa2048", "rsa3072", "rsa4096"];
const EC_KEYS: [(&str, Curve); 4] = [
    ("p256", Curve::P256),
    ("p384", Curve::P384),
    ("p521", Curve::P521),
    ("p256k", Curve::P256K),
];
const RSA_SIGN: [SignAlgorithm; 6] = [
    SignAlgorithm::RS256,
    SignAlgorithm::RS384,
    SignAlgorithm::RS512,
    SignAlgorithm::PS256,
    SignAlgorithm::PS384,
    SignAlgorithm::PS512,
];
const RSA_ENCRYPT: [EncryptAlgorithm; 3] = [
    EncryptAlgorithm::Rsa1_5,
    EncryptAlgorithm::RsaOaep,
    EncryptAlgorithm::RsaOaep256,
];

fn policy(emulator: &Emulator) -> EndpointPolicy {
    EndpointPolicy::new(Cloud::Public)
        .allow_host(&emulator.host_port())
        .unwrap()
        .with_endpoint_override(&emulator.base_url())
        .unwrap()
}

fn key(emulator: &Emulator, name: &str) -> KeyId {
    KeyId::parse(&format!("vault:myvault:{name}"), &policy(emulator)).unwrap()
}

fn credential(emulator: &Emulator) -> CredentialSource {
    CredentialSource::imds(&emulator.base_url(), None).unwrap()
}

/// Checks a signature made remotely with OpenSSL and the exported public key.
fn verify_locally(
    emulator: &Emulator,
    name: &str,
    alg: SignAlgorithm,
    digest: &[u8],
    signature: &[u8],
) {
    let pkey = public_key(&emulator.public_key_pem(name));
    let mut ctx = PkeyCtx::new(&pkey).unwrap();
    ctx.verify_init().unwrap();
    let md = match digest.len() {
        32 => Md::sha256(),
        48 => Md::sha384(),
        _ => Md::sha512(),
    };
    let der;
    let signature = match alg.as_str() {
        a if a.starts_with("RS") => {
            ctx.set_rsa_padding(Padding::PKCS1).unwrap();
            ctx.set_signature_md(md).unwrap();
            signature
        }
        a if a.starts_with("PS") => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
            ctx.set_signature_md(md).unwrap();
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)
                .unwrap();
            ctx.set_rsa_mgf1_md(md).unwrap();
            signature
        }
        _ => {
            let curve = EC_KEYS.iter().find(|(n, _)| *n == name).unwrap().1;
            der = akv_proto::ecdsa_raw_to_der(curve, signature).unwrap();
            &der
        }
    };
    assert!(
        ctx.verify(digest, signature).unwrap_or(false),
        "{name} {}: signature does not verify",
        alg.as_str()
    );
}

fn encrypt_locally(
    emulator: &Emulator,
    name: &str,
    alg: EncryptAlgorithm,
    plaintext: &[u8],
) -> Vec<u8> {
    let pkey = public_key(&emulator.public_key_pem(name));
    let mut ctx = PkeyCtx::new(&pkey).unwrap();
    ctx.encrypt_init().unwrap();
    match alg {
        EncryptAlgorithm::Rsa1_5 => ctx.set_rsa_padding(Padding::PKCS1).unwrap(),
        EncryptAlgorithm::RsaOaep => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
            ctx.set_rsa_oaep_md(Md::sha1()).unwrap();
        }
        EncryptAlgorithm::RsaOaep256 => {
            ctx.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
            ctx.set_rsa_oaep_md(Md::sha256()).unwrap();
            ctx.set_rsa_mgf1_md(Md::sha256()).unwrap();
        }
    }
    let mut out = Vec::new();
    ctx.encrypt_to_vec(plaintext, &mut out).unwrap();
    out
}

/// The JWK the client received is the key the emulator exported.
fn check_public_key(emulator: &Emulator, name: &str, jwk: &PublicKey) {
    let pem = public_key(&emulator.public_key_pem(name));
    match jwk {
        PublicKey::Rsa { n, e } => {
            let rsa = pem.rsa().unwrap();
            assert_eq!((&rsa.n().to_vec(), &rsa.e().to_vec()), (n, e));
        }
        PublicKey::Ec { x, .. } => {
            let ec = pem.ec_key().unwrap();
            let mut ctx = openssl::bn::BigNumContext::new().unwrap();
            let mut bx = openssl::bn::BigNum::new().unwrap();
            let mut by = openssl::bn::BigNum::new().unwrap();
            ec.public_key()
                .affine_coordinates(ec.group(), &mut bx, &mut by, &mut ctx)
                .unwrap();
            assert_eq!(&bx.to_vec_padded(x.len() as i32).unwrap(), x);
        }
        PublicKey::Unsupported { reason } => panic!("{name}: {reason}"),
    }
}

fn start() -> (TempDir, Emulator) {
    let dir = TempDir::new("emulator-tls");
    let emulator = Emulator::start(EmulatorConfig::new(dir.path()).with_all_key_types()).unwrap();
    assert!(emulator.base_url().starts_with("https://127.0.0.1:"));
    (dir, emulator)
}

#[test]
fn blocking_backend_signs_and_decrypts_with_every_key_over_https() {
    let (_dir, emulator) = start();
    let transport = akv_http_ureq::Transport::new(&akv_http_ureq::TransportConfig {
        extra_ca_file: emulator.ca_cert().map(Into::into),
        platform_roots: false,
        proxy: akv_http_ureq::ProxySetting::Direct,
        ..Default::default()
    })
    .unwrap();
    let tokens = Arc::new(akv_http_ureq::TokenProvider::new(
        credential(&emulator),
        Duration::from_secs(10),
    ));
    let client = akv_http_ureq::KeyClient::new(transport, tokens, OperationConfig::default());
    let mut operations = 0;
    for (name, _) in EC_KEYS {
        let k = key(&emulator, name);
        let bundle = client.get_key(&k).unwrap();
        check_public_key(&emulator, name, &bundle.public_key);
        let k = k.pinned_from_kid(&bundle.kid).unwrap();
        let PublicKey::Ec { curve, .. } = bundle.public_key else {
            panic!()
        };
        let hashed = hash(digest_for(48), b"hello").unwrap();
        let (alg, digest) = akv_proto::ecdsa_sign(curve, &hashed).unwrap();
        let signature = client.sign(&k, alg, &digest).unwrap();
        verify_locally(&emulator, name, alg, &digest, &signature);
        assert!(
            client
                .call(&k, KeyCall::verify(alg, &digest, &signature))
                .unwrap()
        );
        operations += 4;
    }
    for name in RSA_KEYS {
        let k = key(&emulator, name);
        let bundle = client.get_key(&k).unwrap();
        check_public_key(&emulator, name, &bundle.public_key);
        let k = k.pinned_from_kid(&bundle.kid).unwrap();
        for alg in RSA_SIGN {
            let digest = hash(digest_for(alg.digest_len()), b"hello").unwrap();
            let signature = client.sign(&k, alg, &digest).unwrap();
            verify_locally(&emulator, name, alg, &digest, &signature);
        }
        for alg in RSA_ENCRYPT {
            let ciphertext = encrypt_locally(&emulator, name, alg, b"a secret");
            assert_eq!(client.decrypt(&k, alg, &ciphertext).unwrap(), b"a secret");
            let wrapped = encrypt_locally(&emulator, name, alg, &[7u8; 32]);
            assert_eq!(
                client.call(&k, KeyCall::unwrap_key(alg, &wrapped)).unwrap(),
                [7u8; 32]
            );
        }
        operations += 1 + 6 + 6;
    }
    let stats = emulator.stats();
    assert_eq!(
        stats.token_requests, 1,
        "one token for all {operations} operations"
    );
    assert_eq!(stats.connections, 1, "one kept-alive connection: {stats:?}");
    assert_eq!(stats.route("sign"), 4 + 18);
}

#[test]
fn async_backend_signs_and_decrypts_with_every_key_over_https() {
    let (_dir, emulator) = start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let transport = akv_http_hyper::Transport::new(&akv_http_hyper::TransportConfig {
            extra_ca_file: emulator.ca_cert().map(Into::into),
            platform_roots: false,
            proxy: akv_http_hyper::ProxySetting::Direct,
            ..Default::default()
        })
        .unwrap();
        let tokens = Arc::new(akv_http_hyper::TokenProvider::new(
            credential(&emulator),
            Duration::from_secs(10),
        ));
        let client = akv_http_hyper::KeyClient::new(transport, tokens, OperationConfig::default());
        for (name, _) in EC_KEYS {
            let k = key(&emulator, name);
            let bundle = client.get_key(&k).await.unwrap();
            check_public_key(&emulator, name, &bundle.public_key);
            let PublicKey::Ec { curve, .. } = bundle.public_key else {
                panic!()
            };
            let hashed = hash(digest_for(32), b"hello").unwrap();
            let (alg, digest) = akv_proto::ecdsa_sign(curve, &hashed).unwrap();
            let signature = client.sign(&k, alg, &digest).await.unwrap();
            verify_locally(&emulator, name, alg, &digest, &signature);
        }
        for name in RSA_KEYS {
            let k = key(&emulator, name);
            let bundle = client.get_key(&k).await.unwrap();
            check_public_key(&emulator, name, &bundle.public_key);
            for alg in RSA_SIGN {
                let digest = hash(digest_for(alg.digest_len()), b"hello").unwrap();
                let signature = client.sign(&k, alg, &digest).await.unwrap();
                verify_locally(&emulator, name, alg, &digest, &signature);
            }
            for alg in RSA_ENCRYPT {
                let ciphertext = encrypt_locally(&emulator, name, alg, b"a secret");
                assert_eq!(
                    client.decrypt(&k, alg, &ciphertext).await.unwrap(),
                    b"a secret"
                );
            }
        }
    });
    let stats = emulator.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.connections, 1, "one kept-alive connection: {stats:?}");
}

#[test]
fn keys_and_tls_material_survive_a_restart() {
    let dir = TempDir::new("emulator-restart");
    let config = EmulatorConfig::new(dir.path()).with_all_key_types();
    let first = Emulator::start(config.clone()).unwrap();
    let version = first.latest_version("p256").unwrap();
    let ca = std::fs::read(first.ca_cert().unwrap()).unwrap();
    let public = std::fs::read(first.public_key_pem("rsa2048")).unwrap();
    first.stop();
    let second = Emulator::start(config).unwrap();
    assert_eq!(second.latest_version("p256").unwrap(), version);
    assert_eq!(std::fs::read(second.ca_cert().unwrap()).unwrap(), ca);
    assert_eq!(
        std::fs::read(second.public_key_pem("rsa2048")).unwrap(),
        public
    );
}

/// A minimal HTTP CONNECT proxy on loopback; returns its URL and the targets it tunnelled.
fn connect_proxy() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                if !text.starts_with("CONNECT ") || !target.starts_with("127.0.0.1:") {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n");
                    return;
                }
                log.lock().unwrap().push(target.clone());
                let Ok(upstream) = std::net::TcpStream::connect(&target) else {
                    return;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                let (mut c1, mut u1) = (client, upstream);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut u1, &mut c1);
                let _ = c1.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, seen)
}

#[test]
fn both_backends_go_through_an_https_proxy() {
    let dir = TempDir::new("emulator-proxy");
    let mut config = EmulatorConfig::new(dir.path());
    config.keys.push(("p256".into(), "p256".parse().unwrap()));
    let emulator = Emulator::start(config).unwrap();
    let (proxy, seen) = connect_proxy();
    let digest = hash(digest_for(32), b"through the proxy").unwrap().to_vec();
    let k = key(&emulator, "p256");
    let ureq = akv_http_ureq::KeyClient::new(
        akv_http_ureq::Transport::new(&akv_http_ureq::TransportConfig {
            extra_ca_file: emulator.ca_cert().map(Into::into),
            platform_roots: false,
            proxy: akv_http_ureq::ProxySetting::Url(proxy.clone()),
            ..Default::default()
        })
        .unwrap(),
        Arc::new(akv_http_ureq::TokenProvider::new(
            credential(&emulator),
            Duration::from_secs(10),
        )),
        OperationConfig::default(),
    );
    let signature = ureq.sign(&k, SignAlgorithm::ES256, &digest).unwrap();
    verify_locally(&emulator, "p256", SignAlgorithm::ES256, &digest, &signature);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let hyper = akv_http_hyper::KeyClient::new(
            akv_http_hyper::Transport::new(&akv_http_hyper::TransportConfig {
                extra_ca_file: emulator.ca_cert().map(Into::into),
                platform_roots: false,
                proxy: akv_http_hyper::ProxySetting::Url(proxy.clone()),
                ..Default::default()
            })
            .unwrap(),
            Arc::new(akv_http_hyper::TokenProvider::new(
                credential(&emulator),
                Duration::from_secs(10),
            )),
            OperationConfig::default(),
        );
        let signature = hyper.sign(&k, SignAlgorithm::ES256, &digest).await.unwrap();
        verify_locally(&emulator, "p256", SignAlgorithm::ES256, &digest, &signature);
    });
    let tunnels = seen.lock().unwrap().clone();
    let target = emulator.host_port();
    assert!(
        tunnels.len() >= 2 && tunnels.iter().all(|t| *t == target),
        "both backends tunnelled to the vault: {tunnels:?}"
    );
    assert_eq!(emulator.stats().route("sign"), 2);
}
