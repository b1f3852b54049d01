//! End-to-end cases run once for each front end ([`FrontEnd::all`]): the engine on OpenSSL
//! 3.0, the provider on OpenSSL 3.0 and on OpenSSL 4.0.3. What one front end promises, all
//! do, with the same words in their errors.

use akv_tests::emulator::{Fault, Faults};
use akv_tests::frontends::FrontEnd;
use akv_tests::lab::Lab;
use akv_tests::support::{TempDir, free_port};

fn key(name: &str) -> String {
    format!("vault:myvault:{name}")
}

#[test]
fn service_errors_reach_the_user() {
    for fe in FrontEnd::all() {
        let dir = TempDir::new(&format!("service-errors-{}", fe.tag()));
        let mut lab = Lab::start(dir.path(), &[("p256", "p256")], |_| {});
        let msg = lab.path("svc.msg");
        std::fs::write(&msg, b"message").unwrap();
        let dgst = lab.path("svc.dgst");
        lab.ok(&["dgst", "-sha256", "-binary", "-out", &dgst, &msg]);
        let sign = |lab: &Lab| {
            let mut args = vec!["-sign".to_string(), "-in".into(), dgst.clone()];
            args.extend(fe.key_args("-keyform", "-inkey", &key("p256")));
            fe.fails(lab, "pkeyutl", &args)
        };
        let name = fe.name();
        // Disabled key: the load itself says so.
        lab.emulator().set_enabled("p256", false).unwrap();
        let e = sign(&lab);
        assert!(e.contains("disabled"), "{name}: {e}");
        lab.emulator().set_enabled("p256", true).unwrap();
        // Throttled on every request until the retries run out.
        lab.emulator().set_faults(Faults {
            throttle_every: 1,
            throttle_retry_after: Some(0),
            ..Faults::default()
        });
        let e = sign(&lab);
        assert!(
            e.contains("Throttled") && e.contains("gave up after 4 attempts"),
            "{name}: {e}"
        );
        // A 403 from the vault, then the service is down.
        lab.emulator().set_faults(Faults {
            next: [Fault::Status {
                status: 403,
                retry_after: None,
            }]
            .into(),
            ..Faults::default()
        });
        let e = sign(&lab);
        assert!(e.contains("403"), "{name}: {e}");
        lab.emulator().set_faults(Faults::default());
        let closed = format!("https://127.0.0.1:{}", free_port());
        lab.set_env("AKV_ENDPOINT", &closed);
        lab.set_env("AKV_BUDGET_MS", "1500");
        let e = sign(&lab);
        assert!(
            e.contains("cannot connect") || e.contains("cannot get a token"),
            "{name}: {e}"
        );
    }
}
