//! What only the engine has: loading by path and from openssl.cnf, its control commands,
//! engine-only key strings, and local keys passing through its methods when it is the
//! default. Everything the engine shares with the provider (signing, certificates, CMS,
//! TLS, threads and fork, errors, secrets) is a row of tests/tests/front_ends.rs.

use akv_tests::lab::Lab;

fn lab() -> &'static Lab {
    Lab::shared("engine-cli", &[("rsa2048", "rsa2048"), ("p256", "p256")])
}

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

#[test]
fn engine_by_path_and_from_openssl_cnf() {
    let lab = lab();
    let lib = akv_tests::support::engine_library();
    let dgst = lab.digest_file("bypath", "sha256");
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
    let cnf_path = lab.write("openssl.cnf", cnf.as_bytes());
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

/// Engine key strings the provider's store never sees (OpenSSL routes them elsewhere).
#[test]
fn foreign_key_strings_are_refused_clearly() {
    let lab = lab();
    let dgst = lab.digest_file("errors", "sha256");
    let e = lab.fails(&[
        "pkeyutl",
        "-sign",
        "-engine",
        "e_akv",
        "-keyform",
        "engine",
        "-inkey",
        "pkcs11:token=x",
        "-in",
        &dgst,
    ]);
    assert!(e.contains("unknown key type"), "{e}");
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
        let dgst = lab.digest_file(name, "sha256");
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
        if name == "local-ec" {
            // ECDH through the engine's EC method (which answers size queries itself, see
            // ec.rs) gives OpenSSL's own secret.
            let peer = lab.path("peer-ec.pem");
            lab.ok(&[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                &peer,
            ]);
            let peer_public = lab.path("peer-ec.pub");
            lab.ok(&["pkey", "-in", &peer, "-pubout", "-out", &peer_public]);
            let derive = |engine: bool| {
                let mut args = vec![
                    "pkeyutl",
                    "-derive",
                    "-inkey",
                    &pem,
                    "-peerkey",
                    &peer_public,
                ];
                if engine {
                    args.extend(["-engine", "e_akv"]);
                }
                lab.ok(&args).stdout
            };
            let (through, plain) = (derive(true), derive(false));
            assert_eq!(through.len(), 32);
            assert_eq!(through, plain);
        }
        if name == "local-rsa" {
            let plain = lab.write("local.txt", b"local secret");
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
            let raw_in = lab.write("raw.bin", &[0x01; 256]);
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
    let raw_in = lab.write("raw2.bin", &[0x01; 256]);
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
