//! MessagePack decoding: arbitrary bytes never panic, and whatever decodes survives a
//! round trip through `Writer` in both codecs unchanged.

use crate::codec::{msgpack, Decoder};

/// The `msgpack_decode` fuzz target's properties, checked on one input: panics on the first one
/// violated (see the module's documentation).
pub fn check_msgpack_decode(data: &[u8]) {
    let Ok(value) = msgpack::decode(data) else {
        return;
    };
    super::assert_round_trip(&mut Decoder::default(), &value);
}
