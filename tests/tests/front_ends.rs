//! End-to-end cases run once for each front end ([`FrontEnd::all`]): the engine on OpenSSL
//! 3.0, the provider on OpenSSL 3.0 and on OpenSSL 4.0.3. What one front end promises, all
//! do, with the same words in their errors. Every signature is verified by the system's
//! plain OpenSSL with the public key the emulator exported. The version matrix
//! ([`FrontEnd::matrix`], which adds the engine and the provider on OpenSSL 3.5 LTS) runs a
//! representative part: signatures with each key type and padding, decryption, certificates,
//! TLS handshakes.

use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Output, Stdio};

use akv_tests::emulator::{Fault, Faults};
use akv_tests::frontends::{FrontEnd, s_client};
use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, compile_c_against, free_port, provider_dir, strings};

const ALL_KEYS: [(&str, &str); 7] = [
    ("rsa2048", "rsa2048"),
    ("rsa3072", "rsa3072"),
    ("rsa4096", "rsa4096"),
    ("p256", "p256"),
    ("p384", "p384"),
    ("p521", "p521"),
    ("p256k", "p256k"),
];

fn lab() -> &'static Lab {
    Lab::shared("front-ends", &ALL_KEYS)
}

/// A lab of its own, for tests that change faults, settings or key state, or read counters.
fn private_lab(name: &str, fe: &FrontEnd) -> (TempDir, Lab) {
    let dir = TempDir::new(&format!("{name}-{}", fe.tag()));
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |_| {},
    );
    (dir, lab)
}

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

/// Runs `openssl COMMAND ARGS` through the front end and insists it succeeds.
fn ok(fe: &FrontEnd, lab: &Lab, command: &str, args: &[String]) -> Output {
    let out = fe.run(lab, command, args);
    assert!(
        out.status.success(),
        "{}: openssl {command} {} failed:\n{}",
        fe.name(),
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `pkeyutl -sign` through the front end, `pkeyutl -verify` with plain OpenSSL.
fn sign_and_verify(fe: &FrontEnd, lab: &Lab, name: &str, md: &str, opts: &[&str]) {
    let tag = format!("{}-{name}-{md}-{}", fe.tag(), opts.len());
    let dgst = lab.digest_file(&tag, md);
    let sig = lab.path(&format!("{tag}.sig"));
    let digest_opt = format!("digest:{md}");
    let mut pkeyopts: Vec<&str> = Vec::new();
    if name.starts_with("rsa") {
        pkeyopts.push(&digest_opt);
    }
    pkeyopts.extend(opts);
    let mut args = strings(&["-sign", "-in", &dgst, "-out", &sig]);
    args.extend(fe.key_args("-keyform", "-inkey", &key(name)));
    for o in &pkeyopts {
        args.extend(strings(&["-pkeyopt", o]));
    }
    ok(fe, lab, "pkeyutl", &args);
    let public = lab.public_pem(name);
    let mut verify = vec![
        "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
    ];
    for o in &pkeyopts {
        verify.extend(["-pkeyopt", o]);
    }
    let out = lab.ok(&verify);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"),
        "{tag}"
    );
}

#[test]
fn pkeyutl_pkcs1_signatures_verify() {
    let lab = lab();
    for fe in FrontEnd::matrix() {
        for name in ["rsa2048", "rsa3072", "rsa4096"] {
            for md in ["sha256", "sha384", "sha512"] {
                sign_and_verify(&fe, lab, name, md, &[]);
            }
        }
    }
}

#[test]
fn pkeyutl_pss_signatures_verify() {
    let lab = lab();
    for fe in FrontEnd::matrix() {
        for md in ["sha256", "sha384", "sha512"] {
            let opts = ["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"];
            sign_and_verify(&fe, lab, "rsa2048", md, &opts);
        }
        // "-1" is OpenSSL's spelling of "digest".
        let opts = ["rsa_padding_mode:pss", "rsa_pss_saltlen:-1"];
        sign_and_verify(&fe, lab, "rsa3072", "sha256", &opts);
    }
}

#[test]
fn pkeyutl_ecdsa_signatures_verify_on_every_curve() {
    let lab = lab();
    for fe in FrontEnd::matrix() {
        for (name, md) in [
            ("p256", "sha256"),
            ("p256", "sha384"),
            ("p384", "sha384"),
            ("p384", "sha256"),
            ("p521", "sha512"),
            ("p256k", "sha256"),
        ] {
            sign_and_verify(&fe, lab, name, md, &[]);
        }
    }
}

#[test]
fn pss_with_another_salt_length_is_refused_clearly() {
    let lab = lab();
    let dgst = lab.digest_file("pss-max", "sha256");
    for fe in FrontEnd::all() {
        let mut args = strings(&["-sign", "-in", &dgst, "-out", &lab.path("x.sig")]);
        args.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
        for o in [
            "digest:sha256",
            "rsa_padding_mode:pss",
            "rsa_pss_saltlen:max",
        ] {
            args.extend(strings(&["-pkeyopt", o]));
        }
        let err = fe.fails(lab, "pkeyutl", &args);
        assert!(
            err.contains("operation not possible with a Key Vault key") && err.contains("salt"),
            "{}: {err}",
            fe.name()
        );
    }
}

#[test]
fn dgst_sign_sha384() {
    let lab = lab();
    let msg = lab.write("dgst.msg", b"dgst message");
    for fe in FrontEnd::all() {
        for name in ["rsa2048", "p384", "p521"] {
            let sig = lab.path(&format!("dgst-{}-{name}.sig", fe.tag()));
            let mut args = strings(&["-sha384", "-out", &sig]);
            args.extend(fe.key_args("-keyform", "-sign", &key(name)));
            args.push(msg.clone());
            ok(&fe, lab, "dgst", &args);
            let public = lab.public_pem(name);
            let out = lab.ok(&[
                "dgst",
                "-sha384",
                "-verify",
                &public,
                "-signature",
                &sig,
                &msg,
            ]);
            assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
        }
    }
}

/// A self-signed CA certificate for a vault key. The extensions are explicit: the OpenSSL 4
/// build has an empty openssl.cnf, so `req` adds none itself.
fn self_signed(fe: &FrontEnd, lab: &Lab, name: &str, extra: &[&str]) -> String {
    let crt = lab.path(&format!("{}-{name}-{}.crt", fe.tag(), extra.len()));
    let mut args = strings(&[
        "-new",
        "-x509",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}.test"),
    ]);
    args.extend(strings(&[
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
        "-addext",
        "subjectAltName=DNS:localhost",
        "-out",
        &crt,
    ]));
    args.extend(fe.key_args("-keyform", "-key", &key(name)));
    args.extend(strings(extra));
    ok(fe, lab, "req", &args);
    crt
}

