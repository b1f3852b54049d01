//! The provider (`akv.so`) with real `openssl` commands, on the system's OpenSSL 3.0 and on
//! OpenSSL 4.0.3 (no engines there), the same built module for both. Every signature is
//! checked by the system's plain OpenSSL with the public key the emulator exported.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use akv_tests::lab::Lab;
use akv_tests::support::{openssl4, provider_dir};

const KEYS: [(&str, &str); 5] = [
    ("rsa2048", "rsa2048"),
    ("p256", "p256"),
    ("p384", "p384"),
    ("p521", "p521"),
    ("p256k", "p256k"),
];

fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tmp/provider-cli");
        let _ = std::fs::remove_dir_all(root.join("work"));
        Lab::start(&root, &KEYS, |_| {})
    })
}

/// One OpenSSL to run the provider in.
struct OpenSsl {
    name: &'static str,
    program: PathBuf,
    /// Its libraries, for this program only (never the whole test run).
    libs: Option<PathBuf>,
}

fn flavours() -> Vec<OpenSsl> {
    let four = openssl4();
    vec![
        OpenSsl {
            name: "OpenSSL 3.0 (system)",
            program: PathBuf::from("openssl"),
            libs: None,
        },
        OpenSsl {
            name: "OpenSSL 4.0.3",
            program: four.join("bin/openssl"),
            libs: Some(four.join("lib")),
        },
    ]
}

impl OpenSsl {
    /// Runs `openssl COMMAND -provider-path DIR -provider akv -provider default ARGS`.
    fn run(&self, lab: &Lab, command: &str, args: &[&str]) -> Output {
        let providers = provider_dir(Path::new(&lab.path("")));
        let mut c = lab.command(self.program.to_str().unwrap());
        if let Some(libs) = &self.libs {
            c.env("LD_LIBRARY_PATH", libs);
        }
        c.arg(command)
            .args(["-provider-path", providers.to_str().unwrap()])
            .args(["-provider", "akv", "-provider", "default"])
            .args(args)
            .output()
            .expect("openssl runs")
    }

    fn ok(&self, lab: &Lab, command: &str, args: &[&str]) -> Output {
        let out = self.run(lab, command, args);
        assert!(
            out.status.success(),
            "{}: openssl {command} {} failed:\n{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn tag(&self) -> &'static str {
        if self.libs.is_some() { "v4" } else { "v3" }
    }
}

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

fn digest_of(lab: &Lab, tag: &str, md: &str) -> String {
    let msg = lab.path(&format!("{tag}.msg"));
    std::fs::write(&msg, format!("message for {tag}")).unwrap();
    let out = lab.path(&format!("{tag}.dgst"));
    lab.ok(&["dgst", &format!("-{md}"), "-binary", "-out", &out, &msg]);
    out
}

#[test]
fn pkeyutl_signatures_verify_with_plain_openssl() {
    let lab = lab();
    let cases: [(&str, &str, &[&str]); 6] = [
        ("rsa2048", "sha256", &["-pkeyopt", "digest:sha256"]),
        (
            "rsa2048",
            "sha384",
            &[
                "-pkeyopt",
                "digest:sha384",
                "-pkeyopt",
                "rsa_padding_mode:pss",
            ],
        ),
        ("p256", "sha256", &[]),
        ("p384", "sha384", &[]),
        ("p521", "sha512", &[]),
        ("p256k", "sha256", &[]),
    ];
    for ossl in flavours() {
        for (name, md, opts) in cases {
            let tag = format!("{}-{name}-{md}-{}", ossl.tag(), opts.len());
            let dgst = digest_of(lab, &tag, md);
            let sig = lab.path(&format!("{tag}.sig"));
            let k = key(name);
            let mut args = vec!["-sign", "-inkey", &k, "-in", &dgst, "-out", &sig];
            args.extend_from_slice(opts);
            ossl.ok(lab, "pkeyutl", &args);
            let public = lab.public_pem(name);
            let mut verify = vec![
                "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
            ];
            verify.extend_from_slice(opts);
            if opts.contains(&"rsa_padding_mode:pss") {
                verify.extend_from_slice(&["-pkeyopt", "rsa_pss_saltlen:digest"]);
            }
            let out = lab.ok(&verify);
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("Verified Successfully"),
                "{}: {tag}",
                ossl.name
            );
        }
    }
}

