//! Plain HTTP on the WebSocket port: parsing one request head (httparse), the WebSocket
//! upgrade answer (tungstenite's handshake checks and accept key), `/healthz`, `/metrics`
//! and error replies. No IO: the reactor feeds bytes and writes what comes back. Which
//! dialect an upgrade reaches is not decided here (the dialects' `route` does that).

use tungstenite::handshake::server::create_response;
use tungstenite::http;

use crate::limits::HTTP_HEAD_BYTES_MAX;

/// What a complete request head asks for.
#[derive(Debug)]
pub enum Request {
    /// A WebSocket upgrade: what routing looks at, the request to [`accept`] once a
    /// dialect takes it, and how many bytes of the buffer the head took (the rest are
    /// WebSocket bytes).
    Upgrade {
        /// The request, for [`accept`].
        request: Box<http::Request<()>>,
        /// The request path, without the query.
        path: String,
        /// The query, without `?`.
        query: String,
        /// The `Origin` header.
        origin: Option<String>,
        /// Length of the request head.
        head_len: usize,
    },
    /// A plain HTTP answer, then close.
    Reply(Vec<u8>),
    /// A plain `GET` of a path the engine does not serve: the dialects may (else 404).
    Get {
        /// The request path, without the query.
        path: String,
        /// The query, without `?`.
        query: String,
    },
}

/// Parses a request head, the bytes read so far on a new connection. `Ok(None)`:
/// incomplete, read more (never once `buf` is over [`HTTP_HEAD_BYTES_MAX`]).
///
/// Only the first `HTTP_HEAD_BYTES_MAX + 1` bytes are parsed, so the answer is the same
/// however the bytes came: a head longer than the bound is 431 whether it came in pieces
/// (incomplete at the bound) or whole in one read, and whatever follows it (WebSocket
/// bytes pipelined after a head within the bound cannot turn it into a 431).
pub fn parse(buf: &[u8], metrics: impl FnOnce() -> String) -> Result<Option<Request>, Vec<u8>> {
    let window = &buf[..buf.len().min(HTTP_HEAD_BYTES_MAX + 1)];
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(window) {
        Ok(httparse::Status::Complete(n)) if n <= HTTP_HEAD_BYTES_MAX => n,
        Ok(httparse::Status::Complete(_)) => return Err(head_too_large()),
        Ok(httparse::Status::Partial) if buf.len() > HTTP_HEAD_BYTES_MAX => {
            return Err(head_too_large())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(reply(400, "Bad Request", "text/plain", b"bad request\n")),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if req.method != Some("GET") {
        return Ok(Some(Request::Reply(reply(
            405,
            "Method Not Allowed",
            "text/plain",
            b"only GET\n",
        ))));
    }
    let is_upgrade = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value).eq_ignore_ascii_case("websocket")
    });
    if !is_upgrade {
        return Ok(Some(match path {
            "/healthz" => Request::Reply(reply(200, "OK", "text/plain", b"ok\n")),
            "/metrics" => Request::Reply(reply(
                200,
                "OK",
                "text/plain; version=0.0.4",
                metrics().as_bytes(),
            )),
            _ => Request::Get {
                path: path.to_string(),
                query: query.to_string(),
            },
        }));
    }
    let origin = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned());
    let mut builder = http::Request::builder()
        .method("GET")
        .uri(target)
        .version(http::Version::HTTP_11);
    for h in req.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    let request = builder
        .body(())
        .map_err(|_| reply(400, "Bad Request", "text/plain", b"bad request\n"))?;
    Ok(Some(Request::Upgrade {
        request: Box::new(request),
        path: path.to_string(),
        query: query.to_string(),
        origin,
        head_len,
    }))
}

/// The 101 answer to an upgrade a dialect took (tungstenite checks the WebSocket headers
/// and computes the accept key), or a 400 reply.
pub fn accept(request: &http::Request<()>) -> Result<Vec<u8>, Vec<u8>> {
    let response = create_response(request).map_err(|e| {
        reply(
            400,
            "Bad Request",
            "text/plain",
            format!("{e}\n").as_bytes(),
        )
    })?;
    let mut out = format!(
        "HTTP/1.1 {} Switching Protocols\r\n",
        response.status().as_u16()
    )
    .into_bytes();
    for (name, value) in response.headers() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(out)
}

