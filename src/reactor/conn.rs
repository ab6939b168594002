//! A connection's record on its shard (one cache line) and its states from HTTP head to
//! drain. How an upgraded connection's bytes are read is `inbound`'s.

use mio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use super::inbound::Carry;
use crate::core::SessionKey;

/// The socket and WebSocket state that travel with a moving session.
pub(super) struct MovedConn {
    pub stream: TcpStream,
    pub ctx: Box<WebSocketContext>,
    pub carry: Carry,
}

/// Where a connection is, each state with the deadline the sweep holds it to.
pub(super) enum ConnState {
    /// Reading the HTTP request head, until `until_ms` (`limits.handshake_ms` after the
    /// accept).
    Http { buf: Vec<u8>, until_ms: u64 },
    /// Upgraded. `carry` holds bytes read from the socket that did not fit tungstenite's
    /// buffer (see `WsIo::read`). `closing_since_ms` is when a sweep first saw its
    /// session closing with the close frame unwritten (0: not seen).
    Ws {
        ctx: Box<WebSocketContext>,
        carry: Carry,
        closing_since_ms: u64,
    },
    /// Writing a plain HTTP reply, then closing; given up at `until_ms`.
    Reply {
        bytes: Box<[u8]>,
        written: usize,
        until_ms: u64,
    },
    /// Our side is shut; reading until the client's FIN or `until_ms`.
    Draining { until_ms: u64 },
}

/// One cache line, aligned to one (the slab's slots then never straddle two).
#[repr(align(64))]
pub(super) struct Conn {
    pub stream: TcpStream,
    pub state: ConnState,
    pub session: Option<SessionKey>,
    /// Registered for WRITABLE too (a write would have blocked).
    pub wants_write: bool,
    /// In the shard's deferred list.
    pub deferred: bool,
    /// Accepted past a connection cap only to be answered 503.
    pub refused: bool,
    /// The last read returned less than asked (see `WsIo::drained`).
    pub drained: bool,
}

impl Conn {
    /// A connection in `state`, not yet tied to a session.
    pub fn new(stream: TcpStream, state: ConnState, refused: bool) -> Conn {
        Conn {
            stream,
            state,
            session: None,
            wants_write: false,
            deferred: false,
            refused,
            drained: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle memory per connection is these records plus tungstenite's context and read
    /// buffer (README, `idle`): keep them from growing unnoticed.
    #[test]
    fn per_connection_records_stay_small() {
        // mio keeps a selector id in every source in debug builds only: the one-line
        // budget is the release build's (`.ci/run` runs this test in release too).
        if !cfg!(debug_assertions) {
            assert!(std::mem::size_of::<Conn>() <= 64);
            assert_eq!(
                std::mem::size_of::<Option<Conn>>(),
                64,
                "slab slots stay one line"
            );
        }
    }
}
