//! The HTTP-to-WebSocket hand-off: the bytes of a new connection, arriving in arbitrary
//! pieces, through `http::parse` as the reactor calls it (on everything read so far, after
//! each read, until it answers), then, for an upgrade, what follows the head handed to a
//! server-side tungstenite context as the reactor does (`from_partially_read`).
//! (`http_parse` checks the answers to one whole buffer; this target, the pieces.)
//!
//! Properties:
//! - The answer does not depend on how the bytes were split: parsing every prefix the
//!   pieces give, the first answer is the one the whole buffer gets, and a buffer over
//!   `HTTP_HEAD_BYTES_MAX` always gets one (the reactor stops reading there).
//! - An upgrade's `head_len` is within the prefix that decided it and within the bound;
//!   the WebSocket gets exactly the bytes after the head (the prefix's tail, then the
//!   later pieces): none lost, none twice.
//! - A head over the bound (its end, or no end, past `HTTP_HEAD_BYTES_MAX`) is 431.
//! - An upgrade built here from input parts (path and query, `Sec-WebSocket-Key`, header
//!   order and case, extra headers, CRLF or bare LF line ends), followed by masked client
//!   frames, is an upgrade whose head is exactly what was built, with that path and
//!   query, answered 101 with `Sec-WebSocket-Accept` = base64(SHA-1(key ++ RFC 6455
//!   GUID)), computed here with `sha1`; and the WebSocket then reads exactly the messages
//!   that were sent after the head, in order.
//!
//! Input: byte 0 picks the mode (bit 0: built upgrade, else arbitrary bytes); bytes 1–8
//! give the piece sizes; the rest are the bytes (arbitrary mode) or the parts (built).

use std::io::{self, Read, Write};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};
use tungstenite::protocol::{Message, Role, WebSocketContext};

use super::input::Input;
use crate::http::{accept, parse, Request};
use crate::limits::HTTP_HEAD_BYTES_MAX;

/// RFC 6455's GUID, appended to the key before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The `http_handoff` fuzz target's properties on one input (the module's documentation
/// lists them): panics on the first one violated.
pub fn check_http_handoff(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.byte();
    let sizes: Vec<u8> = (0..8).map(|_| input.byte()).collect();
    let rest = input.bytes(usize::MAX);
    if mode & 1 == 0 {
        let _ = hand_off(rest, &sizes);
    } else {
        built_upgrade(&mut Input::new(rest), &sizes, mode);
    }
}

/// What `http::parse` answers.
type Answer = Result<Option<Request>, Vec<u8>>;

/// What an answer is, comparable across splits.
fn summary(answer: &Answer) -> String {
    match answer {
        Ok(None) => "incomplete".into(),
        Ok(Some(Request::Reply(r))) => format!("reply {:?}", String::from_utf8_lossy(r)),
        Ok(Some(Request::Get { path, query })) => format!("get {path:?} {query:?}"),
        Ok(Some(Request::Upgrade {
            request,
            path,
            query,
            origin,
            head_len,
        })) => format!("upgrade {path:?} {query:?} {origin:?} {head_len} {request:?}"),
        Err(r) => format!("refused {:?}", String::from_utf8_lossy(r)),
    }
}

/// The piece lengths of `len` bytes, cycling through `sizes` (1 to 256 bytes each, scaled
/// so there are at most 256 pieces).
fn pieces(len: usize, sizes: &[u8]) -> Vec<usize> {
    let scale = len / (256 * 128) + 1;
    let mut out = Vec::new();
    let mut at = 0;
    for &s in sizes.iter().cycle() {
        if at >= len {
            break;
        }
        let n = ((usize::from(s) + 1) * scale).min(len - at);
        out.push(n);
        at += n;
    }
    out
}

