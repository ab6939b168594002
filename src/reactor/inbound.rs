//! A WebSocket connection's inbound path, socket aside: bytes from any [`Read`] go through
//! the connection's carry ([`WsIo`]) into its tungstenite context (configured by
//! [`context`]), and each complete message, close or protocol breach goes to the shard
//! core ([`read_message`]). The reactor calls it over its mio sockets; the `inbound` fuzz
//! target calls it over chunks of bytes, so both run the same code. It does not own the
//! socket's readiness, the connection record or what a take-over rekeys (the reactor's).

use std::io::{self, Read, Write};

use tungstenite::error::ProtocolError;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::{Error as WsError, Message};

use crate::core::{self, Dialect, SessionKey, ShardCore};

/// tungstenite's read buffer per connection.
pub const READ_BUFFER_BYTES: usize = 256;
/// One `recv` of a WebSocket connection takes up to this much (see [`WsIo::read`]); the
/// carry never holds more.
pub const RECV_BYTES: usize = 16 * 1024;
/// A connection's carried-over bytes keep their buffer up to this size once emptied.
const CARRY_KEEP_BYTES: usize = 1024;

/// An upgraded connection's tungstenite context, server side, reading `rest` (what came
/// after the request head) first. Messages and frames are capped at `message_bytes_max`
/// (the route's): tungstenite refuses a bigger one before buffering it.
pub fn context(rest: Vec<u8>, message_bytes_max: usize) -> Box<WebSocketContext> {
    let mut ws_config = WebSocketConfig::default();
    // tungstenite keeps this much per connection even when idle; a game message with
    // its envelope fits in one read, and bigger frames reserve their own length.
    ws_config.read_buffer_size = READ_BUFFER_BYTES;
    ws_config.write_buffer_size = 0;
    ws_config.max_write_buffer_size = 64 * 1024;
    ws_config.max_message_size = Some(message_bytes_max);
    ws_config.max_frame_size = Some(message_bytes_max);
    Box::new(WebSocketContext::from_partially_read(
        rest,
        Role::Server,
        Some(ws_config),
    ))
}

/// What one [`read_message`] did, for the caller's loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A text or binary message went to the core (a take-over may have rekeyed sessions:
    /// see [`ShardCore::drain_rekeys`]).
    Delivered,
    /// A control frame, or an interrupted read: read on.
    Again,
    /// Nothing more to read now: the stream would block, or the session is closing, gone
    /// or has its reads held.
    Stop,
    /// The stream failed or the peer vanished without a close frame: the connection goes.
    Gone,
}

/// Reads the next message of session `key`'s connection (its context `ctx`, its bytes
/// through `io`) and hands it to `core`: a message (copied into `message`, the caller's
/// reused buffer), a close frame (answered by tungstenite, the reply queued after the
/// session's frames), a ping or pong (activity; tungstenite's pong queued likewise), or a
/// breach, which closes the session with 1009 (too big), 1007 (invalid UTF-8) or 1002 (any
/// other protocol error). A closing session is not read at all: its socket is drained
/// once the close frame is out (tungstenite may be mid-way through a frame it refused);
/// nor is a session whose reads are held (what the client sent after its join or resume is
/// read on the shard it moves to).
pub fn read_message<D: Dialect, S: Read>(
    core: &mut ShardCore<D>,
    key: SessionKey,
    ctx: &mut WebSocketContext,
    io: &mut WsIo<'_, S>,
    message: &mut Vec<u8>,
    now: u64,
) -> Step {
    match core.session(key) {
        Some(s) if s.is_open() && !s.reads_held() => {}
        _ => return Step::Stop,
    }
    let result = ctx.read(io);
    if !io.out.is_empty() {
        core.push_raw(key, io.out);
        io.out.clear();
    }
    let binary = match result {
        Ok(Message::Text(text)) => {
            message.clear();
            message.extend_from_slice(text.as_bytes());
            false
        }
        Ok(Message::Binary(bytes)) => {
            message.clear();
            message.extend_from_slice(&bytes);
            true
        }
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
            core.handle_activity(key, now);
            return Step::Again;
        }
        Ok(Message::Close(frame)) => {
            // tungstenite only queued the close reply: have it written out (into our
            // buffer, which never blocks) and queue it after our frames.
            let code = frame.map_or(1005, |f| u16::from(f.code));
            let _ = ctx.flush(io);
            core.push_raw(key, io.out);
            io.out.clear();
            core.handle_activity(key, now);
            core.handle_peer_close(key, code, now);
            return Step::Stop;
        }
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Step::Stop,
        Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => return Step::Again,
        Err(WsError::Capacity(_)) => {
            core.close_session(key, 1009, "message too big", now);
            return Step::Stop;
        }
        Err(WsError::Utf8(_)) => {
            core.close_session(key, 1007, "invalid UTF-8", now);
            return Step::Stop;
        }
        // The peer vanished without a close frame: a drop, not a protocol breach (its
        // dialect may park the session for a resume).
        Err(WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)) => return Step::Gone,
        Err(WsError::Protocol(_)) => {
            core.close_session(key, 1002, "protocol error", now);
            return Step::Stop;
        }
        Err(_) => return Step::Gone,
    };
    let message = core::Message {
        bytes: message,
        binary,
    };
    core.handle_message(key, message, now);
    Step::Delivered
}

