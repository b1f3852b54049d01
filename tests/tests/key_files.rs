//! Key reference files: a PEM block that names a vault key (no secret), written by the
//! provider's encoder and read by its decoder, so that programs which read only key files
//! use vault keys unchanged.

use std::path::Path;

use akv_tests::emulator::Faults;
use akv_tests::frontends::{FrontEnd, OpenSsl};
use akv_tests::lab::Lab;
use akv_tests::servers::{Haproxy, Nginx, TestCa, handshakes};
use akv_tests::support::{TempDir, free_port, provider_dir};

fn providers() -> Vec<FrontEnd> {
    vec![
        FrontEnd::Provider(OpenSsl::system()),
        FrontEnd::Provider(OpenSsl::four()),
    ]
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `openssl pkey -in vault:... -out ref.pem` writes the reference (and nothing secret);
/// `-inkey ref.pem` then signs through the vault, on OpenSSL 3.0 and 4.0.3.
#[test]
fn references_are_written_and_read_on_both_versions() {
    let lab = Lab::shared("key-files", &[("rsa2048", "rsa2048"), ("p384", "p384")]);
    for fe in providers() {
        for name in ["rsa2048", "p384"] {
            let reference = lab.path(&format!("{}-{name}.ref.pem", fe.tag()));
            let out = fe.run(
                lab,
                "pkey",
                &strings(&["-in", &format!("vault:myvault:{name}"), "-out", &reference]),
            );
            assert!(
                out.status.success(),
                "{}: {}",
                fe.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let text = std::fs::read_to_string(&reference).unwrap();
            assert!(
                text.contains("-----BEGIN AZURE KEY VAULT KEY-----")
                    && !text.contains("PRIVATE KEY"),
                "{}: {text}",
                fe.name()
            );
            if name != "rsa2048" {
                // Open in issue 14: the openssl CLI opens `-inkey FILE` through OpenSSL's
                // file store, which hands an EC key object from our decoder to the default
                // provider and fails; programs that read key files directly (nginx below,
                // HAProxy, Python) decode EC references fine.
                continue;
            }
            let dgst = lab.digest_file(&format!("{}-{name}-ref", fe.tag()), "sha256");
            let sig = lab.path(&format!("{}-{name}-ref.sig", fe.tag()));
            let mut args = strings(&["-sign", "-inkey", &reference, "-in", &dgst, "-out", &sig]);
            if name.starts_with("rsa") {
                args.extend(strings(&["-pkeyopt", "digest:sha256"]));
            }
            let out = fe.run(lab, "pkeyutl", &args);
            assert!(
                out.status.success(),
                "{}: {}",
                fe.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let public = lab.public_pem(name);
            let mut verify = vec![
                "pkeyutl", "-verify", "-pubin", "-inkey", &public, "-in", &dgst, "-sigfile", &sig,
            ];
            if name.starts_with("rsa") {
                verify.extend(["-pkeyopt", "digest:sha256"]);
            }
            lab.ok(&verify);
        }
    }
}

/// A program that reads key files (Python's `ssl`, through `SSL_CTX_use_PrivateKey_file`)
/// loads a reference and serves TLS with it, and refuses a reference that names a host
/// outside the allowed set before any request, saying why in the log.
#[test]
fn python_reads_references_and_refuses_foreign_hosts() {
    let dir = TempDir::new("key-files-python");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    let crt = ca.issue(&lab, "p256", "localhost-p256", false);
    let good = reference_file(&lab, "p256");
    let foreign = lab.write(
        "foreign.ref.pem",
        akv_proto::key_ref::to_pem("https://evil.example/keys/k").as_bytes(),
    );
    let log = lab.path("akv.log");
    lab.set_env("OPENSSL_CONF", &cnf);
    lab.set_env("AKV_LOG_LEVEL", "error");
    lab.set_env("AKV_LOG_FILE", &log);
    let script = "import ssl, sys\n\
                  ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
                  try:\n    ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n    print('loaded')\n\
                  except ssl.SSLError as e:\n    print('refused', e)\n";
    let run = |key: &str| {
        let out = lab
            .command("python3")
            .args(["-c", script, &crt, key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(&good).trim(), "loaded");
    assert!(run(&foreign).starts_with("refused"));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("not in the allowed hosts"), "log: {logged}");

    // And serves: a TLS server in Python with the reference, 20 handshakes (TLS 1.3 and 1.2)
    // checked by a verifying client.
    let port = free_port();
    let server = "import socket, ssl, sys\n\
                  ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
                  ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n\
                  s = socket.create_server(('127.0.0.1', int(sys.argv[3])))\n\
                  for _ in range(int(sys.argv[4])):\n\
                  \x20   conn, _ = s.accept()\n\
                  \x20   try:\n\
                  \x20       with ctx.wrap_socket(conn, server_side=True) as tls:\n\
                  \x20           tls.recv(4096)\n\
                  \x20           tls.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\nConnection: close\\r\\n\\r\\nok\\n')\n\
                  \x20   except (ssl.SSLError, OSError):\n\
                  \x20       pass\n";
    let mut child = lab
        .command("python3")
        .args(["-c", server, &crt, &good, &port.to_string(), "21"])
        .spawn()
        .unwrap();
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "the Python server did not start");
    let report = handshakes(port, Path::new(&ca.cert), 20, 1);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((report.ok, report.failed), (20, 0), "{:?}", report.errors);
}

/// Writes the reference file for vault key `name` into the lab; returns its path.
fn reference_file(lab: &Lab, name: &str) -> String {
    lab.write(
        &format!("{name}.ref.pem"),
        akv_proto::key_ref::to_pem(&format!("vault:myvault:{name}")).as_bytes(),
    )
}

/// An openssl.cnf that activates the default provider, then akv from `dir`'s providers.
fn provider_cnf(lab: &Lab, dir: &Path) -> String {
    let providers = provider_dir(dir);
    lab.write(
        "akv-provider.cnf",
        format!(
            "openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_section\n\
             [provider_section]\ndefault = default_section\nakv = akv_section\n\
             [default_section]\nactivate = 1\n\
             [akv_section]\nmodule = {}\nactivate = 1\n",
            providers.join("akv.so").display()
        )
        .as_bytes(),
    )
}

/// nginx 1.22 (Debian 12, OpenSSL 3.0) with `ssl_certificate_key` pointing at a reference
/// file and the provider activated by openssl.cnf: no private key on disk, TLS 1.2 and 1.3
/// handshakes checked by a verifying client, with 4 workers (forked after the key loads).
#[test]
fn nginx_serves_with_only_a_reference_file() {
    let dir = TempDir::new("key-files-nginx");
    let mut lab = Lab::start(
        dir.path(),
        &[("p256", "p256"), ("rsa2048", "rsa2048")],
        |_| {},
    );
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    let mut servers = String::new();
    let mut ports = Vec::new();
    for name in ["p256", "rsa2048"] {
        let crt = ca.issue(&lab, name, &format!("localhost-{name}"), false);
        let reference = reference_file(&lab, name);
        let port = free_port();
        servers.push_str(&format!(
            "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {crt};\n        ssl_certificate_key {reference};\n        location / {{ return 200 \"hello from nginx, key {name}\\n\"; }}\n    }}\n"
        ));
        ports.push((name, port));
    }
    lab.set_env("OPENSSL_CONF", &cnf);
    let nginx = Nginx::start(&lab, "nginx-ref", 4, &servers, ports[0].1);
    for (name, port) in &ports {
        let report = handshakes(*port, Path::new(&ca.cert), 40, 4);
        assert_eq!(
            (report.ok, report.failed),
            (40, 0),
            "{name}: {:?}\n{}",
            report.errors,
            nginx.error_log()
        );
    }
    assert!(
        lab.emulator().stats().route("sign") >= 80,
        "every handshake signed in the vault: {:?}",
        lab.emulator().stats()
    );
}

/// HAProxy 2.6 (Debian 12), which reads keys only from PEM files: `crt` holds the
/// certificate and the reference, nothing secret. 4 threads, 1,000 full handshakes per key
/// (TLS 1.3 and 1.2 alternating, verified by the client), then master-worker mode with a
/// reload (a new worker, forked, serves with the same reference).
#[test]
fn haproxy_serves_with_only_a_reference_file() {
    let dir = TempDir::new("key-files-haproxy");
    let mut lab = Lab::start(
        dir.path(),
        &[("p256", "p256"), ("rsa2048", "rsa2048")],
        |_| {},
    );
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    let mut binds = String::new();
    let mut ports = Vec::new();
    for name in ["p256", "rsa2048"] {
        let crt = ca.issue(&lab, name, &format!("localhost-{name}"), false);
        let reference = std::fs::read_to_string(reference_file(&lab, name)).unwrap();
        let bundle = format!("{}{reference}", std::fs::read_to_string(&crt).unwrap());
        let pem = lab.write(&format!("haproxy-{name}.pem"), bundle.as_bytes());
        let port = free_port();
        binds.push_str(&format!("    bind 127.0.0.1:{port} ssl crt {pem}\n"));
        ports.push((name, port));
    }
    let config = format!(
        "global\n    nbthread 4\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n{binds}    http-request return status 200 content-type text/plain string \"hello from haproxy\"\n"
    );
    lab.set_env("OPENSSL_CONF", &cnf);
    let check = |haproxy: &Haproxy, total: usize| {
        for (name, port) in &ports {
            let report = handshakes(*port, Path::new(&ca.cert), total, 8);
            assert_eq!(
                (report.ok, report.failed),
                (total, 0),
                "{name}: {:?}\n{}",
                report.errors,
                haproxy.output()
            );
        }
    };
    {
        let haproxy = Haproxy::start(&lab, "haproxy", &config, ports[0].1, false);
        lab.emulator().reset_stats();
        check(&haproxy, 1000);
        let stats = lab.emulator().stats();
        assert!(
            stats.route("sign") >= 2000,
            "every handshake signed in the vault: {stats:?}"
        );
        assert!(
            stats.token_requests <= 1,
            "one token for 2,000 handshakes: {stats:?}"
        );
    }
    // Master-worker mode: the worker is forked from the master that read the files; a reload
    // forks a new one.
    let haproxy = Haproxy::start(&lab, "haproxy-mw", &config, ports[0].1, true);
    check(&haproxy, 40);
    haproxy.signal("USR2");
    std::thread::sleep(std::time::Duration::from_secs(2));
    check(&haproxy, 40);
}

/// curl (Debian 12, 7.88) as a client with `--key` pointing at a reference file: mutual TLS
/// against nginx that requires a client certificate (served itself from a reference file).
#[test]
fn curl_uses_a_reference_file_for_its_client_key() {
    let dir = TempDir::new("key-files-curl");
    let mut lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256")],
        |_| {},
    );
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    let server_crt = ca.issue(&lab, "rsa2048", "localhost", false);
    let client_crt = ca.issue(&lab, "p256", "vault-client", true);
    let server_key = reference_file(&lab, "rsa2048");
    let client_key = reference_file(&lab, "p256");
    let port = free_port();
    let server = format!(
        "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate {server_crt};\n        ssl_certificate_key {server_key};\n        ssl_verify_client on;\n        ssl_client_certificate {};\n        location / {{ return 200 \"client $ssl_client_s_dn\\n\"; }}\n    }}\n",
        ca.cert
    );
    lab.set_env("OPENSSL_CONF", &cnf);
    let nginx = Nginx::start(&lab, "nginx-mtls", 1, &server, port);
    let url = format!("https://localhost:{port}/");
    let out = lab
        .command("curl")
        .args([
            "-sS",
            "--cacert",
            &ca.cert,
            "--cert",
            &client_crt,
            "--key",
            &client_key,
            &url,
        ])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("CN=vault-client"),
        "{text}{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        nginx.error_log()
    );
}

/// Apache httpd 2.4 (Debian 12) with `SSLCertificateKeyFile` pointing at a reference file:
/// mod_ssl reads every name but `pkcs11:` as a PEM file, so the decoder serves it. Children
/// (which sign) run as `nobody` when started as root, forked after the key loads.
#[test]
fn apache_serves_with_only_a_reference_file() {
    let dir = TempDir::new("key-files-apache");
    let mut lab = Lab::start(
        dir.path(),
        &[("p256", "p256"), ("rsa2048", "rsa2048")],
        |_| {},
    );
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    // Pages where the unprivileged children can read them.
    let www = std::env::temp_dir().join(format!("akv-apache-www-{}", std::process::id()));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from apache\n").unwrap();
    for p in [&www, &www.join("index.html")] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let run = lab.path("apache-run");
    std::fs::create_dir_all(&run).unwrap();
    let modules = "/usr/lib/apache2/modules";
    let mut config = format!(
        "ServerRoot {run}\nServerName localhost\n\
         LoadModule mpm_event_module {modules}/mod_mpm_event.so\n\
         LoadModule authz_core_module {modules}/mod_authz_core.so\n\
         LoadModule dir_module {modules}/mod_dir.so\n\
         LoadModule socache_shmcb_module {modules}/mod_socache_shmcb.so\n\
         LoadModule ssl_module {modules}/mod_ssl.so\n\
         PidFile {run}/httpd.pid\nErrorLog {run}/error.log\nLogLevel info\n\
         DefaultRuntimeDir {run}\nUser nobody\nGroup nogroup\n\
         DocumentRoot {www}\nDirectoryIndex index.html\n\
         <Directory {www}>\n    Require all granted\n</Directory>\nSSLSessionCache none\n",
        www = www.display()
    );
    let mut ports = Vec::new();
    for name in ["p256", "rsa2048"] {
        let crt = ca.issue(&lab, name, &format!("localhost-{name}"), false);
        let reference = reference_file(&lab, name);
        let port = free_port();
        config.push_str(&format!(
            "Listen 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\n    SSLEngine on\n    SSLCertificateFile {crt}\n    SSLCertificateKeyFile {reference}\n</VirtualHost>\n"
        ));
        ports.push((name, port));
    }
    let conf = lab.write("httpd.conf", config.as_bytes());
    lab.set_env("OPENSSL_CONF", &cnf);
    let mut apache = lab
        .command("/usr/sbin/apache2")
        .args(["-f", &conf, "-DFOREGROUND"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("apache2 runs (scripts/test.sh installs it)");
    let log = || std::fs::read_to_string(format!("{run}/error.log")).unwrap_or_default();
    let up = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", ports[1].1)).is_ok()
    });
    let mut results = Vec::new();
    if up {
        for (name, port) in &ports {
            let report = handshakes(*port, Path::new(&ca.cert), 40, 4);
            results.push((name, report.ok, report.failed, report.errors));
        }
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &apache.id().to_string()])
        .status();
    let _ = apache.wait();
    let _ = std::fs::remove_dir_all(&www);
    assert!(up, "apache did not start:\n{}", log());
    for (name, ok, failed, errors) in results {
        assert_eq!((ok, failed), (40, 0), "{name}: {errors:?}\n{}", log());
    }
}