#[test]
fn self_signed_certificates_requests_and_a_vault_ca() {
    let lab = lab();
    for fe in FrontEnd::matrix() {
        for (name, extra, algorithm) in [
            ("rsa2048", vec!["-sha256"], "sha256WithRSAEncryption"),
            (
                "rsa3072",
                vec![
                    "-sha384",
                    "-sigopt",
                    "rsa_padding_mode:pss",
                    "-sigopt",
                    "rsa_pss_saltlen:digest",
                ],
                "rsassaPss",
            ),
            ("p256", vec!["-sha256"], "ecdsa-with-SHA256"),
            ("p384", vec!["-sha384"], "ecdsa-with-SHA384"),
        ] {
            let crt = self_signed(&fe, lab, name, &extra);
            let out = lab.ok(&["verify", "-check_ss_sig", "-CAfile", &crt, &crt]);
            assert!(
                String::from_utf8_lossy(&out.stdout).contains(": OK"),
                "{name}"
            );
            // The certificate carries the vault key's public half and says how it is signed.
            let cert_key = lab.ok(&["x509", "-in", &crt, "-noout", "-pubkey"]).stdout;
            assert_eq!(
                cert_key,
                std::fs::read(lab.public_pem(name)).unwrap(),
                "{name}"
            );
            let text = lab.ok(&["x509", "-in", &crt, "-noout", "-text"]).stdout;
            assert!(
                String::from_utf8_lossy(&text).contains(algorithm),
                "{}: {name} is not {algorithm}",
                fe.name()
            );
        }
        // A request made with a vault key carries a valid self-signature.
        let csr = lab.path(&format!("{}-p256.csr", fe.tag()));
        let mut args = strings(&["-new", "-subj", "/CN=csr.test", "-out", &csr]);
        args.extend(fe.key_args("-keyform", "-key", &key("p256")));
        ok(&fe, lab, "req", &args);
        let out = lab.ok(&["req", "-in", &csr, "-verify", "-noout"]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(said.contains("verify OK"), "{}: {said}", fe.name());
        // A vault CA key signs a request for a local key.
        let ca = self_signed(&fe, lab, "p384", &["-sha384"]);
        let tag = fe.tag();
        let (leaf_key, leaf_csr, leaf) = (
            lab.path(&format!("{tag}-leaf.key")),
            lab.path(&format!("{tag}-leaf.csr")),
            lab.path(&format!("{tag}-leaf.crt")),
        );
        lab.ok(&[
            "genpkey",
            "-algorithm",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &leaf_key,
        ]);
        lab.ok(&[
            "req", "-new", "-key", &leaf_key, "-subj", "/CN=leaf", "-out", &leaf_csr,
        ]);
        let serial = lab.path(&format!("{tag}-ca.srl"));
        let mut args = strings(&[
            "-req",
            "-in",
            &leaf_csr,
            "-CA",
            &ca,
            "-CAserial",
            &serial,
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &leaf,
        ]);
        args.extend(fe.key_args("-CAkeyform", "-CAkey", &key("p384")));
        ok(&fe, lab, "x509", &args);
        let out = lab.ok(&["verify", "-CAfile", &ca, &leaf]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{}",
            fe.name()
        );
    }
}

#[test]
fn public_key_export_matches_the_vault() {
    let lab = lab();
    for fe in FrontEnd::all() {
        for name in ["rsa4096", "p521"] {
            let mut args = strings(&["-pubout"]);
            args.extend(fe.key_args("-inform", "-in", &key(name)));
            let out = ok(&fe, lab, "pkey", &args);
            assert_eq!(
                out.stdout,
                std::fs::read(lab.public_pem(name)).unwrap(),
                "{}: {name}",
                fe.name()
            );
        }
    }
}

#[test]
fn decrypt_round_trips_with_every_padding() {
    let lab = lab();
    let plain = lab.write("plain.txt", b"the secret of the day");
    let public = lab.public_pem("rsa2048");
    for fe in FrontEnd::matrix() {
        for (tag, opts) in [
            ("pkcs1", vec!["rsa_padding_mode:pkcs1"]),
            ("oaep", vec!["rsa_padding_mode:oaep"]),
            (
                "oaep256",
                vec![
                    "rsa_padding_mode:oaep",
                    "rsa_oaep_md:sha256",
                    "rsa_mgf1_md:sha256",
                ],
            ),
        ] {
            let ct = lab.path(&format!("{}-{tag}.ct", fe.tag()));
            let pt = lab.path(&format!("{}-{tag}.pt", fe.tag()));
            let mut enc = vec![
                "pkeyutl", "-encrypt", "-pubin", "-inkey", &public, "-in", &plain, "-out", &ct,
            ];
            let mut dec = strings(&["-decrypt", "-in", &ct, "-out", &pt]);
            dec.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
            for o in &opts {
                enc.extend(["-pkeyopt", o]);
                dec.extend(strings(&["-pkeyopt", o]));
            }
            lab.ok(&enc);
            ok(&fe, lab, "pkeyutl", &dec);
            assert_eq!(
                std::fs::read(&pt).unwrap(),
                b"the secret of the day",
                "{}: {tag}",
                fe.name()
            );
        }
        // OAEP with SHA-384, or with a label, is not something Key Vault does: a clear refusal.
        for (tag, opts, reason) in [
            (
                "oaep384",
                vec!["rsa_padding_mode:oaep", "rsa_oaep_md:sha384"],
                "OAEP with SHA-384",
            ),
            (
                "label",
                vec!["rsa_padding_mode:oaep", "rsa_oaep_label:0011"],
                "label",
            ),
        ] {
            let ct = lab.path(&format!("{}-{tag}.ct", fe.tag()));
            let mut enc = vec![
                "pkeyutl", "-encrypt", "-pubin", "-inkey", &public, "-in", &plain, "-out", &ct,
            ];
            let mut dec = strings(&["-decrypt", "-in", &ct]);
            dec.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
            for o in &opts {
                enc.extend(["-pkeyopt", o]);
                dec.extend(strings(&["-pkeyopt", o]));
            }
            lab.ok(&enc);
            let err = fe.fails(lab, "pkeyutl", &dec);
            assert!(err.contains(reason), "{}: {err}", fe.name());
        }
    }
}

#[test]
fn cms_sign_and_decrypt() {
    let lab = lab();
    let msg = lab.write("cms.txt", b"CMS content");
    for fe in FrontEnd::all() {
        let crt = self_signed(&fe, lab, "rsa2048", &["-sha256"]);
        let signed = lab.path(&format!("{}-cms.p7", fe.tag()));
        let mut args = strings(&[
            "-sign",
            "-nodetach",
            "-binary",
            "-signer",
            &crt,
            "-in",
            &msg,
            "-out",
            &signed,
            "-outform",
            "PEM",
        ]);
        args.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
        ok(&fe, lab, "cms", &args);
        let out = lab.ok(&[
            "cms", "-verify", "-CAfile", &crt, "-in", &signed, "-inform", "PEM",
        ]);
        assert_eq!(out.stdout, b"CMS content", "{}", fe.name());
        for keyopt in [None, Some("rsa_padding_mode:oaep")] {
            let enc = lab.path(&format!("{}-cms-enc.p7", fe.tag()));
            let mut args = vec![
                "cms", "-encrypt", "-binary", "-aes256", "-recip", &crt, "-in", &msg, "-out", &enc,
            ];
            if let Some(k) = keyopt {
                args.extend(["-keyopt", k]);
            }
            lab.ok(&args);
            let mut args = strings(&["-decrypt", "-recip", &crt, "-in", &enc]);
            args.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
            let out = ok(&fe, lab, "cms", &args);
            assert_eq!(out.stdout, b"CMS content", "{}: {keyopt:?}", fe.name());
        }
    }
}

/// Runs `s_server` with a key (a vault key through the front end, or a local file) and the
/// certificate `crt`.
fn s_server(
    fe: &FrontEnd,
    lab: &Lab,
    key_args: Vec<String>,
    crt: &str,
    port: u16,
) -> std::process::Child {
    let mut args = key_args;
    args.extend(strings(&["-cert", crt]));
    fe.s_server(lab, &args, port)
}

/// TLS handshakes with `s_server` serving a vault key, verified by `s_client`: every front
/// end, RSA and EC, TLS 1.3 and 1.2 (and PKCS#1 v1.5 in TLS 1.2). Also with `-async`, where
/// OpenSSL runs each handshake in an ASYNC job on a 32 KiB stack and the remote signature
/// moves off that stack while the job waits, paused. (s_server serves one connection at a
/// time, and its `-www` mode sleeps a second whenever a read must wait for a job: this
/// checks correctness; HAProxy shows the throughput.)
#[test]
fn tls_handshakes_with_s_server() {
    let lab = lab();
    for fe in FrontEnd::matrix() {
        for name in ["rsa2048", "p256"] {
            let crt = self_signed(&fe, lab, name, &["-sha256"]);
            for mode in [&[][..], &["-async"][..]] {
                let port = free_port();
                let mut key_args = fe.key_args("-keyform", "-key", &key(name));
                key_args.extend(strings(mode));
                let mut server = s_server(&fe, lab, key_args, &crt, port);
                let mut cases = vec![("-tls1_3", "TLSv1.3", None), ("-tls1_2", "TLSv1.2", None)];
                if name.starts_with("rsa") {
                    // PKCS#1 v1.5 in TLS 1.2.
                    cases.push(("-tls1_2", "TLSv1.2", Some("RSA+SHA256")));
                }
                for (version, proto, sigalgs) in cases {
                    let text = s_client(lab, port, version, &crt, sigalgs);
                    assert!(
                        text.contains("Verification: OK")
                            && text.contains(&format!("New, {proto}")),
                        "{}: {name} {mode:?} {version} {sigalgs:?}:\n{text}",
                        fe.name()
                    );
                }
                let alive = server.try_wait().unwrap().is_none();
                let _ = server.kill();
                let _ = server.wait();
                assert!(alive, "{}: s_server {mode:?} died", fe.name());
            }
        }
    }
}

/// Loading a front end must not change what happens to local keys: signatures with file
/// keys, and TLS 1.2 ECDHE-ECDSA with a file key (which broke on OpenSSL 3.0 when the akv
/// provider was listed before the default one).
#[test]
fn local_keys_keep_working_with_the_front_end_loaded() {
    let lab = lab();
    let key_file = lab.path("local-ec.key");
    let crt = lab.path("local-ec.crt");
    lab.ok(&[
        "genpkey",
        "-algorithm",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        &key_file,
    ]);
    lab.ok(&[
        "req",
        "-new",
        "-x509",
        "-key",
        &key_file,
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-out",
        &crt,
    ]);
    let public = lab.path("local-ec.pub");
    lab.ok(&["pkey", "-in", &key_file, "-pubout", "-out", &public]);
    for fe in FrontEnd::all() {
        let dgst = lab.digest_file(&format!("{}-local", fe.tag()), "sha256");
        let sig = lab.path(&format!("{}-local.sig", fe.tag()));
        ok(
            &fe,
            lab,
            "pkeyutl",
            &strings(&["-sign", "-inkey", &key_file, "-in", &dgst, "-out", &sig]),
        );
        lab.ok(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
        ]);
        let port = free_port();
        let mut server = s_server(&fe, lab, strings(&["-key", &key_file]), &crt, port);
        for (version, proto) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let text = s_client(lab, port, version, &crt, None);
            assert!(
                text.contains(&format!("New, {proto}")),
                "{}: {version}:\n{text}",
                fe.name()
            );
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[test]
fn pinned_versions_and_key_urls() {
    let lab = lab();
    let old = lab.emulator().latest_version("p384").unwrap();
    let dgst = lab.digest_file("pinned", "sha384");
    let url = format!("{}/keys/p384/{old}", lab.emulator().base_url());
    for fe in FrontEnd::all() {
        // The provider's store takes the key URL with an `akv:` prefix (`https:` is not a
        // scheme it may claim); the engine takes it bare.
        let url_form = |u: &str| match fe {
            FrontEnd::Engine(_) => u.to_string(),
            FrontEnd::Provider(_) => format!("akv:{u}"),
        };
        // A pinned version, and the key URL form on an allowed host (the endpoint's host is
        // allowed because the operator named it)...
        for (tag, k) in [
            ("pinned", format!("vault:myvault:p384:{old}")),
            ("url", url_form(&url)),
        ] {
            let sig = lab.path(&format!("{}-{tag}.sig", fe.tag()));
            let mut args = strings(&["-sign", "-in", &dgst, "-out", &sig]);
            args.extend(fe.key_args("-keyform", "-inkey", &k));
            ok(&fe, lab, "pkeyutl", &args);
            let public = lab.public_pem("p384");
            lab.ok(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
            ]);
        }
        // ...and any other host is refused before a request is made.
        let other = url_form(&url.replace("127.0.0.1", "127.0.0.2"));
        let mut args = strings(&["-sign", "-in", &dgst]);
        args.extend(fe.key_args("-keyform", "-inkey", &other));
        let err = fe.fails(lab, "pkeyutl", &args);
        assert!(
            err.contains("not in the allowed hosts"),
            "{}: {err}",
            fe.name()
        );
    }
}

#[test]
fn errors_are_clear() {
    let lab = lab();
    let dgst = lab.digest_file("errors", "sha256");
    for fe in FrontEnd::all() {
        let sign = |k: &str| {
            let mut args = strings(&["-sign", "-in", &dgst, "-pkeyopt", "digest:sha256"]);
            args.extend(fe.key_args("-keyform", "-inkey", k));
            fe.fails(lab, "pkeyutl", &args)
        };
        let e = sign("vault:myvault:nosuchkey");
        assert!(
            e.contains("cannot fetch the key from Key Vault")
                && e.contains("KeyNotFound")
                && e.contains("nosuchkey")
                && e.contains("x-ms-request-id"),
            "{}: {e}",
            fe.name()
        );
        let e = sign("vault:evil.com/x:k");
        assert!(
            e.contains("invalid Key Vault key identifier") && e.contains("evil.com/x"),
            "{}: {e}",
            fe.name()
        );
        let e = sign(&format!("vault:{}:k", "a".repeat(600)));
        assert!(
            e.contains("invalid Key Vault key identifier"),
            "{}: {e}",
            fe.name()
        );
    }
}

#[test]
fn service_errors_reach_the_user() {
    for fe in FrontEnd::all() {
        let (_dir, mut lab) = private_lab("service-errors", &fe);
        let dgst = lab.digest_file("svc", "sha256");
        let sign = |lab: &Lab| {
            let mut args = strings(&["-sign", "-in", &dgst]);
            args.extend(fe.key_args("-keyform", "-inkey", &key("p256")));
            fe.fails(lab, "pkeyutl", &args)
        };
        let name = fe.name();
        // Disabled key: the load itself says so.
        lab.emulator().set_enabled("p256", false).unwrap();
        let e = sign(&lab);
        assert!(e.contains("disabled"), "{name}: {e}");
        lab.emulator().set_enabled("p256", true).unwrap();
        // Throttled on every request until the retries run out.
        lab.emulator().set_faults(Faults {
            throttle_every: 1,
            throttle_retry_after: Some(0),
            ..Faults::default()
        });
        let e = sign(&lab);
        assert!(
            e.contains("Throttled") && e.contains("gave up after 4 attempts"),
            "{name}: {e}"
        );
        // A 403 from the vault, then the service is down.
        lab.emulator().set_faults(Faults {
            next: [Fault::Status {
                status: 403,
                retry_after: None,
            }]
            .into(),
            ..Faults::default()
        });
        let e = sign(&lab);
        assert!(e.contains("403"), "{name}: {e}");
        lab.emulator().set_faults(Faults::default());
        let closed = format!("https://127.0.0.1:{}", free_port());
        lab.set_env("AKV_ENDPOINT", &closed);
        lab.set_env("AKV_BUDGET_MS", "1500");
        let e = sign(&lab);
        assert!(
            e.contains("cannot connect") || e.contains("cannot get a token"),
            "{name}: {e}"
        );
    }
}

/// Points a C program of tests/c (built for the front end's OpenSSL) at the front end:
/// the provider folder in AKV_TEST_PROVIDER_DIR (none means the engine), and that OpenSSL's
/// libraries.
fn for_front_end(fe: &FrontEnd, dir: &Path, mut c: std::process::Command) -> std::process::Command {
    if let FrontEnd::Provider(_) = fe {
        c.env("AKV_TEST_PROVIDER_DIR", provider_dir(dir));
    }
    if let Some(libs) = &fe.openssl().libs {
        c.env("LD_LIBRARY_PATH", libs);
    }
    c
}

#[test]
fn a_c_program_signs_from_8_threads_and_across_fork() {
    for fe in FrontEnd::all() {
        let (dir, lab) = private_lab("threads", &fe);
        let bin = compile_c_against(dir.path(), "sign_threads", "-O1", fe.openssl().prefix());
        let run = |args: &[&str]| {
            let out = for_front_end(&fe, dir.path(), lab.command(bin.to_str().unwrap()))
                .args(args)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{}: {text}{}",
                fe.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            text
        };
        for name in ["rsa2048", "p256"] {
            lab.emulator().reset_stats();
            let text = run(&[&key(name), &lab.public_pem(name), "8", "10"]);
            assert!(
                text.contains("80 of 80 signatures verified"),
                "{}: {text}",
                fe.name()
            );
            let stats = lab.emulator().stats();
            assert_eq!(
                stats.token_requests,
                1,
                "{} {name}: one token for 8 threads: {stats:?}",
                fe.name()
            );
            assert!(
                stats.connections <= 8,
                "{} {name}: one connection per thread at most: {stats:?}",
                fe.name()
            );
        }
        // Fork after using the key: each child builds its own connection and token.
        lab.emulator().reset_stats();
        let text = run(&[&key("p256"), &lab.public_pem("p256"), "2", "5", "3"]);
        assert_eq!(
            text.matches("10 of 10 signatures verified").count(),
            3,
            "{}: {text}",
            fe.name()
        );
        let stats = lab.emulator().stats();
        assert_eq!(stats.route("sign"), 1 + 30 + 1, "{}: {stats:?}", fe.name());
        assert!(
            stats.connections >= 4,
            "{}: parent + 3 children each connect: {stats:?}",
            fe.name()
        );
        assert_eq!(
            stats.token_requests,
            4,
            "{}: parent + 3 children: {stats:?}",
            fe.name()
        );
    }
}

/// One thread signs in 32 OpenSSL ASYNC jobs at once (tests/c/async_jobs.c), as a server in
/// async mode does, with 100 ms of vault latency: every job pauses before any finishes, all
/// 32 signatures verify, with one token and no more connections than jobs. Then in 3 forked
/// children after the parent used its async runtime (each builds its own), under throttling
/// and 503s (retried), and with the vault down (every job ends with an error, none hangs).
#[test]
fn one_thread_keeps_32_signatures_in_flight_in_async_jobs() {
    for fe in FrontEnd::all() {
        let (dir, mut lab) = private_lab("async-jobs", &fe);
        let bin = compile_c_against(dir.path(), "async_jobs", "-O1", fe.openssl().prefix());
        let run = |args: &[&str]| {
            let out = for_front_end(&fe, dir.path(), lab.command(bin.to_str().unwrap()))
                .args(args)
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            (out.status.success(), stdout, stderr)
        };
        lab.emulator().set_faults(Faults {
            latency_ms: 100,
            ..Faults::default()
        });
        for name in ["rsa2048", "p256"] {
            lab.emulator().reset_stats();
            let started = std::time::Instant::now();
            let (ok, text, err) = run(&[&key(name), &lab.public_pem(name), "32"]);
            assert!(
                ok && text
                    .contains("32 of 32 signatures verified, 0 failed, 32 jobs paused at once"),
                "{} {name}: {text}{err}",
                fe.name()
            );
            let stats = lab.emulator().stats();
            assert_eq!(stats.token_requests, 1, "{} {name}: {stats:?}", fe.name());
            assert!(
                stats.connections <= 1 + 32,
                "{} {name}: {stats:?}",
                fe.name()
            );
            eprintln!(
                "{} {name}: 32 signatures in {:?} with 100 ms per signature",
                fe.name(),
                started.elapsed()
            );
        }
        // Forked children, each with its own runtime, token and connections.
        lab.emulator().reset_stats();
        let (ok, text, err) = run(&[&key("p256"), &lab.public_pem("p256"), "8", "3"]);
        assert!(
            ok && text.matches("8 of 8 signatures verified").count() == 4,
            "{}: {text}{err}",
            fe.name()
        );
        assert_eq!(lab.emulator().stats().token_requests, 4, "{}", fe.name());
        // Throttling and 503s are retried inside the jobs.
        lab.emulator().set_faults(Faults {
            throttle_every: 5,
            throttle_retry_after: Some(1),
            unavailable_every: 7,
            ..Faults::default()
        });
        let (ok, text, err) = run(&[&key("rsa2048"), &lab.public_pem("rsa2048"), "16"]);
        assert!(
            ok && text.contains("16 of 16 signatures verified"),
            "{} under faults: {text}{err}",
            fe.name()
        );
        assert!(lab.emulator().stats().faults_injected > 0, "{}", fe.name());
        lab.emulator().set_faults(Faults::default());
        // The vault goes down after the key is loaded: every job ends, with the reason.
        let mut child = for_front_end(&fe, dir.path(), lab.command(bin.to_str().unwrap()))
            .args([&key("p256"), &lab.public_pem("p256"), "16"])
            .env("AKV_TEST_WAIT_STDIN", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "key loaded\n", "{}", fe.name());
        lab.stop_vault();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && text.contains("0 of 16 signatures verified, 16 failed"),
            "{} with the vault down: {text}{err}",
            fe.name()
        );
        assert!(
            err.contains("Key Vault signing failed"),
            "{}: {err}",
            fe.name()
        );
        lab.start_vault();
    }
}