/// The 431 of a head over [`HTTP_HEAD_BYTES_MAX`].
fn head_too_large() -> Vec<u8> {
    reply(
        431,
        "Request Header Fields Too Large",
        "text/plain",
        b"head too large\n",
    )
}

/// The 404 of a path nobody serves.
pub fn not_found() -> Vec<u8> {
    reply(404, "Not Found", "text/plain", b"not found\n")
}

/// A complete `Connection: close` response.
pub fn reply(status: u16, text: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    reply_with(status, text, content_type, &[], body)
}

/// A complete `Connection: close` response with more headers.
pub fn reply_with(
    status: u16,
    text: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {text}\r\nContent-Type: {content_type}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /rooms?x=1 HTTP/1.1\r\nHost: a\r\nOrigin: https://a.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nEXTRA";

    #[test]
    fn upgrade_answers_101_with_the_rfc_accept_key() {
        let Ok(Some(Request::Upgrade {
            request,
            path,
            query,
            origin,
            head_len,
        })) = parse(UPGRADE, String::new)
        else {
            panic!("upgrade expected")
        };
        let text = String::from_utf8(accept(&request).unwrap()).unwrap();
        assert!(text.starts_with("HTTP/1.1 101"));
        assert!(text.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{text}");
        assert_eq!((path.as_str(), query.as_str()), ("/rooms", "x=1"));
        assert_eq!(origin.as_deref(), Some("https://a.example"));
        assert_eq!(&UPGRADE[head_len..], b"EXTRA");
    }

    #[test]
    fn partial_heads_ask_for_more() {
        assert!(matches!(parse(&UPGRADE[..20], String::new), Ok(None)));
    }

    #[test]
    fn healthz_metrics_and_unknown_paths() {
        let ok = |req: &[u8]| match parse(req, || "m 1\n".into()) {
            Ok(Some(Request::Reply(r))) => String::from_utf8(r).unwrap(),
            other => panic!("{other:?}"),
        };
        assert!(ok(b"GET /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        assert!(ok(b"GET /metrics HTTP/1.1\r\n\r\n").ends_with("m 1\n"));
        assert!(ok(b"POST /healthz HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        match parse(b"GET /peerjs/id?ts=1 HTTP/1.1\r\n\r\n", String::new) {
            Ok(Some(Request::Get { path, query })) => {
                assert_eq!((path.as_str(), query.as_str()), ("/peerjs/id", "ts=1"))
            }
            other => panic!("another path is the dialects' to serve: {other:?}"),
        }
    }

    #[test]
    fn a_head_within_the_bound_is_answered_whatever_follows_it() {
        // Bare LF line ends (httparse takes them), then WebSocket bytes past the bound in
        // the same read: an upgrade, as when the frames come in a later read.
        let head = b"GET /rooms HTTP/1.1\nUpgrade: websocket\n\n";
        let mut buf = head.to_vec();
        buf.resize(HTTP_HEAD_BYTES_MAX + 100, b'z');
        for bytes in [&head[..], &buf[..]] {
            match parse(bytes, String::new) {
                Ok(Some(Request::Upgrade { head_len, .. })) => assert_eq!(head_len, head.len()),
                other => panic!("an upgrade: {other:?}"),
            }
        }
        let mut long = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        long.resize(HTTP_HEAD_BYTES_MAX + 1, b'a');
        assert!(matches!(parse(&long, String::new), Err(r) if r.starts_with(b"HTTP/1.1 431")));
        assert!(matches!(
            parse(&long[..HTTP_HEAD_BYTES_MAX], String::new),
            Ok(None)
        ));
    }

    #[test]
    fn bad_upgrades_get_400() {
        let no_key = b"GET /rooms HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
        let Ok(Some(Request::Upgrade { request, .. })) = parse(no_key, String::new) else {
            panic!("an upgrade, to be refused once routed")
        };
        assert!(matches!(accept(&request), Err(r) if r.starts_with(b"HTTP/1.1 400")));
        assert!(parse(b"\x00\x01garbage\r\n\r\n", String::new).is_err());
    }
}
