//! What a signature costs the signing process on a kept-alive connection: the request and the
//! response, and nothing else. Measured with strace around the real engine in a C program,
//! with the vault named by a host name (`localhost`), so that a name lookup would show as the
//! resolver opening /etc/hosts. Two runs, 20 and 520 signatures: everything a run does once
//! (loading, the first connection, the token) appears in both, so the difference is what 500
//! signatures cost.

use std::collections::BTreeMap;
use std::path::Path;

use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, compile_c};

/// System calls of one run, by name, and the files it opened.
struct Trace {
    calls: BTreeMap<String, usize>,
    opened: Vec<String>,
}

impl Trace {
    fn count(&self, name: &str) -> usize {
        self.calls.get(name).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.calls.values().sum()
    }

    fn threads(&self) -> usize {
        ["clone", "clone3", "fork", "vfork"]
            .iter()
            .map(|n| self.count(n))
            .sum()
    }

    fn lookups(&self) -> usize {
        self.opened
            .iter()
            .filter(|f| {
                [
                    "/etc/hosts",
                    "/etc/resolv.conf",
                    "/etc/nsswitch.conf",
                    "/etc/gai.conf",
                ]
                .iter()
                .any(|n| f.contains(n))
            })
            .count()
    }
}

fn traced_run(lab: &Lab, bin: &Path, dir: &Path, ops: usize) -> Trace {
    let out_file = dir.join(format!("strace-{ops}.txt"));
    let out = lab
        .command("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&out_file)
        .arg(bin)
        .args(["vault:myvault:rsa2048", "pkcs1", "1", &ops.to_string()])
        .output()
        .expect("strace runs (apt-get install strace)");
    assert!(
        out.status.success(),
        "bench_engine under strace failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    let mut calls = BTreeMap::new();
    let mut opened = Vec::new();
    for line in text.lines() {
        // "PID name(args) = result", or a "<... name resumed>" continuation (not counted).
        let Some(rest) = line.split_once(' ').map(|(_, r)| r.trim_start()) else {
            continue;
        };
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            continue;
        }
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        *calls.entry(name.to_owned()).or_insert(0) += 1;
        if name == "openat" || name == "open" {
            opened.push(args.to_owned());
        }
    }
    Trace { calls, opened }
}

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

    let few = traced_run(&lab, &bin, dir.path(), 20);
    let many = traced_run(&lab, &bin, dir.path(), 520);
    assert!(few.lookups() > 0, "the first connection looks the name up");
    let per_signature = |n: usize, m: usize| (m as f64 - n as f64) / 500.0;
    let mut table = String::new();
    for name in many.calls.keys() {
        let extra = per_signature(few.count(name), many.count(name));
        if extra.abs() >= 0.01 {
            table.push_str(&format!("  {name}: {extra:.2}\n"));
        }
    }
    let total = per_signature(few.total(), many.total());
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
