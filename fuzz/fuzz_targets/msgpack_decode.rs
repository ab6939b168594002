//! `msgpack_decode`: its properties are `huddle::fuzzcheck::check_msgpack_decode` (documented there),
//! which `cargo test` also runs on this target's seeds and regressions.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| huddle::fuzzcheck::check_msgpack_decode(data));
