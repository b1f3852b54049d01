//! Code signing with vault keys, each result checked by the tool's own verifier: UEFI Secure
//! Boot images (`sbsign`/`sbverify`), Authenticode (`osslsigncode sign`/`verify`), RFC 3161
//! timestamps (`openssl ts -reply`/`-verify`), CMS and S/MIME detached signatures, and Linux
//! kernel modules (`sign-file`, its appended PKCS#7 checked with OpenSSL). Tools that take an
//! engine get the engine; every tool also gets a key reference file, which it reads as a PEM
//! key through the provider (openssl.cnf), as it would read a key file.

use std::process::Output;

use akv_tests::frontends::FrontEnd;
use akv_tests::lab::Lab;
use akv_tests::servers::TestCa;
use akv_tests::support::{TempDir, provider_cnf, strings};

/// A lab with an RSA and an EC vault key and a CA, which issues certificates for the vault
/// keys as a test needs them.
struct SigningLab {
    dir: TempDir,
    lab: Lab,
    ca: TestCa,
}

impl SigningLab {
    fn new(tag: &str) -> SigningLab {
        let dir = TempDir::new(&format!("code-signing-{tag}"));
        let lab = Lab::start(
            dir.path(),
            &[("rsa2048", "rsa2048"), ("p256", "p256")],
            |_| {},
        );
        let ca = TestCa::new(&lab);
        SigningLab { dir, lab, ca }
    }

    /// A certificate for the vault key with `extensions`.
    fn certificate(&self, key: &str, purpose: &str, extensions: &str) -> String {
        self.ca
            .issue_with(&self.lab, key, &format!("{purpose}-{key}"), extensions)
    }

    /// The reference file of a vault key.
    fn reference(&self, key: &str) -> String {
        self.lab.write(
            &format!("{key}.ref.pem"),
            akv_proto::key_ref::to_pem(&format!("vault:myvault:{key}")).as_bytes(),
        )
    }

    /// `program ARGS` with the lab's environment, and the provider activated by openssl.cnf
    /// when `provider` (a reference file is then read as a key).
    fn run(&self, provider: bool, program: &str, args: &[&str]) -> Output {
        let mut command = self.lab.command(program);
        if provider {
            command.env("OPENSSL_CONF", provider_cnf(&self.lab, self.dir.path()));
        }
        command.args(args).output().expect("the tool runs")
    }

    /// As [`SigningLab::run`], insisting that it succeeds; returns stdout and stderr.
    fn ok(&self, provider: bool, program: &str, args: &[&str]) -> String {
        succeeded(self.run(provider, program, args), program, args)
    }

    /// Checks with plain OpenSSL (`cms` or `smime -verify`, `extra` arguments added) that a
    /// DER detached signature verifies against the CA for `content` and not for `other`.
    fn detached_signature_verifies(
        &self,
        command: &str,
        signature: &str,
        content: &str,
        extra: &[&str],
        other: &str,
    ) {
        let verify = |data: &str| {
            let mut args = vec![
                command,
                "-verify",
                "-binary",
                "-inform",
                "DER",
                "-in",
                signature,
                "-content",
                data,
                "-CAfile",
                &self.ca.cert,
                "-purpose",
                "any",
                "-out",
                "/dev/null",
            ];
            args.extend(extra);
            self.lab.openssl(&args)
        };
        let good = verify(content);
        assert!(
            good.status.success(),
            "{signature}: {}",
            String::from_utf8_lossy(&good.stderr)
        );
        assert!(
            !verify(other).status.success(),
            "{signature}: verifies for other content"
        );
    }
}

/// What a command printed (stdout, then stderr), insisting that it succeeded.
fn succeeded(out: Output, what: &str, args: &[&str]) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} {} failed:\n{text}",
        args.join(" ")
    );
    text
}

/// An EFI binary to sign: systemd-boot, from Debian's systemd-boot-efi.
const EFI_IMAGE: &str = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi";

/// `sbsign` with the engine (`--engine e_akv --key vault:...`) and with a reference file
/// (read as a PEM key through the provider); `sbverify` accepts both against the CA.
#[test]
fn sbsign_signs_uefi_images_and_sbverify_accepts_them() {
    let sl = SigningLab::new("sbsign");
    let crt = sl.certificate("rsa2048", "secure-boot", "extendedKeyUsage=codeSigning");
    let reference = sl.reference("rsa2048");
    for (route, provider, key_args) in [
        (
            "engine",
            false,
            vec!["--engine", "e_akv", "--key", "vault:myvault:rsa2048"],
        ),
        ("reference", true, vec!["--key", reference.as_str()]),
    ] {
        let signed = sl.lab.path(&format!("boot-{route}.efi"));
        let mut args = key_args.clone();
        args.extend(["--cert", &crt, "--output", &signed, EFI_IMAGE]);
        sl.ok(provider, "sbsign", &args);
        let verdict = sl.ok(false, "sbverify", &["--cert", &sl.ca.cert, &signed]);
        assert!(
            verdict.contains("Signature verification OK"),
            "{route}: {verdict}"
        );
        eprintln!("sbverify, {route}: {}", verdict.trim());
        // Not a check that cannot fail: another CA is refused.
        let other = TestCa::named(&sl.lab, "other-ca");
        let refused = sl.run(false, "sbverify", &["--cert", &other.cert, &signed]);
        assert!(!refused.status.success(), "{route}: another CA refused");
    }
}

