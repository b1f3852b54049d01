//! A lab for end-to-end tests with real programs: an emulator over HTTPS, the engine where
//! OpenSSL finds it, and the environment that points everything at loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::emulator::{Emulator, EmulatorConfig, KeySpec};
use crate::support::{SCRUBBED_ENV, engine_dir};

/// An emulator plus a work folder and the engine settings that point at it.
pub struct Lab {
    emulator: Option<Emulator>,
    config: EmulatorConfig,
    base_url: String,
    ca_cert: PathBuf,
    /// Folder for files the test writes.
    pub work: PathBuf,
    engines: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Lab {
    /// Starts a lab whose emulator keeps its keys in `root/state` (reused across runs when
    /// the folder is kept) and holds `keys`.
    pub fn start(
        root: &Path,
        keys: &[(&str, &str)],
        tune: impl FnOnce(&mut EmulatorConfig),
    ) -> Lab {
        let mut config = EmulatorConfig::new(root.join("state"));
        for (name, spec) in keys {
            config
                .keys
                .push((name.to_string(), spec.parse::<KeySpec>().expect("key spec")));
        }
        tune(&mut config);
        let emulator = Emulator::start(config.clone()).expect("emulator");
        // Restarts reuse the port, so that programs configured with it reconnect.
        config.listen = emulator.addr();
        let work = root.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        Lab {
            base_url: emulator.base_url(),
            ca_cert: emulator.ca_cert().expect("https").to_path_buf(),
            emulator: Some(emulator),
            config,
            engines: engine_dir(root),
            work,
            extra_env: Vec::new(),
        }
    }

    /// One lab for the whole test binary, under `target/test-tmp/NAME` (its keys are kept
    /// across runs, so reruns skip key generation), for the tests that neither change
    /// faults nor read counters.
    pub fn shared(name: &str, keys: &[(&str, &str)]) -> &'static Lab {
        static LABS: std::sync::Mutex<Vec<(String, &'static Lab)>> =
            std::sync::Mutex::new(Vec::new());
        let mut labs = LABS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, lab)) = labs.iter().find(|(n, _)| n == name) {
            return lab;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/test-tmp")
            .join(name);
        let _ = std::fs::remove_dir_all(root.join("work"));
        let lab: &'static Lab = Box::leak(Box::new(Lab::start(&root, keys, |_| {})));
        labs.push((name.to_string(), lab));
        lab
    }

    /// Writes `bytes` to the work file `name`; returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, bytes).expect("work file");
        p
    }

    /// Writes a message `TAG.msg` and its `md` digest (`sha256`, ...) to `TAG.dgst`, by plain
    /// OpenSSL; returns the digest's path.
    pub fn digest_file(&self, tag: &str, md: &str) -> String {
        let msg = self.write(
            &format!("{tag}.msg"),
            format!("message for {tag}").as_bytes(),
        );
        let out = self.path(&format!("{tag}.dgst"));
        self.ok(&["dgst", &format!("-{md}"), "-binary", "-out", &out, &msg]);
        out
    }

    /// The running emulator.
    pub fn emulator(&self) -> &Emulator {
        self.emulator.as_ref().expect("the emulator is running")
    }

    /// Stops the emulator, runs `during` while it is down, then starts it again on the same
    /// port with the same keys (issued tokens are forgotten, as after a real outage).
    pub fn outage<T>(&mut self, during: impl FnOnce(&Lab) -> T) -> T {
        self.stop_vault();
        let result = during(self);
        self.start_vault();
        result
    }

    /// Stops the emulator; its port is free until [`Lab::start_vault`].
    pub fn stop_vault(&mut self) {
        if let Some(running) = self.emulator.take() {
            running.stop();
        }
    }

    /// Starts the emulator again on its port with the same keys, if it is stopped.
    pub fn start_vault(&mut self) {
        if self.emulator.is_none() {
            self.emulator =
                Some(Emulator::start(self.config.clone()).expect("emulator restarts on its port"));
        }
    }

    /// The emulator's address (also while it is stopped).
    pub fn vault_addr(&self) -> std::net::SocketAddr {
        self.config.listen
    }

    /// The engine settings (as environment variables) that point at the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "OPENSSL_ENGINES".to_string(),
                self.engines.display().to_string(),
            ),
            ("AKV_ENDPOINT".into(), self.base_url.clone()),
            ("AKV_IMDS_ENDPOINT".into(), self.base_url.clone()),
            ("AKV_CA_FILE".into(), self.ca_cert.display().to_string()),
            ("AKV_CREDENTIAL".into(), "managed-identity".into()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    /// Adds an environment variable for every later command.
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.extra_env.retain(|(k, _)| k != name);
        self.extra_env.push((name.into(), value.into()));
    }

    /// A command with the lab's environment, run in the work folder.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        for name in SCRUBBED_ENV {
            c.env_remove(name);
        }
        c.envs(self.env()).current_dir(&self.work);
        c
    }

    /// Runs `openssl ARGS`.
    pub fn openssl(&self, args: &[&str]) -> Output {
        self.command("openssl")
            .args(args)
            .output()
            .expect("openssl runs")
    }

    /// Runs `openssl ARGS` and insists it succeeds.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.openssl(args);
        assert!(
            out.status.success(),
            "openssl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs `openssl ARGS`, insists it fails, returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.openssl(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "openssl {} should have failed:\n{stderr}",
            args.join(" ")
        );
        stderr
    }

    /// A path in the work folder, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.work.join(name).display().to_string()
    }

    /// The exported public key of a vault key.
    pub fn public_pem(&self, key: &str) -> String {
        self.config
            .state_dir
            .join("public")
            .join(format!("{key}.pem"))
            .display()
            .to_string()
    }
}
