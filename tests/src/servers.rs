//! Helpers for tests with real servers: a test CA whose certificates carry vault keys,
//! nginx run in the foreground, and a TLS load generator that makes every handshake a full
//! one (no resumption), so each one costs the server a remote signature.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::emulator::Faults;
use crate::lab::Lab;
use crate::support::free_port;

/// A CA (its key in a plain file) that certifies vault keys through CSRs made by the engine.
pub struct TestCa {
    /// CA certificate.
    pub cert: String,
    key: String,
}

/// The extensions of a TLS server certificate for this machine.
const SERVER_USAGE: &str = "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1";

impl TestCa {
    /// Creates the CA in the lab's work folder.
    pub fn new(lab: &Lab) -> TestCa {
        TestCa::named(lab, "ca")
    }

    /// Creates a CA whose files are named `NAME.crt` and `NAME.key` (a second CA, to check
    /// that a verifier refuses what the first did not issue).
    pub fn named(lab: &Lab, name: &str) -> TestCa {
        let (cert, key) = (
            lab.path(&format!("{name}.crt")),
            lab.path(&format!("{name}.key")),
        );
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
            &format!("/CN=e_akv test CA {name}"),
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
        let usage = if client {
            "extendedKeyUsage=clientAuth"
        } else {
            SERVER_USAGE
        };
        self.issue_with(lab, key, cn, usage)
    }

