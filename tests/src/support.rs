//! Small helpers for the suites: temporary folders and local verification with OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};

/// A fresh folder under the target directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-tmp");
        let dir = base.join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads a PEM public key.
pub fn public_key(path: &Path) -> PKey<Public> {
    PKey::public_key_from_pem(&std::fs::read(path).expect("public key file"))
        .expect("PEM public key")
}

/// The digest OpenSSL uses for a Key Vault algorithm's hash size.
pub fn digest_for(len: usize) -> MessageDigest {
    match len {
        32 => MessageDigest::sha256(),
        48 => MessageDigest::sha384(),
        64 => MessageDigest::sha512(),
        _ => panic!("no digest of {len} bytes"),
    }
}