/// What the reactor does with a connection's bytes: reads them piece by piece into its
/// buffer, parsing what it holds after each read, until an answer. Returns the answer,
/// the buffer it was given on, and the bytes still unread.
fn reactor_reads<'a>(bytes: &'a [u8], pieces: &[usize]) -> (Answer, Vec<u8>, &'a [u8]) {
    let mut buf = Vec::new();
    let mut unread = bytes;
    for &n in pieces {
        let (piece, later) = unread.split_at(n);
        buf.extend_from_slice(piece);
        unread = later;
        let answer = parse(&buf, || "m 1\n".to_string());
        if !matches!(answer, Ok(None)) {
            return (answer, buf, unread);
        }
        assert!(
            buf.len() <= HTTP_HEAD_BYTES_MAX,
            "a buffer over the bound ({} bytes) is answered",
            buf.len()
        );
    }
    (Ok(None), buf, unread)
}

/// Arbitrary bytes in the input's pieces and in one read; the answers agree. Returns the
/// answer and, for an upgrade, what the WebSocket starts with (the buffer's tail) and the
/// bytes it reads later.
fn hand_off<'a>(bytes: &'a [u8], sizes: &[u8]) -> (Answer, Vec<u8>, &'a [u8]) {
    let whole = parse(bytes, || "m 1\n".to_string());
    let (answer, mut buf, unread) = reactor_reads(bytes, &pieces(bytes.len(), sizes));
    assert_eq!(
        summary(&answer),
        summary(&whole),
        "the answer depends on how the bytes came ({} bytes read when it came)",
        buf.len()
    );
    match &answer {
        Ok(Some(Request::Upgrade { head_len, .. })) => {
            assert!(*head_len <= buf.len(), "head_len within the buffer");
            assert!(
                *head_len <= HTTP_HEAD_BYTES_MAX,
                "an accepted head is within the bound"
            );
            let tail = buf.split_off(*head_len);
            assert_eq!(
                [&tail[..], unread].concat(),
                bytes[*head_len..],
                "the WebSocket gets the bytes after the head"
            );
            return (answer, tail, unread);
        }
        Err(reply) if reply.starts_with(b"HTTP/1.1 431") => {
            assert!(bytes.len() > HTTP_HEAD_BYTES_MAX, "431 only past the bound");
        }
        _ => {}
    }
    (answer, Vec::new(), &[])
}

/// Header-name characters (a token) from a byte.
fn token_char(b: u8) -> char {
    const TOKEN: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_!#$%&'*+.^`|~";
    char::from(TOKEN[usize::from(b) % TOKEN.len()])
}

/// Visible characters (for header values and text messages) from bytes.
fn visible(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b'!' + b % 94)).collect()
}

/// Characters a path or query may hold unencoded (RFC 3986 `pchar`, `/` and `?`, less
/// `%`), from bytes.
fn uri_chars(bytes: &[u8]) -> String {
    const PCHAR: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@/";
    bytes
        .iter()
        .map(|&b| char::from(PCHAR[usize::from(b) % PCHAR.len()]))
        .collect()
}

/// A header name in one of three cases.
fn cased(name: &str, how: u8) -> String {
    match how % 3 {
        0 => name.to_string(),
        1 => name.to_ascii_lowercase(),
        _ => name.to_ascii_uppercase(),
    }
}

/// A masked client frame (FIN set) carrying `payload`.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// A connection's bytes as tungstenite reads them: what has arrived, then `WouldBlock`.
struct Arrived {
    bytes: Vec<u8>,
    at: usize,
}

