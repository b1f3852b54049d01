//! Helpers for tests with real servers: a test CA whose certificates carry vault keys,
//! nginx run in the foreground, and a TLS load generator that makes every handshake a full
//! one (no resumption), so each one costs the server a remote signature.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::emulator::Faults;
use crate::lab::Lab;

/// A CA (its key in a plain file) that certifies vault keys through CSRs made by the engine.
pub struct TestCa {
    /// CA certificate.
    pub cert: String,
    key: String,
}

impl TestCa {
    /// Creates the CA in the lab's work folder.
    pub fn new(lab: &Lab) -> TestCa {
        let (cert, key) = (lab.path("ca.crt"), lab.path("ca.key"));
        lab.ok(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-subj",
            "/CN=e_akv test CA",
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ]);
        TestCa { cert, key }
    }

    /// A certificate for the vault key `key` (a CSR signed through the engine, then by the CA).
    pub fn issue(&self, lab: &Lab, key: &str, cn: &str, client: bool) -> String {
        let csr = lab.path(&format!("{cn}.csr"));
        let crt = lab.path(&format!("{cn}.crt"));
        let ext = lab.path(&format!("{cn}.ext"));
        lab.ok(&[
            "req",
            "-new",
            "-engine",
            "e_akv",
            "-keyform",
            "engine",
            "-key",
            &format!("vault:myvault:{key}"),
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &csr,
        ]);
        let usage = if client {
            "extendedKeyUsage=clientAuth"
        } else {
            "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1"
        };
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{usage}\n")).expect("ext file");
        lab.ok(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.cert,
            "-CAkey",
            &self.key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
        crt
    }
}

/// nginx in the foreground (master + workers), stopped when dropped.
pub struct Nginx {
    child: Option<Child>,
    /// Its prefix folder (logs under `logs/`).
    pub prefix: PathBuf,
}

