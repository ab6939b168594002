//! Rooms-dialect input: a decoded value (either codec) → handshake or command, borrowing
//! from the frame. Validation errors carry the wire code and, when it could be read, the
//! RPC id so the client always gets an `rpc.response`.

use std::borrow::Cow;

use smallvec::SmallVec;

use simd_json::prelude::*;

use super::room::Features;
use crate::codec::{as_i64, as_str, field, is_null, Codec, TapeValue, Value};

/// The closed set of error codes on the wire (the discriminant indexes their counters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed envelope or payload.
    BadRequest,
    /// First frame is not a valid handshake.
    BadHandshake,
    /// Token missing (required mode), malformed, badly signed, expired, other project.
    Unauthorized,
    /// `v` is not 1.
    UnsupportedVersion,
    /// Frame over `limits.frame_bytes_max`.
    PayloadTooLarge,
    /// Unknown `t`.
    UnknownType,
    /// Room type not registered.
    UnknownRoomType,
    /// No such room.
    RoomNotFound,
    /// Room at `max_players`.
    RoomFull,
    /// Already a member.
    AlreadyJoined,
    /// Not a member of the named room.
    NotInRoom,
    /// Over the message rate.
    RateLimited,
    /// Outbound queue overflowed with reliable frames.
    SlowConsumer,
    /// A bug on our side.
    Internal,
}

impl crate::metrics::ErrorCode for ErrorCode {
    const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::BadHandshake,
        ErrorCode::Unauthorized,
        ErrorCode::UnsupportedVersion,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnknownType,
        ErrorCode::UnknownRoomType,
        ErrorCode::RoomNotFound,
        ErrorCode::RoomFull,
        ErrorCode::AlreadyJoined,
        ErrorCode::NotInRoom,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::Internal,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        ErrorCode::as_str(self)
    }
}

impl ErrorCode {
    /// The code's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::BadHandshake => "bad_handshake",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnknownRoomType => "unknown_room_type",
            ErrorCode::RoomNotFound => "room_not_found",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refused request: wire code plus human text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Wire code.
    pub code: ErrorCode,
    /// Human text.
    pub reason: Cow<'static, str>,
}

impl Refusal {
    /// A refusal.
    pub fn new(code: ErrorCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

/// A validated handshake.
#[derive(Debug, PartialEq)]
pub struct Hello<'v> {
    /// Chosen codec (msgpack wins when offered).
    pub codec: Codec,
    /// Project.
    pub project_id: &'v str,
    /// Token, if non-empty.
    pub token: Option<&'v str>,
    /// Resume id, if any.
    pub session_id: Option<&'v str>,
    /// Accepted features (`checksum:"crc32"` sets `crc32`).
    pub features: Features,
}

/// Optional field: absent and `null` are the same.
fn opt<'v, 'a>(value: &'v Value<'a>, key: &str) -> Option<&'v Value<'a>> {
    field(value, key).filter(|v| !is_null(v))
}

fn opt_str<'v>(value: &'v Value<'_>, key: &str) -> Result<Option<&'v str>, Refusal> {
    match opt(value, key) {
        None => Ok(None),
        Some(v) => as_str(v)
            .map(Some)
            .ok_or_else(|| Refusal::new(ErrorCode::BadRequest, format!("{key} must be a string"))),
    }
}

/// Parses the first frame.
pub fn handshake<'v>(value: &'v Value<'_>) -> Result<Hello<'v>, Refusal> {
    let bad = |why: &'static str| Refusal::new(ErrorCode::BadHandshake, why);
    if !matches!(value, Value::Object(_)) {
        return Err(bad("handshake must be a JSON object"));
    }
    let body = match (field(value, "t").and_then(as_str), opt(value, "p")) {
        (Some("handshake"), Some(p @ Value::Object(_))) => p,
        (Some("handshake"), _) => return Err(bad("handshake envelope needs an object p")),
        _ => value,
    };
    let version = opt(value, "v").or_else(|| opt(body, "v")).and_then(as_i64);
    if version != Some(1) {
        return Err(bad("v must be 1"));
    }
    let codec = match opt(body, "codecs") {
        None => Codec::Json,
        Some(Value::Array(list)) => {
            let names: SmallVec<[&str; 4]> = list.iter().filter_map(as_str).collect();
            if names.contains(&"msgpack") {
                Codec::Msgpack
            } else if names.contains(&"json") {
                Codec::Json
            } else {
                return Err(bad("no common codec (server speaks msgpack, json)"));
            }
        }
        Some(_) => return Err(bad("codecs must be an array of strings")),
    };
    let project_id = match opt(body, "project_id").and_then(as_str) {
        Some(p) if !p.trim().is_empty() => p,
        _ => return Err(bad("project_id is missing")),
    };
    let text = |key: &str| opt(body, key).and_then(as_str).filter(|s| !s.is_empty());
    let mut features = Features::default();
    if text("checksum") == Some("crc32") {
        features.crc32 = true;
    }
    if let Some(Value::Array(list)) = opt(body, "features") {
        for f in list.iter().filter_map(as_str) {
            match f {
                "crc32" => features.crc32 = true,
                "nested_ops" => features.nested_ops = true,
                "bin_bytes" => features.bin_bytes = codec == Codec::Msgpack,
                _ => {}
            }
        }
    }
    Ok(Hello {
        codec,
        project_id,
        token: text("token"),
        session_id: text("session_id"),
        features,
    })
}

/// An envelope after the handshake.
#[derive(Debug)]
pub struct Envelope<'v, 'a> {
    /// Message type.
    pub t: &'v str,
    /// RPC id.
    pub rid: Option<&'v str>,
    /// The room named by the envelope or, failing that, by `p.room` / `p.roomId`.
    pub room: Option<&'v str>,
    /// Payload.
    pub p: Option<&'v Value<'a>>,
}

/// A `room.message` read straight off a JSON frame's tape (see [`tape_message`]).
#[derive(Debug)]
pub struct TapeMessage<'a> {
    /// RPC id.
    pub rid: Option<&'a str>,
    /// The envelope's `room`.
    pub room: &'a str,
    /// `p.type`.
    pub msg_type: &'a str,
    /// `p.data` (the only part built into a value tree).
    pub data: Option<Value<'a>>,
}