    /// A local P-256 key file and a server certificate for it: (certificate, key file).
    pub fn issue_local(&self, lab: &Lab, cn: &str) -> (String, String) {
        let key = lab.path(&format!("{cn}.key"));
        let csr = lab.path(&format!("{cn}.csr"));
        lab.ok(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-subj",
            &format!("/CN={cn}"),
            "-out",
            &csr,
        ]);
        (self.sign_with(lab, &csr, cn, SERVER_USAGE), key)
    }

    /// A certificate for the vault key `key` with these extensions (`openssl x509 -extfile`
    /// lines, for example `extendedKeyUsage=critical,codeSigning`).
    pub fn issue_with(&self, lab: &Lab, key: &str, cn: &str, extensions: &str) -> String {
        let csr = lab.path(&format!("{cn}.csr"));
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
        self.sign_with(lab, &csr, cn, extensions)
    }

    fn sign_with(&self, lab: &Lab, csr: &str, cn: &str, usage: &str) -> String {
        let crt = lab.path(&format!("{cn}.crt"));
        let ext = lab.path(&format!("{cn}.ext"));
        std::fs::write(&ext, format!("basicConstraints=CA:FALSE\n{usage}\n")).expect("ext file");
        lab.ok(&[
            "x509",
            "-req",
            "-in",
            csr,
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

/// A HAProxy configuration: the `global` settings (`nbthread 4`, `ssl-mode-async`), and
/// one frontend with `binds` (see [`haproxy_bind`]) answering 200 `answer`.
pub fn haproxy_config(global: &[&str], binds: &str, answer: &str) -> String {
    let global: String = global.iter().map(|g| format!("    {g}\n")).collect();
    format!(
        "global\n{global}defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n\
         frontend fe\n{binds}    http-request return status 200 content-type text/plain string \"{answer}\"\n"
    )
}

/// A `bind` line of [`haproxy_config`]: TLS on loopback `port` with the `crt` bundle.
pub fn haproxy_bind(port: u16, crt: &str) -> String {
    format!("    bind 127.0.0.1:{port} ssl crt {crt}\n")
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
        Haproxy::start_under(lab, name, config, port, master_worker, &[])
    }

    /// As [`Haproxy::start`], run by `wrapper` (`valgrind` and its options) when not empty.
    pub fn start_under(
        lab: &Lab,
        name: &str,
        config: &str,
        port: u16,
        master_worker: bool,
        wrapper: &[String],
    ) -> Haproxy {
        let cfg = PathBuf::from(lab.write(&format!("{name}.cfg"), config.as_bytes()));
        let log = PathBuf::from(lab.path(&format!("{name}.log")));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = lab.command(program);
                c.args(args).arg("haproxy");
                c
            }
            None => lab.command("haproxy"),
        };
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
        let deadline = Instant::now() + Duration::from_secs(60);
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

    /// The (master) process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Stops it the way an operator does (`SIGUSR1`: finish, then exit) and waits, at most
    /// `within`; returns whether it exited by itself.
    pub fn stop(&mut self, within: Duration) -> bool {
        self.signal("USR1");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
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
    /// How long each successful handshake (with its request) took, sorted.
    pub latencies: Vec<Duration>,
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
    let results: Vec<LoadReport> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = next.clone();
                let configs = configs.clone();
                scope.spawn(move || {
                    let mut mine = LoadReport::default();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total {
                            break;
                        }
                        let began = Instant::now();
                        match one_request(port, configs[n % 2].clone()) {
                            Ok(_) => {
                                mine.ok += 1;
                                mine.latencies.push(began.elapsed());
                            }
                            Err(e) => {
                                mine.failed += 1;
                                if mine.errors.len() < 5 {
                                    mine.errors.push(e);
                                }
                            }
                        }
                    }
                    mine
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
    for mine in results {
        report.ok += mine.ok;
        report.failed += mine.failed;
        report.errors.extend(mine.errors);
        report.latencies.extend(mine.latencies);
    }
    report.latencies.sort();
    report
}

/// What a server did while its vault was out: the local site's requests (when, how long,
/// whether answered) and the vault site's handshakes (when, whether answered), times counted
/// from the start of the outage.
#[derive(Debug, Default)]
pub struct OutageReport {
    /// The local-key site: (start, latency, answered 200).
    pub local: Vec<(Duration, Duration, bool)>,
    /// The vault-key site: (end, answered 200).
    pub vault: Vec<(Duration, bool)>,
    /// When the vault came back.
    pub back_at: Duration,
}

impl OutageReport {
    /// The local site's latencies (sorted) for requests started within `from..to`, and how
    /// many of them failed.
    pub fn local_between(&self, from: Duration, to: Duration) -> (Vec<Duration>, usize) {
        let within: Vec<_> = self
            .local
            .iter()
            .filter(|(at, _, _)| *at >= from && *at < to)
            .collect();
        let mut latencies: Vec<Duration> = within.iter().map(|(_, l, _)| *l).collect();
        latencies.sort();
        (latencies, within.iter().filter(|(_, _, ok)| !ok).count())
    }

    /// How long after the vault came back the vault site answered again, for good: the end
    /// of the first success after which nothing failed.
    pub fn recovered_after(&self) -> Option<Duration> {
        let after: Vec<_> = self
            .vault
            .iter()
            .filter(|(at, _)| *at >= self.back_at)
            .collect();
        let last_failure = after.iter().rposition(|(_, ok)| !ok);
        let first_good = match last_failure {
            Some(i) => after.get(i + 1),
            None => after.first(),
        }?;
        Some(first_good.0.saturating_sub(self.back_at))
    }
}

/// The quantile `q` (0..1) of sorted latencies.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs a steady load through a vault outage: 8 threads of handshakes to `vault_port` (one
/// every 50 ms each) and one request to `local_port` every 20 ms. `switch(true)` starts the
/// outage, which lasts `outage`; `switch(false)` ends it; the load goes on for `after` more.
pub fn load_through_outage(
    vault_port: u16,
    local_port: u16,
    ca: &Path,
    outage: Duration,
    after: Duration,
    mut switch: impl FnMut(bool),
) -> OutageReport {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;
    let configs = [client_config(ca, true), client_config(ca, false)];
    let stop = AtomicBool::new(false);
    let local = Mutex::new(Vec::new());
    let vault = Mutex::new(Vec::new());
    let mut back_at = Duration::ZERO;
    let start = Instant::now();
    switch(true);
    std::thread::scope(|scope| {
        for n in 0..8 {
            let (stop, vault, config) = (&stop, &vault, configs[n % 2].clone());
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = one_request(vault_port, config.clone()).is_ok();
                    vault.lock().unwrap().push((start.elapsed(), ok));
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        let (stop_ref, local_ref, config) = (&stop, &local, configs[0].clone());
        scope.spawn(move || {
            while !stop_ref.load(Ordering::Relaxed) {
                let at = start.elapsed();
                let began = Instant::now();
                let ok = one_request(local_port, config.clone()).is_ok();
                local_ref.lock().unwrap().push((at, began.elapsed(), ok));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(outage);
        switch(false);
        back_at = start.elapsed();
        std::thread::sleep(after);
        stop.store(true, Ordering::Relaxed);
    });
    OutageReport {
        local: local.into_inner().unwrap(),
        vault: vault.into_inner().unwrap(),
        back_at,
    }
}

/// What a server did through a vault outage ([`load_through_outage`]).
#[derive(Debug)]
pub struct HangFigures {
    /// The local site's requests started after `settled` and before the vault came back.
    pub local: Vec<Duration>,
    /// How many of them failed.
    pub local_failed: usize,
    /// The slowest local request before `settled`.
    pub local_worst_before: Duration,
    /// Vault-site handshakes ended after `settled` and before the vault came back, and how
    /// many of them succeeded.
    pub vault_during: (usize, usize),
    /// How long after the vault came back vault handshakes succeeded for good.
    pub recovered: Option<Duration>,
}

/// nginx with 4 workers serving a vault-key site and a local-key site (its certificate from
/// `ca`); steady load on both while the vault hangs (accepts connections, never answers) for
/// `outage`, then answers again for `after`. Figures count from `settled` into the outage.
/// The nginx is returned running, for its logs.
pub fn nginx_through_a_vault_hang(
    lab: &Lab,
    ca: &TestCa,
    name: &str,
    outage: Duration,
    after: Duration,
    settled: Duration,
) -> (HangFigures, Nginx) {
    let vault_crt = ca.issue(lab, "p256", &format!("{name}-vault-site"), false);
    let (local_crt, local_key) = ca.issue_local(lab, &format!("{name}-local-site"));
    let (vault_port, local_port) = (free_port(), free_port());
    let site = |port: u16, crt: &str, key: &str| {
        format!(
            "    server {{\n        listen 127.0.0.1:{port} ssl;\n        ssl_protocols TLSv1.2 TLSv1.3;\n        ssl_certificate {crt};\n        ssl_certificate_key {key};\n        location / {{ return 200 \"ok\\n\"; }}\n    }}\n"
        )
    };
    let body = site(
        vault_port,
        &vault_crt,
        "\"engine:e_akv:vault:myvault:p256\"",
    ) + &site(local_port, &local_crt, &local_key);
    let nginx = Nginx::start(lab, name, 4, &body, vault_port);
    let ca_cert = Path::new(&ca.cert);
    for port in [vault_port, local_port] {
        let warm = handshakes(port, ca_cert, 32, 8);
        assert_eq!(warm.failed, 0, "{port}: {:?}", warm.errors);
    }
    let emulator = lab.emulator();
    let report = load_through_outage(vault_port, local_port, ca_cert, outage, after, |down| {
        emulator.set_faults(Faults {
            latency_ms: if down { 600_000 } else { 0 },
            ..Faults::default()
        })
    });
    (HangFigures::of(&report, settled), nginx)
}

impl HangFigures {
    /// The verdict on a server through a vault outage, once its processes have learned (the
    /// figures count from then): no local request failed, more than 100 were made and
    /// their p99 is under 100 ms; more than `min_vault` vault handshakes, all failed (at
    /// once); vault handshakes succeed again within 12 s of the vault's return (the longest
    /// cool-down and a probe). `log` explains a failure.
    pub fn assert_served_through(&self, what: &str, min_vault: usize, log: impl Fn() -> String) {
        let (p50, p99) = (quantile(&self.local, 0.5), quantile(&self.local, 0.99));
        eprintln!(
            "{what}: local site {} requests, p50 {p50:?}, p99 {p99:?}, {} failed; slowest before settling {:?}; vault site {:?} handshakes (ok) meanwhile; back {:?} after the vault",
            self.local.len(),
            self.local_failed,
            self.local_worst_before,
            self.vault_during,
            self.recovered
        );
        assert_eq!(
            self.local_failed,
            0,
            "{what}: local requests failed\n{}",
            log()
        );
        assert!(
            self.local.len() > 100,
            "{what}: the local site was probed: {}",
            self.local.len()
        );
        assert!(
            p99 < Duration::from_millis(100),
            "{what}: local site p99 {p99:?}\n{}",
            log()
        );
        assert!(
            self.vault_during.0 > min_vault && self.vault_during.1 == 0,
            "{what}: vault handshakes fail, and fast, while the circuit is open: {:?}",
            self.vault_during
        );
        let recovered = self
            .recovered
            .unwrap_or_else(|| panic!("{what}: vault handshakes succeed again\n{}", log()));
        assert!(
            recovered <= Duration::from_secs(12),
            "{what}: recovered after {recovered:?}"
        );
    }

    /// The figures of a run, counting from `settled` into the outage.
    pub fn of(report: &OutageReport, settled: Duration) -> HangFigures {
        let (local, local_failed) = report.local_between(settled, report.back_at);
        let (before, _) = report.local_between(Duration::ZERO, settled);
        let during: Vec<bool> = report
            .vault
            .iter()
            .filter(|(at, _)| *at >= settled && *at < report.back_at)
            .map(|(_, ok)| *ok)
            .collect();
        HangFigures {
            local,
            local_failed,
            local_worst_before: before.last().copied().unwrap_or_default(),
            vault_during: (during.len(), during.iter().filter(|ok| **ok).count()),
            recovered: report.recovered_after(),
        }
    }
}

/// A client that starts a full TLS handshake on `port` (sends its ClientHello) and leaves
/// after `after`, while the server may be waiting for the vault's signature.
pub fn abandoned_handshake(port: u16, ca: &Path, after: Duration) {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut conn = rustls::ClientConnection::new(client_config(ca, true), name).expect("client");
    if let Ok(mut sock) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = conn.write_tls(&mut sock);
        std::thread::sleep(after);
    }
}

/// The names of a process's threads now (`/proc/PID/task/*/comm`).
pub fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_string())
        .collect()
}

/// Runs `work` while sampling `pid`'s threads every 10 ms; returns its result, the most
/// threads seen at once and every thread name seen.
pub fn watching_threads<T>(pid: u32, work: impl FnOnce() -> T) -> (T, usize, BTreeSet<String>) {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut most, mut names) = (0, BTreeSet::new());
            while !stop.load(Ordering::SeqCst) {
                let now = thread_names(pid);
                most = most.max(now.len());
                names.extend(now);
                std::thread::sleep(Duration::from_millis(10));
            }
            (most, names)
        })
    };
    let result = work();
    stop.store(true, Ordering::SeqCst);
    let (most, names) = sampler.join().expect("sampler");
    (result, most, names)
}
