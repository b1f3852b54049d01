//! `akv-h1-floor`: a second floor for the benchmark, besides wrk: the least a Rust client
//! can do for a sign request. Each thread keeps one rustls connection to the vault and, per
//! request, writes the bytes of REQUEST (the engine's own sign request, as the benchmark
//! wrote it) and reads the answer until its Content-Length is in, parsed with httparse. No
//! HTTP library, no pool, no timeouts, no retries: not a client to use, a measure of what
//! ours costs above the bare protocol.
//!
//! ```text
//! akv-h1-floor PORT CA.pem REQUEST THREADS OPS
//! ```
//! Prints one JSON line: `{"ops", "secs", "cpu_us"}` (CPU = user + system of the process).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

fn cpu_us() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Sends `ops` requests on one connection; panics on anything but a 200.
fn run(config: Arc<rustls::ClientConfig>, port: u16, request: Arc<Vec<u8>>, ops: usize) {
    let server = ServerName::try_from("127.0.0.1").expect("an IP name");
    let tls = rustls::ClientConnection::new(config, server).expect("TLS client");
    let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let mut stream = rustls::StreamOwned::new(tls, socket);
    let mut buf = vec![0u8; 16 * 1024];
    for _ in 0..ops {
        stream.write_all(&request).expect("write");
        stream.flush().expect("flush");
        let mut have = 0;
        loop {
            let n = stream.read(&mut buf[have..]).expect("read");
            assert!(n > 0, "the vault closed the connection");
            have += n;
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head) = response.parse(&buf[..have]).expect("HTTP") {
                assert_eq!(
                    response.code,
                    Some(200),
                    "{}",
                    String::from_utf8_lossy(&buf[..have])
                );
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .expect("a Content-Length");
                if have >= head + length {
                    break;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, ca, request, threads, ops] = &args[..] else {
        eprintln!("usage: akv-h1-floor PORT CA.pem REQUEST THREADS OPS");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT");
    let (threads, ops): (usize, usize) =
        (threads.parse().expect("THREADS"), ops.parse().expect("OPS"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("a certificate")).expect("a root");
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let request = Arc::new(std::fs::read(request).expect("the REQUEST file"));
    let per_thread = ops / threads.max(1);
    let (started, cpu) = (std::time::Instant::now(), cpu_us());
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (config, request) = (config.clone(), request.clone());
            std::thread::spawn(move || run(config, port, request, per_thread))
        })
        .collect();
    for w in workers {
        w.join().expect("a worker");
    }
    println!(
        "{{\"ops\":{},\"secs\":{},\"cpu_us\":{}}}",
        per_thread * threads,
        started.elapsed().as_secs_f64(),
        cpu_us() - cpu
    );
}
