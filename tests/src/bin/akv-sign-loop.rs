//! `akv-sign-loop BACKEND N`: signs N times with `vault:myvault:rsa2048` through one backend
//! (`ureq` or `hyper`), against the vault and token endpoint named by `AKV_ENDPOINT` (a
//! loopback emulator) trusting `AKV_CA_FILE`. The warm-path test traces it to see what an
//! operation costs each backend on a kept-alive connection.

use akv_proto::credential::CredentialSource;
use akv_proto::{KeyCall, OperationConfig, SignAlgorithm};
use akv_tests::backends::{Backend, Client};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: akv-sign-loop ureq|hyper N";
    let backend = match args.next().as_deref() {
        Some("ureq") => Backend::Ureq,
        Some("hyper") => Backend::Hyper,
        _ => panic!("{usage}"),
    };
    let n: usize = args.next().and_then(|n| n.parse().ok()).expect(usage);
    let origin = std::env::var("AKV_ENDPOINT").expect("AKV_ENDPOINT names the emulator");
    let ca = std::env::var_os("AKV_CA_FILE").expect("AKV_CA_FILE names its CA");
    let client = Client::new(
        backend,
        &origin,
        OperationConfig::default(),
        CredentialSource::imds(&origin, None).expect("token endpoint"),
        Some(std::path::Path::new(&ca)),
    );
    for _ in 0..n {
        let call = KeyCall::Sign {
            alg: SignAlgorithm::RS256,
            digest: vec![0x42; 32],
        };
        client.run("vault:myvault:rsa2048", call).expect("sign");
    }
}
