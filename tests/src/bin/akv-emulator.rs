//! `akv-emulator`: a local Azure Key Vault for tests, benchmarks and the demo.
//!
//! ```text
//! akv-emulator --state DIR [--listen 127.0.0.1:0] [--http] [--all-keys] [--key NAME:SPEC]...
//!              [--token-lifetime SECS] [--cache-signatures] [--hsm] [--certificate NAME]... [--ready-file PATH]
//! ```
//! Prints one JSON line (`{"url", "ca", "state"}`) when ready, and writes it to
//! `--ready-file` too. Control endpoints (loopback, no auth): `GET /_emulator/stats`,
//! `POST /_emulator/stats/reset`, `POST /_emulator/faults` (JSON `Faults`),
//! `POST /_emulator/tokens/revoke`, `POST /_emulator/keys/NAME/{enable,disable}`.

use std::time::Duration;

use akv_tests::emulator::{EmulatorConfig, KeySpec, prepare, serve};

fn usage(message: &str) -> ! {
    eprintln!("akv-emulator: {message}");
    eprintln!(
        "usage: akv-emulator --state DIR [--listen 127.0.0.1:0] [--http] [--all-keys] [--key NAME:SPEC]... [--token-lifetime SECS] [--cache-signatures] [--hsm] [--certificate NAME]... [--ready-file PATH]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut state = None;
    let mut config = EmulatorConfig::new("");
    let mut ready_file = None;
    let mut all_keys = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--state" => state = Some(value("--state")),
            "--listen" => {
                config.listen = value("--listen")
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--listen: {e}")))
            }
            "--http" => config.tls = false,
            "--all-keys" => all_keys = true,
            "--hsm" => {
                config.hsm = true;
                config.challenge_resource = "https://managedhsm.azure.net".into();
            }
            "--cache-signatures" => config.cache_signatures = true,
            "--token-lifetime" => {
                let secs: u64 = value("--token-lifetime")
                    .parse()
                    .unwrap_or_else(|e| usage(&format!("--token-lifetime: {e}")));
                config.token_lifetime = Duration::from_secs(secs);
            }
            "--certificate" => config.certificates.push(value("--certificate")),
            "--key" => {
                let v = value("--key");
                let (name, spec) = v
                    .split_once(':')
                    .unwrap_or_else(|| usage("--key takes NAME:SPEC"));
                let spec: KeySpec = spec.parse().unwrap_or_else(|e: String| usage(&e));
                config.keys.push((name.to_owned(), spec));
            }
            "--ready-file" => ready_file = Some(value("--ready-file")),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    config.state_dir = state.unwrap_or_else(|| usage("--state is required")).into();
    if all_keys {
        config = config.with_all_key_types();
    }
    let prepared = prepare(config).unwrap_or_else(|e| {
        eprintln!("akv-emulator: {e}");
        std::process::exit(1);
    });
    let line = serde_json::json!({
        "url": prepared.base_url(),
        "ca": prepared.tls_files().map(|t| t.ca_cert.display().to_string()),
        "port": prepared.addr().port(),
    })
    .to_string();
    println!("{line}");
    if let Some(path) = ready_file {
        std::fs::write(path, format!("{line}\n"))
            .unwrap_or_else(|e| eprintln!("akv-emulator: cannot write the ready file: {e}"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(serve(prepared, async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }));
}