#[test]
fn dgst_sign_uses_the_digest_sign_path() {
    let lab = lab();
    for ossl in flavours() {
        for (name, md) in [("rsa2048", "sha256"), ("p384", "sha384")] {
            let tag = format!("{}-dgst-{name}", ossl.tag());
            let msg = lab.path(&format!("{tag}.msg"));
            std::fs::write(&msg, b"a message signed with EVP_DigestSign").unwrap();
            let sig = lab.path(&format!("{tag}.sig"));
            ossl.ok(
                lab,
                "dgst",
                &[&format!("-{md}"), "-sign", &key(name), "-out", &sig, &msg],
            );
            let out = lab.ok(&[
                "dgst",
                &format!("-{md}"),
                "-verify",
                &lab.public_pem(name),
                "-signature",
                &sig,
                &msg,
            ]);
            assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
        }
    }
}

#[test]
fn self_signed_certificates_pass_openssl_verify() {
    let lab = lab();
    let cases: [(&str, &[&str], &str); 4] = [
        ("rsa2048", &[], "sha256WithRSAEncryption"),
        ("rsa2048", &["-sigopt", "rsa_padding_mode:pss"], "rsassaPss"),
        ("p256", &[], "ecdsa-with-SHA256"),
        ("p384", &["-sha384"], "ecdsa-with-SHA384"),
    ];
    for ossl in flavours() {
        for (name, opts, algorithm) in cases {
            let cert = lab.path(&format!("{}-{name}-{}.crt", ossl.tag(), opts.len()));
            let subject = format!("/CN=akv provider {name}");
            let k = key(name);
            let mut args = vec![
                "-new", "-x509", "-key", &k, "-subj", &subject, "-days", "2", "-out", &cert,
            ];
            args.extend_from_slice(opts);
            ossl.ok(lab, "req", &args);
            let out = lab.ok(&["verify", "-check_ss_sig", "-CAfile", &cert, &cert]);
            assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));
            let text = lab.ok(&["x509", "-in", &cert, "-noout", "-text"]);
            assert!(
                String::from_utf8_lossy(&text.stdout).contains(algorithm),
                "{}: {name} {opts:?} is not {algorithm}",
                ossl.name
            );
        }
    }
}

