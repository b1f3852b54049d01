//! The Azure CLI: `az account get-access-token`, run without a shell, its JSON read, its
//! failures explained (most often: nobody ran `az login`).

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::parse::{NumberOrString, jwt_expiry, lifetime};
use crate::text::clean_text;
use crate::token::{AccessToken, Audience};

/// The output of a command run for a token source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandOutput {
    /// Exit code (`None` when killed by a signal or the timeout).
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// The arguments of the `az` command that prints a token for `audience`.
pub(super) fn arguments(audience: &Audience, tenant: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "account",
        "get-access-token",
        "--output",
        "json",
        "--resource",
        audience.as_str(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(t) = tenant {
        args.push("--tenant".into());
        args.push(t.to_owned());
    }
    args
}

/// The token from what the command did (or why there is none).
pub(super) fn token_from_output(
    output: Result<CommandOutput, String>,
    now: Instant,
    unix_now: u64,
) -> Result<AccessToken, String> {
    let out = output
        .map_err(|e| format!("cannot run az: {e} (is the Azure CLI installed and on PATH?)"))?;
    if out.exit_code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        let hint = if stderr.contains("az login") {
            ""
        } else {
            " (run 'az login' first)"
        };
        return Err(format!(
            "az failed ({}): {}{hint}",
            out.exit_code
                .map(|c| format!("exit code {c}"))
                .unwrap_or("killed or timed out".into()),
            clean_text(first, 300)
        ));
    }
    parse_cli_output(&out.stdout, now, unix_now)
}

/// Reads `az account get-access-token --output json`.
pub(crate) fn parse_cli_output(
    stdout: &[u8],
    now: Instant,
    unix_now: u64,
) -> Result<AccessToken, String> {
    #[derive(Deserialize)]
    struct Raw {
        #[serde(rename = "accessToken")]
        access_token: Option<String>,
        expires_on: Option<NumberOrString>,
    }
    let raw: Raw = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "az printed something that is not its JSON token output ({:?} error)",
            e.classify()
        )
    })?;
    let token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or("az printed no accessToken")?;
    // Older az versions print only `expiresOn` in local time, which cannot be read without
    // the time zone: fall back to the JWT's own `exp`.
    let on = raw
        .expires_on
        .and_then(|v| v.seconds())
        .or_else(|| jwt_expiry(&token));
    let life = lifetime(None, on, unix_now).or_else(|_| {
        if on.is_none() {
            Ok(Duration::from_secs(300))
        } else {
            Err("az returned an expired token".to_string())
        }
    })?;
    Ok(AccessToken::new(token, now + life))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::credential::test_support::UNIX;

    #[test]
    fn output_and_failures() {
        let now = Instant::now();
        let ok = CommandOutput {
            exit_code: Some(0),
            stdout: br#"{"accessToken":"cli-token","expires_on":1700003600}"#.to_vec(),
            stderr: vec![],
        };
        let t = token_from_output(Ok(ok), now, UNIX).unwrap();
        assert_eq!(t.expires_at(), now + Duration::from_secs(3600));
        let e = token_from_output(Err("No such file".into()), now, UNIX).unwrap_err();
        assert!(e.contains("is the Azure CLI installed"), "{e}");
        let killed = CommandOutput {
            exit_code: None,
            stdout: vec![],
            stderr: b"\n\x1b[31mERROR: boom\n".to_vec(),
        };
        let e = token_from_output(Ok(killed), now, UNIX).unwrap_err();
        assert_eq!(
            e,
            "az failed (killed or timed out): [31mERROR: boom (run 'az login' first)"
        );
    }
}
