//! Key reference files: a PEM block that names a vault key (no secret), written by the
//! provider's encoder and read by its decoder, so that programs which read only key files
//! use vault keys unchanged.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use akv_tests::frontends::{FrontEnd, s_client};
use akv_tests::lab::Lab;
use akv_tests::servers::{
    HangFigures, Haproxy, Nginx, TestCa, handshakes, handshakes_under_faults, haproxy_bind,
    haproxy_config, load_through_outage, outage_then_recovery, watching_threads,
};
use akv_tests::support::{TempDir, free_port, provider_cnf, strings};

/// `openssl pkey -in vault:... -out ref.pem` writes the reference (and nothing secret);
/// `-inkey ref.pem` then signs through the vault, on OpenSSL 3.0 and 4.0.3.
#[test]
fn references_are_written_and_read_on_both_versions() {
    let lab = Lab::shared("key-files", &[("rsa2048", "rsa2048"), ("p384", "p384")]);
    for fe in FrontEnd::providers() {
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

        // A bundle (a certificate, then both references), read through OpenSSL's file store
        // as `-key FILE` and `storeutl` read files: every block is found, in order.
        let tag = fe.tag();
        let p384 = lab.path(&format!("{tag}-p384.ref.pem"));
        let crt = lab.path(&format!("{tag}-bundle.crt"));
        let out = fe.run(
            lab,
            "req",
            &strings(&[
                "-x509",
                "-new",
                "-key",
                &p384,
                "-subj",
                "/CN=bundle",
                "-out",
                &crt,
            ]),
        );
        assert!(
            out.status.success(),
            "{}: {}",
            fe.name(),
            String::from_utf8_lossy(&out.stderr)
        );
        lab.ok(&["verify", "-CAfile", &crt, &crt]);
        let mut bundle = std::fs::read(&crt).unwrap();
        for name in ["rsa2048", "p384"] {
            bundle.extend(std::fs::read(lab.path(&format!("{tag}-{name}.ref.pem"))).unwrap());
        }
        let bundle = lab.write(&format!("{tag}-bundle.pem"), &bundle);
        let out = fe.run(lab, "storeutl", &strings(&[&bundle]));
        let listed = String::from_utf8_lossy(&out.stdout);
        let found: Vec<&str> = listed
            .lines()
            .filter(|l| {
                l.split_once(": ")
                    .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        assert_eq!(
            found,
            ["0: Certificate", "1: Pkey", "2: Pkey"],
            "{}: {listed}",
            fe.name()
        );

        // A reference to a host outside the allowed set is refused, and says why.
        let foreign = lab.write(
            &format!("{tag}-foreign.ref.pem"),
            akv_proto::key_ref::to_pem("https://evil.example/keys/k").as_bytes(),
        );
        let dgst = lab.digest_file(&format!("{tag}-foreign"), "sha256");
        let stderr = fe.fails(
            lab,
            "pkeyutl",
            &strings(&["-sign", "-inkey", &foreign, "-in", &dgst]),
        );
        assert!(
            stderr.contains("not in the allowed hosts"),
            "{}: {stderr}",
            fe.name()
        );
    }
}

/// Certificates the vault holds under a key's name: `storeutl` lists the key then the
/// certificate, `-certs` the certificate alone; `openssl x509 -in vault:...` writes it to a
/// PEM file for servers that need files; `s_server -cert vault:N -key vault:N` serves both
/// from the vault, checked by a verifying `s_client` (TLS 1.3 and 1.2, RSA and EC), on
/// OpenSSL 3.0 and 4.0.3. A key with no certificate says so when one is asked for.
#[test]
fn certificates_come_from_the_vault() {
    let dir = TempDir::new("key-files-certificates");
    let lab = Lab::start(
        dir.path(),
        &[("rsa2048", "rsa2048"), ("p256", "p256"), ("bare", "p256")],
        |config| config.certificates = strings(&["rsa2048", "p256"]),
    );
    for fe in FrontEnd::providers() {
        let tag = fe.tag();
        for name in ["rsa2048", "p256"] {
            let uri = format!("vault:myvault:{name}");
            let listed = |args: &[&str]| -> Vec<String> {
                let out = fe.run(&lab, "storeutl", &strings(args));
                assert!(
                    out.status.success(),
                    "{}: {}",
                    fe.name(),
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| {
                        l.split_once(": ")
                            .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .map(str::to_string)
                    .collect()
            };
            assert_eq!(
                listed(&[&uri]),
                ["0: Pkey", "1: Certificate"],
                "{}",
                fe.name()
            );
            assert_eq!(
                listed(&["-certs", &uri]),
                ["0: Certificate"],
                "{}",
                fe.name()
            );

            // Written to a file; its public key is the vault key's.
            let crt = lab.path(&format!("{tag}-{name}.crt"));
            let out = fe.run(&lab, "x509", &strings(&["-in", &uri, "-out", &crt]));
            assert!(
                out.status.success(),
                "{}: {}",
                fe.name(),
                String::from_utf8_lossy(&out.stderr)
            );
            let pubkey = lab.ok(&["x509", "-in", &crt, "-noout", "-pubkey"]).stdout;
            let vault_pub = std::fs::read(lab.public_pem(name)).unwrap();
            assert_eq!(pubkey, vault_pub, "{}: {name}", fe.name());

            // Served with key and certificate both named by the vault URI.
            let port = free_port();
            let mut server = fe.s_server(&lab, &strings(&["-cert", &uri, "-key", &uri]), port);
            for (version, proto) in [("-tls1_3", "TLSv1.3"), ("-tls1_2", "TLSv1.2")] {
                let text = s_client(&lab, port, version, &crt, None);
                assert!(
                    text.contains("Verification: OK") && text.contains(&format!("New, {proto}")),
                    "{}: {name} {version}:\n{text}",
                    fe.name()
                );
            }
            let _ = server.kill();
            let _ = server.wait();
        }
        // No certificate: asked for (`x509 -in`), the absence is an error that says so;
        // listed, the key alone.
        let stderr = fe.fails(
            &lab,
            "x509",
            &strings(&["-in", "vault:myvault:bare", "-noout"]),
        );
        assert!(
            stderr.contains("holds no certificate of this name"),
            "{}: {stderr}",
            fe.name()
        );
        let out = fe.run(&lab, "storeutl", &strings(&["vault:myvault:bare"]));
        let listed = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && listed.contains("0: Pkey") && !listed.contains("Certificate"),
            "{}: {listed}",
            fe.name()
        );
    }
    let requests = lab.emulator().stats().requests;
    assert!(
        requests.get("get_certificate").copied().unwrap_or(0) >= 8,
        "{requests:?}"
    );
}

/// A program that reads key files (Python's `ssl`, through `SSL_CTX_use_PrivateKey_file`)
/// loads a reference and serves TLS with it, and refuses a reference that names a host
/// outside the allowed set before any request, saying why in the log.
#[test]
fn python_reads_references_and_refuses_foreign_hosts() {
    let mut rl = RefLab::new("python", &["p256"]);
    let foreign = rl.lab.write(
        "foreign.ref.pem",
        akv_proto::key_ref::to_pem("https://evil.example/keys/k").as_bytes(),
    );
    let log = rl.lab.path("akv.log");
    rl.use_provider();
    rl.lab.set_env("AKV_LOG_LEVEL", "error");
    rl.lab.set_env("AKV_LOG_FILE", &log);
    let RefLab {
        lab, ca, served, ..
    } = &rl;
    let (crt, good, port) = (&served[0].crt, &served[0].reference, served[0].port);
    let script = "import ssl, sys\n\
                  ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n\
                  try:\n    ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n    print('loaded')\n\
                  except ssl.SSLError as e:\n    print('refused', e)\n";
    let run = |key: &str| {
        let out = lab
            .command("python3")
            .args(["-c", script, crt, key])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(run(good).trim(), "loaded");
    assert!(run(&foreign).starts_with("refused"));
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(logged.contains("not in the allowed hosts"), "log: {logged}");

    // And serves: a TLS server in Python with the reference, 20 handshakes (TLS 1.3 and 1.2)
    // checked by a verifying client.
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
        .args(["-c", server, crt, good, &port.to_string(), "21"])
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

/// One served key: its server certificate (CN `localhost-NAME`, valid for localhost), its
/// reference file and the port its server listens on.
struct Served {
    name: &'static str,
    crt: String,
    reference: String,
    port: u16,
}

/// A lab for servers that read reference files: the emulator holding `keys`, a test CA and
/// one [`Served`] per key. The certificates are made through the engine; `use_provider`
/// then makes every later command load the default provider and akv from openssl.cnf.
struct RefLab {
    dir: TempDir,
    lab: Lab,
    ca: TestCa,
    served: Vec<Served>,
}

impl RefLab {
    fn new(tag: &str, keys: &[&'static str]) -> RefLab {
        let dir = TempDir::new(&format!("key-files-{tag}"));
        let specs: Vec<(&str, &str)> = keys.iter().map(|k| (*k, *k)).collect();
        let lab = Lab::start(dir.path(), &specs, |_| {});
        let ca = TestCa::new(&lab);
        let served = keys
            .iter()
            .map(|&name| Served {
                name,
                crt: ca.issue(&lab, name, &format!("localhost-{name}"), false),
                reference: reference_file(&lab, name),
                port: free_port(),
            })
            .collect();
        RefLab {
            dir,
            lab,
            ca,
            served,
        }
    }

    /// HAProxy `bind` lines serving every key on its port, each with its bundle of
    /// certificate and reference.
    fn haproxy_binds(&self) -> String {
        self.served
            .iter()
            .map(|s| haproxy_bind(s.port, &haproxy_pem(&self.lab, s)))
            .collect()
    }

    /// Sets OPENSSL_CONF for every later command (after any certificate still to be made).
    fn use_provider(&mut self) {
        let cnf = provider_cnf(&self.lab, self.dir.path());
        self.lab.set_env("OPENSSL_CONF", &cnf);
    }

    /// `total` full handshakes from `threads` threads on every served key's port, each
    /// verified by the client and answered 200; `log` explains a failure.
    fn all_handshakes_succeed(&self, total: usize, threads: usize, log: impl Fn() -> String) {
        for s in &self.served {
            let report = handshakes(s.port, Path::new(&self.ca.cert), total, threads);
            assert_eq!(
                (report.ok, report.failed),
                (total, 0),
                "{}: {:?}\n{}",
                s.name,
                report.errors,
                log()
            );
        }
    }
}

/// The PEM file HAProxy's `crt` takes: the certificate, then the reference.
fn haproxy_pem(lab: &Lab, served: &Served) -> String {
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(&served.crt).unwrap(),
        std::fs::read_to_string(&served.reference).unwrap()
    );
    lab.write(&format!("haproxy-{}.pem", served.name), bundle.as_bytes())
}

/// Writes the reference file for vault key `name` into the lab; returns its path.
fn reference_file(lab: &Lab, name: &str) -> String {
    lab.write(
        &format!("{name}.ref.pem"),
        akv_proto::key_ref::to_pem(&format!("vault:myvault:{name}")).as_bytes(),
    )
}

/// nginx 1.22 (Debian 12, OpenSSL 3.0) with `ssl_certificate_key` pointing at a reference
/// file and the provider activated by openssl.cnf: no private key on disk, TLS 1.2 and 1.3
/// handshakes checked by a verifying client, with 4 workers (forked after the key loads).
#[test]
fn nginx_serves_with_only_a_reference_file() {
    let mut rl = RefLab::new("nginx", &["p256", "rsa2048"]);
    let servers: String = rl
        .served
        .iter()
        .map(|s| {
            format!(
                "    server {{\n        listen 127.0.0.1:{} ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {};\n        ssl_certificate_key {};\n        location / {{ return 200 \"hello from nginx, key {}\\n\"; }}\n    }}\n",
                s.port, s.crt, s.reference, s.name
            )
        })
        .collect();
    rl.use_provider();
    let nginx = Nginx::start(&rl.lab, "nginx-ref", 4, &servers, rl.served[0].port);
    rl.all_handshakes_succeed(40, 4, || nginx.error_log());
    assert!(
        rl.lab.emulator().stats().route("sign") >= 80,
        "every handshake signed in the vault: {:?}",
        rl.lab.emulator().stats()
    );
}

/// HAProxy 2.6 (Debian 12), which reads keys only from PEM files: `crt` holds the
/// certificate and the reference, nothing secret. 4 threads, 1,000 full handshakes per key
/// (TLS 1.3 and 1.2 alternating, verified by the client), then master-worker mode with a
/// reload (a new worker, forked, serves with the same reference).
#[test]
fn haproxy_serves_with_only_a_reference_file() {
    let mut rl = RefLab::new("haproxy", &["p256", "rsa2048"]);
    let binds = rl.haproxy_binds();
    let config = haproxy_config(&["nbthread 4"], &binds, "hello from haproxy");
    rl.use_provider();
    let port = rl.served[0].port;
    {
        let haproxy = Haproxy::start(&rl.lab, "haproxy", &config, port, false);
        rl.lab.emulator().reset_stats();
        rl.all_handshakes_succeed(1000, 8, || haproxy.output());
        let stats = rl.lab.emulator().stats();
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
    let haproxy = Haproxy::start(&rl.lab, "haproxy-mw", &config, port, true);
    rl.all_handshakes_succeed(40, 8, || haproxy.output());
    haproxy.signal("USR2");
    std::thread::sleep(std::time::Duration::from_secs(2));
    rl.all_handshakes_succeed(40, 8, || haproxy.output());
}

/// curl (Debian 12, 7.88) as a client with `--key` pointing at a reference file: mutual TLS
/// against nginx that requires a client certificate (served itself from a reference file).
#[test]
fn curl_uses_a_reference_file_for_its_client_key() {
    let mut rl = RefLab::new("curl", &["rsa2048", "p256"]);
    let client_crt = rl.ca.issue(&rl.lab, "p256", "vault-client", true);
    let (server, client) = (&rl.served[0], &rl.served[1]);
    let (port, client_key) = (server.port, client.reference.clone());
    let config = format!(
        "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_verify_client on;\n        ssl_client_certificate {};\n        location / {{ return 200 \"client $ssl_client_s_dn\\n\"; }}\n    }}\n",
        server.crt, server.reference, rl.ca.cert
    );
    rl.use_provider();
    let nginx = Nginx::start(&rl.lab, "nginx-mtls", 1, &config, port);
    let url = format!("https://localhost:{port}/");
    let out = rl
        .lab
        .command("curl")
        .args([
            "-sS",
            "--cacert",
            &rl.ca.cert,
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
    let mut rl = RefLab::new("apache", &["p256", "rsa2048"]);
    // Pages where the unprivileged children can read them.
    let www = std::env::temp_dir().join(format!("akv-apache-www-{}", std::process::id()));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "hello from apache\n").unwrap();
    for p in [&www, &www.join("index.html")] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    let run = rl.lab.path("apache-run");
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
    for s in &rl.served {
        config.push_str(&format!(
            "Listen 127.0.0.1:{port}\n<VirtualHost 127.0.0.1:{port}>\n    SSLEngine on\n    SSLCertificateFile {}\n    SSLCertificateKeyFile {}\n</VirtualHost>\n",
            s.crt,
            s.reference,
            port = s.port
        ));
    }
    let conf = rl.lab.write("httpd.conf", config.as_bytes());
    rl.use_provider();
    let apache = Stopped {
        child: rl
            .lab
            .command("/usr/sbin/apache2")
            .args(["-f", &conf, "-DFOREGROUND"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("apache2 runs (scripts/test.sh installs it)"),
        remove: www,
    };
    let log = || std::fs::read_to_string(format!("{run}/error.log")).unwrap_or_default();
    let up = (0..200).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", rl.served[1].port)).is_ok()
    });
    assert!(up, "apache did not start:\n{}", log());
    rl.all_handshakes_succeed(40, 4, log);
    drop(apache);
}

/// A server process stopped (TERM, then waited for) and its scratch folder removed when
/// dropped, also when an assertion fails first.
struct Stopped {
    child: std::process::Child,
    remove: std::path::PathBuf,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.remove);
    }
}

/// HAProxy with a reference file under faults: throttling and 503s injected while it serves
/// (the retries absorb nearly all of them; the rest fail cleanly), the vault stopped
/// (handshakes fail cleanly, HAProxy stays up), the vault back with none of the old tokens
/// (serving again, no restart).
#[test]
fn haproxy_rides_out_throttling_and_recovers_from_an_outage() {
    let mut rl = RefLab::new("haproxy-faults", &["p256"]);
    rl.lab.set_env("AKV_BUDGET_MS", "4000");
    let log = rl.lab.path("akv.log");
    rl.lab.set_env("AKV_LOG_LEVEL", "error");
    rl.lab.set_env("AKV_LOG_FILE", &log);
    let port = rl.served[0].port;
    let binds = rl.haproxy_binds();
    rl.use_provider();
    let haproxy = Haproxy::start(
        &rl.lab,
        "haproxy-faults",
        &haproxy_config(&["nbthread 4"], &binds, "ok"),
        port,
        false,
    );
    let RefLab { lab, ca, .. } = &mut rl;

    let ca = Path::new(&ca.cert);
    let report = handshakes_under_faults(lab, port, ca);
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
    outage_then_recovery(lab, port, ca, || haproxy.output());
}

/// A vault whose port swallows connections (a listener that never accepts: connects hang or
/// time out, requests get no answer) does not take HAProxy down with it: 4 threads share
/// one circuit, so after the first failures the vault-key site fails handshakes at once
/// while the local-key site answers promptly (p99 under 100 ms); when the vault is back,
/// the vault-key site serves again within the longest cool-down, with no restart.
#[test]
fn haproxy_keeps_serving_while_the_vault_port_swallows_connections() {
    let mut rl = RefLab::new("haproxy-hang", &["p256"]);
    let log = rl.lab.path("akv.log");
    rl.lab.set_env("AKV_LOG_LEVEL", "info");
    rl.lab.set_env("AKV_LOG_FILE", &log);
    let (local_crt, local_key) = rl.ca.issue_local(&rl.lab, "haproxy-local");
    let local_pem = rl.lab.write(
        "haproxy-local.pem",
        format!(
            "{}{}",
            std::fs::read_to_string(&local_crt).unwrap(),
            std::fs::read_to_string(&local_key).unwrap()
        )
        .as_bytes(),
    );
    let (vault_port, local_port) = (rl.served[0].port, free_port());
    let binds = rl.haproxy_binds() + &haproxy_bind(local_port, &local_pem);
    rl.use_provider();
    let haproxy = Haproxy::start(
        &rl.lab,
        "haproxy-hang",
        &haproxy_config(&["nbthread 4"], &binds, "ok"),
        vault_port,
        false,
    );
    let RefLab { lab, ca, .. } = &mut rl;
    let ca = Path::new(&ca.cert);
    for port in [vault_port, local_port] {
        let warm = handshakes(port, ca, 16, 4);
        assert_eq!(warm.failed, 0, "{port}: {:?}", warm.errors);
    }
    let vault_addr = lab.vault_addr();
    let mut swallower = None;
    let report = load_through_outage(
        vault_port,
        local_port,
        ca,
        Duration::from_secs(20),
        Duration::from_secs(14),
        |down| {
            if down {
                lab.stop_vault();
                // Bound, never accepting: connections wait in the backlog unanswered.
                swallower =
                    Some(std::net::TcpListener::bind(vault_addr).expect("the vault's port"));
            } else {
                swallower = None;
                lab.start_vault();
            }
        },
    );
    let settled = Duration::from_secs(12);
    let f = HangFigures::of(&report, settled);
    f.assert_served_through("HAProxy, vault port swallowing connections", 50, || {
        format!(
            "{}\n{}",
            haproxy.output(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    // One process, one circuit: opened once, closed once, and no line per failed handshake
    // at the error level (they are at debug).
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(logged.matches("now fail at once").count(), 1, "{logged}");
    assert_eq!(logged.matches("answers again after").count(), 1, "{logged}");
    assert!(!logged.contains("failing fast, next probe"), "{logged}");
}

/// HAProxy with `ssl-mode-async` and a single thread: handshakes run in OpenSSL ASYNC jobs,
/// so a remote signature no longer holds the thread. With 20 ms of vault latency and 32
/// clients, the same HAProxy serves several times the handshakes it serves without async,
/// measured in the same run, RSA and EC, every handshake verified by the client. In async
/// mode (then with 4 threads), throttling and 5xx answers are absorbed and an outage ends
/// cleanly, with recovery.
#[test]
fn haproxy_async_mode_keeps_signatures_in_flight() {
    let mut rl = RefLab::new("haproxy-async", &["p256", "rsa2048"]);
    let log = rl.lab.path("akv.log");
    rl.lab.set_env("AKV_LOG_LEVEL", "error");
    rl.lab.set_env("AKV_LOG_FILE", &log);
    // Fewer vault requests in flight than clients: the rest wait their turn.
    rl.lab.set_env("AKV_ASYNC_CONNECTIONS", "16");
    let binds = rl.haproxy_binds();
    let config = |global: &[&str]| haproxy_config(global, &binds, "ok");
    rl.use_provider();
    let first_port = rl.served[0].port;
    let ca = Path::new(&rl.ca.cert).to_path_buf();
    rl.lab.emulator().set_faults(akv_tests::emulator::Faults {
        latency_ms: 20,
        ..Default::default()
    });
    let mut rates = Vec::new();
    for (mode, global) in [
        ("blocking", &["nbthread 1"][..]),
        ("async", &["nbthread 1", "ssl-mode-async"][..]),
    ] {
        rl.lab.emulator().reset_stats();
        let haproxy = Haproxy::start(
            &rl.lab,
            &format!("haproxy-{mode}"),
            &config(global),
            first_port,
            false,
        );
        let mut threads = (0, BTreeSet::new());
        for s in &rl.served {
            let (report, most, names) =
                watching_threads(haproxy.pid(), || handshakes(s.port, &ca, 200, 32));
            threads.0 = threads.0.max(most);
            threads.1.extend(names);
            assert_eq!(
                (report.ok, report.failed),
                (200, 0),
                "{mode} {}: {:?}\n{}",
                s.name,
                report.errors,
                haproxy.output()
            );
            let rate = report.ok as f64 / report.elapsed.as_secs_f64();
            eprintln!(
                "HAProxy nbthread 1, {mode}, {}: {rate:.0} handshakes/s",
                s.name
            );
            rates.push((mode, s.name, rate));
        }
        // The key was loaded with the blocking client, the handshakes signed with the async
        // one: one token, and connections reused, bounded by the 16 requests in flight (the
        // pool may open one more per request while a finished one's connection is on its
        // way back, and keeps 16), not growing with the 400 signatures.
        let stats = rl.lab.emulator().stats();
        assert_eq!(stats.token_requests, 1, "{mode}: {stats:?}");
        assert!(stats.connections <= 1 + 2 * 16, "{mode}: {stats:?}");
        eprintln!(
            "HAProxy nbthread 1, {mode}: {} threads at most ({:?}), {} vault connections for {} signatures",
            threads.0,
            threads.1,
            stats.connections,
            stats.route("sign")
        );
        if mode == "async" {
            // 32 signatures in flight on one runtime thread, not a thread each.
            assert!(threads.1.contains("e_akv-async"), "{threads:?}");
            assert!(threads.0 <= 6, "{threads:?}");
        }
    }
    for (name, blocking, fast) in [0, 1].map(|i| (rates[i].1, rates[i].2, rates[i + 2].2)) {
        assert!(
            fast >= 3.0 * blocking,
            "{name}: async {fast:.0}/s against blocking {blocking:.0}/s in the same run"
        );
    }

    // Async mode under faults, then through an outage, with 4 threads sharing the
    // process's one async runtime.
    rl.lab
        .emulator()
        .set_faults(akv_tests::emulator::Faults::default());
    let haproxy = Haproxy::start(
        &rl.lab,
        "haproxy-async-faults",
        &config(&["nbthread 4", "ssl-mode-async"]),
        first_port,
        false,
    );
    let RefLab { lab, .. } = &mut rl;
    let report = handshakes_under_faults(lab, first_port, &ca);
    assert!(
        report.failed <= 4 && report.errors.iter().all(|e| e.contains("alert")),
        "{report:?}\n{}",
        haproxy.output()
    );
    outage_then_recovery(lab, first_port, &ca, || {
        format!(
            "{}\n{}",
            haproxy.output(),
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
}

/// Clients that leave mid-handshake while HAProxy (`ssl-mode-async`) waits for the vault's
/// signature leave nothing behind: under valgrind, 20 abandoned and 5 completed
/// handshakes, then HAProxy stopped as an operator does, with no memory definitely lost and
/// no memory error (ring's AES-GCM assembly is suppressed, as in the other valgrind tests).
#[test]
fn haproxy_async_mode_leaks_nothing_when_clients_leave_mid_handshake() {
    let mut rl = RefLab::new("haproxy-async-valgrind", &["p256"]);
    let port = rl.served[0].port;
    let config = haproxy_config(&["nbthread 1", "ssl-mode-async"], &rl.haproxy_binds(), "ok");
    rl.use_provider();
    let report = rl.lab.path("valgrind.txt");
    let supp = Path::new(env!("CARGO_MANIFEST_DIR")).join("valgrind.supp");
    let wrapper: Vec<String> = vec![
        "valgrind".into(),
        format!("--suppressions={}", supp.display()),
        "--leak-check=full".into(),
        "--errors-for-leak-kinds=definite,indirect".into(),
        format!("--log-file={report}"),
    ];
    let mut haproxy =
        Haproxy::start_under(&rl.lab, "haproxy-valgrind", &config, port, false, &wrapper);
    let ca = Path::new(&rl.ca.cert).to_path_buf();
    rl.lab.emulator().set_faults(akv_tests::emulator::Faults {
        latency_ms: 300,
        ..Default::default()
    });
    for _ in 0..20 {
        akv_tests::servers::abandoned_handshake(port, &ca, Duration::from_millis(50));
    }
    let done = handshakes(port, &ca, 5, 1);
    assert_eq!(done.ok, 5, "{:?}\n{}", done.errors, haproxy.output());
    // Let the abandoned signatures come back before stopping.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        haproxy.stop(Duration::from_secs(60)),
        "HAProxy stops: {}",
        haproxy.output()
    );
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    assert!(
        text.contains("definitely lost: 0 bytes") || text.contains("All heap blocks were freed"),
        "{text}"
    );
    let errors = text
        .lines()
        .find(|l| l.contains("ERROR SUMMARY"))
        .unwrap_or_default()
        .to_string();
    let detail: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("switching stacks") && !l.contains("max-stackframe"))
        .collect();
    assert!(
        errors.contains("ERROR SUMMARY: 0 errors"),
        "{errors}\n{}",
        detail.join("\n")
    );
}
