//! What only the provider has: its store URIs in every spelling, its declared ABI checked
//! against the headers of OpenSSL 3.0 and 4.0.3, and its openssl.cnf settings. Everything it
//! shares with the engine (signing, certificates, CMS, TLS, threads and fork, errors,
//! secrets) is a row of tests/tests/front_ends.rs.

use std::path::Path;

use akv_tests::frontends::FrontEnd;
use akv_tests::lab::Lab;
use akv_tests::support::{openssl4, provider_dir};

fn lab() -> &'static Lab {
    Lab::shared("provider-cli", &[("p256", "p256"), ("rsa2048", "rsa2048")])
}

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

/// Every spelling of a key reaches the same vault key, and `storeutl` lists it.
#[test]
fn store_uris_in_every_spelling() {
    let lab = lab();
    let public = lab
        .ok(&["pkey", "-pubin", "-in", &lab.public_pem("p256"), "-pubout"])
        .stdout;
    let version = lab.emulator().latest_version("p256").unwrap();
    let url = format!("{}/keys/p256/{version}", lab.emulator().base_url());
    for fe in FrontEnd::providers() {
        for uri in [
            key("p256"),
            "VAULT:myvault:p256".to_string(),
            format!("akv:vault:myvault:p256:{version}"),
            format!("akv:{url}"),
            format!("akv:type=vault,vault=myvault,name=p256,version={version}"),
        ] {
            let out = fe.run(lab, "pkey", &["-in".into(), uri.clone(), "-pubout".into()]);
            assert_eq!(
                out.stdout,
                public,
                "{}: {uri}: {}",
                fe.name(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let out = fe.run(lab, "storeutl", &["akv:vault:myvault:p256".into()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Total found: 1"), "{}: {text}", fe.name());
    }
}

/// The ids and names akv-provider declares by hand equal the headers' of both versions.
#[test]
fn declared_abi_matches_the_headers_of_openssl_3_and_4() {
    let lab = lab();
    // A C program that prints, from the real headers, each constant the Rust side declares.
    let mut src = String::from(
        "#include <openssl/core.h>\n#include <openssl/core_dispatch.h>\n\
         #include <openssl/core_names.h>\n#include <openssl/core_object.h>\n\
         #include <openssl/rsa.h>\n#include <openssl/store.h>\n#include <stdio.h>\n\
         int main(void)\n{\n",
    );
    for (name, _) in akv::abi::CHECKED {
        src.push_str(&format!(
            "    printf(\"%s %ld\\n\", \"{name}\", (long)({name}));\n"
        ));
    }
    for (name, _) in akv::abi::names::CHECKED {
        src.push_str(&format!("    printf(\"%s %s\\n\", \"{name}\", {name});\n"));
    }
    src.push_str("    return 0;\n}\n");
    let src_path = lab.write("provider_abi.c", src.as_bytes());
    let four = openssl4().join("include");
    for (tag, include) in [("v3", None), ("v4", Some(four))] {
        let bin = lab.path(&format!("provider_abi_{tag}"));
        let mut cc = std::process::Command::new("cc");
        if let Some(dir) = &include {
            cc.arg("-I").arg(dir);
        }
        let out = cc.args(["-o", &bin, &src_path]).output().expect("cc runs");
        assert!(
            out.status.success(),
            "{tag}: {}",
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
    }
}

/// The provider configured only by openssl.cnf (module path and settings in its section, no
/// AKV_* variables), on both versions; a bad setting names itself on every key load.
#[test]
fn settings_from_openssl_cnf() {
    let lab = lab();
    for fe in FrontEnd::providers() {
        let ossl = fe.openssl();
        let providers = provider_dir(Path::new(&lab.path("")));
        let env: std::collections::HashMap<String, String> = lab.env().into_iter().collect();
        let cnf = |credential: &str| {
            let path = lab.path(&format!("{}-akv-{credential}.cnf", fe.tag()));
            std::fs::write(
                &path,
                format!(
                    "openssl_conf = openssl_init\n\
                     [openssl_init]\nproviders = provider_section\n\
                     [provider_section]\ndefault = default_section\nakv = akv_section\n\
                     [default_section]\nactivate = 1\n\
                     [akv_section]\nmodule = {}\nENDPOINT = {}\nIMDS_ENDPOINT = {}\n\
                     CA_FILE = {}\nCREDENTIAL = {credential}\nactivate = 1\n",
                    providers.join("akv.so").display(),
                    env["AKV_ENDPOINT"],
                    env["AKV_IMDS_ENDPOINT"],
                    env["AKV_CA_FILE"],
                ),
            )
            .unwrap();
            path
        };
        let run = |conf: &str, dgst: &str, sig: &str| {
            let mut c = lab.command(ossl.program.to_str().unwrap());
            if let Some(libs) = &ossl.libs {
                c.env("LD_LIBRARY_PATH", libs);
            }
            for name in [
                "AKV_ENDPOINT",
                "AKV_IMDS_ENDPOINT",
                "AKV_CA_FILE",
                "AKV_CREDENTIAL",
            ] {
                c.env_remove(name);
            }
            c.env("OPENSSL_CONF", conf)
                .args([
                    "pkeyutl",
                    "-sign",
                    "-inkey",
                    &key("p256"),
                    "-in",
                    dgst,
                    "-out",
                    sig,
                ])
                .output()
                .unwrap()
        };
        let dgst = lab.digest_file(&format!("{}-cnf", fe.tag()), "sha256");
        let sig = lab.path(&format!("{}-cnf.sig", fe.tag()));
        let out = run(&cnf("managed-identity"), &dgst, &sig);
        assert!(
            out.status.success(),
            "{}: {}",
            ossl.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let public = lab.public_pem("p256");
        lab.ok(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
        ]);

        let out = run(&cnf("magic"), &dgst, &sig);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains("CREDENTIAL")
                && stderr.contains("magic")
                && stderr.contains("openssl.cnf"),
            "{}: {stderr}",
            ossl.name
        );
    }
}