/// `osslsigncode sign` with the engine (`-pkcs11engine e_akv.so -key vault:...`) and with a
/// reference file through the provider, RSA and EC (Authenticode allows ECDSA); `osslsigncode
/// verify` accepts each against the CA and refuses a tampered copy.
#[test]
fn osslsigncode_signs_authenticode_and_verifies() {
    let sl = SigningLab::new("osslsigncode");
    let engine = akv_tests::support::engine_library().display().to_string();
    for key in ["rsa2048", "p256"] {
        let crt = sl.certificate(key, "authenticode", "extendedKeyUsage=codeSigning");
        let reference = sl.reference(key);
        let vault_key = format!("vault:myvault:{key}");
        for (route, provider, key_args) in [
            (
                "engine",
                false,
                vec!["-pkcs11engine", engine.as_str(), "-key", vault_key.as_str()],
            ),
            ("reference", true, vec!["-key", reference.as_str()]),
        ] {
            let signed = sl.lab.path(&format!("boot-{key}-{route}.efi"));
            let mut args = vec!["sign"];
            args.extend(key_args.iter().copied());
            args.extend([
                "-certs",
                &crt,
                "-h",
                "sha256",
                "-n",
                "e_akv test",
                "-in",
                EFI_IMAGE,
                "-out",
                &signed,
            ]);
            sl.ok(provider, "osslsigncode", &args);
            let verdict = sl.ok(
                false,
                "osslsigncode",
                &["verify", "-CAfile", &sl.ca.cert, "-in", &signed],
            );
            assert!(
                verdict.contains("Signature verification: ok") || verdict.contains("Succeeded"),
                "{key} {route}: {verdict}"
            );
            eprintln!("osslsigncode verify, {key} {route}:\n{}", verdict.trim());
            // Not a check that cannot fail: a changed byte in the signed image is refused.
            let mut bytes = std::fs::read(&signed).unwrap();
            bytes[0x200] ^= 0xff;
            let tampered = sl.lab.write(&format!("tampered-{key}-{route}.efi"), &bytes);
            let refused = sl.run(
                false,
                "osslsigncode",
                &["verify", "-CAfile", &sl.ca.cert, "-in", &tampered],
            );
            assert!(
                !refused.status.success(),
                "{key} {route}: tampered copy refused"
            );
        }
    }
}

/// Runs `openssl COMMAND ARGS` of front end `fe` (its provider configured), insisting that
/// it succeeds; returns stdout and stderr.
fn fe_ok(fe: &FrontEnd, lab: &Lab, command: &str, args: &[&str]) -> String {
    let what = format!("{}: openssl {command}", fe.name());
    succeeded(fe.run(lab, command, &strings(args)), &what, args)
}

/// An RFC 3161 time-stamping authority whose key is in the vault: `openssl ts -reply -inkey
/// ref.pem` answers a query (RSA and EC), `openssl ts -verify` accepts the reply against
/// the CA, on OpenSSL 3.0 and 4.0.3; a reply checked against another query is refused.
#[test]
fn openssl_ts_replies_with_a_vault_key() {
    let sl = SigningLab::new("ts");
    let lab = &sl.lab;
    let data = lab.write("release.tar", b"the release to be time-stamped\n");
    for key in ["rsa2048", "p256"] {
        let tsa = sl.certificate(key, "tsa", "extendedKeyUsage=critical,timeStamping");
        let reference = sl.reference(key);
        let cnf = lab.write(
            &format!("tsa-{key}.cnf"),
            format!(
                "[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\nserial = {}\n\
                 default_policy = 1.2.3.4.1\nother_policies = 1.2.3.4.5\n\
                 signer_digest = sha256\ndigests = sha256, sha384\naccuracy = secs:1\nordering = yes\n\
                 tsa_name = yes\ness_cert_id_alg = sha256\n",
                lab.path(&format!("tsa-{key}.serial"))
            )
            .as_bytes(),
        );
        for fe in FrontEnd::providers() {
            let tag = format!("{}-{key}", fe.tag());
            let query = lab.path(&format!("{tag}.tsq"));
            let reply = lab.path(&format!("{tag}.tsr"));
            fe_ok(
                &fe,
                lab,
                "ts",
                &["-query", "-data", &data, "-sha256", "-cert", "-out", &query],
            );
            fe_ok(
                &fe,
                lab,
                "ts",
                &[
                    "-reply",
                    "-config",
                    &cnf,
                    "-queryfile",
                    &query,
                    "-inkey",
                    &reference,
                    "-signer",
                    &tsa,
                    "-out",
                    &reply,
                ],
            );
            let verdict = fe_ok(
                &fe,
                lab,
                "ts",
                &[
                    "-verify",
                    "-in",
                    &reply,
                    "-queryfile",
                    &query,
                    "-CAfile",
                    &sl.ca.cert,
                ],
            );
            assert!(verdict.contains("Verification: OK"), "{tag}: {verdict}");
            eprintln!("openssl ts -verify, {tag}: {}", verdict.trim());
            let text = fe_ok(&fe, lab, "ts", &["-reply", "-in", &reply, "-text"]);
            assert!(text.contains("Status: Granted"), "{tag}: {text}");
            // Not a check that cannot fail: the reply does not match another query.
            let other_data = lab.write(&format!("{tag}-other.txt"), b"something else\n");
            let other = fe.run(
                lab,
                "ts",
                &strings(&[
                    "-verify",
                    "-in",
                    &reply,
                    "-data",
                    &other_data,
                    "-CAfile",
                    &sl.ca.cert,
                ]),
            );
            assert!(!other.status.success(), "{tag}: another message refused");
        }
    }
}

