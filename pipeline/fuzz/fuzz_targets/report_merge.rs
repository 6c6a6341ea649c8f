#![no_main]
//! See junction::fuzzing::report_merge.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction::fuzzing::report_merge(data));