#[test]
fn loading_signing_and_unloading_is_valgrind_clean() {
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("valgrind.supp");
    for fe in FrontEnd::all() {
        let (dir, lab) = private_lab("valgrind", &fe);
        let bin = compile_c_against(dir.path(), "load_cycles", "-O1", fe.openssl().prefix());
        let out = for_front_end(&fe, dir.path(), lab.command("valgrind"))
            .arg(format!("--suppressions={}", supp.display()))
            .args([
                "--leak-check=full",
                "--errors-for-leak-kinds=definite,indirect",
                "--error-exitcode=99",
            ])
            .arg(&bin)
            .args([&key("p256"), &lab.public_pem("p256"), "3"])
            .output()
            .expect("valgrind runs (scripts/test.sh installs it)");
        let report = String::from_utf8_lossy(&out.stderr);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("3 of 3 cycles signed and verified"),
            "{}: {report}",
            fe.name()
        );
        assert!(
            out.status.success(),
            "{}: valgrind found memory errors or leaks:\n{report}",
            fe.name()
        );
        assert!(
            report.contains("definitely lost: 0 bytes")
                || report.contains("All heap blocks were freed"),
            "{report}"
        );
        assert_eq!(
            lab.emulator().stats().route("sign"),
            3,
            "{}: every cycle signed remotely",
            fe.name()
        );
    }
}

