//! MessagePack decoding: arbitrary bytes never panic, and whatever decodes survives a
//! round trip through `Writer` in both codecs unchanged.

use crate::codec::{msgpack, Decoder};

/// The `msgpack_decode` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_msgpack_decode(data: &[u8]) {
    let Ok(value) = msgpack::decode(data) else {
        return;
    };
    super::assert_round_trip(&mut Decoder::default(), &value);
}