/// Tungstenite's view of a connection: reads from its stream (a socket, in the reactor);
/// its own writes (pongs, close replies) go to a buffer that the core queues in order with
/// our frames.
pub struct WsIo<'a, S> {
    /// Where the connection's bytes come from.
    pub stream: &'a mut S,
    /// What tungstenite wrote since it was last queued.
    pub out: &'a mut Vec<u8>,
    /// A read returned less than asked: the socket is empty until epoll says otherwise
    /// (edge-triggered epoll reports every new arrival), so the next read would only
    /// return EAGAIN — answer WouldBlock without the syscall. The caller clears it when
    /// new bytes may have arrived.
    pub drained: &'a mut bool,
    /// Bytes already read that tungstenite has not taken yet (the connection's).
    pub carry: &'a mut Carry,
    /// The shard's receive buffer ([`RECV_BYTES`]).
    pub scratch: &'a mut [u8],
}

impl<S: Read> Read for WsIo<'_, S> {
    /// tungstenite asks for what fits the rest of its buffer, which is often less than
    /// the next message (121 of a 143-byte frame, say): read straight into it and every
    /// such message costs two `recv`s. So one `recv` takes all the socket has (up to the
    /// shard's receive buffer); what did not fit waits in `carry` for tungstenite's next
    /// call, which needs no syscall.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(n) = self.carry.take_into(buf) {
            return Ok(n);
        }
        if *self.drained {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if buf.len() >= self.scratch.len() {
            let n = self.stream.read(buf)?;
            *self.drained = n < buf.len();
            return Ok(n);
        }
        let n = self.stream.read(self.scratch)?;
        *self.drained = n < self.scratch.len();
        let fits = n.min(buf.len());
        buf[..fits].copy_from_slice(&self.scratch[..fits]);
        self.carry.keep(&self.scratch[fits..n]);
        Ok(fits)
    }
}

impl<S> Write for WsIo<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection's bytes read but not yet taken by tungstenite (at most one receive buffer,
/// since it is refilled only once empty); boxed, so a connection that never needs it pays
/// one pointer.
#[derive(Default)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer keeps the connection record within one cache line"
)]
pub struct Carry(Option<Box<Vec<u8>>>);

impl Carry {
    /// How many bytes wait.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.len())
    }

    /// No bytes wait.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves carried bytes into `buf`; `None` when there are none.
    fn take_into(&mut self, buf: &mut [u8]) -> Option<usize> {
        let bytes = self.0.as_mut().filter(|b| !b.is_empty())?;
        let n = buf.len().min(bytes.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        bytes.drain(..n);
        if bytes.is_empty() && bytes.capacity() > CARRY_KEEP_BYTES {
            self.0 = None;
        }
        Some(n)
    }

    /// Keeps bytes for tungstenite's next read.
    fn keep(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0.get_or_insert_default().extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame longer than the room left in tungstenite's buffer is read with one `recv`:
    /// the part that did not fit is carried over, and the socket is known drained.
    #[test]
    fn a_message_longer_than_tungstenites_buffer_costs_one_recv() {
        use std::io::ErrorKind;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut stream = mio::net::TcpStream::from_std(server);
        let frame: Vec<u8> = (0..143u8).collect();
        client.write_all(&frame).unwrap();
        let (mut out, mut drained, mut carry) = (Vec::new(), false, Carry::default());
        let mut scratch = vec![0u8; RECV_BYTES];
        let mut io = WsIo {
            stream: &mut stream,
            out: &mut out,
            drained: &mut drained,
            carry: &mut carry,
            scratch: &mut scratch,
        };
        let mut head = [0u8; 121];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let n = loop {
            match io.read(&mut head) {
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    assert!(std::time::Instant::now() < deadline, "nothing arrived");
                    *io.drained = false;
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(n, 121);
        assert!(*io.drained, "one recv took all the socket had");
        let mut tail = [0u8; 64];
        assert_eq!(
            io.read(&mut tail).unwrap(),
            22,
            "the rest came from the carry"
        );
        assert_eq!([&head[..], &tail[..22]].concat(), frame);
        assert_eq!(
            io.read(&mut tail).unwrap_err().kind(),
            ErrorKind::WouldBlock,
            "drained and nothing carried: no syscall"
        );
    }
}