#[test]
fn debug_logs_never_contain_the_token() {
    for fe in FrontEnd::all() {
        let (_dir, mut lab) = private_lab("secrets", &fe);
        let log = lab.path("akv.log");
        lab.set_env("AKV_LOG_LEVEL", "debug");
        lab.set_env("AKV_LOG_FILE", &log);
        let dgst = lab.digest_file("secrets", "sha256");
        let mut args = strings(&[
            "-sign",
            "-in",
            &dgst,
            "-out",
            &lab.path("s.sig"),
            "-pkeyopt",
            "digest:sha256",
        ]);
        args.extend(fe.key_args("-keyform", "-inkey", &key("rsa2048")));
        let out = ok(&fe, &lab, "pkeyutl", &args);
        // A failing operation too, so that error paths are logged.
        let mut args = strings(&["-sign", "-in", &dgst]);
        args.extend(fe.key_args("-keyform", "-inkey", &key("missing")));
        let err = fe.fails(&lab, "pkeyutl", &args);
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("debug: signed with vault:myvault:rsa2048"),
            "{}: {text}",
            fe.name()
        );
        assert!(
            text.contains("cannot fetch the key"),
            "{}: {text}",
            fe.name()
        );
        let tokens = lab.emulator().issued_tokens();
        assert!(!tokens.is_empty());
        for token in tokens {
            for (what, haystack) in [
                ("log", text.as_str()),
                ("stderr", &String::from_utf8_lossy(&out.stderr)),
                ("error", err.as_str()),
            ] {
                assert!(
                    !haystack.contains(&token),
                    "{}: the token appears in the {what}",
                    fe.name()
                );
                assert!(
                    !haystack.contains(&token[..12]),
                    "{}: part of the token appears in the {what}",
                    fe.name()
                );
            }
        }
    }
}

