//! MessagePack decoding: arbitrary bytes never panic, and whatever decodes survives a
//! round trip through `Writer` in both codecs unchanged.
#![no_main]

use huddle::codec::{msgpack, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = msgpack::decode(data) else {
        return;
    };
    huddle_fuzz::assert_round_trip(&mut Decoder::default(), &value);
});
