//! A connection's record on its shard (one cache line), its states from HTTP head to
//! drain, and the adapter through which tungstenite reads the socket: one `recv` takes
//! all the socket has, and what does not fit tungstenite's buffer waits in the
//! connection's carry.

use std::io::{self, Read, Write};

use mio::net::TcpStream;
use tungstenite::protocol::WebSocketContext;

use crate::core::SessionKey;

/// A connection's carried-over bytes keep their buffer up to this size once emptied.
const CARRY_KEEP_BYTES: usize = 1024;

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

/// Tungstenite's view of a socket: reads from it; its own writes (pongs, close replies)
/// go to a buffer that the core queues in order with our frames.
pub(super) struct WsIo<'a> {
    pub stream: &'a mut TcpStream,
    pub out: &'a mut Vec<u8>,
    /// A read returned less than asked: the socket is empty until epoll says otherwise
    /// (edge-triggered epoll reports every new arrival), so the next read would only
    /// return EAGAIN — answer WouldBlock without the syscall.
    pub drained: &'a mut bool,
    /// Bytes already read that tungstenite has not taken yet (the connection's).
    pub carry: &'a mut Carry,
    /// The shard's receive buffer.
    pub scratch: &'a mut [u8],
}

impl Read for WsIo<'_> {
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

impl Write for WsIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection's bytes read but not yet taken by tungstenite; boxed, so a connection
/// that never needs it pays one pointer.
#[derive(Default)]
#[expect(
    clippy::box_collection,
    reason = "a thin pointer keeps `Conn` within one cache line"
)]
pub(super) struct Carry(Option<Box<Vec<u8>>>);

impl Carry {
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

    /// A frame longer than the room left in tungstenite's buffer is read with one `recv`:
    /// the part that did not fit is carried over, and the socket is known drained.
    #[test]
    fn a_message_longer_than_tungstenites_buffer_costs_one_recv() {
        use super::super::RECV_BYTES;
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
