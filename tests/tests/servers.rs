//! Keyless TLS in real servers: nginx (4 workers, RSA and EC, TLS 1.2 and 1.3, 2,000
//! handshakes, reload, faults, an outage), curl with its client key in the vault, and
//! stunnel. Every handshake is a full one and costs the server a remote signature.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use akv_tests::lab::Lab;
use akv_tests::servers::{
    Nginx, TestCa, handshakes, handshakes_under_faults, nginx_through_a_vault_hang,
    outage_then_recovery,
};
use akv_tests::support::{TempDir, free_port};

fn server_block(port: u16, key: &str, crt: &str, extra: &str) -> String {
    format!(
        "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {crt};\n        ssl_certificate_key \"engine:e_akv:vault:myvault:{key}\";\n{extra}        location / {{ return 200 \"hello from nginx, key {key}\\n\"; }}\n    }}\n"
    )
}

fn curl(lab: &Lab, args: &[&str]) -> (bool, String) {
    let out = lab
        .command("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn s_client(lab: &Lab, port: u16, ca: &str, version: &str) -> String {
    let mut child = lab
        .command("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            version,
            "-CAfile",
            ca,
            "-verify_return_error",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdin.take());
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

#[test]
fn nginx_serves_rsa_and_ec_keys_from_the_vault_under_load_and_reload() {
    let dir = TempDir::new("nginx");
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |c| c.cache_signatures = false,
    );
    let ca = TestCa::new(&lab);
    let rsa_crt = ca.issue(&lab, "rsa2048", "rsa-server", false);
    let ec_crt = ca.issue(&lab, "p256", "ec-server", false);
    let (rsa_port, ec_port) = (free_port(), free_port());
    lab.emulator().reset_stats();
    let body = server_block(rsa_port, "rsa2048", &rsa_crt, "")
        + &server_block(ec_port, "p256", &ec_crt, "");
    let nginx = Nginx::start(&lab, "nginx", 4, &body, ec_port);
    let after_start = lab.emulator().stats();
    assert_eq!(
        after_start.route("get_key"),
        2,
        "the master loaded both keys: {after_start:?}"
    );

    // Real clients, both protocol versions.
    for (port, key) in [(rsa_port, "rsa2048"), (ec_port, "p256")] {
        let (ok, text) = curl(
            &lab,
            &["--cacert", &ca.cert, &format!("https://localhost:{port}/")],
        );
        assert!(ok && text.contains(&format!("key {key}")), "{text}");
        for (version, proto) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
            let text = s_client(&lab, port, &ca.cert, version);
            assert!(
                text.contains("Verification: OK") && text.contains(&format!("New, {proto}")),
                "{key} {version}:\n{text}"
            );
        }
    }

    // 2,000 full handshakes from 8 threads, half on each key.
    for port in [rsa_port, ec_port] {
        let report = handshakes(port, Path::new(&ca.cert), 1000, 8);
        assert_eq!(report.failed, 0, "{report:?}\n{}", nginx.error_log());
        assert_eq!(report.ok, 1000);
        eprintln!("1000 handshakes on port {port} in {:?}", report.elapsed);
    }
    let stats = lab.emulator().stats();
    assert!(stats.route("sign") >= 2000, "{stats:?}");
    // Each process (master and every worker that served) has its own connection and token.
    assert_eq!(stats.connections, stats.token_requests, "{stats:?}");
    assert!(
        (3..=5).contains(&stats.token_requests),
        "master + at least two of the 4 workers, each once: {stats:?}"
    );

    // Reload: new workers, same keys, still serving.
    nginx.signal("HUP");
    std::thread::sleep(Duration::from_millis(1500));
    let report = handshakes(rsa_port, Path::new(&ca.cert), 100, 4);
    assert_eq!(
        report.failed,
        0,
        "after reload: {report:?}\n{}",
        nginx.error_log()
    );
    assert!(
        !nginx.error_log().contains("[emerg]"),
        "{}",
        nginx.error_log()
    );
}

