//! Running a command with a timeout, for the Azure CLI token source. (Reading files is
//! shared with the async backend, in `akv-local`.)

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use akv_proto::credential::CommandOutput;

/// Largest output kept from a command.
const MAX_OUTPUT: u64 = 1024 * 1024;

/// Runs `program` (found on `PATH`, no shell) and kills it after `timeout`.
pub fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<CommandOutput, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stdout).take(MAX_OUTPUT).read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(MAX_OUTPUT).read_to_end(&mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    match status {
        Some(status) => Ok(CommandOutput {
            exit_code: status.code(),
            stdout: out_reader.join().unwrap_or_default(),
            stderr: err_reader.join().unwrap_or_default(),
        }),
        // Not joining the readers: a grandchild may still hold the pipes open.
        None => Err(format!("{program} did not finish within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_timeouts() {
        let out = run_command(
            "sh",
            &["-c".into(), "echo out; echo err >&2; exit 3".into()],
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            (out.exit_code, out.stdout.as_slice(), out.stderr.as_slice()),
            (Some(3), &b"out\n"[..], &b"err\n"[..])
        );
        let started = Instant::now();
        let err = run_command("sleep", &["5".into()], Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            run_command("/nonexistent/az", &[], Duration::from_secs(1))
                .unwrap_err()
                .contains("cannot start")
        );
    }
}