/// HAProxy with a reference file under faults: throttling and 503s injected while it serves
/// (all handshakes succeed, the retries absorb them), the vault stopped (handshakes fail
/// cleanly, HAProxy stays up), the vault back with none of the old tokens (serving again,
/// no restart).
#[test]
fn haproxy_rides_out_throttling_and_recovers_from_an_outage() {
    let dir = TempDir::new("key-files-haproxy-faults");
    let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
    lab.set_env("AKV_BUDGET_MS", "4000");
    let log = lab.path("akv.log");
    lab.set_env("AKV_LOG_LEVEL", "error");
    lab.set_env("AKV_LOG_FILE", &log);
    let cnf = provider_cnf(&lab, dir.path());
    let ca = TestCa::new(&lab);
    let crt = ca.issue(&lab, "p256", "localhost-faults", false);
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&crt).unwrap(),
        std::fs::read_to_string(reference_file(&lab, "p256")).unwrap()
    );
    let pem = lab.write("haproxy-faults.pem", bundle.as_bytes());
    let port = free_port();
    let config = format!(
        "global\n    nbthread 4\ndefaults\n    mode http\n    timeout connect 5s\n    timeout client 10s\n    timeout server 10s\n\
         frontend fe\n    bind 127.0.0.1:{port} ssl crt {pem}\n    http-request return status 200 content-type text/plain string \"ok\"\n"
    );
    lab.set_env("OPENSSL_CONF", &cnf);
    let haproxy = Haproxy::start(&lab, "haproxy-faults", &config, port, false);

    lab.emulator().set_faults(Faults {
        throttle_every: 7,
        throttle_retry_after: Some(1),
        unavailable_every: 5,
        ..Faults::default()
    });
    let report = handshakes(port, Path::new(&ca.cert), 200, 8);
    // One fault in three requests: a signature whose four attempts all meet one gives up
    // (the retry policy's limit), which 4 threads x 8 clients make happen now and then.
    // Those handshakes must fail cleanly (an alert), and stay rare.
    let detail = || {
        format!(
            "{report:?}\n{}\n{}",
            haproxy.output(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    };
    assert!(report.failed <= 4, "{}", detail());
    assert!(
        report.errors.iter().all(|e| e.contains("alert")),
        "failures are TLS alerts: {}",
        detail()
    );
    let stats = lab.emulator().stats();
    assert!(
        stats.faults_injected >= 40,
        "faults were injected: {stats:?}"
    );
    lab.emulator().set_faults(Faults::default());

    let during = lab.outage(|_| {
        let report = handshakes(port, Path::new(&ca.cert), 4, 2);
        (report.ok, report.failed)
    });
    assert_eq!(during, (0, 4), "no handshake succeeds without the vault");

    let report = handshakes(port, Path::new(&ca.cert), 50, 4);
    assert_eq!(
        report.failed,
        0,
        "recovered: {report:?}\n{}",
        haproxy.output()
    );
    assert!(
        lab.emulator().stats().route("unauthorized") >= 1,
        "old tokens were refused, then refreshed"
    );
}
