//! What a signature costs the signing process on a kept-alive connection: the request and the
//! response, and nothing else. Measured with strace around the real engine in a C program,
//! with the vault named by a host name (`localhost`), so that a name lookup would show as the
//! resolver opening /etc/hosts. Two runs, 20 and 520 signatures: everything a run does once
//! (loading, the first connection, the token) appears in both, so the difference is what 500
//! signatures cost.

use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, compile_c};
use akv_tests::trace::Trace;

#[test]
fn a_signature_on_a_warm_connection_costs_no_thread_and_no_name_lookup() {
    let dir = TempDir::new("warm-path");
    let mut lab = Lab::start(dir.path(), &[("rsa2048", "rsa2048")], |c| {
        c.cache_signatures = true
    });
    let base = lab.emulator().base_url();
    let named = base.replace("127.0.0.1", "localhost");
    assert_ne!(base, named, "the emulator listens on 127.0.0.1: {base}");
    lab.set_env("AKV_ENDPOINT", &named);
    lab.set_env("AKV_IMDS_ENDPOINT", &named);
    let bin = compile_c(dir.path(), "bench_engine", "-O2");

    let run = |ops| {
        Trace::of_signing(
            &lab,
            &bin,
            dir.path(),
            "vault:myvault:rsa2048",
            "pkcs1",
            ops,
        )
    };
    let few = run(20);
    let many = run(520);
    assert!(few.lookups() > 0, "the first connection looks the name up");
    let per = few.per_operation(&many, 500);
    let table: String = per
        .iter()
        .map(|(name, n)| format!("  {name}: {n:.2}\n"))
        .collect();
    let total: f64 = per.values().sum();
    eprintln!("system calls per signature on a warm connection: {total:.2}\n{table}");
    assert_eq!(
        many.threads(),
        few.threads(),
        "500 more signatures created threads:\n{table}"
    );
    assert_eq!(
        many.lookups(),
        few.lookups(),
        "500 more signatures looked names up:\n{table}"
    );
    assert!(
        total <= 8.0,
        "a signature costs {total:.2} system calls, more than 8:\n{table}"
    );
}

/// The same for each backend on its own (the provider and Rust programs use them directly):
/// a kept-alive connection, a cached token, no thread and no name lookup per operation.
///
/// hyper-util's pool returns a connection from a task of its own once the response is read,
/// and starts a new connection in parallel when the next request finds the pool empty, so on
/// a multi-threaded runtime a few sequential requests open another connection (and look the
/// name up for it). For hyper the check is therefore: lookups and threads only with new
/// connections, and few of those.
#[test]
fn each_backend_signs_on_a_warm_connection_without_threads_or_lookups() {
    let dir = TempDir::new("warm-path-backends");
    let mut lab = Lab::start(dir.path(), &[("rsa2048", "rsa2048")], |c| {
        c.cache_signatures = true
    });
    let named = lab.emulator().base_url().replace("127.0.0.1", "localhost");
    lab.set_env("AKV_ENDPOINT", &named);
    let program = std::path::Path::new(env!("CARGO_BIN_EXE_akv-sign-loop"));
    for backend in ["ureq", "hyper"] {
        let few = Trace::of(&lab, program, &[backend, "20"], dir.path());
        let many = Trace::of(&lab, program, &[backend, "520"], dir.path());
        assert!(
            few.lookups() > 0,
            "{backend}: the first connection looks the name up"
        );
        let per = few.per_operation(&many, 500);
        let table: String = per
            .iter()
            .map(|(name, n)| format!("  {name}: {n:.2}\n"))
            .collect();
        let total: f64 = per.values().sum();
        eprintln!("{backend}: system calls per operation: {total:.2}\n{table}");
        let more = |f: fn(&Trace) -> usize| f(&many).saturating_sub(f(&few));
        let (threads, lookups) = (more(Trace::threads), more(Trace::lookups));
        let connections = more(|t| t.count("connect"));
        if backend == "ureq" {
            assert_eq!(threads + lookups + connections, 0, "ureq:\n{table}");
            assert!(
                total <= 8.0,
                "ureq: {total:.2} system calls per operation:\n{table}"
            );
        } else {
            assert!(
                connections <= 5,
                "hyper opened {connections} more connections for 500 sequential operations"
            );
            assert!(
                threads <= connections && lookups <= 4 * connections,
                "hyper: {threads} threads and {lookups} resolver file opens for {connections} new connections:\n{table}"
            );
        }
    }
}
