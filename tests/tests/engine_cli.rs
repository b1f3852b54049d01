//! The engine with real programs: `openssl pkeyutl`, `dgst`, `req`, `cms`, `s_server` /
//! `s_client`, and a C program signing from 8 threads and across fork(). Every signature is
//! verified by plain OpenSSL with the public key the emulator exported.

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, compile_c, free_port};

const ALL_KEYS: [(&str, &str); 7] = [
    ("rsa2048", "rsa2048"),
    ("rsa3072", "rsa3072"),
    ("rsa4096", "rsa4096"),
    ("p256", "p256"),
    ("p384", "p384"),
    ("p521", "p521"),
    ("p256k", "p256k"),
];

/// One lab with every key type, shared by the tests that do not inspect counters. Its keys
/// live under target/, so reruns skip key generation.
fn lab() -> &'static Lab {
    static LAB: OnceLock<Lab> = OnceLock::new();
    LAB.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tmp/engine-cli");
        let _ = std::fs::remove_dir_all(root.join("work"));
        Lab::start(&root, &ALL_KEYS, |_| {})
    })
}

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

fn write(lab: &Lab, name: &str, bytes: &[u8]) -> String {
    let p = lab.path(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn digest_file(lab: &Lab, name: &str, md: &str) -> String {
    let msg = write(
        lab,
        &format!("{name}.msg"),
        format!("message for {name}").as_bytes(),
    );
    let out = lab.path(&format!("{name}.dgst"));
    lab.ok(&["dgst", &format!("-{md}"), "-binary", "-out", &out, &msg]);
    out
}

/// `pkeyutl -sign` through the engine, `pkeyutl -verify` with plain OpenSSL.
fn sign_and_verify(lab: &Lab, name: &str, md: &str, opts: &[&str]) {
    let tag = format!("{name}-{md}-{}", opts.len());
    let dgst = digest_file(lab, &tag, md);
    let sig = lab.path(&format!("{tag}.sig"));
    let mut args = vec![
        "pkeyutl", "-sign", "-engine", "e_akv", "-keyform", "engine", "-inkey",
    ];
    let k = key(name);
    args.push(&k);
    args.extend(["-in", &dgst, "-out", &sig]);
    let digest_opt = format!("digest:{md}");
    if name.starts_with("rsa") {
        args.extend(["-pkeyopt", &digest_opt]);
    }
    for o in opts {
        args.extend(["-pkeyopt", o]);
    }
    lab.ok(&args);
    let public = lab.public_pem(name);
    let mut verify = vec![
        "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
    ];
    if name.starts_with("rsa") {
        verify.extend(["-pkeyopt", &digest_opt]);
    }
    for o in opts {
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
    for name in ["rsa2048", "rsa3072", "rsa4096"] {
        for md in ["sha256", "sha384", "sha512"] {
            sign_and_verify(lab, name, md, &[]);
        }
    }
}

#[test]
fn pkeyutl_pss_signatures_verify() {
    let lab = lab();
    for md in ["sha256", "sha384", "sha512"] {
        sign_and_verify(
            lab,
            "rsa2048",
            md,
            &["rsa_padding_mode:pss", "rsa_pss_saltlen:digest"],
        );
    }
    // "-1" is OpenSSL's spelling of "digest".
    sign_and_verify(
        lab,
        "rsa3072",
        "sha256",
        &["rsa_padding_mode:pss", "rsa_pss_saltlen:-1"],
    );
}

#[test]
fn pkeyutl_ecdsa_signatures_verify_on_every_curve() {
    let lab = lab();
    for (name, md) in [
        ("p256", "sha256"),
        ("p256", "sha384"),
        ("p384", "sha384"),
        ("p384", "sha256"),
        ("p521", "sha512"),
        ("p256k", "sha256"),
    ] {
        sign_and_verify(lab, name, md, &[]);
    }
}

#[test]
fn pss_with_another_salt_length_is_refused_clearly() {
    let lab = lab();
    let dgst = digest_file(lab, "pss-max", "sha256");
    let err = lab.fails(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("rsa2048"),
        "-in",
        &dgst,
        "-out",
        &lab.path("x.sig"),
        "-pkeyopt",
        "digest:sha256",
        "-pkeyopt",
        "rsa_padding_mode:pss",
        "-pkeyopt",
        "rsa_pss_saltlen:max",
    ]);
    assert!(
        err.contains("operation not possible with a Key Vault key") && err.contains("salt"),
        "{err}"
    );
}

#[test]
fn dgst_sign_sha384() {
    let lab = lab();
    let msg = write(lab, "dgst.msg", b"dgst message");
    for name in ["rsa2048", "p384", "p521"] {
        let sig = lab.path(&format!("dgst-{name}.sig"));
        lab.ok(&[
            "dgst",
            "-sha384",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-sign",
            &key(name),
            "-out",
            &sig,
            &msg,
        ]);
        let out = lab.ok(&[
            "dgst",
            "-sha384",
            "-verify",
            &lab.public_pem(name),
            "-signature",
            &sig,
            &msg,
        ]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
    }
}

fn self_signed(lab: &Lab, name: &str, extra: &[&str]) -> String {
    let crt = lab.path(&format!("{name}-{}.crt", extra.len()));
    let mut args = vec![
        "req", "-new", "-x509", "-engine", "e_akv", "-keyform", "engine", "-days", "2", "-subj",
    ];
    let subj = format!("/CN={name}.test");
    let k = key(name);
    args.extend([subj.as_str(), "-key", &k, "-out", &crt]);
    args.extend(extra);
    lab.ok(&args);
    crt
}

#[test]
fn self_signed_certificates_and_csrs() {
    let lab = lab();
    for (name, extra) in [
        ("rsa2048", vec!["-sha256"]),
        (
            "rsa3072",
            vec![
                "-sha384",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ],
        ),
        ("p256", vec!["-sha256"]),
        ("p384", vec!["-sha384"]),
    ] {
        let crt = self_signed(lab, name, &extra);
        let out = lab.ok(&["verify", "-check_ss_sig", "-CAfile", &crt, &crt]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(": OK"),
            "{name}"
        );
        // The certificate carries the vault key's public half.
        let cert_key = lab.ok(&["x509", "-in", &crt, "-noout", "-pubkey"]).stdout;
        assert_eq!(
            cert_key,
            std::fs::read(lab.public_pem(name)).unwrap(),
            "{name}"
        );
    }
    let csr = lab.path("p256.csr");
    lab.ok(&[
        "req",
        "-new",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-key",
        &key("p256"),
        "-subj",
        "/CN=csr.test",
        "-out",
        &csr,
    ]);
    let out = lab.ok(&["req", "-in", &csr, "-verify", "-noout"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify OK")
            || String::from_utf8_lossy(&out.stdout).contains("verify OK")
    );
}

#[test]
fn public_key_export_matches_the_vault() {
    let lab = lab();
    for name in ["rsa4096", "p521"] {
        let out = lab.ok(&[
            "pkey",
            "-engine",
            "e_akv",
            "-inform",
            "engine",
            "-in",
            &key(name),
            "-pubout",
        ]);
        assert_eq!(
            out.stdout,
            std::fs::read(lab.public_pem(name)).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn decrypt_round_trips_with_every_padding() {
    let lab = lab();
    let plain = write(lab, "plain.txt", b"the secret of the day");
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
        let ct = lab.path(&format!("{tag}.ct"));
        let pt = lab.path(&format!("{tag}.pt"));
        let public = lab.public_pem("rsa2048");
        let mut enc = vec![
            "pkeyutl", "-encrypt", "-pubin", "-inkey", &public, "-in", &plain, "-out", &ct,
        ];
        let mut dec = vec![
            "pkeyutl", "-decrypt", "-engine", "e_akv", "-keyform", "engine", "-in", &ct, "-out",
            &pt,
        ];
        let k = key("rsa2048");
        dec.extend(["-inkey", &k]);
        for o in &opts {
            enc.extend(["-pkeyopt", o]);
            dec.extend(["-pkeyopt", o]);
        }
        lab.ok(&enc);
        lab.ok(&dec);
        assert_eq!(
            std::fs::read(&pt).unwrap(),
            b"the secret of the day",
            "{tag}"
        );
    }
    // OAEP with SHA-384 is not something Key Vault does: a clear refusal.
    let ct = lab.path("oaep384.ct");
    let public = lab.public_pem("rsa2048");
    lab.ok(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        &public,
        "-in",
        &plain,
        "-out",
        &ct,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha384",
    ]);
    let err = lab.fails(&[
        "pkeyutl",
        "-decrypt",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("rsa2048"),
        "-in",
        &ct,
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha384",
    ]);
    assert!(err.contains("OAEP with SHA-384"), "{err}");
}

#[test]
fn cms_sign_and_decrypt() {
    let lab = lab();
    let crt = self_signed(
        lab,
        "rsa2048",
        &[
            "-sha256",
            "-addext",
            "keyUsage=digitalSignature,keyEncipherment",
        ],
    );
    let msg = write(lab, "cms.txt", b"CMS content");
    let signed = lab.path("cms.p7");
    lab.ok(&[
        "cms",
        "-sign",
        "-nodetach",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("rsa2048"),
        "-signer",
        &crt,
        "-in",
        &msg,
        "-out",
        &signed,
        "-outform",
        "PEM",
    ]);
    let out = lab.ok(&[
        "cms", "-verify", "-CAfile", &crt, "-in", &signed, "-inform", "PEM",
    ]);
    assert_eq!(out.stdout, b"CMS content");
    for keyopt in [None, Some("rsa_padding_mode:oaep")] {
        let enc = lab.path("cms-enc.p7");
        let mut args = vec![
            "cms", "-encrypt", "-aes256", "-recip", &crt, "-in", &msg, "-out", &enc,
        ];
        if let Some(k) = keyopt {
            args.extend(["-keyopt", k]);
        }
        lab.ok(&args);
        let out = lab.ok(&[
            "cms",
            "-decrypt",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            &key("rsa2048"),
            "-recip",
            &crt,
            "-in",
            &enc,
        ]);
        assert_eq!(out.stdout, b"CMS content", "{keyopt:?}");
    }
}

/// Runs `s_server` with the vault key and returns its child process.
fn s_server(lab: &Lab, name: &str, crt: &str, port: u16) -> std::process::Child {
    let mut child = lab
        .command("openssl")
        .args([
            "s_server",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-key",
            &key(name),
            "-cert",
            crt,
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-www",
            "-naccept",
            "3",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("s_server did not start");
}

#[test]
fn tls_handshakes_with_s_server() {
    let lab = lab();
    for name in ["rsa2048", "p256"] {
        let crt = self_signed(lab, name, &["-sha256"]);
        let port = free_port();
        let mut server = s_server(lab, name, &crt, port);
        let mut cases = vec![("-tls1_3", None), ("-tls1_2", None)];
        if name.starts_with("rsa") {
            cases[1].1 = Some("RSA+SHA256"); // PKCS#1 v1.5 in TLS 1.2
        }
        for (version, sigalgs) in cases {
            let mut args = vec![
                "s_client",
                "-connect",
                "",
                version,
                "-CAfile",
                &crt,
                "-verify_return_error",
                "-servername",
                "localhost",
            ];
            let target = format!("127.0.0.1:{port}");
            args[2] = &target;
            if let Some(s) = sigalgs {
                args.extend(["-sigalgs", s]);
            }
            let mut c = lab.command("openssl");
            c.args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let mut child = c.spawn().unwrap();
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let proto = if version == "-tls1_3" {
                "TLSv1.3"
            } else {
                "TLSv1.2"
            };
            assert!(
                text.contains("Verification: OK") && text.contains(&format!("New, {proto}")),
                "{name} {version}:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = server.kill();
        let _ = server.wait();
    }
}

#[test]
fn engine_by_path_and_from_openssl_cnf() {
    let lab = lab();
    let lib = akv_tests::support::engine_library();
    let dgst = digest_file(lab, "bypath", "sha256");
    // -engine with the library's path: OpenSSL passes the path as the id.
    lab.ok(&[
        "pkeyutl",
        "-sign",
        "-engine",
        &lib.display().to_string(),
        "-keyform",
        "engine",
        "-inkey",
        &key("p256"),
        "-in",
        &dgst,
        "-out",
        &lab.path("bypath.sig"),
    ]);
    // openssl.cnf with a dynamic_path section and every setting there, none in the environment.
    let cnf = format!(
        "openssl_conf = conf\n[conf]\nengines = engines\n[engines]\ne_akv = akv\n[akv]\nengine_id = e_akv\ndynamic_path = {}\nENDPOINT = {}\nIMDS_ENDPOINT = {}\nCA_FILE = {}\nCREDENTIAL = managed-identity\nBUDGET_MS = 5000\ninit = 1\n",
        lib.display(),
        lab.emulator().base_url(),
        lab.emulator().base_url(),
        lab.emulator().ca_cert().unwrap().display()
    );
    let cnf_path = write(lab, "openssl.cnf", cnf.as_bytes());
    let out = lab
        .command("openssl")
        .env_remove("AKV_ENDPOINT")
        .env_remove("AKV_IMDS_ENDPOINT")
        .env_remove("AKV_CA_FILE")
        .env_remove("AKV_CREDENTIAL")
        .env_remove("OPENSSL_ENGINES")
        .env("OPENSSL_CONF", &cnf_path)
        .args([
            "pkeyutl",
            "-sign",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            &key("p256"),
            "-in",
            &dgst,
            "-out",
            &lab.path("cnf.sig"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lab.ok(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &lab.public_pem("p256"),
        "-in",
        &dgst,
        "-sigfile",
        &lab.path("cnf.sig"),
    ]);
}

#[test]
fn settings_are_listed_and_checked() {
    let lab = lab();
    let out = lab.ok(&["engine", "-vvvv", "e_akv"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "CLOUD",
        "ALLOWED_HOSTS",
        "ENDPOINT",
        "API_VERSION",
        "REQUEST_TIMEOUT_MS",
        "BUDGET_MS",
        "CREDENTIAL",
        "CA_FILE",
        "LOG_LEVEL",
        "LOG_FILE",
        "MI_CLIENT_ID",
        "IMDS_ENDPOINT",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    let out = lab.openssl(&["engine", "e_akv", "-pre", "CLOUD:mars"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("unknown cloud \"mars\""), "{all}");
    let out = lab.openssl(&["engine", "e_akv", "-pre", "BUDGET_MS:soon"]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("BUDGET_MS") && all.contains("milliseconds"),
        "{all}"
    );
}

#[test]
fn pinned_versions_survive_rotation() {
    let lab = lab();
    let old = lab.emulator().latest_version("p384").unwrap();
    let dgst = digest_file(lab, "pinned", "sha384");
    let pinned = format!("vault:myvault:p384:{old}");
    lab.ok(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &pinned,
        "-in",
        &dgst,
        "-out",
        &lab.path("pinned.sig"),
    ]);
    lab.ok(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &lab.public_pem("p384"),
        "-in",
        &dgst,
        "-sigfile",
        &lab.path("pinned.sig"),
    ]);
    // The key URL form reaches the same key on an allowed host (the endpoint's host is
    // allowed because the operator named it)...
    let url = format!("{}/keys/p384/{old}", lab.emulator().base_url());
    lab.ok(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &url,
        "-in",
        &dgst,
        "-out",
        &lab.path("url.sig"),
    ]);
    lab.ok(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        &lab.public_pem("p384"),
        "-in",
        &dgst,
        "-sigfile",
        &lab.path("url.sig"),
    ]);
    // ...and any other host is refused before a request is made.
    let other = url.replace("127.0.0.1", "127.0.0.2");
    let err = lab.fails(&[
        "pkeyutl", "-sign", "-engine", "e_akv", "-keyform", "engine", "-inkey", &other, "-in",
        &dgst,
    ]);
    assert!(err.contains("not in the allowed hosts"), "{err}");
}

#[test]
fn errors_are_clear() {
    let lab = lab();
    let dgst = digest_file(lab, "errors", "sha256");
    let sign = |k: &str| {
        lab.fails(&[
            "pkeyutl",
            "-sign",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            k,
            "-in",
            &dgst,
            "-pkeyopt",
            "digest:sha256",
        ])
    };
    let e = sign("vault:myvault:nosuchkey");
    assert!(
        e.contains("cannot fetch the key from Key Vault")
            && e.contains("KeyNotFound")
            && e.contains("x-ms-request-id"),
        "{e}"
    );
    let e = sign("vault:evil.com/x?:k");
    assert!(
        e.contains("invalid Key Vault key identifier") && e.contains("'/'"),
        "{e}"
    );
    let e = sign(&format!("vault:{}:k", "a".repeat(600)));
    assert!(e.contains("invalid Key Vault key identifier"), "{e}");
    let e = sign("pkcs11:token=x");
    assert!(e.contains("unknown key type"), "{e}");
}

/// A lab of its own, for tests that change faults or key state or read counters.
fn private_lab(name: &str) -> (TempDir, Lab) {
    let dir = TempDir::new(name);
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |_| {},
    );
    (dir, lab)
}

#[test]
fn a_c_program_signs_from_8_threads_and_across_fork() {
    let (dir, lab) = private_lab("threads");
    let bin = compile_c(dir.path(), "sign_threads", "-O1");
    for name in ["rsa2048", "p256"] {
        lab.emulator().reset_stats();
        let out = lab
            .command(bin.to_str().unwrap())
            .args([&key(name), &lab.public_pem(name), "8", "10"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("80 of 80 signatures verified"));
        let stats = lab.emulator().stats();
        assert_eq!(
            stats.token_requests, 1,
            "{name}: one token for 80 signatures from 8 threads: {stats:?}"
        );
        assert!(
            stats.connections <= 8,
            "{name}: at most one connection per thread: {stats:?}"
        );
    }
    // Fork after using the key: each child builds its own connection and token.
    lab.emulator().reset_stats();
    let out = lab
        .command(bin.to_str().unwrap())
        .args([&key("p256"), &lab.public_pem("p256"), "2", "5", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.matches("10 of 10 signatures verified").count(),
        3,
        "{text}"
    );
    let stats = lab.emulator().stats();
    assert_eq!(stats.route("sign"), 1 + 30 + 1, "{stats:?}");
    assert!(
        stats.connections >= 4,
        "parent + 3 children each connect: {stats:?}"
    );
    assert_eq!(
        stats.token_requests, 4,
        "parent + 3 children each get a token: {stats:?}"
    );
}

#[test]
fn loading_signing_and_unloading_is_valgrind_clean() {
    let (dir, lab) = private_lab("valgrind");
    let bin = compile_c(dir.path(), "load_cycles", "-O1");
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("valgrind.supp");
    let out = lab
        .command("valgrind")
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
    assert!(
        report.contains("definitely lost: 0 bytes")
            || report.contains("All heap blocks were freed"),
        "{report}"
    );
    assert_eq!(
        lab.emulator().stats().route("sign"),
        3,
        "every cycle signed remotely"
    );
}

#[test]
fn debug_logs_never_contain_the_token() {
    let (_dir, mut lab) = private_lab("secrets");
    let log = lab.path("e_akv.log");
    lab.set_env("AKV_LOG_LEVEL", "debug");
    lab.set_env("AKV_LOG_FILE", &log);
    let dgst = digest_file(&lab, "secrets", "sha256");
    let out = lab.ok(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("rsa2048"),
        "-in",
        &dgst,
        "-out",
        &lab.path("s.sig"),
        "-pkeyopt",
        "digest:sha256",
    ]);
    // A failing operation too, so that error paths are logged.
    let err = lab.fails(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("missing"),
        "-in",
        &dgst,
    ]);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("debug: signed with vault:myvault:rsa2048"),
        "{text}"
    );
    assert!(text.contains("error: cannot fetch the key"), "{text}");
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
                "the token appears in the {what}"
            );
            assert!(
                !haystack.contains(&token[..12]),
                "part of the token appears in the {what}"
            );
        }
    }
}

#[test]
fn azure_cli_and_static_tokens_through_the_engine() {
    let dir = TempDir::new("engine-credentials");
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
    let dgst = digest_file(&lab, "cred", "sha256");
    let check = |lab: &Lab, tag: &str| {
        let sig = lab.path(&format!("{tag}.sig"));
        lab.ok(&[
            "pkeyutl",
            "-sign",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            &key("p256"),
            "-in",
            &dgst,
            "-out",
            &sig,
        ]);
        lab.ok(&[
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            &lab.public_pem("p256"),
            "-in",
            &dgst,
            "-sigfile",
            &sig,
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
        "IMDS was never asked"
    );
}

#[test]
fn local_keys_are_untouched_when_the_engine_is_the_default() {
    // `-engine` makes the openssl CLI call ENGINE_set_default(e, ALL): every RSA and EC key,
    // local ones too, then goes through the engine's methods, which must hand them to
    // OpenSSL's own functions unchanged.
    let lab = lab();
    for (name, genkey) in [
        (
            "local-rsa",
            vec![
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
        ),
        (
            "local-ec",
            vec!["ecparam", "-genkey", "-name", "prime256v1", "-noout"],
        ),
    ] {
        let pem = lab.path(&format!("{name}.pem"));
        let mut args = genkey.clone();
        args.extend(["-out", &pem]);
        lab.ok(&args);
        let public = lab.path(&format!("{name}.pub"));
        lab.ok(&["pkey", "-in", &pem, "-pubout", "-out", &public]);
        let dgst = digest_file(lab, name, "sha256");
        let sig = lab.path(&format!("{name}.sig"));
        let mut sign = vec![
            "pkeyutl", "-sign", "-engine", "e_akv", "-inkey", &pem, "-in", &dgst, "-out", &sig,
        ];
        if name == "local-rsa" {
            sign.extend([
                "-pkeyopt",
                "digest:sha256",
                "-pkeyopt",
                "rsa_padding_mode:pss",
            ]);
        }
        lab.ok(&sign);
        let mut verify = vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
        ];
        if name == "local-rsa" {
            verify.extend([
                "-pkeyopt",
                "digest:sha256",
                "-pkeyopt",
                "rsa_padding_mode:pss",
            ]);
        }
        lab.ok(&verify);
        if name == "local-rsa" {
            let plain = write(lab, "local.txt", b"local secret");
            let ct = lab.path("local.ct");
            lab.ok(&[
                "pkeyutl",
                "-encrypt",
                "-pubin",
                "-inkey",
                &public,
                "-in",
                &plain,
                "-out",
                &ct,
                "-pkeyopt",
                "rsa_padding_mode:oaep",
            ]);
            let out = lab.ok(&[
                "pkeyutl",
                "-decrypt",
                "-engine",
                "e_akv",
                "-inkey",
                &pem,
                "-in",
                &ct,
                "-pkeyopt",
                "rsa_padding_mode:oaep",
            ]);
            assert_eq!(out.stdout, b"local secret");
            // Raw RSA with a local key is OpenSSL's business, and works.
            let raw_in = write(lab, "raw.bin", &[0x01; 256]);
            lab.ok(&[
                "rsautl",
                "-sign",
                "-raw",
                "-engine",
                "e_akv",
                "-inkey",
                &pem,
                "-in",
                &raw_in,
                "-out",
                &lab.path("raw.sig"),
            ]);
        }
    }
    // Raw RSA with a vault key is refused with the reason.
    let raw_in = write(lab, "raw2.bin", &[0x01; 256]);
    let err = lab.fails(&[
        "rsautl",
        "-sign",
        "-raw",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        &key("rsa2048"),
        "-in",
        &raw_in,
    ]);
    assert!(
        err.contains("not possible remotely") || err.contains("operation not possible"),
        "{err}"
    );
}
