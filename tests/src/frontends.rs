//! The ways a program reaches a vault key, so that one end-to-end table runs for each: the
//! engine on the system's OpenSSL 3.0, and the provider on OpenSSL 3.0 and on OpenSSL 4.0.3
//! (built by `scripts/build-openssl.sh`; engines do not exist there).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::lab::Lab;
use crate::support::{openssl_build, provider_dir};

/// One `openssl` to run.
#[derive(Clone, Debug)]
pub struct OpenSsl {
    /// For messages.
    pub name: &'static str,
    /// For file names: `3`, `35`, `4`.
    pub tag: &'static str,
    /// The program.
    pub program: PathBuf,
    /// Its libraries, for this program only (never the whole test run).
    pub libs: Option<PathBuf>,
}

impl OpenSsl {
    /// The system's OpenSSL 3.0.
    pub fn system() -> OpenSsl {
        OpenSsl {
            name: "OpenSSL 3.0 (system)",
            tag: "3",
            program: PathBuf::from("openssl"),
            libs: None,
        }
    }

    /// OpenSSL 3.5.5, the LTS that still has engines, from the build cache.
    pub fn lts() -> OpenSsl {
        OpenSsl::built("OpenSSL 3.5.5 LTS", "35", "3.5.5")
    }

    /// OpenSSL 4.0.3 from the build cache.
    pub fn four() -> OpenSsl {
        OpenSsl::built("OpenSSL 4.0.3", "4", "4.0.3")
    }

    fn built(name: &'static str, tag: &'static str, version: &str) -> OpenSsl {
        let dir = openssl_build(version);
        OpenSsl {
            name,
            tag,
            program: dir.join("bin/openssl"),
            libs: Some(dir.join("lib")),
        }
    }

    /// Where it is installed (`include/`, `lib/`), when it is not the system's.
    pub fn prefix(&self) -> Option<&Path> {
        self.libs.as_deref().and_then(Path::parent)
    }
}

/// How the key reaches OpenSSL.
#[derive(Clone, Debug)]
pub enum FrontEnd {
    /// `-engine e_akv -keyform engine` (OpenSSL 3 only).
    Engine(OpenSsl),
    /// `-provider default -provider akv` (in that order: see the README) with store URIs.
    Provider(OpenSsl),
}

impl FrontEnd {
    /// Every front end, in the order tables run them.
    pub fn all() -> Vec<FrontEnd> {
        vec![
            FrontEnd::Engine(OpenSsl::system()),
            FrontEnd::Provider(OpenSsl::system()),
            FrontEnd::Provider(OpenSsl::four()),
        ]
    }

    /// The version matrix: the engine on the system's 3.0 and on 3.5 LTS, the provider on
    /// 3.0, 3.5 and 4.0.3 (the same built module in each).
    pub fn matrix() -> Vec<FrontEnd> {
        vec![
            FrontEnd::Engine(OpenSsl::system()),
            FrontEnd::Engine(OpenSsl::lts()),
            FrontEnd::Provider(OpenSsl::system()),
            FrontEnd::Provider(OpenSsl::lts()),
            FrontEnd::Provider(OpenSsl::four()),
        ]
    }

    /// The provider in each OpenSSL: the system's 3.0 and the 4.0.3 build.
    pub fn providers() -> Vec<FrontEnd> {
        vec![
            FrontEnd::Provider(OpenSsl::system()),
            FrontEnd::Provider(OpenSsl::four()),
        ]
    }

    /// For messages and file names.
    pub fn name(&self) -> String {
        match self {
            FrontEnd::Engine(o) => format!("engine on {}", o.name),
            FrontEnd::Provider(o) => format!("provider on {}", o.name),
        }
    }

    /// A short tag for file names: `engine`, `engine35`, `prov3`, `prov35`, `prov4`.
    pub fn tag(&self) -> String {
        match self {
            FrontEnd::Engine(o) if o.libs.is_none() => "engine".into(),
            FrontEnd::Engine(o) => format!("engine{}", o.tag),
            FrontEnd::Provider(o) => format!("prov{}", o.tag),
        }
    }

    /// The `openssl` this front end runs in.
    pub fn openssl(&self) -> OpenSsl {
        match self {
            FrontEnd::Engine(o) | FrontEnd::Provider(o) => o.clone(),
        }
    }

    /// `openssl COMMAND` with the lab's environment and the flags that load the front end.
    pub fn command(&self, lab: &Lab, command: &str) -> Command {
        let openssl = self.openssl();
        let mut c = lab.command(openssl.program.to_str().expect("utf-8 path"));
        if let Some(libs) = &openssl.libs {
            c.env("LD_LIBRARY_PATH", libs);
        }
        c.arg(command);
        match self {
            FrontEnd::Engine(_) => {
                c.args(["-engine", "e_akv"]);
            }
            FrontEnd::Provider(_) => {
                let providers = provider_dir(Path::new(&lab.path("")));
                c.arg("-provider-path").arg(providers).args([
                    "-provider",
                    "default",
                    "-provider",
                    "akv",
                ]);
            }
        }
        c
    }

    /// The arguments naming vault key `key` through `key_flag` (`-inkey`, `-key`, `-CAkey`),
    /// with `form_flag` (`-keyform`, `-CAkeyform`) telling the engine the key is its own.
    pub fn key_args(&self, form_flag: &str, key_flag: &str, key: &str) -> Vec<String> {
        match self {
            FrontEnd::Engine(_) => vec![
                form_flag.into(),
                "engine".into(),
                key_flag.into(),
                key.into(),
            ],
            FrontEnd::Provider(_) => vec![key_flag.into(), key.into()],
        }
    }

    /// Runs `openssl COMMAND ARGS`.
    pub fn run(&self, lab: &Lab, command: &str, args: &[String]) -> Output {
        self.command(lab, command)
            .args(args)
            .output()
            .expect("openssl runs")
    }

    /// Runs `openssl COMMAND ARGS`, insists it fails, returns its stderr.
    pub fn fails(&self, lab: &Lab, command: &str, args: &[String]) -> String {
        let out = self.run(lab, command, args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "{}: openssl {command} {} should have failed:\n{stderr}",
            self.name(),
            args.join(" ")
        );
        stderr
    }

    /// Runs `openssl s_server -www` on `port` with `args` (the key and certificate, through
    /// this front end) and waits until it accepts connections.
    pub fn s_server(&self, lab: &Lab, args: &[String], port: u16) -> Child {
        let mut child = self
            .command(lab, "s_server")
            .args(args)
            .args(["-accept", &format!("127.0.0.1:{port}"), "-www"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_server starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{}: s_server did not start", self.name());
    }
}

/// A TLS handshake by the system's plain `s_client` (`-tls1_3`, `-tls1_2`), checking the
/// server's certificate against `ca` and the name `localhost`; returns what it printed.
pub fn s_client(lab: &Lab, port: u16, version: &str, ca: &str, sigalgs: Option<&str>) -> String {
    let target = format!("127.0.0.1:{port}");
    let mut args = vec![
        "s_client",
        "-connect",
        &target,
        version,
        "-CAfile",
        ca,
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-servername",
        "localhost",
    ];
    if let Some(s) = sigalgs {
        args.extend(["-sigalgs", s]);
    }
    let mut child = lab
        .command("openssl")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("s_client starts");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("s_client ends");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