impl Nginx {
    /// Starts nginx with `http_body` inside its `http {}` block; returns once `port` answers.
    pub fn start(lab: &Lab, name: &str, workers: usize, http_body: &str, port: u16) -> Nginx {
        let prefix = lab.work.join(name);
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx prefix");
        std::fs::create_dir_all(prefix.join("tmp")).expect("nginx tmp");
        let p = prefix.display();
        let conf = format!(
            "worker_processes {workers};\nerror_log {p}/logs/error.log info;\npid {p}/nginx.pid;\nevents {{ worker_connections 512; }}\nhttp {{\n    access_log off;\n    client_body_temp_path {p}/tmp;\n    proxy_temp_path {p}/tmp;\n    fastcgi_temp_path {p}/tmp;\n    uwsgi_temp_path {p}/tmp;\n    scgi_temp_path {p}/tmp;\n    ssl_session_cache off;\n    ssl_session_tickets off;\n{http_body}\n}}\n"
        );
        std::fs::write(prefix.join("nginx.conf"), conf).expect("nginx.conf");
        // Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
        let program = if Path::new("/usr/sbin/nginx").exists() {
            "/usr/sbin/nginx"
        } else {
            "nginx"
        };
        let child = lab
            .command(program)
            .args([
                "-p",
                &p.to_string(),
                "-e",
                &format!("{p}/logs/error.log"),
                "-c",
                &format!("{p}/nginx.conf"),
                "-g",
                "daemon off;",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx runs (scripts/test.sh installs it)");
        let mut nginx = Nginx {
            child: Some(child),
            prefix,
        };
        nginx.wait_for_port(port);
        nginx
    }

    fn wait_for_port(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not listen on {port}:\n{}", self.error_log());
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends a signal to the master (`HUP` reloads).
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// HAProxy in the foreground (`-db`), master-worker with `-W`, stopped when dropped.
pub struct Haproxy {
    child: Option<Child>,
    /// Its configuration file.
    pub config: PathBuf,
    /// What it printed (stderr), for failure messages.
    pub log: PathBuf,
}

impl Haproxy {
    /// Starts HAProxy with `config` (a whole configuration); returns once `port` answers.
    pub fn start(lab: &Lab, name: &str, config: &str, port: u16, master_worker: bool) -> Haproxy {
        let cfg = PathBuf::from(lab.write(&format!("{name}.cfg"), config.as_bytes()));
        let log = PathBuf::from(lab.path(&format!("{name}.log")));
        let mut command = lab.command("haproxy");
        command.arg("-db").arg("-f").arg(&cfg);
        if master_worker {
            command.arg("-W");
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("haproxy log"))
            .spawn()
            .expect("haproxy runs (scripts/test.sh installs it)");
        let mut haproxy = Haproxy {
            child: Some(child),
            config: cfg,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return haproxy;
            }
            if let Some(Ok(Some(status))) = haproxy.child.as_mut().map(|c| c.try_wait()) {
                panic!("haproxy exited ({status}):\n{}", haproxy.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("haproxy did not listen on {port}:\n{}", haproxy.output());
    }

    /// Sends a signal to the (master) process (`USR2` reloads in master-worker mode).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// What it printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Handshakes that completed with a 200 answer.
    pub ok: usize,
    /// Failures, with the first few reasons.
    pub failed: usize,
    /// Some failure reasons.
    pub errors: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

fn client_config(ca: &Path, tls13: bool) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA cert")).expect("CA cert");
    }
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Every handshake a full one: no session resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// One full TLS handshake and an HTTP request; returns the response's first line.
pub fn one_request(port: u16, config: Arc<rustls::ClientConfig>) -> Result<String, String> {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    match tls.read_to_end(&mut response) {
        Ok(_) => {}
        // nginx closes without close_notify after `Connection: close`; what arrived counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&response);
    let first = text.lines().next().unwrap_or("").to_owned();
    if first.contains(" 200 ") {
        Ok(first)
    } else {
        Err(format!("unexpected answer: {first:?}"))
    }
}

/// 200 handshakes (8 threads) on `port` while the vault throttles every 7th request (429,
/// Retry-After: 1) and answers 503 to every 5th; checks that at least 40 faults were
/// injected, clears them and returns the report for the caller's own verdict.
pub fn handshakes_under_faults(lab: &Lab, port: u16, ca: &Path) -> LoadReport {
    lab.emulator().set_faults(Faults {
        throttle_every: 7,
        throttle_retry_after: Some(1),
        unavailable_every: 5,
        ..Faults::default()
    });
    let report = handshakes(port, ca, 200, 8);
    let stats = lab.emulator().stats();
    lab.emulator().set_faults(Faults::default());
    assert!(
        stats.faults_injected >= 40,
        "faults were injected: {stats:?}"
    );
    report
}

/// The vault stopped: 4 handshakes on `port`, all of which must fail. Then the vault back
/// with none of the old tokens: within the circuit breakers' cool-down (each server process
/// has its own) a round of 8 handshakes succeeds again, their probes having found the vault;
/// then 50 handshakes, all of which must succeed after the server refreshed its token (no
/// restart). Returns how long recovery took. `log` explains a failure.
pub fn outage_then_recovery(
    lab: &mut Lab,
    port: u16,
    ca: &Path,
    log: impl Fn() -> String,
) -> Duration {
    let during = lab.outage(|_| {
        let report = handshakes(port, ca, 4, 2);
        (report.ok, report.failed)
    });
    assert_eq!(during, (0, 4), "no handshake succeeds without the vault");
    let back = Instant::now();
    let recovered_after = loop {
        if handshakes(port, ca, 8, 4).ok == 8 {
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(20),
            "no recovery 20 s after the vault came back\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let report = handshakes(port, ca, 50, 4);
    assert_eq!(report.failed, 0, "recovered: {report:?}\n{}", log());
    assert!(
        lab.emulator().stats().route("unauthorized") >= 1,
        "old tokens were refused, then refreshed"
    );
    recovered_after
}

/// `total` full handshakes from `threads` threads, alternating TLS 1.3 and 1.2.
pub fn handshakes(port: u16, ca: &Path, total: usize, threads: usize) -> LoadReport {
    let configs = [client_config(ca, true), client_config(ca, false)];
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let results: Vec<(usize, usize, Vec<String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = next.clone();
                let configs = configs.clone();
                scope.spawn(move || {
                    let (mut ok, mut failed, mut errors) = (0, 0, Vec::new());
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            break;
                        }
                        match one_request(port, configs[n % 2].clone()) {
                            Ok(_) => ok += 1,
                            Err(e) => {
                                failed += 1;
                                if errors.len() < 5 {
                                    errors.push(e);
                                }
                            }
                        }
                    }
                    (ok, failed, errors)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("load thread"))
            .collect()
    });
    let mut report = LoadReport {
        elapsed: started.elapsed(),
        ..LoadReport::default()
    };
    for (ok, failed, errors) in results {
        report.ok += ok;
        report.failed += failed;
        report.errors.extend(errors);
    }
    report
}
