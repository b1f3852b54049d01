//! Replays every file of the fuzz corpora (fuzz/corpus/<target>/) through the same checks
//! the fuzz targets run, so that every input a fuzzer ever kept, and every finding added
//! there, is tested on every run with the stable toolchain.

use std::path::Path;
use std::time::Instant;

use akv_proto::fuzzing;

/// A check with the `now` the time-dependent ones need (akv-proto reads no clock itself).
type Check = fn(&[u8], Instant);

const TARGETS: [(&str, Check); 13] = [
    ("key_id", |d, _| fuzzing::key_id(d)),
    ("key_bundle", |d, _| fuzzing::key_bundle(d)),
    ("op_result", |d, _| fuzzing::op_result(d)),
    ("error_body", |d, _| fuzzing::error_body(d)),
    ("www_authenticate", |d, _| fuzzing::www_authenticate(d)),
    ("token_response", fuzzing::token_response),
    ("retry_after", |d, _| fuzzing::retry_after_values(d)),
    ("ecdsa", |d, _| fuzzing::ecdsa(d)),
    ("driver", fuzzing::driver),
    ("token_fetch", fuzzing::token_fetch),
    ("key_ref", |d, _| fuzzing::key_ref(d)),
    ("certificate_bundle", |d, _| fuzzing::certificate_bundle(d)),
    ("h1_response", |d, _| fuzzing::h1_response(d)),
];

#[test]
fn every_corpus_file_passes_its_check() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let dir = corpus.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            // A fuzzer running at the same time may replace files under our feet.
            let Ok(data) = std::fs::read(&path) else {
                continue;
            };
            let result = std::panic::catch_unwind(|| check(&data, Instant::now()));
            assert!(
                result.is_ok(),
                "{target}: {} fails its check",
                path.display()
            );
            count += 1;
        }
        assert!(count > 0, "{target} has an empty corpus");
        replayed += count;
    }
    eprintln!("replayed {replayed} corpus files");
}

#[test]
fn checks_survive_random_input() {
    // A little deterministic noise beyond the corpus, for inputs no fuzzer ran yet.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        for (_, check) in TARGETS {
            check(&data, Instant::now());
        }
    }
}
