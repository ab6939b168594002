//! WebSocket frames: `frame::parse` never panics and never claims more bytes than it was
//! given; frames built by `from_payload` and `close` parse back to what went in.

use crate::codec::frame::{self, OpCode};

/// The `ws_frame_parse` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_ws_frame_parse(data: &[u8]) {
    if let Some((opcode, payload, frame_len)) = frame::parse(data) {
        assert!(
            frame_len <= data.len(),
            "frame of {frame_len} bytes in {}",
            data.len()
        );
        assert!(opcode <= 0x0f);
        assert!(
            payload.len() + 2 <= frame_len,
            "a header is at least 2 bytes"
        );
        assert_eq!(
            payload,
            &data[frame_len - payload.len()..frame_len],
            "payload ends the frame"
        );
    }

    let opcode = match data.first().map(|b| b % 4) {
        Some(0) => OpCode::Text,
        Some(1) => OpCode::Binary,
        Some(2) => OpCode::Ping,
        _ => OpCode::Close,
    };
    let built = frame::from_payload(opcode, data);
    assert!(built.len() <= data.len() + frame::HEADER_BYTES_MAX);
    assert_eq!(
        frame::parse(&built),
        Some((opcode as u8, data, built.len())),
        "round trip"
    );
    let mut two = built.to_vec();
    two.extend_from_slice(&built);
    assert_eq!(
        frame::parse(&two).map(|f| f.2),
        Some(built.len()),
        "a frame ends where it says"
    );
    assert_eq!(
        frame::parse(&built[..built.len() - 1]),
        None,
        "a cut frame is incomplete"
    );

    let code = data
        .get(..2)
        .map_or(1000, |c| u16::from_be_bytes([c[0], c[1]]));
    let reason = String::from_utf8_lossy(data);
    let close = frame::close(code, &reason);
    let (op, payload, _) = frame::parse(&close).expect("a close frame parses");
    assert_eq!(op, OpCode::Close as u8);
    assert!(
        payload.len() <= 125,
        "control frames carry at most 125 bytes"
    );
    assert_eq!(payload[..2], code.to_be_bytes());
    let cut = std::str::from_utf8(&payload[2..]).expect("the reason is cut on a char boundary");
    assert!(reason.starts_with(cut));
}
