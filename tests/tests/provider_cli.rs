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
