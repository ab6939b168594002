//! The HTTP request head parser: arbitrary bytes never panic; an upgrade's head length is
//! within the input, its path has no query, and its answer (once routed) is a 101 or a
//! 400; a plain GET for the dialects has its query split off; every other answer is a
//! complete response.

use crate::http::{accept, parse, Request};

/// The `http_parse` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_http_parse(data: &[u8]) {
    let is_response =
        |r: &[u8]| r.starts_with(b"HTTP/1.1 ") && r.windows(4).any(|w| w == b"\r\n\r\n");
    match parse(data, || "huddle_fuzz 1\n".to_string()) {
        Ok(None) => {}
        Ok(Some(Request::Upgrade {
            request,
            path,
            head_len,
            ..
        })) => {
            assert!(
                head_len <= data.len(),
                "head_len {head_len} > input {}",
                data.len()
            );
            assert!(!path.contains('?'), "the query is split off the path");
            match accept(&request) {
                Ok(response) => {
                    assert!(
                        response.starts_with(b"HTTP/1.1 101 "),
                        "an accepted upgrade answers 101"
                    );
                    assert!(response.ends_with(b"\r\n\r\n"), "the 101 head is complete");
                }
                Err(reply) => {
                    assert!(
                        reply.starts_with(b"HTTP/1.1 400"),
                        "a refused upgrade is a 400"
                    );
                    assert!(is_response(&reply));
                }
            }
        }
        Ok(Some(Request::Reply(reply))) => assert!(is_response(&reply), "a reply is a response"),
        Ok(Some(Request::Get { path, .. })) => {
            assert!(!path.contains('?'), "the query is split off the path")
        }
        Err(reply) => {
            assert!(reply.starts_with(b"HTTP/1.1 4"), "a refusal is a 4xx");
            assert!(is_response(&reply));
        }
    }
}