#[test]
fn the_public_key_and_the_store_listing_are_the_vaults() {
    let lab = lab();
    for ossl in flavours() {
        for name in ["rsa2048", "p521"] {
            let out = ossl.ok(lab, "pkey", &["-in", &key(name), "-pubout"]);
            let want = lab.ok(&["pkey", "-pubin", "-in", &lab.public_pem(name), "-pubout"]);
            assert_eq!(out.stdout, want.stdout, "{}: {name}", ossl.name);
        }
        let out = ossl.ok(lab, "storeutl", &["akv:vault:myvault:p256"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Total found: 1"), "{}: {text}", ossl.name);
    }
}

#[test]
fn a_missing_key_fails_with_the_vaults_reason() {
    let lab = lab();
    for ossl in flavours() {
        let dgst = digest_of(lab, &format!("{}-missing", ossl.tag()), "sha256");
        let out = ossl.run(
            lab,
            "pkeyutl",
            &["-sign", "-inkey", &key("no-such-key"), "-in", &dgst],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{}: signed with a missing key",
            ossl.name
        );
        assert!(
            stderr.contains("akv")
                && stderr.contains("KeyNotFound")
                && stderr.contains("no-such-key"),
            "{}: unclear error:\n{stderr}",
            ossl.name
        );
    }
}

/// The ids and names akv-provider declares by hand equal the headers' of both versions.
#[test]
fn declared_abi_matches_the_headers_of_openssl_3_and_4() {
    let lab = lab();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/provider_abi.c");
    let four = openssl4().join("include");
    for (tag, include) in [("v3", None), ("v4", Some(four))] {
        let bin = lab.path(&format!("provider_abi_{tag}"));
        let mut cc = std::process::Command::new("cc");
        if let Some(dir) = &include {
            cc.arg("-I").arg(dir);
        }
        let out = cc.args(["-o", &bin]).arg(&src).output().expect("cc runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = std::process::Command::new(&bin).output().unwrap();
        let text = String::from_utf8_lossy(&printed.stdout).into_owned();
        let header: std::collections::HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(' ')).collect();
        for (name, value) in akv::abi::CHECKED {
            assert_eq!(
                header.get(name),
                Some(&value.to_string().as_str()),
                "{tag}: {name}"
            );
        }
        for (name, value) in akv::abi::names::CHECKED {
            assert_eq!(
                header.get(name).copied(),
                value.to_str().ok(),
                "{tag}: {name}"
            );
        }
        assert_eq!(
            header.len(),
            akv::abi::CHECKED.len() + akv::abi::names::CHECKED.len(),
            "the C program prints exactly what the Rust side declares"
        );
    }
}

/// A self-signed CA certificate for a vault key, made through the provider. The extensions
/// are explicit: the OpenSSL 4 build has an empty openssl.cnf, so `req` adds none itself.
fn self_signed(lab: &Lab, ossl: &OpenSsl, name: &str) -> String {
    let cert = lab.path(&format!("{}-{name}-self.crt", ossl.tag()));
    let k = key(name);
    ossl.ok(
        lab,
        "req",
        &[
            "-new",
            "-x509",
            "-key",
            &k,
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,digitalSignature,keyEncipherment",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-out",
            &cert,
        ],
    );
    cert
}

#[test]
fn decryption_with_the_three_paddings() {
    let lab = lab();
    let plaintext = b"a session key, say";
    let input = lab.path("decrypt.plain");
    std::fs::write(&input, plaintext).unwrap();
    let paddings: [&[&str]; 3] = [
        &[],
        &["-pkeyopt", "rsa_padding_mode:oaep"],
        &[
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
            "-pkeyopt",
            "rsa_mgf1_md:sha256",
        ],
    ];
    for ossl in flavours() {
        for (i, padding) in paddings.iter().enumerate() {
            let ciphertext = lab.path(&format!("{}-decrypt-{i}.bin", ossl.tag()));
            let public = lab.public_pem("rsa2048");
            let mut encrypt = vec![
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                &public,
                "-in",
                &input,
                "-out",
                &ciphertext,
            ];
            encrypt.extend_from_slice(padding);
            lab.ok(&encrypt);
            let k = key("rsa2048");
            let mut args = vec!["-decrypt", "-inkey", &k, "-in", &ciphertext];
            args.extend_from_slice(padding);
            let out = ossl.ok(lab, "pkeyutl", &args);
            assert_eq!(out.stdout, plaintext, "{}: padding {padding:?}", ossl.name);
        }
        // OAEP with a label is refused with the reason, not mis-decrypted.
        let ciphertext = lab.path(&format!("{}-decrypt-label.bin", ossl.tag()));
        let public = lab.public_pem("rsa2048");
        let labelled = [
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_label:0011",
        ];
        let mut encrypt = vec![
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            &public,
            "-in",
            &input,
            "-out",
            &ciphertext,
        ];
        encrypt.extend_from_slice(&labelled);
        lab.ok(&encrypt);
        let k = key("rsa2048");
        let mut args = vec!["-decrypt", "-inkey", &k, "-in", &ciphertext];
        args.extend_from_slice(&labelled);
        let out = ossl.run(lab, "pkeyutl", &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("label"),
            "{}: {stderr}",
            ossl.name
        );
    }
}

#[test]
fn a_vault_ca_signs_requests_and_a_vault_key_makes_one() {
    let lab = lab();
    for ossl in flavours() {
        let ca = self_signed(lab, &ossl, "p384");
        // A request for a local key, signed by the vault CA key.
        let tag = ossl.tag();
        let leaf_key = lab.path(&format!("{tag}-leaf.key"));
        let leaf_csr = lab.path(&format!("{tag}-leaf.csr"));
        let leaf = lab.path(&format!("{tag}-leaf.crt"));
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
        let k = key("p384");
        let serial = lab.path(&format!("{tag}-ca.srl"));
        ossl.ok(
            lab,
            "x509",
            &[
                "-req",
                "-in",
                &leaf_csr,
                "-CA",
                &ca,
                "-CAkey",
                &k,
                "-CAserial",
                &serial,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &leaf,
            ],
        );
        let out = lab.ok(&["verify", "-CAfile", &ca, &leaf]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{}",
            ossl.name
        );
        // A request made with a vault key carries a valid self-signature.
        let csr = lab.path(&format!("{tag}-vault.csr"));
        let k = key("rsa2048");
        ossl.ok(
            lab,
            "req",
            &["-new", "-key", &k, "-subj", "/CN=vault csr", "-out", &csr],
        );
        let out = lab.ok(&["req", "-verify", "-in", &csr, "-noout"]);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("verify OK")
                || String::from_utf8_lossy(&out.stdout).contains("verify OK"),
            "{}",
            ossl.name
        );
    }
}

#[test]
fn cms_sign_and_decrypt() {
    let lab = lab();
    let input = lab.path("cms.txt");
    std::fs::write(&input, b"a document for CMS\n").unwrap();
    for ossl in flavours() {
        let tag = ossl.tag();
        let cert = self_signed(lab, &ossl, "rsa2048");
        let signed = lab.path(&format!("{tag}-signed.p7"));
        let k = key("rsa2048");
        ossl.ok(
            lab,
            "cms",
            &[
                "-sign",
                "-nodetach",
                "-binary",
                "-in",
                &input,
                "-signer",
                &cert,
                "-inkey",
                &k,
                "-out",
                &signed,
            ],
        );
        let out = lab.ok(&["cms", "-verify", "-in", &signed, "-CAfile", &cert]);
        assert_eq!(out.stdout, b"a document for CMS\n", "{}", ossl.name);

        let sealed = lab.path(&format!("{tag}-sealed.p7"));
        lab.ok(&[
            "cms", "-encrypt", "-binary", "-aes256", "-in", &input, "-recip", &cert, "-out",
            &sealed,
        ]);
        let out = ossl.ok(
            lab,
            "cms",
            &["-decrypt", "-in", &sealed, "-recip", &cert, "-inkey", &k],
        );
        assert_eq!(out.stdout, b"a document for CMS\n", "{}", ossl.name);
    }
}

#[test]
fn tls_servers_with_vault_keys() {
    let lab = lab();
    for ossl in flavours() {
        for name in ["rsa2048", "p256"] {
            let cert = self_signed(lab, &ossl, name);
            let port = akv_tests::support::free_port();
            let providers = provider_dir(Path::new(&lab.path("")));
            let mut c = lab.command(ossl.program.to_str().unwrap());
            if let Some(libs) = &ossl.libs {
                c.env("LD_LIBRARY_PATH", libs);
            }
            let k = key(name);
            let mut server = c
                .args(["s_server", "-provider-path", providers.to_str().unwrap()])
                .args([
                    "-provider",
                    "akv",
                    "-provider",
                    "default",
                    "-key",
                    &k,
                    "-cert",
                    &cert,
                ])
                .args(["-accept", &format!("127.0.0.1:{port}"), "-www"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let started = (0..100).any(|_| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            // The probe above uses one of the three accepts.
            assert!(started, "{}: s_server with {name} did not start", ossl.name);
            let mut versions = vec![("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")];
            if name == "p256" && ossl.libs.is_none() {
                // Known gap, left open in issue 13: OpenSSL 3.0's libssl finds no ECDSA
                // cipher suite for a provider EC key in TLS 1.2 ("no shared cipher") while
                // TLS 1.3 and OpenSSL 4 work. The engine covers TLS 1.2 ECDSA on 3.0.
                versions.truncate(1);
            }
            for (version, proto) in versions {
                let target = format!("127.0.0.1:{port}");
                let mut client = lab
                    .command("openssl")
                    .args(["s_client", "-connect", &target, version, "-CAfile", &cert])
                    .args(["-verify_return_error", "-servername", "localhost"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                drop(client.stdin.take());
                let out = client.wait_with_output().unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.contains("Verification: OK") && text.contains(&format!("New, {proto}")),
                    "{} {name} {version}:\n{text}\n{}",
                    ossl.name,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// The C program of the engine's thread and fork test, with its key from the provider's
/// store: 8 threads share one token and at most one connection each; forked children each
/// get their own connection and token and never use the parent's.
#[test]
fn a_c_program_signs_from_8_threads_and_across_fork() {
    let dir = akv_tests::support::TempDir::new("provider-threads");
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |_| {},
    );
    let providers = provider_dir(dir.path());
    for ossl in flavours() {
        let prefix = ossl.libs.as_ref().and_then(|l| l.parent());
        let bin = akv_tests::support::compile_c_against(dir.path(), "sign_threads", "-O1", prefix);
        let run = |args: &[&str]| {
            let mut c = lab.command(bin.to_str().unwrap());
            c.env("AKV_TEST_PROVIDER_DIR", &providers);
            if let Some(libs) = &ossl.libs {
                c.env("LD_LIBRARY_PATH", libs);
            }
            let out = c.args(args).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{}: {text}{}",
                ossl.name,
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
                ossl.name
            );
            let stats = lab.emulator().stats();
            assert_eq!(stats.token_requests, 1, "{} {name}: {stats:?}", ossl.name);
            assert!(stats.connections <= 8, "{} {name}: {stats:?}", ossl.name);
        }
        lab.emulator().reset_stats();
        let text = run(&[&key("p256"), &lab.public_pem("p256"), "2", "5", "3"]);
        assert_eq!(
            text.matches("10 of 10 signatures verified").count(),
            3,
            "{text}"
        );
        let stats = lab.emulator().stats();
        assert_eq!(stats.route("sign"), 1 + 30 + 1, "{}: {stats:?}", ossl.name);
        assert_eq!(
            stats.token_requests, 4,
            "{}: parent + 3 children: {stats:?}",
            ossl.name
        );
        assert!(stats.connections >= 4, "{}: {stats:?}", ossl.name);
    }
}

/// Each cycle: a fresh library context, the provider loaded into it, a key opened with
/// OSSL_STORE, a signature, everything unloaded. No memory errors, nothing definitely lost.
#[test]
fn loading_signing_and_unloading_is_valgrind_clean() {
    let dir = akv_tests::support::TempDir::new("provider-valgrind");
    let lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    let providers = provider_dir(dir.path());
    let bin = akv_tests::support::compile_c(dir.path(), "load_cycles", "-O1");
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("valgrind.supp");
    let out = lab
        .command("valgrind")
        .env("AKV_TEST_PROVIDER_DIR", &providers)
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
        "{report}"
    );
    assert!(
        out.status.success(),
        "valgrind found memory errors or leaks:\n{report}"
    );
    assert!(report.contains("definitely lost: 0 bytes"), "{report}");
    assert_eq!(
        lab.emulator().stats().route("sign"),
        3,
        "every cycle signed remotely"
    );
}