impl Read for Arrived {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let left = &self.bytes[self.at..];
        if left.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = left.len().min(out.len());
        out[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Arrived {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A valid upgrade built from the input, then pipelined client messages.
fn built_upgrade(input: &mut Input<'_>, sizes: &[u8], mode: u8) {
    let eol = if mode & 2 != 0 { "\n" } else { "\r\n" };
    let path = format!("/{}", uri_chars(input.short_bytes()));
    let query = uri_chars(input.short_bytes());
    let target = if query.is_empty() && mode & 4 == 0 {
        path.clone()
    } else {
        format!("{path}?{query}")
    };
    let mut nonce = [0u8; 16];
    let given = input.bytes(16);
    nonce[..given.len()].copy_from_slice(given);
    let key = STANDARD.encode(nonce);
    let case = input.byte();
    let mut headers = vec![
        (cased("Host", case), "huddle.test".to_string()),
        (cased("Upgrade", case >> 1), "websocket".to_string()),
        (cased("Connection", case >> 2), "Upgrade".to_string()),
        (cased("Sec-WebSocket-Key", case >> 3), key.clone()),
        (cased("Sec-WebSocket-Version", case >> 4), "13".to_string()),
    ];
    for _ in 0..input.byte() % 6 {
        let name: String = input.short_bytes().iter().map(|&b| token_char(b)).collect();
        let name = format!("X-{name}");
        let value = visible(input.short_bytes());
        headers.push((name, value));
    }
    // A rotation of the header order.
    let turn = usize::from(input.byte()) % headers.len();
    headers.rotate_left(turn);
    let mut head = format!("GET {target} HTTP/1.1{eol}");
    for (name, value) in &headers {
        head.push_str(&format!("{name}: {value}{eol}"));
    }
    if mode & 8 != 0 {
        // Padding that may take the head past the bound.
        let pad = usize::from(input.u16()) % (2 * HTTP_HEAD_BYTES_MAX);
        head.push_str(&format!("X-Pad: {}{eol}", "p".repeat(pad)));
    }
    head.push_str(eol);

    let mut sent = Vec::new();
    let mut bytes = head.clone().into_bytes();
    for _ in 0..input.byte() % 8 {
        let kind = input.byte();
        let repeat = usize::from(input.byte() % 32) + 1;
        let unit = input.short_bytes();
        let payload: Vec<u8> = unit
            .iter()
            .copied()
            .cycle()
            .take(unit.len() * repeat)
            .collect();
        let mask = [input.byte(), input.byte(), input.byte(), input.byte()];
        let message = if kind & 1 == 0 {
            Message::Binary(payload.clone().into())
        } else {
            let text = visible(&payload);
            let frame = client_frame(1, text.as_bytes(), mask);
            bytes.extend_from_slice(&frame);
            sent.push(Message::Text(text.into()));
            continue;
        };
        bytes.extend_from_slice(&client_frame(2, &payload, mask));
        sent.push(message);
    }

    let (answer, tail, unread) = hand_off(&bytes, sizes);
    if head.len() > HTTP_HEAD_BYTES_MAX {
        assert!(
            matches!(&answer, Err(r) if r.starts_with(b"HTTP/1.1 431")),
            "a {}-byte head is 431: {}",
            head.len(),
            summary(&answer)
        );
        return;
    }
    let Ok(Some(Request::Upgrade {
        request,
        path: got_path,
        query: got_query,
        head_len,
        ..
    })) = answer
    else {
        panic!("a valid upgrade {head:?} got {}", summary(&answer))
    };
    assert_eq!(head_len, head.len(), "the head is what was built");
    assert_eq!((got_path, got_query), (path, query), "path and query");
    let response = accept(&request).expect("a valid upgrade is accepted");
    let response = String::from_utf8(response).expect("a 101 head is text");
    assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
    let want = STANDARD.encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
    let accept_line = response
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(": ")?;
            name.eq_ignore_ascii_case("sec-websocket-accept")
                .then_some(value)
        })
        .expect("a 101 carries Sec-WebSocket-Accept");
    assert_eq!(accept_line, want, "Sec-WebSocket-Accept for key {key}");

    // As the reactor does: the buffer's tail first, then what the socket gives.
    let mut ctx = WebSocketContext::from_partially_read(tail, Role::Server, None);
    let mut stream = Arrived {
        bytes: unread.to_vec(),
        at: 0,
    };
    let mut read = Vec::new();
    loop {
        match ctx.read(&mut stream) {
            Ok(message) => read.push(message),
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("the pipelined frames read back: {e}"),
        }
    }
    assert_eq!(
        read, sent,
        "the WebSocket reads what was sent after the head"
    );
}
