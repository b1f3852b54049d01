//! What system calls a signing run makes: `bench_engine` under `strace -f`, counted by name,
//! with the files it opened. Two runs that differ only in the number of signatures give what
//! the extra signatures cost, since everything done once (loading, the first connection, the
//! token) appears in both. Used by the warm-path test and by `akv-bench`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::lab::Lab;

/// Files whose opening means a host name is being looked up.
const RESOLVER_FILES: [&str; 4] = [
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
];

/// System calls of one run, by name, and the files it opened.
pub struct Trace {
    pub calls: BTreeMap<String, usize>,
    pub opened: Vec<String>,
}

impl Trace {
    /// Runs `bench_engine KEY MODE 1 OPS` (one thread) under strace, writing the trace in `dir`.
    pub fn of_signing(
        lab: &Lab,
        bench_engine: &Path,
        dir: &Path,
        key: &str,
        mode: &str,
        ops: usize,
    ) -> Trace {
        let ops = ops.to_string();
        Trace::of(lab, bench_engine, &[key, mode, "1", &ops], dir)
    }

    /// Runs `program ARGS` with the lab's environment under strace, writing the trace in `dir`.
    pub fn of(lab: &Lab, program: &Path, args: &[&str], dir: &Path) -> Trace {
        let name = program.file_name().unwrap_or_default().to_string_lossy();
        let out_file = dir.join(format!(
            "strace-{name}-{}.txt",
            args.join("-").replace([':', '/'], "_")
        ));
        let out = lab
            .command("strace")
            .args(["-f", "-qq", "-o"])
            .arg(&out_file)
            .arg(program)
            .args(args)
            .output()
            .expect("strace runs (apt-get install strace)");
        assert!(
            out.status.success(),
            "{name} under strace failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Trace::parse(&std::fs::read_to_string(&out_file).unwrap())
    }

    /// Reads `strace -f` output: "PID name(args) = result" lines; a "<... name resumed>"
    /// continuation is not a second call.
    pub fn parse(text: &str) -> Trace {
        let mut calls = BTreeMap::new();
        let mut opened = Vec::new();
        for line in text.lines() {
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

    pub fn count(&self, name: &str) -> usize {
        self.calls.get(name).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.calls.values().sum()
    }

    /// Threads and processes started.
    pub fn threads(&self) -> usize {
        ["clone", "clone3", "fork", "vfork"]
            .iter()
            .map(|n| self.count(n))
            .sum()
    }

    /// Resolver configuration files opened: one or more per host name looked up.
    pub fn lookups(&self) -> usize {
        self.opened
            .iter()
            .filter(|f| RESOLVER_FILES.iter().any(|n| f.contains(n)))
            .count()
    }

    /// What each of `extra` more signatures cost, by system call (those that changed), with
    /// `more` the trace of the longer run.
    pub fn per_operation(&self, more: &Trace, extra: usize) -> BTreeMap<String, f64> {
        more.calls
            .keys()
            .chain(self.calls.keys())
            .map(|name| {
                let delta = more.count(name) as f64 - self.count(name) as f64;
                (name.clone(), delta / extra as f64)
            })
            .filter(|(_, per)| per.abs() >= 0.01)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_opened_files() {
        let text = "10 openat(AT_FDCWD, \"/etc/hosts\", O_RDONLY) = 3\n\
                    10 sendto(3, \"x\", 1, 0, NULL, 0 <unfinished ...>\n\
                    11 clone3({flags=...}, 88) = 12\n\
                    10 <... sendto resumed>) = 1\n\
                    12 +++ exited with 0 +++\n\
                    10 sendto(3, \"y\", 1, 0, NULL, 0) = 1\n";
        let t = Trace::parse(text);
        assert_eq!(t.count("sendto"), 2);
        assert_eq!(t.threads(), 1);
        assert_eq!(t.lookups(), 1);
        assert_eq!(t.total(), 4);
        let fewer = Trace::parse("10 sendto(3, \"x\", 1, 0, NULL, 0) = 1\n");
        let per = fewer.per_operation(&t, 2);
        assert_eq!(per["sendto"], 0.5);
        assert_eq!(per["clone3"], 0.5);
    }
}
