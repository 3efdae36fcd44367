#![no_main]
#[path = "../harness/payload.rs"]
mod payload;
libfuzzer_sys::fuzz_target!(|data: &[u8]| payload::aws_get(data));
