//! `inbound`: its properties are `huddle::fuzzcheck::check_inbound` (documented there),
//! which `cargo test` also runs on this target's seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzcheck::check_inbound(data));
