#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| secretsync_fuzz_entry::validate(data));
