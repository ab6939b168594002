//! The rooms dialect's validation of decoded values: `handshake`, `envelope` and `command`
//! never panic on any value either codec yields, and what they accept holds its rules.
//! The first input byte picks the codec (odd: MessagePack), the rest is the frame.

use crate::codec::{Codec, Decoder};
use crate::rooms::decode::{command, envelope, handshake, Command};
use base64::Engine;

/// The `rooms_envelope` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_rooms_envelope(data: &[u8]) {
    let Some((&pick, frame)) = data.split_first() else {
        return;
    };
    let codec = if pick & 1 == 1 {
        Codec::Msgpack
    } else {
        Codec::Json
    };
    let mut bytes = frame.to_vec();
    let Ok(value) = Decoder::default().decode(codec, &mut bytes) else {
        return;
    };
    if let Ok(hello) = handshake(&value) {
        assert!(
            !hello.project_id.trim().is_empty(),
            "a handshake names a project"
        );
        assert!(
            hello.token.is_none_or(|t| !t.is_empty()),
            "an empty token is no token"
        );
        assert!(
            !hello.features.bin_bytes || hello.codec == Codec::Msgpack,
            "bin_bytes only for msgpack sessions"
        );
    }
    let Ok(env) = envelope(&value) else {
        return;
    };
    assert!(!env.t.is_empty(), "an envelope has a type");
    let relay_types = ["input.delta".to_string(), "aim.update".to_string()];
    if let Ok(Command::Message {
        bytes_b64: Some(b64),
        data,
        ..
    }) = command(&env, &relay_types)
    {
        assert!(data.is_none(), "room.message.bytes carries no data value");
        assert!(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .is_ok(),
            "accepted bytes are valid base64"
        );
    }
}
