//! A lab for end-to-end tests with real programs: an emulator over HTTPS, the engine where
//! OpenSSL finds it, and the environment that points everything at loopback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::emulator::{Emulator, EmulatorConfig, KeySpec};
use crate::support::{SCRUBBED_ENV, engine_dir};

/// An emulator plus a work folder and the engine settings that point at it.
pub struct Lab {
    /// The emulator.
    pub emulator: Emulator,
    /// Folder for files the test writes.
    pub work: PathBuf,
    engines: PathBuf,
    extra_env: Vec<(String, String)>,
}

impl Lab {
    /// Starts a lab whose emulator keeps its keys in `state` (reused across runs when the
    /// folder is kept) and holds `keys`.
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
        let emulator = Emulator::start(config).expect("emulator");
        let work = root.join("work");
        std::fs::create_dir_all(&work).expect("work dir");
        Lab {
            emulator,
            engines: engine_dir(root),
            work,
            extra_env: Vec::new(),
        }
    }

    /// The engine settings (as environment variables) that point at the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        let base = self.emulator.base_url();
        let mut env = vec![
            (
                "OPENSSL_ENGINES".to_string(),
                self.engines.display().to_string(),
            ),
            ("AKV_ENDPOINT".into(), base.clone()),
            ("AKV_IMDS_ENDPOINT".into(), base),
            (
                "AKV_CA_FILE".into(),
                self.emulator
                    .ca_cert()
                    .expect("https")
                    .display()
                    .to_string(),
            ),
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
        self.emulator.public_key_pem(key).display().to_string()
    }
}
