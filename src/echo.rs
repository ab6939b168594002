//! The echo dialect at `/echo` (off unless `[echo] enabled = true` or `huddle --echo`):
//! every text or binary message comes back unchanged, as one frame of the same kind. It
//! is the smallest user of the dialect seam and the endpoint for WebSocket conformance
//! testing. Its bounds are the engine's (`echo.message_bytes_max` per message, closing
//! 1009 past it; the outbound queue bound); it has no rate limit, so a conformance run's
//! bursts are echoed whole.

use crate::codec::frame::{self, OpCode};
use crate::core::outbound::Class;
use crate::core::{Dialect, Engine, Message, SessionKey};

/// The echo dialect (it keeps no state).
pub struct Echo;

impl Echo {
    /// Sends the message back unchanged.
    pub fn handle_message<D: Dialect>(eng: &mut Engine<D>, key: SessionKey, message: Message<'_>) {
        let opcode = if message.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        };
        eng.send(
            key,
            frame::from_payload(opcode, message.bytes),
            Class::Reliable,
        );
    }
}