/// The JSON hot path: a `room.message` in its usual form, read from simd-json's tape with
/// one pass over the envelope and one over `p`; only `data` becomes a value tree (none of
/// it when it is a string or a number). Anything [`envelope`] and [`command`] might judge
/// otherwise returns `None` and goes the full way, which also words every refusal: another
/// `t`, a repeated key, `v` not the integer 1, a `rid` that is not a string, the room named
/// only inside `p`, a `type` that is not a string, an object of more than 32 keys (which
/// simd-json stores differently).
pub fn tape_message<'a>(root: TapeValue<'_, 'a>) -> Option<TapeMessage<'a>> {
    const KEYS_MAX: usize = 32;
    let top = root.as_object()?;
    if top.len() > KEYS_MAX {
        return None;
    }
    let (mut v, mut t, mut rid, mut room, mut p) = (None, None, None, None, None);
    for (key, value) in top.iter() {
        let slot = match key {
            "v" => &mut v,
            "t" => &mut t,
            "rid" => &mut rid,
            "room" => &mut room,
            "p" => &mut p,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    if v?.as_u64() != Some(1) || t?.as_str()? != "room.message" {
        return None;
    }
    let rid = match rid {
        Some(r) if !r.is_null() => Some(r.into_string()?),
        _ => None,
    };
    let room = room?.into_string()?;
    let p = p?.as_object()?;
    if p.len() > KEYS_MAX {
        return None;
    }
    let (mut msg_type, mut data) = (None, None);
    for (key, value) in p.iter() {
        let slot = match key {
            "type" => &mut msg_type,
            "data" => &mut data,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some(TapeMessage {
        rid,
        room,
        msg_type: msg_type?.into_string()?,
        data: data
            .filter(|d| !d.is_null())
            .map(|d| simd_json::value::lazy::Value::from_tape(d).into_value()),
    })
}

/// Reads just the RPC id of a frame that failed validation.
pub fn rid_of<'v>(value: &'v Value<'_>) -> Option<&'v str> {
    field(value, "rid").and_then(as_str)
}

/// Validates an envelope.
pub fn envelope<'v, 'a>(value: &'v Value<'a>) -> Result<Envelope<'v, 'a>, Refusal> {
    if !matches!(value, Value::Object(_)) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            "envelope must be an object",
        ));
    }
    let rid = opt_str(value, "rid")?;
    if opt(value, "v").and_then(as_i64) != Some(1) {
        return Err(Refusal::new(ErrorCode::UnsupportedVersion, "v must be 1"));
    }
    let t = match opt(value, "t").and_then(as_str) {
        Some(t) if !t.is_empty() => t,
        _ => {
            return Err(Refusal::new(
                ErrorCode::BadRequest,
                "t must be a non-empty string",
            ))
        }
    };
    let p = opt(value, "p");
    let room = match opt_str(value, "room")? {
        Some(r) => Some(r),
        None => match p {
            Some(p) => match opt_str(p, "room")? {
                Some(r) => Some(r),
                None => opt_str(p, "roomId")?,
            },
            None => None,
        },
    };
    Ok(Envelope { t, rid, room, p })
}

/// A rooms-dialect command.
#[derive(Debug)]
pub enum Command<'v, 'a> {
    /// `room.join_or_create`.
    Join {
        /// `room_type` / `roomType`.
        room_type: Option<&'v str>,
        /// `options`.
        options: Option<&'v Value<'a>>,
    },
    /// `room.leave`.
    Leave,
    /// `room.list`.
    List {
        /// Filter.
        room_type: Option<&'v str>,
    },
    /// `room.message` or `room.message.bytes`.
    Message {
        /// `p.type` (a number is taken as its decimal text).
        msg_type: Cow<'v, str>,
        /// `p.data` (room.message).
        data: Option<&'v Value<'a>>,
        /// Base64 payload (room.message.bytes).
        bytes_b64: Option<&'v str>,
    },
    /// `position.update` and other unreliable relays.
    Relay,
    /// `state.ack`.
    StateAck {
        /// Acked seq.
        seq: Option<i64>,
        /// A CRC-32 the client computed (any other type — the SDK's SHA-256 text — is
        /// `None`).
        checksum: Option<u32>,
    },
    /// `state.resync`.
    StateResync,
    /// `matchmaking.enqueue`.
    Enqueue {
        /// `room_type` / `roomType`.
        room_type: Option<&'v str>,
        /// Players per match (validated by the matchmaker's rules).
        size: Option<i64>,
    },
    /// `matchmaking.dequeue`.
    Dequeue,
    /// Not a type this server knows.
    Unknown,
}

/// Parses a command from a valid envelope.
pub fn command<'v, 'a>(
    env: &Envelope<'v, 'a>,
    relay_types: &[String],
) -> Result<Command<'v, 'a>, Refusal> {
    static EMPTY: Value<'static> = Value::Static(simd_json::StaticNode::Null);
    let p = env.p.unwrap_or(&EMPTY);
    let payload_must_be_object = || -> Result<(), Refusal> {
        match env.p {
            None | Some(Value::Object(_)) => Ok(()),
            Some(_) => Err(Refusal::new(ErrorCode::BadRequest, "p must be an object")),
        }
    };
    Ok(match env.t {
        "room.join_or_create" => {
            payload_must_be_object()?;
            let room_type = match opt_str(p, "room_type")? {
                Some(t) => Some(t),
                None => opt_str(p, "roomType")?,
            };
            let options = opt(p, "options");
            if matches!(options, Some(o) if !matches!(o, Value::Object(_))) {
                return Err(Refusal::new(
                    ErrorCode::BadRequest,
                    "options must be an object",
                ));
            }
            Command::Join { room_type, options }
        }
        "room.leave" => {
            payload_must_be_object()?;
            Command::Leave
        }
        "room.list" => {
            payload_must_be_object()?;
            let room_type = match opt_str(p, "room_type")? {
                Some(t) => Some(t),
                None => opt_str(p, "roomType")?,
            };
            Command::List { room_type }
        }
        "room.message" | "room.message.bytes" => {
            if !matches!(p, Value::Object(_)) {
                return Err(Refusal::new(ErrorCode::BadRequest, "p must be an object"));
            }
            let msg_type: Cow<'v, str> = match opt(p, "type") {
                Some(Value::String(s)) => Cow::Borrowed(s.as_ref()),
                Some(Value::Static(n)) if as_i64(&Value::Static(*n)).is_some() => {
                    Cow::Owned(as_i64(&Value::Static(*n)).unwrap_or_default().to_string())
                }
                _ => {
                    return Err(Refusal::new(
                        ErrorCode::BadRequest,
                        "p.type must be a string",
                    ))
                }
            };
            if env.t == "room.message" {
                Command::Message {
                    msg_type,
                    data: opt(p, "data"),
                    bytes_b64: None,
                }
            } else {
                let b64 = opt_str(p, "data_b64")?
                    .or_else(|| opt(p, "data").and_then(as_str))
                    .ok_or_else(|| {
                        Refusal::new(ErrorCode::BadRequest, "p.data_b64 must be base64 text")
                    })?;
                use base64::Engine;
                if base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .is_err()
                {
                    return Err(Refusal::new(
                        ErrorCode::BadRequest,
                        "p.data_b64 is not valid base64",
                    ));
                }
                Command::Message {
                    msg_type,
                    data: None,
                    bytes_b64: Some(b64),
                }
            }
        }
        "state.ack" => Command::StateAck {
            seq: env.p.and_then(|p| opt(p, "seq")).and_then(as_i64),
            checksum: env
                .p
                .and_then(|p| opt(p, "checksum"))
                .and_then(as_i64)
                .and_then(|c| u32::try_from(c).ok()),
        },
        "state.resync" => Command::StateResync,
        "matchmaking.enqueue" => {
            payload_must_be_object()?;
            let room_type = match opt_str(p, "room_type")? {
                Some(t) => Some(t),
                None => opt_str(p, "roomType")?,
            };
            Command::Enqueue {
                room_type,
                size: opt(p, "size").and_then(as_i64),
            }
        }
        "matchmaking.dequeue" => Command::Dequeue,
        t if t == "position.update" || relay_types.iter().any(|r| r == t) => Command::Relay,
        _ => Command::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_listed_once_at_its_own_index() {
        use crate::metrics::ErrorCode as _;
        for (i, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(code.index(), i, "{code:?}");
        }
        let names: std::collections::HashSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len(), "wire names are distinct");
        assert_eq!(ErrorCode::ALL.len(), ErrorCode::Internal as usize + 1);
    }

    fn parse(json: &str) -> Value<'static> {
        let mut bytes = json.as_bytes().to_vec();
        simd_json::to_borrowed_value(&mut bytes)
            .unwrap()
            .into_static()
    }

    /// What the full path makes of a frame: (t, rid, room, type, data as JSON) or the
    /// refusal.
    type Read = Result<
        (
            String,
            Option<String>,
            Option<String>,
            String,
            serde_json::Value,
        ),
        Refusal,
    >;

    fn full_path(json: &str) -> Read {
        let v = parse(json);
        let env = envelope(&v)?;
        match command(&env, &[])? {
            Command::Message { msg_type, data, .. } => Ok((
                env.t.to_string(),
                env.rid.map(str::to_string),
                env.room.map(str::to_string),
                msg_type.to_string(),
                data.map_or(serde_json::Value::Null, crate::codec::to_json),
            )),
            other => panic!("not a message: {other:?}"),
        }
    }

    fn tape_path(json: &str) -> Option<Read> {
        let mut bytes = json.as_bytes().to_vec();
        let mut decoder = crate::codec::Decoder::default();
        let read = match decoder
            .decode_fast(Codec::Json, &mut bytes, tape_message)
            .unwrap()
        {
            crate::codec::Decoded::Fast(m) => Some(Ok((
                "room.message".to_string(),
                m.rid.map(str::to_string),
                Some(m.room.to_string()),
                m.msg_type.to_string(),
                m.data
                    .as_ref()
                    .map_or(serde_json::Value::Null, crate::codec::to_json),
            ))),
            crate::codec::Decoded::Tree(_) => None,
        };
        read
    }

    #[test]
    fn the_tape_reads_a_room_message_as_the_full_path_does() {
        for json in [
            r#"{"v":1,"t":"room.message","room":"r","p":{"type":"chat","data":"hi"}}"#,
            r#"{"p":{"data":{"x":[1,2.5,{"y":null}],"s":"\u00e9\n"},"type":"a"},"room":"r","t":"room.message","v":1}"#,
            r#"{"v":1,"t":"room.message","rid":"7","room":"r","p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","rid":null,"room":"","p":{"type":"t","data":null}}"#,
            r#"{"v":1,"t":"room.message","room":"r","extra":[1,{"v":2}],"p":{"type":"t","room":"other","data":7}}"#,
            r#"{"v":1,"t":"room.message","room":"r\"q","p":{"type":"\t","data":[]}}"#,
        ] {
            let fast = tape_path(json).unwrap_or_else(|| panic!("not read off the tape: {json}"));
            assert_eq!(fast, full_path(json), "{json}");
        }
    }

    #[test]
    fn the_tape_leaves_anything_unusual_to_the_full_path() {
        for json in [
            // Other types, and other spellings of this one.
            r#"{"v":1,"t":"room.message.bytes","room":"r","p":{"type":"t","data":"AA=="}}"#,
            r#"{"v":1,"t":"room.leave","room":"r"}"#,
            // The full path refuses these, with its own words.
            r#"{"v":2,"t":"room.message","room":"r","p":{"type":"t"}}"#,
            r#"{"t":"room.message","room":"r","p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","rid":5,"room":"r","p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","room":5,"p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","room":"r","p":[1]}"#,
            r#"{"v":1,"t":"room.message","room":"r"}"#,
            r#"{"v":1,"t":"room.message","room":"r","p":{"data":1}}"#,
            r#"[1]"#,
            // Read differently, or not at all, by a one-pass reader: left to the full path.
            r#"{"v":1.0,"t":"room.message","room":"r","p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","p":{"room":"r","type":"t"}}"#,
            r#"{"v":1,"t":"room.message","room":null,"p":{"roomId":"r","type":"t"}}"#,
            r#"{"v":1,"t":"room.message","room":"r","p":{"type":3,"data":1}}"#,
            r#"{"v":1,"t":"room.message","room":"a","room":"b","p":{"type":"t"}}"#,
            r#"{"v":1,"t":"room.message","room":"r","p":{"type":"t","data":1,"data":2}}"#,
        ] {
            assert!(tape_path(json).is_none(), "read off the tape: {json}");
        }
    }

    #[test]
    fn handshake_prefers_msgpack_and_reads_both_forms() {
        let v = parse(r#"{"v":1,"codecs":["json","msgpack"],"project_id":"demo","token":""}"#);
        let h = handshake(&v).unwrap();
        assert_eq!(h.codec, Codec::Msgpack);
        assert_eq!(h.token, None, "empty token is no token");
        let v = parse(
            r#"{"v":1,"t":"handshake","p":{"codecs":["json"],"project_id":"demo","checksum":"crc32"}}"#,
        );
        let h = handshake(&v).unwrap();
        assert_eq!(h.codec, Codec::Json);
        assert!(h.features.crc32);
    }

    #[test]
    fn handshake_failures_are_bad_handshake() {
        for bad in [
            r#"[1]"#,
            r#"{"v":2,"codecs":["json"],"project_id":"demo"}"#,
            r#"{"codecs":["json"],"project_id":"demo"}"#,
            r#"{"v":1,"codecs":["cbor"],"project_id":"demo"}"#,
            r#"{"v":1,"codecs":["json"]}"#,
            r#"{"v":1,"codecs":["json"],"project_id":""}"#,
        ] {
            assert_eq!(
                handshake(&parse(bad)).unwrap_err().code,
                ErrorCode::BadHandshake,
                "{bad}"
            );
        }
    }

    #[test]
    fn bin_bytes_only_for_msgpack_sessions() {
        let v = parse(
            r#"{"v":1,"codecs":["json"],"project_id":"d","features":["bin_bytes","nested_ops","x"]}"#,
        );
        let f = handshake(&v).unwrap().features;
        assert!(!f.bin_bytes);
        assert!(f.nested_ops);
    }

    #[test]
    fn envelope_room_wins_over_payload_room_and_room_id() {
        let v = parse(r#"{"v":1,"t":"room.leave","room":"a","p":{"room":"b","roomId":"c"}}"#);
        assert_eq!(envelope(&v).unwrap().room, Some("a"));
        let v = parse(r#"{"v":1,"t":"room.leave","p":{"roomId":"c"}}"#);
        assert_eq!(envelope(&v).unwrap().room, Some("c"));
    }

    #[test]
    fn envelope_rules_version_and_type() {
        assert_eq!(
            envelope(&parse(r#"{"v":2,"t":"x","rid":"1"}"#))
                .unwrap_err()
                .code,
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(
            envelope(&parse(r#"{"v":1,"t":""}"#)).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(
            envelope(&parse(r#"{"v":1}"#)).unwrap_err().code,
            ErrorCode::BadRequest
        );
        assert_eq!(rid_of(&parse(r#"{"v":2,"rid":"r9"}"#)), Some("r9"));
    }

    #[test]
    fn commands_accept_both_spellings() {
        let v =
            parse(r#"{"v":1,"t":"room.join_or_create","p":{"roomType":"echo_room","roomId":"x"}}"#);
        let env = envelope(&v).unwrap();
        assert!(matches!(
            command(&env, &[]).unwrap(),
            Command::Join {
                room_type: Some("echo_room"),
                ..
            }
        ));
        let v = parse(r#"{"v":1,"t":"room.message","room":"x","p":{"type":7,"data":{"a":1}}}"#);
        match command(&envelope(&v).unwrap(), &[]).unwrap() {
            Command::Message { msg_type, data, .. } => {
                assert_eq!(msg_type, "7");
                assert!(data.is_some());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bytes_need_valid_base64() {
        let v = parse(
            r#"{"v":1,"t":"room.message.bytes","room":"x","p":{"type":"b","data_b64":"AQID"}}"#,
        );
        assert!(command(&envelope(&v).unwrap(), &[]).is_ok());
        let v = parse(
            r#"{"v":1,"t":"room.message.bytes","room":"x","p":{"type":"b","data_b64":"!!"}}"#,
        );
        assert_eq!(
            command(&envelope(&v).unwrap(), &[]).unwrap_err().code,
            ErrorCode::BadRequest
        );
    }
}
