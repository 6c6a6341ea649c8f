#![no_main]
//! See junction_centre::fuzz_payload.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction_centre::fuzz_payload(data));
