//! Rooms-dialect output: envelopes written straight into frames with a `Writer`, in the
//! session's codec. Missing optional fields are omitted, never `null`.

use super::room::Member;
use crate::codec::{Codec, Frame, Value, Writer};

/// Opens `{v:1, t, rid?, room?, p:{…p_len entries…}` — the caller writes the payload's
/// entries and calls [`end`].
pub fn begin(w: &mut Writer<'_>, t: &str, rid: Option<&str>, room: Option<&str>, p_len: u32) {
    let len = 3 + u32::from(rid.is_some()) + u32::from(room.is_some());
    w.map(len).key("v").u64(1).key("t").str(t);
    if let Some(rid) = rid {
        w.key("rid").str(rid);
    }
    if let Some(room) = room {
        w.key("room").str(room);
    }
    w.key("p").map(p_len);
}

/// Closes what [`begin`] opened.
pub fn end(w: &mut Writer<'_>) {
    w.end_map().end_map();
}

/// One whole frame from a payload writer.
pub fn frame(
    codec: Codec,
    buf: &mut Vec<u8>,
    t: &str,
    rid: Option<&str>,
    room: Option<&str>,
    p_len: u32,
    payload: impl FnOnce(&mut Writer<'_>),
) -> Frame {
    let mut w = Writer::new(codec, buf);
    begin(&mut w, t, rid, room, p_len);
    payload(&mut w);
    end(&mut w);
    w.finish()
}

/// `rpc.response {ok:true, …}`: `fields` more entries written by `payload` after `ok`.
pub fn rpc_ok(
    codec: Codec,
    buf: &mut Vec<u8>,
    rid: &str,
    room: Option<&str>,
    fields: u32,
    payload: impl FnOnce(&mut Writer<'_>),
) -> Frame {
    frame(
        codec,
        buf,
        "rpc.response",
        Some(rid),
        room,
        1 + fields,
        |w| {
            w.key("ok").bool(true);
            payload(w);
        },
    )
}

/// `rpc.response {ok:false, error, code}`.
pub fn rpc_error(
    codec: Codec,
    buf: &mut Vec<u8>,
    rid: &str,
    room: Option<&str>,
    code: &str,
    reason: &str,
) -> Frame {
    frame(codec, buf, "rpc.response", Some(rid), room, 3, |w| {
        w.key("ok")
            .bool(false)
            .key("error")
            .str(reason)
            .key("code")
            .str(code);
    })
}

/// `error {code, reason}`.
pub fn error(
    codec: Codec,
    buf: &mut Vec<u8>,
    room: Option<&str>,
    code: &str,
    reason: &str,
) -> Frame {
    frame(codec, buf, "error", None, room, 2, |w| {
        w.key("code").str(code).key("reason").str(reason);
    })
}

/// The relayed `room.message` / `room.message.bytes` for one member's encoding.
pub fn relayed_message(
    w: &mut Writer<'_>,
    m: &Member,
    room: &str,
    msg_type: &str,
    data: Option<&Value<'_>>,
    bytes_b64: Option<&str>,
    from: &str,
) {
    match bytes_b64 {
        None => {
            begin(
                w,
                "room.message",
                None,
                Some(room),
                2 + u32::from(data.is_some()),
            );
            w.key("type").str(msg_type);
            if let Some(d) = data {
                w.key("data").value(d);
            }
        }
        Some(b64) => {
            begin(w, "room.message.bytes", None, Some(room), 3);
            w.key("type").str(msg_type);
            if m.features.bin_bytes && m.codec == Codec::Msgpack {
                use base64::Engine;
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default();
                w.key("data").bytes(&raw);
            } else {
                w.key("data_b64").str(b64);
            }
        }
    }
    w.key("from").str(from);
    end(w);
}
