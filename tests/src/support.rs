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
        // A clean absolute path: some code under test (rightly) refuses `..` in paths.
        TempDir(dir.canonicalize().expect("temp dir path"))
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

/// The engine library built by cargo (`libe_akv.so`).
pub fn engine_library() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let lib = target.join(profile).join("libe_akv.so");
    assert!(
        lib.exists(),
        "{} is missing: build the engine first (cargo build -p akv-engine), as scripts/test.sh does",
        lib.display()
    );
    lib.canonicalize().expect("engine path")
}

/// A folder holding `e_akv.so` (a link to the built library), for `OPENSSL_ENGINES`.
pub fn engine_dir(base: &Path) -> PathBuf {
    let dir = base.join("engines");
    std::fs::create_dir_all(&dir).expect("engines dir");
    let link = dir.join("e_akv.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(engine_library(), &link).expect("engine link");
    dir
}

/// The built provider module (`libakv.so` of the same profile as the tests).
pub fn provider_library() -> PathBuf {
    let engine = engine_library();
    let lib = engine.with_file_name("libakv.so");
    assert!(
        lib.exists(),
        "{} is missing: build the provider first (cargo build -p akv-provider), as scripts/test.sh does",
        lib.display()
    );
    lib
}

/// A folder holding `akv.so` (a link to the built provider), for `-provider-path`.
pub fn provider_dir(base: &Path) -> PathBuf {
    let dir = base.join("providers");
    std::fs::create_dir_all(&dir).expect("providers dir");
    let link = dir.join("akv.so");
    let target = provider_library();
    // Tests running at once share a lab's folder: make the link once, keep a correct one.
    match std::fs::read_link(&link) {
        Ok(current) if current == target => return dir,
        // A link from another build: replace it.
        Ok(_) => {
            let _ = std::fs::remove_file(&link);
        }
        Err(_) => {}
    }
    match std::os::unix::fs::symlink(&target, &link) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        other => other.expect("provider link"),
    }
    dir
}

/// Where OpenSSL 4.0.3 is installed (`bin/openssl`, `lib/`, `include/`): built once by
/// `scripts/build-openssl.sh` into its cache (the test command builds it before the tests).
pub fn openssl4() -> PathBuf {
    openssl_build("4.0.3")
}

/// Where OpenSSL `version` (4.0.3, 3.5.5) is installed, building it into the cache with
/// `scripts/build-openssl.sh` the first time (the test command builds both before the tests).
pub fn openssl_build(version: &str) -> PathBuf {
    static DIRS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut dirs = DIRS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, dir)) = dirs.iter().find(|(v, _)| v == version) {
        return dir.clone();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-openssl.sh");
    let out = std::process::Command::new(&script)
        .arg(version)
        .output()
        .expect("scripts/build-openssl.sh runs");
    assert!(
        out.status.success(),
        "building OpenSSL {version} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    dirs.push((version.to_string(), dir.clone()));
    dir
}

/// Environment variables that must not leak into the programs under test: proxies and
/// real credentials would send traffic off this machine.
pub const SCRUBBED_ENV: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_CLI_ACCESS_TOKEN",
    "OPENSSL_CONF",
    "AKV_CLOUD",
    "AKV_ALLOWED_HOSTS",
    "AKV_ENDPOINT",
    "AKV_API_VERSION",
    "AKV_REQUEST_TIMEOUT_MS",
    "AKV_BUDGET_MS",
    "AKV_CREDENTIAL",
    "AKV_MI_CLIENT_ID",
    "AKV_MI_OBJECT_ID",
    "AKV_MI_RESOURCE_ID",
    "AKV_IMDS_ENDPOINT",
    "AKV_CA_FILE",
    "AKV_LOG_LEVEL",
    "AKV_LOG_FILE",
];

/// A free loopback TCP port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Compiles `tests/c/NAME.c` against the system's libcrypto into `dir/NAME`.
pub fn compile_c(dir: &Path, name: &str, optimize: &str) -> PathBuf {
    compile_c_against(dir, name, optimize, None)
}

/// Compiles `tests/c/NAME.c` against the OpenSSL installed under `prefix` (its `include/`
/// and `lib/`), or the system's when `None`, into `dir/NAME` (`dir/NAME-PREFIXNAME` for an
/// installed one). Run it with that OpenSSL's `lib/` in LD_LIBRARY_PATH.
pub fn compile_c_against(dir: &Path, name: &str, optimize: &str, prefix: Option<&Path>) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("c/{name}.c"));
    let bin = match prefix {
        Some(p) => dir.join(format!(
            "{name}-{}",
            p.file_name().unwrap_or_default().to_string_lossy()
        )),
        None => dir.join(name),
    };
    let mut cc = std::process::Command::new("cc");
    cc.args([optimize, "-g", "-Wall", "-Wno-deprecated-declarations"]);
    if let Some(p) = prefix {
        cc.arg(format!("-I{}", p.join("include").display()));
        cc.arg(format!("-L{}", p.join("lib").display()));
    }
    let out = cc
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .args(["-lcrypto", "-lpthread"])
        .output()
        .expect("cc runs (scripts/test.sh installs gcc)");
    assert!(
        out.status.success(),
        "cc {name}.c failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

/// Writes an openssl.cnf into the lab that activates the default provider, then akv from
/// `dir`'s providers folder; returns its path (for `OPENSSL_CONF`).
pub fn provider_cnf(lab: &crate::lab::Lab, dir: &Path) -> String {
    let providers = provider_dir(dir);
    lab.write(
        "akv-provider.cnf",
        format!(
            "openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_section\n\
             [provider_section]\ndefault = default_section\nakv = akv_section\n\
             [default_section]\nactivate = 1\n\
             [akv_section]\nmodule = {}\nactivate = 1\n",
            providers.join("akv.so").display()
        )
        .as_bytes(),
    )
}

/// Owned copies of command-line words.
pub fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
