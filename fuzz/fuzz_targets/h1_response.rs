#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| akv_proto::fuzzing::h1_response(data));
