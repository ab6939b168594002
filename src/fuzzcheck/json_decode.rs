//! JSON decoding (simd-json, in place): arbitrary bytes never panic, and whatever decodes
//! survives a round trip through `Writer` in both codecs unchanged.

use crate::codec::{Codec, Decoder};

/// The `json_decode` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_json_decode(data: &[u8]) {
    let mut bytes = data.to_vec();
    let mut decoder = Decoder::default();
    let Ok(value) = decoder.decode(Codec::Json, &mut bytes) else {
        return;
    };
    super::assert_round_trip(&mut Decoder::default(), &value);
}
