//! File reads and commands for token sources, without blocking the runtime.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use akv_proto::credential::CommandOutput;
use tokio::io::AsyncReadExt;

/// Reads at most `max_len` bytes on a blocking thread; a longer file is an error.
pub(crate) async fn read_file_capped(path: PathBuf, max_len: usize) -> Result<Vec<u8>, String> {
    tokio::task::spawn_blocking(move || akv_local::read_file_capped(&path, max_len))
        .await
        .map_err(|e| format!("file read task failed: {e}"))?
}

const MAX_OUTPUT: u64 = 1024 * 1024;

/// Runs `program` (no shell) and kills it after `timeout`.
pub(crate) async fn run_command(
    program: &str,
    args: &[String],
    timeout: Duration,
) -> Result<CommandOutput, String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped").take(MAX_OUTPUT);
    let mut stderr = child.stderr.take().expect("piped").take(MAX_OUTPUT);
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (_, _, status) = tokio::join!(
            stdout.read_to_end(&mut out),
            stderr.read_to_end(&mut err),
            child.wait()
        );
        status.map(|s| CommandOutput {
            exit_code: s.code(),
            stdout: out,
            stderr: err,
        })
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => Err(format!("{program} did not finish within {timeout:?}")),
    }
}