/// `openssl cms -sign` and `openssl smime -sign` detached signatures with a reference file,
/// RSA and EC, on OpenSSL 3.0 and 4.0.3, verified with plain OpenSSL against the CA; the
/// verification fails for changed content.
#[test]
fn cms_and_smime_detached_signatures_with_a_reference_file() {
    let sl = SigningLab::new("cms");
    let lab = &sl.lab;
    let content = lab.write("firmware.bin", &[0x5a; 4096]);
    let changed = lab.write("firmware-changed.bin", &[0x5b; 4096]);
    for key in ["rsa2048", "p256"] {
        let crt = sl.certificate(key, "cms", "extendedKeyUsage=codeSigning,emailProtection");
        let reference = sl.reference(key);
        for fe in FrontEnd::providers() {
            for command in ["cms", "smime"] {
                let tag = format!("{}-{key}-{command}", fe.tag());
                let signature = lab.path(&format!("{tag}.p7s"));
                fe_ok(
                    &fe,
                    lab,
                    command,
                    &[
                        "-sign", "-binary", "-in", &content, "-signer", &crt, "-inkey", &reference,
                        "-md", "sha256", "-outform", "DER", "-out", &signature,
                    ],
                );
                sl.detached_signature_verifies(command, &signature, &content, &[], &changed);
            }
        }
    }
}

/// The kernel's `sign-file` (Debian's linux-kbuild) signs a module with a reference file
/// (RSA and EC); the signature it appends (PKCS#7, no signed attributes, no certificate) is
/// taken apart and verified by plain OpenSSL against the module's bytes.
#[test]
fn kernel_sign_file_signs_a_module_with_a_reference_file() {
    let sl = SigningLab::new("sign-file");
    let lab = &sl.lab;
    let module: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 251) as u8).collect();
    for key in ["rsa2048", "p256"] {
        let crt = sl.certificate(key, "modules", "extendedKeyUsage=codeSigning");
        let reference = sl.reference(key);
        let signed = lab.write(&format!("module-{key}.ko"), &module);
        sl.ok(true, SIGN_FILE, &["sha256", &reference, &crt, &signed]);
        let bytes = std::fs::read(&signed).unwrap();
        let (unsigned, pkcs7) = split_module_signature(&bytes).expect("a signature is appended");
        assert_eq!(
            unsigned,
            module.as_slice(),
            "{key}: the module is unchanged"
        );
        let content = lab.write(&format!("module-{key}.unsigned"), unsigned);
        let signature = lab.write(&format!("module-{key}.p7"), pkcs7);
        // The kernel's signature carries no certificate: the verifier is given it.
        let other = lab.write(&format!("module-{key}.other"), &module[1..]);
        sl.detached_signature_verifies("cms", &signature, &content, &["-certfile", &crt], &other);
    }
}

/// Debian's build of the kernel's module signing tool.
const SIGN_FILE: &str = "/usr/lib/linux-kbuild-6.1/scripts/sign-file";

/// Splits a signed module into its bytes and the PKCS#7 signature: the kernel appends the
/// signature, a 12-byte `struct module_signature` (whose last 4 bytes are the signature's
/// length, big-endian) and the marker.
fn split_module_signature(signed: &[u8]) -> Option<(&[u8], &[u8])> {
    const MARKER: &[u8] = b"~Module signature appended~\n";
    let rest = signed.strip_suffix(MARKER)?;
    let (rest, info) = rest.split_at(rest.len().checked_sub(12)?);
    let length = u32::from_be_bytes(info[8..12].try_into().ok()?) as usize;
    let (module, pkcs7) = rest.split_at(rest.len().checked_sub(length)?);
    Some((module, pkcs7))
}

#[test]
fn module_signatures_are_split_where_the_kernel_puts_them() {
    let mut signed = b"MODULE".to_vec();
    signed.extend_from_slice(b"SIG");
    signed.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    signed.extend_from_slice(b"~Module signature appended~\n");
    assert_eq!(
        split_module_signature(&signed),
        Some((&b"MODULE"[..], &b"SIG"[..]))
    );
    assert_eq!(split_module_signature(b"MODULE"), None);
}
