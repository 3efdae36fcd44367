#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsync::fuzzing::payload_azure(data));
