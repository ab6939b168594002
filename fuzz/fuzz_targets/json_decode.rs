//! JSON decoding (simd-json, in place): arbitrary bytes never panic, and whatever decodes
//! survives a round trip through `Writer` in both codecs unchanged.
#![no_main]

use huddle::codec::{Codec, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = data.to_vec();
    let mut decoder = Decoder::default();
    let Ok(value) = decoder.decode(Codec::Json, &mut bytes) else {
        return;
    };
    huddle_fuzz::assert_round_trip(&mut Decoder::default(), &value);
});
