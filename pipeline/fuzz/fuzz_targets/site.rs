#![no_main]
//! See junction::fuzzing::site.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction::fuzzing::site(data));
