//! Azure Arc's challenge: the first token request is answered 401 with `Basic realm=PATH`,
//! naming a key file the Arc agent just wrote; the second request sends its contents. The
//! path comes from the network, so it is checked before anything is read.

use std::path::{Path, PathBuf};

use super::source::Secret;
use crate::request::HttpResponse;
use crate::text::shown;

/// Folder where Azure Arc's agent writes its challenge key files.
pub const ARC_KEY_FOLDER: &str = "/var/opt/azcmagent/tokens";
/// The file whose presence says the Azure Arc agent is installed.
pub const ARC_HIMDS_FILE: &str = "/opt/azcmagent/bin/himds";
/// Largest Arc key file accepted.
pub const ARC_MAX_KEY_LEN: usize = 4096;

/// The key file a 401 challenge names, checked to be one the agent wrote into `folder`.
pub(super) fn challenge_key_file(
    response: &HttpResponse,
    folder: &Path,
) -> Result<PathBuf, String> {
    let realm = response
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::challenge::basic_realm)
        .ok_or("the 401 answer carries no Basic realm with the key file path")?;
    arc_key_path(&realm, folder)
}

/// Checks the key file path of Azure Arc's `Basic realm=` challenge: the agent writes the
/// file into its own folder, so anything else is an attempt to make us read (and send) some
/// other file.
pub fn arc_key_path(realm: &str, folder: &Path) -> Result<PathBuf, String> {
    let path = Path::new(realm);
    let refuse = |why: &str| format!("refusing the Arc key file {}: {why}", shown(realm));
    if !path.is_absolute() {
        return Err(refuse("not an absolute path"));
    }
    // Checked on the text: `Path::components` silently drops `.` segments.
    if realm
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(refuse("it contains '.' or '..'"));
    }
    if path.parent() != Some(folder) {
        return Err(refuse(&format!(
            "it is not directly in {}",
            folder.display()
        )));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("key") {
        return Err(refuse("it does not end in .key"));
    }
    Ok(path.to_path_buf())
}

/// The key from the file's contents (or why the file was no good).
pub(super) fn key_from_file(contents: Result<Vec<u8>, String>) -> Result<Secret, String> {
    match contents {
        Ok(bytes) if bytes.len() <= ARC_MAX_KEY_LEN => Ok(Secret::new(
            String::from_utf8_lossy(&bytes).trim().to_owned(),
        )),
        Ok(bytes) => Err(format!(
            "the Arc key file is {} bytes, more than {ARC_MAX_KEY_LEN}",
            bytes.len()
        )),
        Err(e) => Err(format!("cannot read the Arc key file: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::credential::test_support::*;
    use crate::credential::{
        CredentialSource, FetchPoll, ManagedIdentityEndpoint, ServiceUrl, TokenFetch,
    };

    #[test]
    fn arc_challenge_reads_the_key_file_and_retries() {
        let now = Instant::now();
        let folder = PathBuf::from("/tmp/arc-tokens");
        let source = CredentialSource::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::Arc {
                endpoint: ServiceUrl::parse(
                    "http://127.0.0.1:40342/metadata/identity/oauth2/token",
                    "x",
                )
                .unwrap(),
                key_folder: folder.clone(),
            },
            identity: None,
        };
        let mut f = TokenFetch::new(&source, &aud(), Duration::from_secs(10), None, now, UNIX);
        let r = expect_send(&mut f, now);
        assert!(r.uri().to_string().contains("api-version=2020-06-01"));
        assert!(r.headers().get("authorization").is_none());
        let challenge = http::Response::builder()
            .status(401)
            .header("www-authenticate", "Basic realm=/tmp/arc-tokens/abc.key")
            .body(Vec::new())
            .unwrap();
        f.handle_response(challenge, now, UNIX);
        let FetchPoll::ReadFile { path, max_len } = f.poll(now) else {
            panic!()
        };
        assert_eq!((path, max_len), (folder.join("abc.key"), ARC_MAX_KEY_LEN));
        f.handle_file(Ok(b"key-secret\n".to_vec()));
        let r = expect_send(&mut f, now);
        assert_eq!(r.headers()["authorization"], "Basic key-secret");
        assert!(r.headers()["authorization"].is_sensitive());
        f.handle_response(
            answer(200, r#"{"access_token":"t","expires_in":"3600"}"#),
            now,
            UNIX,
        );
        assert!(expect_done(&mut f, now).is_ok());
    }

    #[test]
    fn arc_refuses_key_files_elsewhere() {
        let folder = Path::new("/var/opt/azcmagent/tokens");
        assert!(arc_key_path("/var/opt/azcmagent/tokens/a.key", folder).is_ok());
        for bad in [
            "/etc/shadow",
            "/var/opt/azcmagent/tokens/../../../etc/x.key",
            "/var/opt/azcmagent/tokens/sub/a.key",
            "/var/opt/azcmagent/tokens/a.txt",
            "tokens/a.key",
            "/var/opt/azcmagent/tokens/./a.key",
        ] {
            assert!(arc_key_path(bad, folder).is_err(), "{bad}");
        }
    }
}