#[test]
fn azure_cli_and_static_tokens() {
    for fe in FrontEnd::all() {
        let dir = TempDir::new(&format!("credentials-{}", fe.tag()));
        let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |c| {
            c.accept_tokens = vec!["cli-token".into(), "static-token".into()];
        });
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let az = bin.join("az");
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        std::fs::write(&az, format!("#!/bin/sh\necho '{{\"accessToken\":\"cli-token\",\"expires_on\":{expires},\"tokenType\":\"Bearer\"}}'\n")).unwrap();
        let mut perms = std::fs::metadata(&az).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&az, perms).unwrap();
        let dgst = lab.digest_file("cred", "sha256");
        let check = |lab: &Lab, tag: &str| {
            let sig = lab.path(&format!("{tag}.sig"));
            let mut args = strings(&["-sign", "-in", &dgst, "-out", &sig]);
            args.extend(fe.key_args("-keyform", "-inkey", &key("p256")));
            ok(&fe, lab, "pkeyutl", &args);
            let public = lab.public_pem("p256");
            lab.ok(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
            ]);
        };
        lab.set_env("AKV_CREDENTIAL", "cli");
        lab.set_env(
            "PATH",
            &format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
        check(&lab, "cli");
        lab.set_env("AKV_CREDENTIAL", "static");
        lab.set_env("AZURE_CLI_ACCESS_TOKEN", "static-token");
        check(&lab, "static");
        assert_eq!(
            lab.emulator().stats().token_requests,
            0,
            "{}: IMDS was never asked",
            fe.name()
        );
    }
}
