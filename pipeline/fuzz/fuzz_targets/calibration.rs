#![no_main]
//! See junction::fuzzing::calibration.
libfuzzer_sys::fuzz_target!(|data: &[u8]| junction::fuzzing::calibration(data));
