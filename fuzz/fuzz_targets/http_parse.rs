//! The HTTP request head parser: arbitrary bytes never panic; an upgrade's head length is
//! within the input and its answer is a 101; every other answer is a complete response.
#![no_main]

use huddle::http::{parse, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let is_response =
        |r: &[u8]| r.starts_with(b"HTTP/1.1 ") && r.windows(4).any(|w| w == b"\r\n\r\n");
    match parse(data, || "huddle_fuzz 1\n".to_string()) {
        Ok(None) => {}
        Ok(Some(Request::Upgrade {
            response, head_len, ..
        })) => {
            assert!(
                head_len <= data.len(),
                "head_len {head_len} > input {}",
                data.len()
            );
            assert!(
                response.starts_with(b"HTTP/1.1 101 "),
                "an upgrade answers 101"
            );
            assert!(response.ends_with(b"\r\n\r\n"), "the 101 head is complete");
        }
        Ok(Some(Request::Reply(reply))) => assert!(is_response(&reply), "a reply is a response"),
        Err(reply) => {
            assert!(reply.starts_with(b"HTTP/1.1 4"), "a refusal is a 4xx");
            assert!(is_response(&reply));
        }
    }
});