#[test]
fn nginx_rides_out_throttling_and_recovers_from_an_outage() {
    let dir = TempDir::new("nginx-faults");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    lab.set_env("AKV_BUDGET_MS", "4000");
    // A CA file only its owner can read: nginx workers (run as another user when nginx
    // starts as root) must still trust the vault, from what the master read.
    let private_ca = lab.path("private-ca.pem");
    std::fs::copy(
        lab.env()
            .iter()
            .find(|(k, _)| k == "AKV_CA_FILE")
            .map(|(_, v)| v.clone())
            .unwrap(),
        &private_ca,
    )
    .unwrap();
    std::fs::set_permissions(
        &private_ca,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    lab.set_env("AKV_CA_FILE", &private_ca);
    // Likewise the engine's log file: workers write through what the master opened.
    let private_log = lab.path("private.log");
    std::fs::write(&private_log, "").unwrap();
    std::fs::set_permissions(
        &private_log,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    lab.set_env("AKV_LOG_LEVEL", "error");
    lab.set_env("AKV_LOG_FILE", &private_log);
    let ca = TestCa::new(&lab);
    let crt = ca.issue(&lab, "p256", "faulty-server", false);
    let port = free_port();
    let nginx = Nginx::start(
        &lab,
        "nginx",
        2,
        &server_block(port, "p256", &crt, ""),
        port,
    );

    // Throttling and 503s: the retries absorb every one of them.
    let report = handshakes_under_faults(&lab, port, Path::new(&ca.cert));
    assert_eq!(report.failed, 0, "{report:?}");

    // Vault down: handshakes fail cleanly and the error log says why. Back up (with none of
    // the old tokens): serving again, nginx untouched.
    outage_then_recovery(&mut lab, port, Path::new(&ca.cert), || nginx.error_log());
    let log = nginx.error_log();
    assert!(
        log.contains("e_akv")
            && (log.contains("cannot connect") || log.contains("connection failed")),
        "the log names the cause:\n{log}"
    );
    let engine_log = std::fs::read_to_string(&private_log).unwrap();
    assert!(
        engine_log.contains("unreachable after") && engine_log.contains("answers again after"),
        "workers logged the outage and the recovery, once each:\n{engine_log}"
    );
}

#[test]
fn curl_uses_a_vault_key_for_its_client_certificate() {
    let dir = TempDir::new("curl-mtls");
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |_| {},
    );
    let ca = TestCa::new(&lab);
    let server_crt = ca.issue(&lab, "rsa2048", "mtls-server", false);
    let client_crt = ca.issue(&lab, "p256", "vault-client", true);
    let port = free_port();
    let extra = format!(
        "        ssl_verify_client on;\n        ssl_client_certificate {};\n        add_header X-Client $ssl_client_s_dn always;\n",
        ca.cert
    );
    let _nginx = Nginx::start(
        &lab,
        "nginx",
        1,
        &server_block(port, "rsa2048", &server_crt, &extra),
        port,
    );
    let url = format!("https://localhost:{port}/");
    // Without a client certificate nginx refuses.
    let (_, text) = curl(&lab, &["--cacert", &ca.cert, &url]);
    assert!(
        text.contains("400") || text.contains("No required SSL certificate"),
        "{text}"
    );
    let (ok, text) = curl(
        &lab,
        &[
            "-i",
            "--cacert",
            &ca.cert,
            "--engine",
            "e_akv",
            "--key-type",
            "ENG",
            "--key",
            "vault:myvault:p256",
            "--cert",
            &client_crt,
            &url,
        ],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("200") && text.contains("CN=vault-client"),
        "{text}"
    );
}

#[test]
fn stunnel_serves_with_a_vault_key() {
    let dir = TempDir::new("stunnel");
    let lab = Lab::start(dir.path(), &[("rsa2048", "rsa2048")], |_| {});
    let ca = TestCa::new(&lab);
    let crt = ca.issue(&lab, "rsa2048", "stunnel-server", false);
    // A plain HTTP backend behind stunnel.
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    let served = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let mut n = 0;
        for stream in backend.incoming().take(3) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\nfrom backend\n",
            );
            n += 1;
        }
        n
    });
    let port = free_port();
    let conf = lab.path("stunnel.conf");
    std::fs::write(
        &conf,
        format!("foreground = yes\npid =\ndebug = 4\nengine = e_akv\n[tls]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend_port}\nengineId = e_akv\nkey = vault:myvault:rsa2048\ncert = {crt}\n"),
    )
    .unwrap();
    let mut stunnel = lab
        .command("stunnel4")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("stunnel4 runs (scripts/test.sh installs it)");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The probe above was one connection; three handshakes follow.
    let results: Vec<_> = if up {
        (0..3)
            .map(|i| {
                let versions = if i % 2 == 0 { "--tlsv1.3" } else { "--tls-max" };
                let mut args = vec!["--cacert", ca.cert.as_str()];
                if versions == "--tls-max" {
                    args.extend(["--tls-max", "1.2"]);
                }
                let url = format!("https://localhost:{port}/");
                args.push(&url);
                curl(&lab, &args)
            })
            .collect()
    } else {
        Vec::new()
    };
    let _ = stunnel.kill();
    let output = stunnel.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(up, "stunnel did not start:\n{log}");
    for (ok, text) in results {
        assert!(
            ok && text.contains("from backend"),
            "{text}\nstunnel log:\n{log}"
        );
    }
    drop(served);
}

/// A vault that hangs (accepts connections, never answers) does not take nginx down with it:
/// with 4 workers serving a vault-key site under steady load and a local-key site, each
/// worker stalls once (its first operation spends its budget, and two timeouts open the
/// worker's circuit), then vault handshakes fail at once and the local site answers
/// promptly (p99 under 100 ms once the workers have learned). When the vault answers again,
/// vault handshakes succeed within the longest cool-down, with no restart. The log says so
/// once per transition, not once per operation.
#[test]
fn nginx_keeps_serving_while_the_vault_hangs() {
    let dir = TempDir::new("nginx-hang");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    let log = lab.path("akv.log");
    lab.set_env("AKV_LOG_LEVEL", "info");
    lab.set_env("AKV_LOG_FILE", &log);
    let ca = TestCa::new(&lab);
    let settled = Duration::from_secs(12);
    let (f, nginx) = nginx_through_a_vault_hang(
        &lab,
        &ca,
        "nginx",
        Duration::from_secs(25),
        Duration::from_secs(14),
        settled,
    );
    f.assert_served_through("nginx, vault hanging", 100, || nginx.error_log());
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let opened = logged.matches("now fail at once").count();
    assert!(
        (1..=4).contains(&opened),
        "one 'circuit open' line per worker that saw the outage, not per operation: {opened}\n{logged}"
    );
    assert!(logged.contains("answers again after"), "{logged}");
    assert!(
        !logged.contains("failing fast, next probe"),
        "no line per failed handshake at the error level: {logged}"
    );
    drop(nginx);
}
