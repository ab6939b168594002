//! CloudLink 5 on the wire: a client frame is a JSON object `{opcode, payload?, …}`
//! (unknown fields ignored), read from the borrowed value tree; a server frame is
//! `{"opcode": …, "payload": …}` written straight into frame bytes (`payload` omitted only
//! when there is none).

use crate::codec::{as_str, field, is_null, Codec, Frame, Value, Writer};

/// A client frame.
#[derive(Debug)]
pub struct Packet<'v, 'a> {
    /// What it asks for.
    pub opcode: &'v str,
    /// Its payload (absent and `null` are the same).
    pub payload: Option<&'v Value<'a>>,
    /// The relay's pass-through `id`.
    pub id: Option<&'v Value<'a>>,
    /// The relay's pass-through `method`.
    pub method: Option<&'v Value<'a>>,
    /// A private relay message's recipient (an `instance_id`).
    pub recipient: Option<&'v Value<'a>>,
}

/// Reads a frame: an object with a string `opcode`. The error says what was wrong.
pub fn packet<'v, 'a>(value: &'v Value<'a>) -> Result<Packet<'v, 'a>, &'static str> {
    if !matches!(value, Value::Object(_)) {
        return Err("a frame must be a JSON object");
    }
    let opcode = field(value, "opcode")
        .and_then(as_str)
        .ok_or("a frame needs a string opcode")?;
    let opt = |key| field(value, key).filter(|v| !is_null(v));
    Ok(Packet {
        opcode,
        payload: opt("payload"),
        id: opt("id"),
        method: opt("method"),
        recipient: opt("recipient"),
    })
}

/// `{"opcode": opcode, "payload": …}` with the payload `write` writes.
pub fn frame(buf: &mut Vec<u8>, opcode: &str, write: impl FnOnce(&mut Writer<'_>)) -> Frame {
    let mut w = Writer::new(Codec::Json, buf);
    w.map(2).key("opcode").str(opcode).key("payload");
    write(&mut w);
    w.end_map();
    w.finish()
}

/// `{"opcode": opcode, "payload": "text"}`.
pub fn text(buf: &mut Vec<u8>, opcode: &str, text: &str) -> Frame {
    frame(buf, opcode, |w| {
        w.str(text);
    })
}

/// `{"opcode": opcode}` (no payload: `KEEPALIVE_ACK`).
pub fn bare(buf: &mut Vec<u8>, opcode: &str) -> Frame {
    let mut w = Writer::new(Codec::Json, buf);
    w.map(1).key("opcode").str(opcode).end_map();
    w.finish()
}

/// `{"type": kind}`: the PeerJS broker's `OPEN`.
pub fn bare_typed(buf: &mut Vec<u8>, kind: &str) -> Frame {
    let mut w = Writer::new(Codec::Json, buf);
    w.map(1).key("type").str(kind).end_map();
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{frame as wsframe, Decoder};

    fn read(json: &str, check: impl FnOnce(Result<Packet<'_, '_>, &'static str>)) {
        let mut bytes = json.as_bytes().to_vec();
        let mut d = Decoder::default();
        let value = d.decode(Codec::Json, &mut bytes).unwrap();
        check(packet(&value));
    }

    #[test]
    fn frames_need_an_object_with_a_string_opcode_and_ignore_the_rest() {
        read(
            r#"{"opcode":"INIT","payload":{"username":"a"},"x":1}"#,
            |p| {
                let p = p.unwrap();
                assert_eq!(p.opcode, "INIT");
                assert!(p.payload.is_some() && p.id.is_none());
            },
        );
        read(
            r#"{"opcode":"G_MSG","payload":null,"id":"v","method":3}"#,
            |p| {
                let p = p.unwrap();
                assert!(p.payload.is_none(), "null is absent");
                assert!(p.id.is_some() && p.method.is_some());
            },
        );
        read(r#"["INIT"]"#, |p| assert!(p.is_err()));
        read(r#"{"payload":1}"#, |p| assert!(p.is_err()));
        read(r#"{"opcode":7}"#, |p| assert!(p.is_err()));
    }

    #[test]
    fn server_frames_have_an_opcode_and_a_payload_unless_there_is_none() {
        let mut buf = Vec::new();
        let body = |f: Frame| String::from_utf8(wsframe::parse(&f).unwrap().1.to_vec()).unwrap();
        assert_eq!(
            body(text(&mut buf, "WARNING", "unauthorized")),
            r#"{"opcode":"WARNING","payload":"unauthorized"}"#
        );
        assert_eq!(
            body(bare(&mut buf, "KEEPALIVE_ACK")),
            r#"{"opcode":"KEEPALIVE_ACK"}"#
        );
        assert_eq!(body(bare_typed(&mut buf, "OPEN")), r#"{"type":"OPEN"}"#);
        let empty = frame(&mut buf, "LIST_ACK", |w| {
            w.array(0).end_array();
        });
        assert_eq!(body(empty), r#"{"opcode":"LIST_ACK","payload":[]}"#);
    }
}
