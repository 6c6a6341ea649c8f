#![no_main]
//! See junction::fuzzing::rules_body.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction::fuzzing::rules_body(data));
