//! Hostile input through the real engine: absurd key strings and settings from C, a vault
//! that answers too much, too slowly or not at all, and secrets that must never surface in
//! logs or errors even with debug logging on.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, compile_c};

#[test]
fn hostile_key_strings_and_settings_are_refused_cleanly_under_valgrind() {
    let dir = TempDir::new("hostile-c");
    let lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    let bin = compile_c(dir.path(), "hostile", "-O1");
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
        .arg("vault:myvault:p256")
        .output()
        .expect("valgrind runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert_eq!(stdout.matches(": refused: ").count(), 23, "{stdout}");
    assert!(stdout.contains("good key: loaded"));
    // Our own refusals name the library and the reason.
    for line in stdout
        .lines()
        .filter(|l| l.starts_with("key ") || l.starts_with("setting ") && !l.contains("unknown"))
    {
        assert!(line.contains("e_akv"), "{line}");
    }
    assert!(
        stdout.contains("too long") || stdout.contains("at most 1024"),
        "{stdout}"
    );
    assert!(stdout.contains("not valid UTF-8"), "{stdout}");
}

/// How the fake vault misbehaves on sign requests.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Misbehaviour {
    Huge,
    Drip,
    Cut,
}

const BUNDLE: &str = r#"{"key":{"kid":"https://myvault.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef","kty":"EC","crv":"P-256","key_ops":["sign"],"x":"AbEovQDDJonNdMThNpJvsOA67GDXelIHBdJLIM8xqrY","y":"qnsQsjgpxdtwrIKPLY1KlMX1Ol6se4s49i2Nb-zPs4I"},"attributes":{"enabled":true}}"#;

fn answer(mut stream: TcpStream, mode: Misbehaviour) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_string();
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    if head.starts_with("GET /metadata/") {
        let _ = stream
            .write_all(ok(r#"{"access_token":"hostile-token","expires_in":"3600"}"#).as_bytes());
    } else if head.starts_with("GET /keys/") {
        let _ = stream.write_all(ok(BUNDLE).as_bytes());
    } else {
        match mode {
            Misbehaviour::Huge => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 104857600\r\n\r\n");
                let chunk = vec![b'x'; 65536];
                while stream.write_all(&chunk).is_ok() {}
            }
            Misbehaviour::Drip => {
                for byte in ok(r#"{"kid":"k","value":"AQID"}"#).bytes() {
                    if stream.write_all(&[byte]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
            Misbehaviour::Cut => {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 200\r\n\r\n{\"kid\":\"k\",\"val",
                );
            }
        }
    }
}

fn fake_vault(mode: Misbehaviour) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    std::thread::spawn(move || answer(s, mode));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    (origin, stop)
}

#[test]
fn a_vault_that_answers_too_much_too_slowly_or_partly_gives_clean_errors() {
    let dir = TempDir::new("hostile-vault");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    let dgst = lab.path("d.bin");
    std::fs::write(&dgst, [7u8; 32]).unwrap();
    for (mode, expected) in [
        (Misbehaviour::Huge, "response too large"),
        (Misbehaviour::Drip, "timed out"),
        (Misbehaviour::Cut, "connection failed"),
    ] {
        let (origin, stop) = fake_vault(mode);
        lab.set_env("AKV_ENDPOINT", &origin);
        lab.set_env("AKV_IMDS_ENDPOINT", &origin);
        lab.set_env("AKV_BUDGET_MS", "2500");
        lab.set_env("AKV_REQUEST_TIMEOUT_MS", "1000");
        let started = Instant::now();
        let err = lab.fails(&[
            "pkeyutl",
            "-sign",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            "vault:myvault:k",
            "-in",
            &dgst,
        ]);
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        assert!(
            err.contains("e_akv")
                && err.contains("Key Vault signing failed")
                && err.contains(expected),
            "{mode:?}: {err}"
        );
        assert!(
            elapsed < Duration::from_secs(8),
            "{mode:?} took {elapsed:?}"
        );
        assert!(
            !err.contains("hostile-token"),
            "the token never appears in errors"
        );
    }
}

#[test]
fn secrets_never_surface_in_debug_logs_or_errors() {
    const SECRET: &str = "client-secret-Zq81";
    const ASSERTION: &str = "federated-assertion-Xw27";
    let dir = TempDir::new("secrets-everywhere");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |c| {
        c.entra_clients = vec![
            ("app-1".into(), SECRET.into()),
            ("app-2".into(), ASSERTION.into()),
        ];
    });
    let log = lab.path("debug.log");
    let dgst = lab.path("d.bin");
    std::fs::write(&dgst, [7u8; 32]).unwrap();
    let assertion_file = lab.path("federated-token");
    std::fs::write(&assertion_file, ASSERTION).unwrap();
    let base = lab.emulator().base_url();
    lab.set_env("AKV_LOG_LEVEL", "debug");
    lab.set_env("AKV_LOG_FILE", &log);
    lab.set_env("AZURE_AUTHORITY_HOST", &base);
    lab.set_env("AZURE_TENANT_ID", "tenant-1");
    let sign = |lab: &Lab| {
        lab.openssl(&[
            "pkeyutl",
            "-sign",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-inkey",
            "vault:myvault:p256",
            "-in",
            &dgst,
            "-out",
            &lab.path("s.sig"),
        ])
    };
    let mut outputs = Vec::new();
    // Client secret, right then wrong.
    lab.set_env("AKV_CREDENTIAL", "client-secret");
    lab.set_env("AZURE_CLIENT_ID", "app-1");
    lab.set_env("AZURE_CLIENT_SECRET", SECRET);
    let out = sign(&lab);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    outputs.push(out);
    lab.set_env("AZURE_CLIENT_SECRET", &format!("{SECRET}-wrong"));
    let out = sign(&lab);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("AADSTS7000215"));
    outputs.push(out);
    // Workload identity.
    lab.set_env("AKV_CREDENTIAL", "workload-identity");
    lab.set_env("AZURE_CLIENT_ID", "app-2");
    lab.set_env("AZURE_FEDERATED_TOKEN_FILE", &assertion_file);
    let out = sign(&lab);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    outputs.push(out);

    let mut haystacks = vec![std::fs::read_to_string(&log).unwrap()];
    assert!(
        haystacks[0].contains("signed with"),
        "debug logging was on: {}",
        haystacks[0]
    );
    for out in &outputs {
        haystacks.push(String::from_utf8_lossy(&out.stdout).into_owned());
        haystacks.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let tokens = lab.emulator().issued_tokens();
    assert_eq!(tokens.len(), 2, "one token per successful run");
    for text in &haystacks {
        for secret in [SECRET, ASSERTION]
            .iter()
            .map(|s| s.to_string())
            .chain(tokens.iter().cloned())
        {
            assert!(!text.contains(&secret), "a secret leaked into:\n{text}");
        }
    }
}
