#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_proto::fuzzing::token_response(data, std::time::Instant::now()));
