//! Rooms-dialect input: a decoded value (either codec) → handshake or command, borrowing
//! from the frame. Validation errors carry the wire code and, when it could be read, the
//! RPC id so the client always gets an `rpc.response`.

use std::borrow::Cow;

use smallvec::SmallVec;

use crate::codec::{as_i64, as_str, field, is_null, Codec, Value};
use crate::core::room::Features;

/// The closed set of error codes on the wire.
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

    fn parse(json: &str) -> Value<'static> {
        let mut bytes = json.as_bytes().to_vec();
        simd_json::to_borrowed_value(&mut bytes)
            .unwrap()
            .into_static()
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
