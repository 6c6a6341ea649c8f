#![no_main]
//! See junction::fuzzing::centre_payload.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction::fuzzing::centre_payload(data));
