//! The pairkit dialect (`protocols/pairkit.md`) on a simulated two-shard server, driven by
//! a script: a host on `/pairkit` creates a session (with a flow or not), a second host
//! may create another, phones on either shard and from a few addresses join with the
//! codes; then each step is one client sending a structured message of the page (every
//! type, with field values picked among the real ones — codes, host ids, player ids,
//! resume tokens, revisions, request and broadcast ids — and garbage; or with keys
//! repeated at any depth), raw text or a binary frame, or a socket dropping,
//! reconnecting (on `/pairkit` or on `/`, where the first message settles the dialect)
//! with or without a resume, or the virtual clock running (grace windows, broadcast
//! deadlines, request timeouts, the session TTL).
//!
//! After every step:
//!
//! 1. Frames (whatever happened): every data frame a pairkit socket gets is a JSON object
//!    with a string `type` the relay sends, of the page's shape for that type (required
//!    fields present and typed, optional ones absent or typed, no other field), with no
//!    `null` at its top level (the relay omits absent fields, never sends `null`); the
//!    type suits the socket's role (a host gets host messages, a phone phone messages,
//!    a socket with no role only `system.error`, `system.pong`, `session.created`,
//!    `session.joined`, and at most one of those two, once); every `system.error` code is
//!    one of the page's 16; `session.ended` is followed by close 1000 with its reason,
//!    nothing follows a close, and the only close codes are 1000 and 1008 (rate).
//! 2. A model of the page, run alongside, predicts what every socket receives in order and
//!    the state after. Whether a host's or phone's message is accepted is read from the
//!    sender's answer (a `system.error` or not: every refusal in `handle.rs` returns
//!    before anything is applied); what it does then is predicted, and so is every
//!    refusal with a semantic reason, both ways: `player_not_found` / `player_offline`
//!    (the named player is unknown / offline in the model, and an accepted message names
//!    an online one), `revision_conflict` and `screen_not_found` (the model's revisions
//!    and flow), `stale_input`, `request_cancelled` (the model's open request), the
//!    reuse of a pending `broadcast_id` or of a `request_id` open for another player.
//!    Joins are predicted whole (version, fields, code format, the per-address
//!    throttle, unknown code, refused resume, full, new player or resume, takeover) and
//!    so are creates (version, fields, auth, the flow's rules as the flow is kept,
//!    reattach or `host_resume_rejected` + a fresh session, host takeover), pings,
//!    unknown types, role errors, oversized and binary frames; the only refusals not
//!    predicted are other messages' `malformed_message` (strict payloads' among them).
//!    Timers are predicted to the millisecond, in the order the server set them: TTL,
//!    grace, request timeouts, broadcast deadlines. In tight-rate mode any message may
//!    instead be answered `rate_limited` (and a socket closed 1008), which then applies
//!    nothing.
//! 3. Exact by design (see each check below), and checked on what the sockets received,
//!    independently of the model: exactly one `control.broadcast_result` per tracked
//!    broadcast the host sent and the relay accepted, never a second, and the one due at
//!    its deadline or last ack reaches whichever host socket is attached then; a phone
//!    never gets a `screen.show` / `screen.update_data` whose revision is not above the
//!    last one the player got in that session (over all its sockets), and
//!    `session.joined.screen` / `screen.state` never show an older revision; the host
//!    never gets more outcomes (`input.response`, `control.request_cancel`) for a
//!    (player, request_id) than it opened requests with that id for that player.
//! 4. The server's state agrees with the model: each party on its code's home shard,
//!    every shard's directory of live codes, the parties' host ids (hashed), host and
//!    player sockets, players in join order with names, colours, revisions and open
//!    requests, the tracked broadcasts waiting; each socket's role; nothing left pending
//!    once the server is quiet; one engine session per connected client.
//!
//! Input: `[setup][setup2]` then operations `[op]…`: `op & 7` is a slot (6, 7: slots 1,
//! 2), `op >> 3` the kind (see [`KINDS`]), its bytes follow. Slot 0 is host A, slot 5 host
//! B, slots 1–4 phones (each joins A at the start, but phone 4 may join B). `setup` bit
//! 0: host A's shard; bit 1: host B's; bits 2–5: the phones' shards; bit 6: session A has
//! a flow; bit 7: strict payloads. `setup2` bits 0 and 1 (both): a tight message rate;
//! bit 2: `players_max` 3; bit 3: `join_failures_per_min` 2; bit 4: host B creates a
//! session at the start; bit 5: phone 4 joins B; bit 6: a 120 s TTL (else 4 h); bit 7:
//! strict auth.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::input::{json_eq, Input};
use crate::codec::{self, Codec, Decoder};
use crate::config::{Config, PairkitAuth};
use crate::dialects::DialectSession;
use crate::pairkit::code::Code;
use crate::pairkit::party::{Secret, PALETTE};
use crate::pairkit::Role as PkRole;
use crate::sim::{ClientId, Received, Sim};
use serde_json::{json, Map, Value};

const SHARDS: usize = 2;
const SLOTS: usize = 6;
/// The simulator's unix time at `now` = 0.
const UNIX_BASE_MS: u64 = 1_700_000_000_000;
const GRACE_MS: u64 = 10_000;
const SHORT_TTL_MS: u64 = 120_000;
const LONG_TTL_MS: u64 = 4 * 3600 * 1000;
const ACK_TIMEOUT_DEFAULT_MS: u64 = 2_000;
const FAILURE_WINDOW_MS: u64 = 60_000;
const FRAME_BYTES_MAX: usize = 64 * 1024;
const API_KEY: &str = "key-1";
const ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

const ERROR_CODES: [&str; 16] = [
    "session_not_found",
    "session_full",
    "invalid_code",
    "rate_limited",
    "protocol_version_mismatch",
    "malformed_message",
    "payload_too_large",
    "player_not_found",
    "host_resume_rejected",
    "stale_input",
    "screen_not_found",
    "revision_conflict",
    "player_offline",
    "request_cancelled",
    "internal_error",
    "unauthorized",
];
const MALFORMED: &str = "malformed_message";
const RATE_LIMITED: &str = "rate_limited";

/// Every type a client may send (the page's), and some it may not.
const CLIENT_TYPES: [&str; 22] = [
    "session.create",
    "session.join",
    "session.leave",
    "player.update",
    "player.kick",
    "control.send_to_player",
    "control.broadcast",
    "control.request",
    "control.request_cancel",
    "control.resend_request",
    "screen.show",
    "screen.update_data",
    "input.widget_event",
    "input.response",
    "screen.acknowledge",
    "screen.query",
    "control.ack",
    "control.resend_accepted",
    "control.resend_failed",
    "system.ping",
    "session.created",
    "system.error",
];

/// The addresses phones connect from: two share an IPv4 address, two an IPv6 /64.
const IPS: [Option<IpAddr>; 8] = [
    Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7))),
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
    Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
    Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 9, 0, 0, 2))),
    None,
    Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5))),
    Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1))),
];

/// The flow session A may have (every widget type strict payloads check).
fn flow_json() -> Value {
    json!({
        "version": 1, "id": "game", "initial_screen": "lobby",
        "screens": {
            "lobby": {"widgets": [{"id": "go", "type": "button", "label": "Go"},
                                  {"id": "stick", "type": "joystick"}]},
            "vote": {"widgets": [{"id": "pick", "type": "choice_list",
                                  "choices": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}]},
            "draw": {"widgets": [{"id": "canvas", "type": "drawing_canvas"},
                                 {"id": "go", "type": "button"}]}
        }
    })
}

// ---- Reading JSON as the relay does -----------------------------------------------------

/// A message as the relay reads it, decoded with huddle's own decoder: each top-level
/// key's first occurrence (`codec::field` reads that one), its value as `codec::to_json`
/// gives it (which is what the relay keeps and forwards; inside it, a repeated key's last
/// occurrence wins, as in a browser's `JSON.parse`). A non-finite float reads as `null`,
/// which the relay would refuse in any field it reads, so the model never relies on one.
fn decode(bytes: &[u8]) -> Option<Value> {
    let mut b = bytes.to_vec();
    let mut d = Decoder::default();
    let v = d.decode(Codec::Json, &mut b).ok()?;
    let codec::Value::Object(m) = &v else {
        return Some(codec::to_json(&v));
    };
    let mut top = Map::new();
    for (k, x) in m.iter() {
        if !top.contains_key(&**k) {
            top.insert(k.to_string(), codec::to_json(x));
        }
    }
    Some(Value::Object(top))
}

/// A field, with `null` counting as absent.
fn get<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

/// An integer as the page reads one: an integral float below 9e15 counts.
fn as_int(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    n.as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
        .map(|f| f as i64)
}

/// An optional string field: `Err` when present and not a string.
fn opt_str<'a>(o: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, ()> {
    match get(o, k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(()),
    }
}

fn str_of<'a>(o: &'a Map<String, Value>, k: &str) -> &'a str {
    get(o, k)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("the relay accepted a message without a string {k}: {o:?}"))
}

fn int_of(o: &Map<String, Value>, k: &str) -> Option<i64> {
    get(o, k)
        .map(|v| as_int(v).unwrap_or_else(|| panic!("the relay accepted a non-integer {k}: {o:?}")))
}

fn cut(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A code as the page reads it (either case), upper case; `None` when not 4 letters of
/// the alphabet.
fn parse_code(s: &str) -> Option<String> {
    let up = s.to_ascii_uppercase();
    (s.len() == 4 && up.chars().all(|c| ALPHABET.contains(c))).then_some(up)
}

/// The throttle's key: the address, IPv6 by its /64; no address is 0.0.0.0.
fn ip_key(ip: Option<IpAddr>) -> IpAddr {
    match ip {
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(IpAddr::V6(v6)) => {
            let mut s = v6.segments();
            s[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(s))
        }
        Some(v4) => v4,
    }
}

/// `#rrggbb` lower-cased, else the palette's colour for player `n`.
fn color_of(given: Option<&str>, n: u32) -> String {
    match given {
        Some(c)
            if c.len() == 7
                && c.starts_with('#')
                && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            c.to_ascii_lowercase()
        }
        _ => PALETTE[(n.max(1) as usize - 1) % PALETTE.len()].to_string(),
    }
}

/// A flow as the page validates it: `version` 1, a string `id`, a non-empty `screens`
/// object of `{widgets: [{id, type, …}]}` (ids non-empty strings, unique per screen, types
/// strings), `initial_screen` naming a screen.
fn parse_flow(v: &Value) -> Option<Flow> {
    let o = v.as_object()?;
    (o.get("version").and_then(as_int) == Some(1)).then_some(())?;
    o.get("id")?.as_str()?;
    let initial = o.get("initial_screen")?.as_str()?;
    let screens = o.get("screens")?.as_object()?;
    if screens.is_empty() {
        return None;
    }
    for screen in screens.values() {
        let widgets = screen.as_object()?.get("widgets")?.as_array()?;
        let mut ids = HashSet::new();
        for w in widgets {
            let w = w.as_object()?;
            let id = w.get("id")?.as_str().filter(|s| !s.is_empty())?;
            w.get("type")?.as_str()?;
            if !ids.insert(id) {
                return None;
            }
        }
    }
    screens.contains_key(initial).then(|| Flow {
        json: v.clone(),
        initial: initial.to_string(),
        screens: screens.keys().cloned().collect(),
    })
}

// ---- What the relay sends ---------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum T {
    Str,
    /// An integer >= 0.
    UInt,
    Num,
    Bool,
    Obj,
    Arr,
    /// Anything but null.
    Any,
    OneOf(&'static [&'static str]),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum To {
    Host,
    Phone,
    /// A socket with no role (it gets its role with this frame).
    Roleless,
    /// Host, phone or a socket with no role.
    Any,
    /// Host or phone.
    Member,
}

type Shape = (
    To,
    &'static [(&'static str, T)],
    &'static [(&'static str, T)],
);

const CANCEL_REASONS: &[&str] = &["superseded", "cancelled", "timeout", "player_disconnected"];

/// Each type the relay sends: who gets it, required fields, optional fields.
fn shape_of(kind: &str, host: bool) -> Option<Shape> {
    use T::*;
    Some(match kind {
        "system.error" => (
            To::Any,
            &[("code", OneOf(&ERROR_CODES)), ("message", Str)],
            &[],
        ),
        "system.pong" => (To::Any, &[("sent_at", Num), ("received_at", UInt)], &[]),
        "session.created" => (
            To::Roleless,
            &[
                ("code", Str),
                ("host_id", Str),
                ("relay_capabilities", Obj),
                ("players", Arr),
            ],
            &[],
        ),
        "session.joined" => (
            To::Roleless,
            &[("player_id", Str), ("resume_token", Str)],
            &[("flow", Obj), ("screen", Obj)],
        ),
        "session.ended" => (
            To::Member,
            &[(
                "reason",
                OneOf(&["kicked", "host_closed", "timeout", "replaced"]),
            )],
            &[("message", Str)],
        ),
        "player.join" => (
            To::Host,
            &[
                ("player_id", Str),
                ("name", Str),
                ("color", Str),
                ("resumed", Bool),
            ],
            &[],
        ),
        "player.leave" => (
            To::Host,
            &[
                ("player_id", Str),
                ("reason", OneOf(&["user_left", "timeout", "kicked"])),
            ],
            &[("message", Str)],
        ),
        "player.update" => (
            To::Host,
            &[("player_id", Str)],
            &[("name", Str), ("color", Str)],
        ),
        "control.broadcast_result" => (To::Host, &[("broadcast_id", Str), ("results", Obj)], &[]),
        "control.request_cancel" if host => (
            To::Host,
            &[
                ("request_id", Str),
                ("player_id", Str),
                ("reason", OneOf(CANCEL_REASONS)),
            ],
            &[],
        ),
        "control.request_cancel" => (
            To::Phone,
            &[
                ("request_id", Str),
                ("reason", OneOf(&["superseded", "cancelled", "timeout"])),
            ],
            &[],
        ),
        "control.resend_failed" => (To::Host, &[("player_id", Str), ("reason", Str)], &[]),
        "control.resend_accepted" => (
            To::Host,
            &[("replayed_count", UInt), ("player_id", Str)],
            &[],
        ),
        "input.widget_event" => (
            To::Host,
            &[
                ("widget_id", Str),
                ("event_type", Str),
                ("payload", Any),
                ("player_id", Str),
            ],
            &[("revision", UInt)],
        ),
        "input.response" => (
            To::Host,
            &[("request_id", Str), ("player_id", Str), ("payload", Any)],
            &[],
        ),
        "screen.acknowledge" => (
            To::Host,
            &[("screen", Str), ("revision", UInt), ("player_id", Str)],
            &[],
        ),
        "control.event" => (
            To::Phone,
            &[("event", Str)],
            &[("payload", Any), ("broadcast_id", Str)],
        ),
        "control.request" => (
            To::Phone,
            &[("request_id", Str), ("kind", Str)],
            &[("payload", Any), ("timeout_ms", UInt)],
        ),
        "control.resend_request" => (
            To::Phone,
            &[("widget_id", Str), ("stroke_id", Str), ("from_seq", UInt)],
            &[],
        ),
        "screen.show" => (
            To::Phone,
            &[
                ("screen", Str),
                ("data", Obj),
                ("revision", UInt),
                ("shown_at", UInt),
            ],
            &[],
        ),
        "screen.update_data" => (To::Phone, &[("data", Obj), ("revision", UInt)], &[]),
        "screen.state" => (
            To::Phone,
            &[("data", Obj), ("revision", UInt)],
            &[("screen_name", Str), ("shown_at", UInt)],
        ),
        _ => return None,
    })
}

fn type_ok(t: T, v: &Value) -> bool {
    match t {
        T::Str => v.is_string(),
        T::UInt => v.is_u64(),
        T::Num => v.is_number(),
        T::Bool => v.is_boolean(),
        T::Obj => v.is_object(),
        T::Arr => v.is_array(),
        T::Any => !v.is_null(),
        T::OneOf(set) => v.as_str().is_some_and(|s| set.contains(&s)),
    }
}

/// Role as far as frames go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Seat {
    None,
    Host,
    Phone,
}

/// Property 1: the page's shapes, whatever happened. `seat` is the socket's role before
/// these frames; a `session.created`/`joined` gives it one, a `session.ended` takes it.
fn check_frames(c: ClientId, mut seat: Seat, got: &[Received], had_identity: bool) {
    let mut closed = false;
    let mut identity = had_identity;
    for (i, g) in got.iter().enumerate() {
        assert!(!closed, "client {c}: {g:?} after its close: {got:?}");
        let v = match g {
            Received::Frame(v) => v,
            Received::Close(code, reason) => {
                closed = true;
                assert!(
                    *code == 1000 || *code == 1008,
                    "client {c}: close {code} {reason:?}"
                );
                if *code == 1000 {
                    assert!(
                        ["user_left", "host_closed", "kicked", "timeout", "replaced"]
                            .contains(&reason.as_str()),
                        "client {c}: close 1000 with reason {reason:?}"
                    );
                }
                continue;
            }
            other => panic!("client {c}: not a JSON frame: {other:?}"),
        };
        let o = v
            .as_object()
            .unwrap_or_else(|| panic!("client {c}: not an object: {v}"));
        let kind = o
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("client {c}: no string type: {v}"));
        for (k, x) in o {
            assert!(!x.is_null(), "client {c}: null {k} at the top level: {v}");
        }
        let (to, req, opt) = shape_of(kind, seat == Seat::Host)
            .unwrap_or_else(|| panic!("client {c}: not a type the relay sends: {v}"));
        let seat_ok = match to {
            To::Any => true,
            To::Member => seat != Seat::None,
            To::Host => seat == Seat::Host,
            To::Phone => seat == Seat::Phone,
            To::Roleless => seat == Seat::None && !identity,
        };
        assert!(seat_ok, "client {c} ({seat:?}) got {v}");
        for (k, t) in req {
            assert!(
                o.get(*k).is_some_and(|x| type_ok(*t, x)),
                "client {c}: {kind} needs {k} as {t:?}: {v}"
            );
        }
        for (k, t) in opt {
            assert!(
                o.get(*k).is_none_or(|x| type_ok(*t, x)),
                "client {c}: {kind}'s {k} is not {t:?}: {v}"
            );
        }
        for k in o.keys() {
            assert!(
                k == "type" || req.iter().chain(opt.iter()).any(|(f, _)| f == k),
                "client {c}: {kind} has an unknown field {k}: {v}"
            );
        }
        match kind {
            "session.created" => {
                seat = Seat::Host;
                identity = true;
                let code = o["code"].as_str().unwrap();
                assert!(
                    parse_code(code).as_deref() == Some(code),
                    "client {c}: code {code:?} is not 4 upper-case letters of the alphabet"
                );
                assert!(hex_secret(&o["host_id"]), "client {c}: host_id {v}");
                let caps = o["relay_capabilities"].as_object().unwrap();
                assert!(
                    caps.len() == 1 && caps.get("strict_payloads").is_some_and(Value::is_boolean),
                    "client {c}: relay_capabilities {v}"
                );
                for p in o["players"].as_array().unwrap() {
                    let ok = p.as_object().is_some_and(|p| {
                        p.len() == 4
                            && p.get("player_id").is_some_and(Value::is_string)
                            && p.get("name").is_some_and(Value::is_string)
                            && p.get("color").and_then(Value::as_str).is_some_and(rrggbb)
                            && p.get("online").is_some_and(Value::is_boolean)
                    });
                    assert!(ok, "client {c}: a player of session.created: {v}");
                }
            }
            "session.joined" => {
                seat = Seat::Phone;
                identity = true;
                assert!(
                    hex_secret(&o["resume_token"]),
                    "client {c}: resume_token {v}"
                );
                // The page: a flow is validated before any session has it; so the flow a
                // phone gets must pass the page's rules, and a new player's first screen
                // is its `initial_screen`.
                if let Some(flow) = o.get("flow") {
                    let f = parse_flow(flow).unwrap_or_else(|| {
                        panic!("client {c}: a flow that fails the page's rules: {v}")
                    });
                    let screen = o.get("screen").and_then(|s| s.get("screen_name"));
                    if o["screen"]["revision"] == 0 {
                        assert!(
                            screen.and_then(Value::as_str) == Some(f.initial.as_str()),
                            "client {c}: a new player is not on the flow's initial_screen: {v}"
                        );
                    }
                }
                if let Some(s) = o.get("screen") {
                    let s = s.as_object().unwrap();
                    let ok = s.get("data").is_some_and(Value::is_object)
                        && s.get("revision").is_some_and(Value::is_u64)
                        && s.get("screen_name").is_none_or(Value::is_string)
                        && s.get("shown_at").is_none_or(Value::is_u64)
                        && s.keys().all(|k| {
                            ["data", "revision", "screen_name", "shown_at"].contains(&k.as_str())
                        });
                    assert!(ok, "client {c}: session.joined.screen {v}");
                }
            }
            "session.ended" => {
                let reason = o["reason"].as_str().unwrap();
                assert!(
                    matches!(got.get(i + 1), Some(Received::Close(1000, r)) if r == reason),
                    "client {c}: session.ended not followed by close 1000 {reason}: {got:?}"
                );
                seat = Seat::None;
            }
            "player.join" | "player.update" => {
                if let Some(col) = o.get("color") {
                    assert!(col.as_str().is_some_and(rrggbb), "client {c}: colour {v}");
                }
                if let Some(name) = o.get("name") {
                    assert!(
                        name.as_str().unwrap().chars().count() <= 32,
                        "client {c}: a name over 32 characters: {v}"
                    );
                }
            }
            "control.broadcast_result" => {
                let ok = o["results"].as_object().unwrap().values().all(|r| {
                    r.as_str()
                        .is_some_and(|r| ["delivered", "missed", "timed_out"].contains(&r))
                });
                assert!(ok, "client {c}: broadcast results {v}");
            }
            _ => {}
        }
        if let Some(m) = o.get("message") {
            if kind != "system.error" {
                assert!(
                    m.as_str().unwrap().chars().count() <= 128,
                    "client {c}: a message over 128 characters: {v}"
                );
            }
        }
    }
}

fn rrggbb(s: &str) -> bool {
    s.len() == 7
        && s.starts_with('#')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A secret of at least 128 bits, in hex.
fn hex_secret(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

// ---- The model --------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Flow {
    json: Value,
    initial: String,
    screens: Vec<String>,
}

#[derive(Clone, Debug, Default)]
struct Scr {
    name: Option<String>,
    data: Map<String, Value>,
    rev: u64,
    shown_rev: u64,
    shown_at: Option<u64>,
}

#[derive(Clone, Debug)]
struct Req {
    id: String,
    /// (due, timer order) when it has a timeout.
    due: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Oc {
    Delivered,
    Missed,
    Waiting,
}

#[derive(Clone, Debug)]
struct Bc {
    id: String,
    due: (u64, u64),
    counted: Vec<(String, Oc)>,
}

#[derive(Clone, Debug)]
struct Pl {
    n: u32,
    pid: String,
    token: String,
    name: String,
    color: String,
    socket: Option<ClientId>,
    /// The grace window's end (and timer order) while offline.
    dropped: Option<(u64, u64)>,
    screen: Scr,
    request: Option<Req>,
}

#[derive(Clone, Debug)]
struct Sess {
    code: String,
    host_id: String,
    ttl: (u64, u64),
    host: Option<ClientId>,
    flow: Option<Flow>,
    players: Vec<Pl>,
    joined: u32,
    broadcasts: Vec<Bc>,
    ended: bool,
}

impl Sess {
    fn at(&self, pid: &str) -> Option<usize> {
        self.players.iter().position(|p| p.pid == pid)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Role {
    None,
    Host(usize),
    Phone(usize, String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dial {
    /// On `/`, before its first message.
    Unsettled,
    Pairkit,
    /// On `/`, and its first message made it a rooms socket: not followed.
    Other,
}

#[derive(Clone, Debug)]
struct Cl {
    ip: Option<IpAddr>,
    dial: Dial,
    role: Role,
    /// Got `session.created` or `session.joined`.
    identity: bool,
}

#[derive(Clone, Debug)]
enum Exp {
    Frame(Value),
    Error(&'static str),
    Close(u16, &'static str),
}

impl Exp {
    fn matches(&self, g: &Received) -> bool {
        match (self, g) {
            (Exp::Frame(w), Received::Frame(v)) => json_eq(w, v),
            (Exp::Error(code), Received::Frame(v)) => {
                v["type"] == "system.error" && v["code"] == *code
            }
            (Exp::Close(code, reason), Received::Close(c, r)) => c == code && r == reason,
            _ => false,
        }
    }
}

/// What a slot last was, to resume as.
#[derive(Clone, Debug)]
enum Ident {
    Host(usize),
    Phone(usize, String),
}

enum Act {
    Text(usize, String),
    Binary(usize, Vec<u8>),
    Advance(u64),
    Drop(usize, bool),
    Connect {
        slot: usize,
        shard: usize,
        ip: Option<IpAddr>,
        root: bool,
    },
}

struct Knobs {
    tight: bool,
    players_max: usize,
    fail_limit: usize,
    ttl: u64,
    strict_payloads: bool,
    strict_auth: bool,
}

struct H {
    sim: Sim,
    k: Knobs,
    slots: [Option<ClientId>; SLOTS],
    idents: [Option<Ident>; SLOTS],
    clients: BTreeMap<ClientId, Cl>,
    sessions: Vec<Sess>,
    failures: HashMap<IpAddr, VecDeque<u64>>,
    /// Timers in the order the server sets them.
    seq: u64,
    secrets: HashSet<String>,
    exp: BTreeMap<ClientId, Vec<Exp>>,
    // Property 3's books, kept from what the sockets receive.
    /// (session, player) → the last revision any of its sockets got in a show/update.
    seen_rev: HashMap<(usize, String), u64>,
    /// (session, broadcast id) → tracked broadcasts accepted / results the host got.
    bc_sent: HashMap<(usize, String), u32>,
    bc_results: HashMap<(usize, String), u32>,
    /// (session, player, request id) → requests opened / outcomes the host got.
    req_opened: HashMap<(usize, String, String), u32>,
    req_outcomes: HashMap<(usize, String, String), u32>,
}

fn msg(kind: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    Value::Object(m)
}

fn cancel_to_host(rid: &str, pid: &str, reason: &str) -> Value {
    msg(
        "control.request_cancel",
        json!({"request_id": rid, "player_id": pid, "reason": reason}),
    )
}

fn cancel_to_phone(rid: &str, reason: &str) -> Value {
    msg(
        "control.request_cancel",
        json!({"request_id": rid, "reason": reason}),
    )
}

fn first_error(got: &[Received]) -> Option<&'static str> {
    got.iter().find_map(|g| match g {
        Received::Frame(v) if v["type"] == "system.error" => {
            let code = v["code"].as_str()?;
            ERROR_CODES.iter().copied().find(|c| *c == code)
        }
        _ => None,
    })
}

fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HUDDLE_FUZZ_TRACE").is_some())
}

impl H {
    fn unix(&self) -> u64 {
        UNIX_BASE_MS + self.sim.now
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn expect(&mut self, c: ClientId, e: Exp) {
        self.exp.entry(c).or_default().push(e);
    }

    fn send_host(&mut self, s: usize, v: Value) {
        if let Some(h) = self.sessions[s].host {
            self.expect(h, Exp::Frame(v));
        }
    }

    fn send_phone(&mut self, s: usize, i: usize, v: Value) {
        if let Some(c) = self.sessions[s].players[i].socket {
            self.expect(c, Exp::Frame(v));
        }
    }

    /// `session.ended {reason, message?}`, close 1000 with the reason; no role after.
    fn end_socket(&mut self, c: ClientId, reason: &'static str, text: Option<&str>) {
        let mut v = msg("session.ended", json!({ "reason": reason }));
        if let Some(t) = text {
            v["message"] = json!(t);
        }
        self.expect(c, Exp::Frame(v));
        self.close_socket(c, reason);
    }

    fn close_socket(&mut self, c: ClientId, reason: &'static str) {
        self.expect(c, Exp::Close(1000, reason));
        self.clients.get_mut(&c).unwrap().role = Role::None;
    }

    /// The session is over: its code is unknown from now on.
    fn end_session(&mut self, s: usize) {
        let sess = &mut self.sessions[s];
        sess.ended = true;
        sess.host = None;
        sess.players.clear();
        sess.broadcasts.clear();
    }

    /// A player's open request ends with `reason` at the host.
    fn end_request(&mut self, s: usize, i: usize, reason: &str) {
        if let Some(r) = self.sessions[s].players[i].request.take() {
            let pid = self.sessions[s].players[i].pid.clone();
            self.send_host(s, cancel_to_host(&r.id, &pid, reason));
        }
    }

    /// Removed for good: its open request ends first, then the host hears `player.leave`.
    fn remove_player(&mut self, s: usize, i: usize, reason: &str, text: Option<String>) {
        self.end_request(s, i, "player_disconnected");
        let p = self.sessions[s].players.remove(i);
        let mut v = msg(
            "player.leave",
            json!({"player_id": p.pid, "reason": reason}),
        );
        if let Some(t) = text {
            v["message"] = json!(t);
        }
        self.send_host(s, v);
    }

    /// A socket is gone (dropped, or closed by the relay for its rate): a phone's player
    /// starts its grace window and its open request ends; a host's session waits.
    fn gone(&mut self, c: ClientId) {
        let role = std::mem::replace(&mut self.clients.get_mut(&c).unwrap().role, Role::None);
        match role {
            Role::None => {}
            Role::Host(s) => {
                if self.sessions[s].host == Some(c) {
                    self.sessions[s].host = None;
                }
            }
            Role::Phone(s, pid) => {
                let Some(i) = self.sessions[s].at(&pid) else {
                    return;
                };
                if self.sessions[s].players[i].socket != Some(c) {
                    return;
                }
                let due = (self.sim.now + GRACE_MS, self.next_seq());
                let p = &mut self.sessions[s].players[i];
                p.socket = None;
                p.dropped = Some(due);
                self.end_request(s, i, "player_disconnected");
            }
        }
    }

    fn live_session(&self, code: &str) -> Option<usize> {
        self.sessions
            .iter()
            .position(|x| !x.ended && x.code == code)
    }

    fn created_frame(&self, s: usize) -> Value {
        let sess = &self.sessions[s];
        let players: Vec<Value> = sess
            .players
            .iter()
            .map(|p| {
                json!({"player_id": p.pid, "name": p.name, "color": p.color,
                       "online": p.socket.is_some()})
            })
            .collect();
        msg(
            "session.created",
            json!({"code": sess.code, "host_id": sess.host_id,
                   "relay_capabilities": {"strict_payloads": self.k.strict_payloads},
                   "players": players}),
        )
    }

    fn screen_fields(scr: &Scr) -> Map<String, Value> {
        let mut m = Map::new();
        if let Some(n) = &scr.name {
            m.insert("screen_name".into(), json!(n));
        }
        m.insert("data".into(), Value::Object(scr.data.clone()));
        m.insert("revision".into(), json!(scr.rev));
        if let Some(at) = scr.shown_at {
            m.insert("shown_at".into(), json!(at));
        }
        m
    }

    fn result_frame(bc: &Bc) -> Value {
        let results: Map<String, Value> = bc
            .counted
            .iter()
            .map(|(pid, oc)| {
                let r = match oc {
                    Oc::Delivered => "delivered",
                    Oc::Missed => "missed",
                    Oc::Waiting => "timed_out",
                };
                (pid.clone(), json!(r))
            })
            .collect();
        msg(
            "control.broadcast_result",
            json!({"broadcast_id": bc.id, "results": results}),
        )
    }

    // ---- One step ----

    fn step(&mut self, act: Act) {
        let before: BTreeMap<ClientId, Cl> = self.clients.clone();
        let desc;
        let mut actor = None;
        match &act {
            Act::Text(slot, text) => {
                let Some(c) = self.slots[*slot].filter(|c| self.sim.is_connected(*c)) else {
                    return;
                };
                desc = format!("client {c} (slot {slot}) sends {text}");
                actor = Some(c);
                self.sim.send_text(c, text);
            }
            Act::Binary(slot, bytes) => {
                let Some(c) = self.slots[*slot].filter(|c| self.sim.is_connected(*c)) else {
                    return;
                };
                desc = format!("client {c} (slot {slot}) sends binary {bytes:?}");
                actor = Some(c);
                self.sim.send_bytes(c, bytes.clone());
            }
            Act::Advance(ms) => {
                desc = format!("the clock runs {ms} ms from {}", self.sim.now);
                self.sim.advance(*ms);
            }
            Act::Drop(slot, close_frame) => {
                let Some(c) = self.slots[*slot].filter(|c| self.sim.is_connected(*c)) else {
                    return;
                };
                desc = format!("client {c} (slot {slot}) drops (close frame: {close_frame})");
                actor = Some(c);
                if *close_frame {
                    self.sim.close(c, 1000);
                } else {
                    self.sim.disconnect(c);
                }
            }
            Act::Connect {
                slot,
                shard,
                ip,
                root,
            } => {
                let path = if *root { "/" } else { "/pairkit" };
                let c = self
                    .sim
                    .upgrade(*shard, path, None, *ip, Codec::Json)
                    .expect("routed");
                desc = format!(
                    "client {c} (slot {slot}) connects to shard {shard} on {path} from {ip:?}"
                );
                self.slots[*slot] = Some(c);
                let dial = if *root {
                    Dial::Unsettled
                } else {
                    Dial::Pairkit
                };
                self.clients.insert(
                    c,
                    Cl {
                        ip: *ip,
                        dial,
                        role: Role::None,
                        identity: false,
                    },
                );
            }
        }
        if trace() {
            eprintln!("-- {desc}");
        }
        // The first message on `/` settles the socket's dialect, as `settle_shared` does: a
        // text frame holding a JSON object with a `type` is pairkit's.
        if let (Some(c), Act::Text(..) | Act::Binary(..)) = (actor, &act) {
            if self.clients[&c].dial == Dial::Unsettled {
                let typed = match &act {
                    Act::Text(_, text) => decode(text.as_bytes())
                        .is_some_and(|v| v.as_object().is_some_and(|o| o.contains_key("type"))),
                    _ => false,
                };
                self.clients.get_mut(&c).unwrap().dial =
                    if typed { Dial::Pairkit } else { Dial::Other };
            }
        }
        let ids: Vec<ClientId> = self.clients.keys().copied().collect();
        let mut got: BTreeMap<ClientId, Vec<Received>> = BTreeMap::new();
        for c in ids {
            let frames = self.sim.drain(c);
            if trace() && !frames.is_empty() {
                eprintln!("   client {c}: {frames:?}");
            }
            got.insert(c, frames);
        }
        // A socket on `/` that gets anything before its first message is the rooms
        // dialect's (its handshake timeout): not followed.
        for (c, frames) in &got {
            let cl = self.clients.get_mut(c).unwrap();
            if cl.dial == Dial::Unsettled && !frames.is_empty() {
                cl.dial = Dial::Other;
            }
        }
        // Property 1.
        for (c, frames) in &got {
            let cl = &before.get(c).unwrap_or(&self.clients[c]);
            if self.clients[c].dial == Dial::Other {
                continue;
            }
            let seat = match cl.role {
                Role::None => Seat::None,
                Role::Host(_) => Seat::Host,
                Role::Phone(..) => Seat::Phone,
            };
            check_frames(*c, seat, frames, cl.identity);
        }
        // Property 2: the model's prediction.
        self.exp.clear();
        match act {
            Act::Text(_, text) => {
                let c = actor.unwrap();
                self.text(c, text.as_bytes(), false, &got[&c]);
            }
            Act::Binary(_, bytes) => {
                let c = actor.unwrap();
                self.text(c, &bytes, true, &got[&c]);
            }
            Act::Advance(_) => self.advance(),
            Act::Drop(..) => self.gone(actor.unwrap()),
            Act::Connect { .. } => {}
        }
        self.learn_tokens(&got);
        for (c, frames) in &got {
            if self.clients[c].dial == Dial::Other {
                continue;
            }
            let want = self.exp.remove(c).unwrap_or_default();
            let same =
                want.len() == frames.len() && want.iter().zip(frames).all(|(w, g)| w.matches(g));
            assert!(
                same,
                "after: {desc}\nclient {c} received\n  {frames:?}\nthe page says\n  {want:?}"
            );
        }
        assert!(
            self.exp.is_empty(),
            "expected for unknown clients: {:?}",
            self.exp
        );
        for (c, frames) in &got {
            if self.clients[c].dial != Dial::Other {
                let role = before.get(c).map_or(Role::None, |b| b.role.clone());
                self.books(*c, &role, frames);
            }
        }
        for (c, cl) in &self.clients {
            if let Role::Host(s) | Role::Phone(s, _) = cl.role {
                assert!(
                    !self.sessions[s].ended,
                    "client {c} holds a role in an ended session"
                );
            }
        }
        self.check_state(&desc);
    }

    /// Property 3: the books kept from what sockets receive. `role` is the socket's role
    /// before the step (a socket that got its role in this step has it now).
    fn books(&mut self, c: ClientId, before: &Role, frames: &[Received]) {
        let role = match (&self.clients[&c].role, before) {
            (Role::None, r) => r.clone(),
            (r, _) => r.clone(),
        };
        for g in frames {
            let Received::Frame(v) = g else { continue };
            let kind = v["type"].as_str().unwrap_or("");
            match (&role, kind) {
                (Role::Phone(s, pid), "screen.show" | "screen.update_data") => {
                    // By design: a revision is raised by every show/update a player is a
                    // target of (current + 1, or a host's value above every target's
                    // current one), and the player's sockets get them in that order.
                    let rev = v["revision"].as_u64().unwrap();
                    let key = (*s, pid.clone());
                    if let Some(last) = self.seen_rev.get(&key) {
                        assert!(rev > *last, "client {c}: revision {rev} after {last}: {v}");
                    }
                    self.seen_rev.insert(key, rev);
                }
                (Role::Phone(s, pid), "screen.state" | "session.joined") => {
                    let scr = if kind == "screen.state" {
                        v
                    } else {
                        &v["screen"]
                    };
                    if let Some(rev) = scr.get("revision").and_then(Value::as_u64) {
                        if let Some(last) = self.seen_rev.get(&(*s, pid.clone())) {
                            assert!(
                                rev >= *last,
                                "client {c}: state revision {rev} below {last}: {v}"
                            );
                        }
                    }
                }
                (Role::Host(s), "control.broadcast_result") => {
                    // By design: a tracked broadcast is sent its result once, when it
                    // leaves the party's list (last ack or deadline); an id cannot be
                    // reused while it is on that list.
                    let key = (*s, v["broadcast_id"].as_str().unwrap().to_string());
                    let n = self.bc_results.entry(key.clone()).or_default();
                    *n += 1;
                    let sent = self.bc_sent.get(&key).copied().unwrap_or(0);
                    assert!(
                        *n <= sent,
                        "client {c}: result {n} for {key:?}, {sent} sent: {v}"
                    );
                }
                (Role::Host(s), "input.response" | "control.request_cancel") => {
                    // By design: a request ends once (`Player::request` is taken), and
                    // only an open one sends an outcome; a resend while open opens none.
                    let key = (
                        *s,
                        v["player_id"].as_str().unwrap().to_string(),
                        v["request_id"].as_str().unwrap().to_string(),
                    );
                    let n = self.req_outcomes.entry(key.clone()).or_default();
                    *n += 1;
                    let opened = self.req_opened.get(&key).copied().unwrap_or(0);
                    assert!(
                        *n <= opened,
                        "client {c}: outcome {n} for {key:?}, {opened} opened: {v}"
                    );
                }
                _ => {}
            }
        }
    }

    // ---- Messages ----

    /// A text (or binary) message from `c`; `mine` is what `c` received.
    fn text(&mut self, c: ClientId, bytes: &[u8], binary: bool, mine: &[Received]) {
        if self.clients[&c].dial == Dial::Other {
            return;
        }
        // Tight mode: any message may be refused by the socket's rate (nothing applied),
        // and one far over it closes the socket.
        if self.k.tight && first_error(mine) == Some(RATE_LIMITED) {
            let rate_only = matches!(mine, [_] | [_, Received::Close(1008, _)]);
            if rate_only {
                self.expect(c, Exp::Error(RATE_LIMITED));
                if mine.len() == 2 {
                    self.expect(c, Exp::Close(1008, "rate limited"));
                    self.gone(c);
                }
                return;
            }
        }
        if binary {
            return self.expect(c, Exp::Error(MALFORMED));
        }
        if bytes.len() > FRAME_BYTES_MAX {
            return self.expect(c, Exp::Error("payload_too_large"));
        }
        let Some(Value::Object(o)) = decode(bytes) else {
            return self.expect(c, Exp::Error(MALFORMED));
        };
        let Some(kind) = o.get("type").and_then(Value::as_str).map(str::to_string) else {
            return self.expect(c, Exp::Error(MALFORMED));
        };
        let role = self.clients[&c].role.clone();
        match kind.as_str() {
            "system.ping" => {
                return match get(&o, "sent_at") {
                    Some(n @ Value::Number(_)) => {
                        let pong = msg(
                            "system.pong",
                            json!({"sent_at": n, "received_at": self.unix()}),
                        );
                        self.expect(c, Exp::Frame(pong))
                    }
                    _ => self.expect(c, Exp::Error(MALFORMED)),
                };
            }
            "session.create" | "session.join" if role != Role::None => {
                return self.expect(c, Exp::Error(MALFORMED));
            }
            "session.create" => return self.create(c, &o, mine),
            "session.join" => return self.join(c, &o),
            _ => {}
        }
        let host_msg = matches!(
            kind.as_str(),
            "player.kick"
                | "control.send_to_player"
                | "control.broadcast"
                | "control.request"
                | "control.resend_request"
                | "screen.show"
                | "screen.update_data"
        );
        let phone_msg = matches!(
            kind.as_str(),
            "player.update"
                | "input.widget_event"
                | "input.response"
                | "screen.acknowledge"
                | "screen.query"
                | "control.ack"
                | "control.resend_accepted"
                | "control.resend_failed"
        );
        let either = matches!(kind.as_str(), "session.leave" | "control.request_cancel");
        if !(host_msg || phone_msg || either) {
            return self.expect(c, Exp::Error(MALFORMED));
        }
        // By design (`handle.rs`): a handler reads and checks every field, and refuses for
        // a semantic reason, before it changes or sends anything, and `answer` sends the
        // refusal to the sender alone; so the sender's `system.error` (or none) says
        // whether the message was applied, and no other socket hears of a refused one.
        match role {
            Role::None => self.expect(c, Exp::Error("session_not_found")),
            Role::Host(_) if phone_msg => self.expect(c, Exp::Error(MALFORMED)),
            Role::Phone(..) if host_msg => self.expect(c, Exp::Error(MALFORMED)),
            Role::Host(s) => self.host_message(c, s, &kind, &o, first_error(mine)),
            Role::Phone(s, pid) => {
                let i = self.sessions[s]
                    .at(&pid)
                    .expect("a phone's player is there");
                self.phone_message(c, s, i, &kind, &o, first_error(mine))
            }
        }
    }

    /// A refused message: the error is one `allowed` for it (`malformed_message` always
    /// but for `screen.query`, which reads no field), and nothing else happens.
    fn refused(&mut self, c: ClientId, kind: &str, e: &'static str, allowed: &[&str]) {
        assert!(
            (e == MALFORMED && kind != "screen.query") || allowed.contains(&e),
            "{kind} refused with {e}, which it cannot be"
        );
        self.expect(c, Exp::Error(e));
    }

    fn create(&mut self, c: ClientId, o: &Map<String, Value>, mine: &[Received]) {
        if get(o, "protocol_version").is_some_and(|v| as_int(v) != Some(1)) {
            return self.expect(c, Exp::Error("protocol_version_mismatch"));
        }
        let flow = get(o, "flow");
        let (Ok(api_key), Ok(resume_code), Ok(resume_host_id)) = (
            opt_str(o, "api_key"),
            opt_str(o, "resume_code"),
            opt_str(o, "resume_host_id"),
        ) else {
            return self.expect(c, Exp::Error(MALFORMED));
        };
        if flow.is_some_and(|f| !f.is_object()) {
            return self.expect(c, Exp::Error(MALFORMED));
        }
        if self.k.strict_auth && api_key != Some(API_KEY) {
            return self.expect(c, Exp::Error("unauthorized"));
        }
        // A flow is validated as it is kept and sent to phones.
        let flow = match flow.map(parse_flow) {
            None => None,
            Some(Some(f)) => Some(f),
            Some(None) => return self.expect(c, Exp::Error(MALFORMED)),
        };
        if let Some(rc) = resume_code {
            let target = parse_code(rc).and_then(|code| self.live_session(&code));
            match target {
                Some(s) if resume_host_id == Some(self.sessions[s].host_id.as_str()) => {
                    // A valid reattach wins over an older host socket.
                    if let Some(old) = self.sessions[s].host.filter(|old| *old != c) {
                        self.end_socket(old, "replaced", None);
                    }
                    self.sessions[s].host = Some(c);
                    let cl = self.clients.get_mut(&c).unwrap();
                    cl.role = Role::Host(s);
                    cl.identity = true;
                    let frame = self.created_frame(s);
                    self.expect(c, Exp::Frame(frame));
                    return;
                }
                _ => self.expect(c, Exp::Error("host_resume_rejected")),
            }
        }
        // A fresh session: its code and host id are the relay's to pick.
        let created = mine.iter().find_map(|g| match g {
            Received::Frame(v) if v["type"] == "session.created" => Some(v.clone()),
            _ => None,
        });
        let Some(created) = created else {
            panic!("client {c}: a valid session.create got no session.created: {mine:?}");
        };
        let code = created["code"].as_str().unwrap().to_string();
        let host_id = created["host_id"].as_str().unwrap().to_string();
        assert!(
            self.live_session(&code).is_none(),
            "client {c}: a fresh session has the live code {code}"
        );
        assert!(
            self.secrets.insert(host_id.clone()),
            "host_id {host_id} issued twice"
        );
        let ttl = (self.sim.now + self.k.ttl, self.next_seq());
        self.sessions.push(Sess {
            code,
            host_id,
            ttl,
            host: Some(c),
            flow,
            players: Vec::new(),
            joined: 0,
            broadcasts: Vec::new(),
            ended: false,
        });
        let s = self.sessions.len() - 1;
        let cl = self.clients.get_mut(&c).unwrap();
        cl.role = Role::Host(s);
        cl.identity = true;
        let frame = self.created_frame(s);
        self.expect(c, Exp::Frame(frame));
    }

    fn join(&mut self, c: ClientId, o: &Map<String, Value>) {
        if get(o, "protocol_version").is_some_and(|v| as_int(v) != Some(1)) {
            return self.expect(c, Exp::Error("protocol_version_mismatch"));
        }
        let code = match get(o, "code") {
            Some(Value::String(s)) => s.as_str(),
            _ => return self.expect(c, Exp::Error(MALFORMED)),
        };
        let (Ok(name), Ok(color), Ok(resume_id), Ok(resume_token)) = (
            opt_str(o, "name"),
            opt_str(o, "color"),
            opt_str(o, "resume_player_id"),
            opt_str(o, "resume_token"),
        ) else {
            return self.expect(c, Exp::Error(MALFORMED));
        };
        let Some(code) = parse_code(code) else {
            return self.expect(c, Exp::Error("invalid_code"));
        };
        // The throttle: join failures of the address (its /64) within the window.
        let now = self.sim.now;
        let key = ip_key(self.clients[&c].ip);
        let target = self.live_session(&code);
        if self.k.fail_limit > 0 {
            let log = self.failures.entry(key).or_default();
            while log.front().is_some_and(|t| now - t >= FAILURE_WINDOW_MS) {
                log.pop_front();
            }
            if log.len() >= self.k.fail_limit {
                return self.expect(c, Exp::Error(RATE_LIMITED));
            }
            if target.is_none() {
                log.push_back(now);
            }
        }
        let Some(s) = target else {
            return self.expect(c, Exp::Error("session_not_found"));
        };
        let unix = self.unix();
        let (i, token, resumed) = if let Some(id) = resume_id {
            let found = self.sessions[s]
                .at(id)
                .filter(|i| resume_token == Some(self.sessions[s].players[*i].token.as_str()));
            let Some(i) = found else {
                return self.expect(c, Exp::Error("player_not_found"));
            };
            if let Some(old) = self.sessions[s].players[i].socket.filter(|old| *old != c) {
                self.end_request(s, i, "player_disconnected");
                self.sessions[s].players[i].socket = None;
                self.end_socket(old, "replaced", None);
            }
            let p = &mut self.sessions[s].players[i];
            p.socket = Some(c);
            p.dropped = None;
            (i, p.token.clone(), true)
        } else {
            if self.sessions[s].players.len() >= self.k.players_max {
                return self.expect(c, Exp::Error("session_full"));
            }
            let sess = &mut self.sessions[s];
            sess.joined += 1;
            let n = sess.joined;
            let screen = match &sess.flow {
                Some(f) => Scr {
                    name: Some(f.initial.clone()),
                    shown_at: Some(unix),
                    ..Scr::default()
                },
                None => Scr::default(),
            };
            sess.players.push(Pl {
                n,
                pid: format!("p{n}"),
                token: String::new(),
                name: name.map_or_else(|| format!("Player {n}"), |s| cut(s, 32)),
                color: color_of(color, n),
                socket: Some(c),
                dropped: None,
                screen,
                request: None,
            });
            (sess.players.len() - 1, String::new(), false)
        };
        let sess = &self.sessions[s];
        let p = &sess.players[i];
        let mut joined =
            json!({"type": "session.joined", "player_id": p.pid, "resume_token": token});
        if let Some(f) = &sess.flow {
            joined["flow"] = f.json.clone();
        }
        if p.screen.name.is_some() {
            joined["screen"] = Value::Object(Self::screen_fields(&p.screen));
        }
        let announce = msg(
            "player.join",
            json!({"player_id": p.pid, "name": p.name, "color": p.color, "resumed": resumed}),
        );
        let pid = p.pid.clone();
        let cl = self.clients.get_mut(&c).unwrap();
        cl.role = Role::Phone(s, pid);
        cl.identity = true;
        self.expect(c, Exp::Frame(joined));
        self.send_host(s, announce);
    }

    /// Called once the relay's `session.joined` is seen: a new player's token.
    fn learn_tokens(&mut self, got: &BTreeMap<ClientId, Vec<Received>>) {
        for (c, frames) in got {
            for g in frames {
                let Received::Frame(v) = g else { continue };
                if v["type"] != "session.joined" {
                    continue;
                }
                let Role::Phone(s, pid) = self.clients[c].role.clone() else {
                    continue;
                };
                let Some(i) = self.sessions[s].at(&pid) else {
                    continue;
                };
                let token = v["resume_token"].as_str().unwrap_or("").to_string();
                let p = &mut self.sessions[s].players[i];
                if p.token.is_empty() {
                    assert!(
                        self.secrets.insert(token.clone()),
                        "resume_token issued twice"
                    );
                    p.token = token.clone();
                    // The expectation was written before the token was known.
                    if let Some(list) = self.exp.get_mut(c) {
                        for e in list.iter_mut() {
                            if let Exp::Frame(w) = e {
                                if w["type"] == "session.joined" && w["resume_token"] == "" {
                                    w["resume_token"] = json!(token);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn host_message(
        &mut self,
        c: ClientId,
        s: usize,
        kind: &str,
        o: &Map<String, Value>,
        err: Option<&'static str>,
    ) {
        let pid_field = |o: &Map<String, Value>| {
            get(o, "player_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let known = |h: &H, pid: &Option<String>| pid.as_ref().and_then(|p| h.sessions[s].at(p));
        match kind {
            "session.leave" => {
                if let Some(e) = err {
                    return self.refused(c, kind, e, &[]);
                }
                let text = opt_str(o, "reason").ok().flatten().map(|r| cut(r, 128));
                let phones: Vec<ClientId> = self.sessions[s]
                    .players
                    .iter()
                    .filter_map(|p| p.socket)
                    .collect();
                for phone in phones {
                    self.end_socket(phone, "host_closed", text.as_deref());
                }
                self.close_socket(c, "host_closed");
                self.end_session(s);
            }
            "player.kick" => {
                let pid = pid_field(o);
                let at = known(self, &pid);
                if let Some(e) = err {
                    if e == "player_not_found" {
                        assert!(
                            pid.is_some() && at.is_none(),
                            "kick of {pid:?}: player_not_found"
                        );
                    }
                    return self.refused(c, kind, e, &["player_not_found"]);
                }
                let i = at.unwrap_or_else(|| panic!("kick of {pid:?} accepted: no such player"));
                let text = opt_str(o, "reason").ok().flatten().map(|r| cut(r, 128));
                self.end_request(s, i, "player_disconnected");
                if let Some(phone) = self.sessions[s].players[i].socket.take() {
                    self.end_socket(phone, "kicked", text.as_deref());
                }
                self.remove_player(s, i, "kicked", None);
            }
            "control.send_to_player" | "control.request" | "control.resend_request" => {
                let pid = pid_field(o);
                let at = known(self, &pid);
                let online = at.is_some_and(|i| self.sessions[s].players[i].socket.is_some());
                if let Some(e) = err {
                    match e {
                        "player_not_found" => {
                            assert!(pid.is_some() && at.is_none(), "{kind} {pid:?}: {e}")
                        }
                        "player_offline" => assert!(at.is_some() && !online, "{kind} {pid:?}: {e}"),
                        _ => {}
                    }
                    let allowed: &[&str] = if kind == "control.resend_request" {
                        &["player_not_found"]
                    } else {
                        &["player_not_found", "player_offline"]
                    };
                    return self.refused(c, kind, e, allowed);
                }
                let i = at.unwrap_or_else(|| panic!("{kind} to {pid:?} accepted: no such player"));
                let pid = pid.unwrap();
                match kind {
                    "control.send_to_player" => {
                        assert!(online, "{kind} to offline {pid} accepted");
                        let mut ev = msg("control.event", json!({"event": str_of(o, "event")}));
                        if let Some(p) = get(o, "payload") {
                            ev["payload"] = p.clone();
                        }
                        self.send_phone(s, i, ev);
                    }
                    "control.request" => {
                        assert!(online, "{kind} to offline {pid} accepted");
                        let rid = str_of(o, "request_id").to_string();
                        let taken = self.sessions[s].players.iter().any(|p| {
                            p.pid != pid && p.request.as_ref().is_some_and(|r| r.id == rid)
                        });
                        assert!(
                            !taken,
                            "request {rid} accepted while open for another player"
                        );
                        let timeout = int_of(o, "timeout_ms");
                        let resend = self.sessions[s].players[i]
                            .request
                            .as_ref()
                            .is_some_and(|r| r.id == rid);
                        if !resend {
                            if let Some(old) = self.sessions[s].players[i].request.clone() {
                                self.send_phone(s, i, cancel_to_phone(&old.id, "superseded"));
                            }
                            self.end_request(s, i, "superseded");
                            *self
                                .req_opened
                                .entry((s, pid.clone(), rid.clone()))
                                .or_default() += 1;
                        }
                        let due = match timeout {
                            Some(t) => Some((self.sim.now + t as u64, self.next_seq())),
                            None => None,
                        };
                        self.sessions[s].players[i].request = Some(Req {
                            id: rid.clone(),
                            due,
                        });
                        let mut rq = msg(
                            "control.request",
                            json!({"request_id": rid, "kind": str_of(o, "kind")}),
                        );
                        if let Some(p) = get(o, "payload") {
                            rq["payload"] = p.clone();
                        }
                        if let Some(t) = timeout {
                            rq["timeout_ms"] = json!(t);
                        }
                        self.send_phone(s, i, rq);
                    }
                    _ => {
                        if online {
                            let rr = msg(
                                "control.resend_request",
                                json!({"widget_id": str_of(o, "widget_id"),
                                       "stroke_id": str_of(o, "stroke_id"),
                                       "from_seq": int_of(o, "from_seq")}),
                            );
                            self.send_phone(s, i, rr);
                        } else {
                            let rf = msg(
                                "control.resend_failed",
                                json!({"player_id": pid, "reason": "player_offline"}),
                            );
                            self.expect(c, Exp::Frame(rf));
                        }
                    }
                }
            }
            "control.broadcast" => {
                if let Some(e) = err {
                    return self.refused(c, kind, e, &[]);
                }
                let bid = get(o, "broadcast_id").map(|b| b.as_str().unwrap().to_string());
                if let Some(b) = &bid {
                    assert!(
                        !self.sessions[s].broadcasts.iter().any(|x| &x.id == b),
                        "broadcast_id {b} accepted while pending"
                    );
                }
                let mut ev = msg("control.event", json!({"event": str_of(o, "event")}));
                if let Some(p) = get(o, "payload") {
                    ev["payload"] = p.clone();
                }
                if let Some(b) = &bid {
                    ev["broadcast_id"] = json!(b);
                }
                for i in 0..self.sessions[s].players.len() {
                    self.send_phone(s, i, ev.clone());
                }
                let Some(id) = bid else { return };
                *self.bc_sent.entry((s, id.clone())).or_default() += 1;
                let counted: Vec<(String, Oc)> = self.sessions[s]
                    .players
                    .iter()
                    .map(|p| {
                        let oc = if p.socket.is_some() {
                            Oc::Waiting
                        } else {
                            Oc::Missed
                        };
                        (p.pid.clone(), oc)
                    })
                    .collect();
                let timeout =
                    int_of(o, "ack_timeout_ms").map_or(ACK_TIMEOUT_DEFAULT_MS, |t| t as u64);
                let mut bc = Bc {
                    id,
                    due: (0, 0),
                    counted,
                };
                if bc.counted.iter().all(|x| x.1 != Oc::Waiting) {
                    return self.send_host(s, Self::result_frame(&bc));
                }
                bc.due = (self.sim.now + timeout, self.next_seq());
                self.sessions[s].broadcasts.push(bc);
            }
            "control.request_cancel" => {
                if let Some(e) = err {
                    return self.refused(c, kind, e, &[]);
                }
                let rid = str_of(o, "request_id");
                let at = self.sessions[s]
                    .players
                    .iter()
                    .position(|p| p.request.as_ref().is_some_and(|r| r.id == rid));
                if let Some(i) = at {
                    self.sessions[s].players[i].request = None;
                    self.send_phone(s, i, cancel_to_phone(rid, "cancelled"));
                }
            }
            "screen.show" | "screen.update_data" => {
                let show = kind == "screen.show";
                // What the model says, for the fields as the page reads them (only
                // compared when the relay accepted them or refused them for this).
                let targets: Option<Vec<String>> = match get(o, "player_ids") {
                    Some(Value::Array(a)) => Some(
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect(),
                    ),
                    _ => None,
                };
                let name = get(o, "screen").and_then(Value::as_str);
                let rev = get(o, "revision").and_then(as_int).map(|r| r as u64);
                let sess = &self.sessions[s];
                let is_target = |p: &Pl| targets.as_ref().is_none_or(|t| t.contains(&p.pid));
                let no_screen = show
                    && sess
                        .flow
                        .as_ref()
                        .is_some_and(|f| name.is_some_and(|n| !f.screens.iter().any(|x| x == n)));
                let conflict = rev.is_some_and(|r| {
                    sess.players
                        .iter()
                        .any(|p| is_target(p) && p.screen.rev >= r)
                });
                if let Some(e) = err {
                    match e {
                        "screen_not_found" => {
                            assert!(no_screen, "{kind}: screen_not_found for {name:?}")
                        }
                        "revision_conflict" => assert!(
                            !no_screen && conflict,
                            "{kind}: revision_conflict for {rev:?}"
                        ),
                        _ => {}
                    }
                    return self.refused(c, kind, e, &["screen_not_found", "revision_conflict"]);
                }
                assert!(!no_screen, "{kind} of unknown screen {name:?} accepted");
                assert!(
                    !conflict,
                    "{kind} with revision {rev:?} accepted over a target's"
                );
                let data = get(o, "data").map(|d| d.as_object().unwrap().clone());
                let unix = self.unix();
                let name = name.map(str::to_string);
                for i in 0..self.sessions[s].players.len() {
                    if !is_target(&self.sessions[s].players[i]) {
                        continue;
                    }
                    let scr = &mut self.sessions[s].players[i].screen;
                    scr.rev = rev.unwrap_or(scr.rev + 1);
                    let frame = if show {
                        scr.name = name.clone();
                        scr.data = data.clone().unwrap_or_default();
                        scr.shown_rev = scr.rev;
                        scr.shown_at = Some(unix);
                        msg(
                            "screen.show",
                            json!({"screen": name, "data": scr.data, "revision": scr.rev,
                                   "shown_at": unix}),
                        )
                    } else {
                        let patch = data.clone().expect("update_data's data");
                        for (k, v) in &patch {
                            scr.data.insert(k.clone(), v.clone());
                        }
                        msg(
                            "screen.update_data",
                            json!({"data": patch, "revision": scr.rev}),
                        )
                    };
                    self.send_phone(s, i, frame);
                }
            }
            _ => unreachable!("{kind}"),
        }
    }

    fn phone_message(
        &mut self,
        c: ClientId,
        s: usize,
        i: usize,
        kind: &str,
        o: &Map<String, Value>,
        err: Option<&'static str>,
    ) {
        let pid = self.sessions[s].players[i].pid.clone();
        match kind {
            "input.widget_event" => {
                let rev = get(o, "revision").and_then(as_int);
                let stale =
                    rev.is_some_and(|r| (r as u64) < self.sessions[s].players[i].screen.shown_rev);
                if let Some(e) = err {
                    if e == "stale_input" {
                        assert!(stale, "stale_input for revision {rev:?}");
                    }
                    return self.refused(c, kind, e, &["stale_input"]);
                }
                assert!(!stale, "stale input (revision {rev:?}) accepted");
                let mut ev = msg(
                    "input.widget_event",
                    json!({"widget_id": str_of(o, "widget_id"), "event_type": str_of(o, "event_type"),
                           "payload": get(o, "payload").expect("payload"), "player_id": pid}),
                );
                if let Some(r) = int_of(o, "revision") {
                    ev["revision"] = json!(r);
                }
                self.send_host(s, ev);
            }
            "input.response" => {
                let rid = get(o, "request_id").and_then(Value::as_str);
                let open = self.sessions[s].players[i]
                    .request
                    .as_ref()
                    .map(|r| r.id.as_str());
                if let Some(e) = err {
                    if e == "request_cancelled" {
                        assert!(
                            rid.is_some() && rid != open,
                            "request_cancelled for {rid:?}, open {open:?}"
                        );
                    }
                    return self.refused(c, kind, e, &["request_cancelled"]);
                }
                assert!(
                    rid.is_some() && rid == open,
                    "a response to {rid:?} accepted, open {open:?}"
                );
                self.sessions[s].players[i].request = None;
                let rs = msg(
                    "input.response",
                    json!({"request_id": rid, "player_id": pid, "payload": get(o, "payload").expect("payload")}),
                );
                self.send_host(s, rs);
            }
            _ if err.is_some() => {
                // Every other phone message is refused only for its fields.
                self.refused(c, kind, err.unwrap(), &[]);
            }
            "session.leave" => {
                let text = opt_str(o, "reason").ok().flatten().map(|r| cut(r, 128));
                self.sessions[s].players[i].socket = None;
                self.close_socket(c, "user_left");
                self.remove_player(s, i, "user_left", text);
            }
            "player.update" => {
                let name = opt_str(o, "name").unwrap().map(|n| cut(n, 32));
                let color = opt_str(o, "color").unwrap();
                let p = &mut self.sessions[s].players[i];
                let mut up = msg("player.update", json!({"player_id": pid}));
                if let Some(n) = name {
                    p.name = n.clone();
                    up["name"] = json!(n);
                }
                if color.is_some() {
                    p.color = color_of(color, p.n);
                    up["color"] = json!(p.color);
                }
                self.send_host(s, up);
            }
            "control.request_cancel" => {
                let rid = str_of(o, "request_id");
                let p = &mut self.sessions[s].players[i];
                if p.request.as_ref().is_some_and(|r| r.id == rid) {
                    p.request = None;
                    self.send_host(s, cancel_to_host(rid, &pid, "cancelled"));
                }
            }
            "screen.acknowledge" => {
                let ack = msg(
                    "screen.acknowledge",
                    json!({"screen": str_of(o, "screen"), "revision": int_of(o, "revision"),
                           "player_id": pid}),
                );
                self.send_host(s, ack);
            }
            "screen.query" => {
                let mut st = Self::screen_fields(&self.sessions[s].players[i].screen);
                st.insert("type".into(), json!("screen.state"));
                self.expect(c, Exp::Frame(Value::Object(st)));
            }
            "control.ack" => {
                let bid = str_of(o, "broadcast_id");
                let sess = &mut self.sessions[s];
                let Some(at) = sess.broadcasts.iter().position(|b| b.id == bid) else {
                    return;
                };
                let bc = &mut sess.broadcasts[at];
                if let Some(x) = bc
                    .counted
                    .iter_mut()
                    .find(|x| x.0 == pid && x.1 == Oc::Waiting)
                {
                    x.1 = Oc::Delivered;
                }
                if bc.counted.iter().all(|x| x.1 != Oc::Waiting) {
                    let bc = sess.broadcasts.remove(at);
                    self.send_host(s, Self::result_frame(&bc));
                }
            }
            "control.resend_accepted" => {
                let fw = msg(
                    kind,
                    json!({"replayed_count": int_of(o, "replayed_count"), "player_id": pid}),
                );
                self.send_host(s, fw);
            }
            "control.resend_failed" => {
                let fw = msg(
                    kind,
                    json!({"reason": str_of(o, "reason"), "player_id": pid}),
                );
                self.send_host(s, fw);
            }
            _ => unreachable!("{kind}"),
        }
    }

    // ---- Time ----

    /// Every timer due in (from, now], in the order the server fires them (due time, then
    /// the order they were set).
    fn advance(&mut self) {
        let now = self.sim.now;
        loop {
            #[derive(Debug)]
            enum Ev {
                Ttl(usize),
                Grace(usize, usize),
                Request(usize, usize),
                Broadcast(usize, usize),
            }
            let mut next: Option<((u64, u64), Ev)> = None;
            let mut consider = |due: (u64, u64), ev: Ev| {
                if due.0 <= now && next.as_ref().is_none_or(|(d, _)| due < *d) {
                    next = Some((due, ev));
                }
            };
            for (s, sess) in self.sessions.iter().enumerate() {
                if sess.ended {
                    continue;
                }
                consider(sess.ttl, Ev::Ttl(s));
                for (i, p) in sess.players.iter().enumerate() {
                    if let Some(d) = p.dropped {
                        consider(d, Ev::Grace(s, i));
                    }
                    if let Some(d) = p.request.as_ref().and_then(|r| r.due) {
                        consider(d, Ev::Request(s, i));
                    }
                }
                for (b, bc) in sess.broadcasts.iter().enumerate() {
                    consider(bc.due, Ev::Broadcast(s, b));
                }
            }
            let Some((_, ev)) = next else { break };
            match ev {
                Ev::Ttl(s) => {
                    let phones: Vec<ClientId> = self.sessions[s]
                        .players
                        .iter()
                        .filter_map(|p| p.socket)
                        .collect();
                    for phone in phones {
                        self.end_socket(phone, "timeout", None);
                    }
                    if let Some(h) = self.sessions[s].host {
                        self.end_socket(h, "timeout", None);
                    }
                    self.end_session(s);
                }
                Ev::Grace(s, i) => self.remove_player(s, i, "timeout", None),
                Ev::Request(s, i) => {
                    let rid = self.sessions[s].players[i]
                        .request
                        .as_ref()
                        .unwrap()
                        .id
                        .clone();
                    self.send_phone(s, i, cancel_to_phone(&rid, "timeout"));
                    self.end_request(s, i, "timeout");
                }
                Ev::Broadcast(s, b) => {
                    let bc = self.sessions[s].broadcasts.remove(b);
                    self.send_host(s, Self::result_frame(&bc));
                }
            }
        }
    }

    // ---- Property 4 ----

    fn check_state(&self, desc: &str) {
        let ctx = || format!("after: {desc}");
        let mut connected = 0;
        for (c, cl) in &self.clients {
            if !self.sim.is_connected(*c) {
                if let Role::Host(s) | Role::Phone(s, _) = &cl.role {
                    panic!(
                        "{}: client {c} is gone but holds a role in session {s}",
                        ctx()
                    );
                }
                continue;
            }
            connected += 1;
            let (shard, key) = (self.sim.shard_of(*c), self.sim.key_of(*c));
            let session = self.sim.cores[shard]
                .session(key)
                .unwrap_or_else(|| panic!("{}: client {c} is connected without a session", ctx()));
            let sock = match (&session.dialect, cl.dial) {
                (DialectSession::Pairkit(p), Dial::Pairkit) => p,
                (DialectSession::Shared(_), Dial::Unsettled) => continue,
                (DialectSession::Rooms(_) | DialectSession::Shared(_), Dial::Other) => continue,
                (_, d) => panic!("{}: client {c} ({d:?}) speaks another dialect", ctx()),
            };
            assert!(
                sock.pending.is_none(),
                "{}: client {c} has a pending join or reattach",
                ctx()
            );
            let ok = match (&cl.role, sock.role) {
                (Role::None, PkRole::None) => true,
                (Role::Host(s), PkRole::Host(code)) => code.as_str() == self.sessions[*s].code,
                (Role::Phone(s, pid), PkRole::Phone(code, n)) => {
                    code.as_str() == self.sessions[*s].code && *pid == format!("p{n}")
                }
                _ => false,
            };
            assert!(
                ok,
                "{}: client {c}: role {:?}, the model says {:?}",
                ctx(),
                sock.role,
                cl.role
            );
        }
        let sessions: usize = self.sim.cores.iter().map(|core| core.session_count()).sum();
        assert_eq!(
            sessions,
            connected,
            "{}: engine sessions vs connected clients",
            ctx()
        );
        let live: Vec<&Sess> = self.sessions.iter().filter(|s| !s.ended).collect();
        let mut codes = HashSet::new();
        let mut parties = 0;
        for shard in 0..SHARDS {
            let pk = &self.sim.cores[shard].dialect.pairkit;
            for (code, party) in &pk.parties {
                parties += 1;
                codes.insert(code.as_str().to_string());
                assert_eq!(
                    code.home(SHARDS).0 as usize,
                    shard,
                    "{}: party {} off its home",
                    ctx(),
                    code.as_str()
                );
                let m = live
                    .iter()
                    .find(|x| x.code == code.as_str())
                    .unwrap_or_else(|| {
                        panic!("{}: party {} is not in the model", ctx(), code.as_str())
                    });
                assert!(
                    party.host_id == Secret::of(&m.host_id),
                    "{}: party {}'s host_id",
                    ctx(),
                    m.code
                );
                let key_of = |c: &ClientId| {
                    assert_eq!(
                        self.sim.shard_of(*c),
                        shard,
                        "{}: a socket of {} on another shard",
                        ctx(),
                        m.code
                    );
                    self.sim.key_of(*c)
                };
                assert_eq!(
                    party.host,
                    m.host.as_ref().map(key_of),
                    "{}: party {}'s host",
                    ctx(),
                    m.code
                );
                let ids: Vec<&str> = party.players.iter().map(|p| &*p.id).collect();
                let want: Vec<&str> = m.players.iter().map(|p| p.pid.as_str()).collect();
                assert_eq!(ids, want, "{}: party {}'s players", ctx(), m.code);
                for (p, w) in party.players.iter().zip(&m.players) {
                    let what = format!("{}: {} of {}", ctx(), w.pid, m.code);
                    assert_eq!(p.socket, w.socket.as_ref().map(key_of), "{what}: socket");
                    assert_eq!(
                        (&*p.name, &*p.color),
                        (w.name.as_str(), w.color.as_str()),
                        "{what}"
                    );
                    assert!(
                        w.token.is_empty() || p.token == Secret::of(&w.token),
                        "{what}: token"
                    );
                    assert_eq!(
                        (p.screen.revision, p.screen.shown_rev, p.screen.shown_at),
                        (w.screen.rev, w.screen.shown_rev, w.screen.shown_at),
                        "{what}: (revision, shown revision, shown at)"
                    );
                    assert_eq!(
                        p.screen.name.as_deref(),
                        w.screen.name.as_deref(),
                        "{what}: screen"
                    );
                    assert_eq!(
                        p.request.as_ref().map(|r| &*r.id),
                        w.request.as_ref().map(|r| r.id.as_str()),
                        "{what}: open request"
                    );
                }
                let ids: Vec<&str> = party.broadcasts.iter().map(|b| &*b.id).collect();
                let want: Vec<&str> = m.broadcasts.iter().map(|b| b.id.as_str()).collect();
                assert_eq!(
                    ids,
                    want,
                    "{}: party {}'s tracked broadcasts",
                    ctx(),
                    m.code
                );
            }
        }
        assert_eq!(
            parties,
            live.len(),
            "{}: parties vs live sessions in the model",
            ctx()
        );
        for shard in 0..SHARDS {
            let dir: HashSet<String> = self.sim.cores[shard]
                .dialect
                .pairkit
                .live
                .iter()
                .map(|c: &Code| c.as_str().to_string())
                .collect();
            assert_eq!(
                dir,
                codes,
                "{}: shard {shard}'s directory of live codes",
                ctx()
            );
        }
    }
}

// ---- Building messages from input bytes ------------------------------------------------

fn put(o: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        o.insert(k.into(), v);
    }
}

/// Absent, null, garbage, or (13 times in 16) the good value.
fn opt(inp: &mut Input<'_>, good: impl FnOnce(&mut Input<'_>) -> Value) -> Option<Value> {
    match inp.byte() % 16 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(inp.value(1)),
        _ => Some(good(inp)),
    }
}

fn pick_str(inp: &mut Input<'_>, table: &[&str]) -> Value {
    json!(inp.pick(table))
}

/// A request id: `r1`–`r3` (or `open`, the sender's open request, when it has one), or
/// one out of range or of the wrong type.
fn rid(inp: &mut Input<'_>, open: Option<&str>) -> Option<Value> {
    let b = inp.byte();
    Some(match b % 16 {
        0 => return None,
        1 => Value::Null,
        2 => json!(""),
        3 => json!("r".repeat(64)),
        4 => json!("é".repeat(65)),
        5 => json!(7),
        6..=9 if open.is_some() => json!(open.unwrap()),
        _ => json!(["r1", "r2", "r3"][usize::from(b >> 4) % 3]),
    })
}

/// A broadcast id: `b1`–`b3` (or `pending`, one waiting for acks, when there is one), or
/// one out of range or of the wrong type.
fn bid(inp: &mut Input<'_>, pending: Option<&str>) -> Option<Value> {
    let b = inp.byte();
    Some(match b % 16 {
        0 => return None,
        1 => Value::Null,
        2 => json!(""),
        3 => json!("b".repeat(65)),
        4 => json!(3),
        5..=8 if pending.is_some() => json!(pending.unwrap()),
        _ => json!(["b1", "b2", "b3"][usize::from(b >> 4) % 3]),
    })
}

/// Absent, null, a float, a string, or (11 times in 16) a value of `table`.
fn ms_field(inp: &mut Input<'_>, table: &[i64]) -> Option<Value> {
    let b = inp.byte();
    Some(match b % 16 {
        0 | 1 => return None,
        2 => Value::Null,
        3 => json!(1.5),
        4 => json!("100"),
        _ => json!(table[usize::from(b >> 4) % table.len()]),
    })
}

fn payload(inp: &mut Input<'_>) -> Option<Value> {
    match inp.byte() % 6 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!({"score": 3, "tags": ["a"], "nested": {"k": null}})),
        _ => Some(inp.value(2)),
    }
}

fn data(inp: &mut Input<'_>) -> Option<Value> {
    match inp.byte() % 8 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(inp.value(1)),
        3 => Some(json!({})),
        4 => Some(json!({"round": 2, "gone": null})),
        _ => {
            let mut m = Map::new();
            for _ in 0..inp.byte() % 4 {
                let k = inp.pick(&["round", "score", "title", "k", "gone"]);
                m.insert(k.to_string(), inp.value(1));
            }
            Some(Value::Object(m))
        }
    }
}

fn reason(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 7 {
        0 | 1 => return None,
        2 => Value::Null,
        3 => json!("bye"),
        4 => json!("x".repeat(200)),
        5 => json!(5),
        _ => json!("é".repeat(130)),
    })
}

fn name(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 10 {
        0 | 1 => return None,
        2 => Value::Null,
        3 => json!(""),
        4 => json!("x".repeat(32)),
        5 => json!("é".repeat(33)),
        6 => json!(5),
        7 => Value::String(inp.short_text()),
        _ => json!("Ann"),
    })
}

fn color(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 9 {
        0 | 1 => return None,
        2 => Value::Null,
        3 => json!("#12345"),
        4 => json!("red"),
        5 => json!("#zzzzzz"),
        6 => json!(7),
        7 => json!("#00FF7f"),
        _ => json!("#A0b1C2"),
    })
}

fn version(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 12 {
        0..=5 => return None,
        6 => Value::Null,
        7 => json!(1),
        8 => json!(1.0),
        9 => json!(2),
        10 => json!("1"),
        _ => json!(0),
    })
}

const SCREENS: [&str; 6] = ["lobby", "vote", "draw", "nope", "", "Lobby"];
const WIDGETS: [&str; 6] = ["go", "stick", "pick", "canvas", "nope", ""];
const EVENTS: [&str; 7] = [
    "press",
    "release",
    "move",
    "select",
    "stroke_progress",
    "stroke_end",
    "tap",
];

fn widget_payload(inp: &mut Input<'_>) -> Option<Value> {
    let b = inp.byte();
    Some(match b % 10 {
        0 => return None,
        1 => Value::Null,
        2 => json!({}),
        3 => json!({"x": 0.5, "y": -1}),
        4 => json!({"x": 1.5, "y": 0}),
        5 => json!({"choice_id": if b & 0x80 != 0 { "a" } else { "z" }}),
        6 => json!({"stroke_id": "s1", "seq": 0, "points": [[0, 0.5], [1, 1]]}),
        7 => json!({"stroke_id": "s1", "seq": 1, "points": []}),
        8 => json!({"stroke_id": "s1", "seq": -1}),
        _ => inp.value(2),
    })
}

/// The flow field of a `session.create`.
fn flow_field(inp: &mut Input<'_>) -> Option<Value> {
    let mut f = flow_json();
    Some(match inp.byte() % 12 {
        0..=4 => return None,
        5 => Value::Null,
        6 | 7 => f,
        8 => {
            f["initial_screen"] = json!("nowhere");
            f
        }
        9 => {
            f["screens"]["lobby"]["widgets"][1]["id"] = json!("go");
            f
        }
        10 => {
            json!({"version": 1, "id": "f", "initial_screen": "a", "screens": {"a": {"widgets": []}}})
        }
        _ => inp.value(2),
    })
}

const KINDS: [Kind; 32] = {
    use Kind::*;
    [
        Raw,
        Binary,
        Advance,
        AdvanceLong,
        Drop,
        Reconnect,
        Create,
        Join,
        Leave,
        Update,
        Kick,
        SendTo,
        Broadcast,
        Request,
        Cancel,
        Resend,
        Show,
        UpdateData,
        Widget,
        Response,
        Ack,
        Query,
        BcAck,
        ResendAnswer,
        Ping,
        AnyType,
        NotObject,
        Widget,
        Request,
        BcAck,
        Response,
        Repeated,
    ]
};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Raw,
    Binary,
    Advance,
    AdvanceLong,
    Drop,
    Reconnect,
    Create,
    Join,
    Leave,
    Update,
    Kick,
    SendTo,
    Broadcast,
    Request,
    Cancel,
    Resend,
    Show,
    UpdateData,
    Widget,
    Response,
    Ack,
    Query,
    BcAck,
    ResendAnswer,
    Ping,
    AnyType,
    NotObject,
    /// A structured message whose objects may repeat a key (see [`repeated_keys`]).
    Repeated,
}

/// The kinds a [`Kind::Repeated`] message is built as.
const REPEATED: [Kind; 12] = [
    Kind::Create,
    Kind::Create,
    Kind::Join,
    Kind::Broadcast,
    Kind::Request,
    Kind::Show,
    Kind::UpdateData,
    Kind::Widget,
    Kind::Response,
    Kind::Kick,
    Kind::Update,
    Kind::Leave,
];

/// JSON text of `v` in which an object may repeat one of its keys (one input byte per
/// object decides which, and whether the other value comes before or after), down to the
/// flow's screens and widgets: the relay reads a key's first occurrence, and what it
/// keeps and forwards must agree with what it read.
fn repeated_keys(v: &Value, inp: &mut Input<'_>, out: &mut String) {
    match v {
        Value::Object(m) => {
            let b = if m.is_empty() { 0 } else { inp.byte() };
            let which = (b % 4 != 0).then(|| usize::from(b >> 2) % m.len());
            out.push('{');
            let mut first = true;
            for (i, (k, x)) in m.iter().enumerate() {
                let alt = (Some(i) == which).then(|| match inp.byte() % 7 {
                    0 => inp.value(1),
                    1 => json!("nope"),
                    2 => Value::Null,
                    3 => json!(2),
                    4 => json!({}),
                    5 => json!([]),
                    _ => json!("lobby"),
                });
                let mut member = |val: &Value, inp: &mut Input<'_>, out: &mut String| {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&json!(k).to_string());
                    out.push(':');
                    repeated_keys(val, inp, out);
                };
                match &alt {
                    Some(a) if b % 4 == 1 => {
                        member(a, inp, out);
                        member(x, inp, out);
                    }
                    Some(a) => {
                        member(x, inp, out);
                        member(a, inp, out);
                    }
                    None => member(x, inp, out),
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                repeated_keys(x, inp, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

impl H {
    /// A player id: mostly one of the slot's session's players (online or in their grace
    /// window), else `p<n>` (perhaps gone) or garbage.
    fn pid(&self, slot: usize, inp: &mut Input<'_>) -> Option<Value> {
        let b = inp.byte();
        let players = self
            .slot_session(slot)
            .map_or(&[][..], |s| &self.sessions[s].players[..]);
        Some(match b % 16 {
            0 => return None,
            1 => Value::Null,
            2 => json!(1),
            3 => json!(""),
            4 => json!("P1"),
            5 => inp.value(1),
            6..=8 => json!(format!("p{}", 1 + (b >> 4) % 8)),
            _ if players.is_empty() => json!("p1"),
            _ => json!(players[usize::from(b >> 4) % players.len()].pid),
        })
    }

    /// The open request of the slot's player, if it has one.
    fn open_request(&self, slot: usize) -> Option<&str> {
        let c = self.slots[slot]?;
        let Role::Phone(s, pid) = &self.clients[&c].role else {
            return None;
        };
        let sess = &self.sessions[*s];
        sess.players[sess.at(pid)?]
            .request
            .as_ref()
            .map(|r| r.id.as_str())
    }

    /// A tracked broadcast waiting for acks in the slot's session, if any.
    fn pending_broadcast(&self, slot: usize) -> Option<&str> {
        let s = self.slot_session(slot)?;
        self.sessions[s].broadcasts.first().map(|b| b.id.as_str())
    }

    /// A revision: absent, a real player's current one plus 0, 1 or 2, or others.
    fn revision(&self, slot: usize, inp: &mut Input<'_>) -> Option<Value> {
        let b = inp.byte();
        let current = self.slot_session(slot).map_or(0, |s| {
            let ps = &self.sessions[s].players;
            if ps.is_empty() {
                0
            } else {
                ps[usize::from(b >> 4) % ps.len()].screen.rev
            }
        });
        Some(match b % 14 {
            0..=3 => return None,
            4 => Value::Null,
            5 => json!(current + 1),
            6 => json!(current + 2),
            7 => json!(current),
            8 => json!(0),
            9 => json!(-1),
            10 => json!(2.5),
            11 => json!("3"),
            12 => json!(i64::MAX),
            _ => json!(u64::MAX),
        })
    }

    fn slot_session(&self, slot: usize) -> Option<usize> {
        match &self.idents[slot] {
            Some(Ident::Host(s)) | Some(Ident::Phone(s, _)) => Some(*s),
            None => (!self.sessions.is_empty()).then_some(0),
        }
    }

    /// A code: a session's (live or ended; as issued or lower case), one of the right
    /// form that is no session's, or a malformed one.
    fn code(&self, inp: &mut Input<'_>) -> Option<Value> {
        let b = inp.byte();
        let real = |i: usize| {
            self.sessions
                .get(i % self.sessions.len().max(1))
                .map(|s| s.code.clone())
        };
        Some(match b % 12 {
            0 => return None,
            1 => Value::Null,
            2 => json!("AB0D"),
            3 => json!("abc"),
            4 => json!(1234),
            5 => json!("ZZZZ"),
            6 => json!(real(usize::from(b >> 4)).unwrap_or_default().to_lowercase()),
            _ => json!(real(usize::from(b >> 4)).unwrap_or_else(|| "ABCD".into())),
        })
    }

    fn message(&self, slot: usize, kind: Kind, inp: &mut Input<'_>) -> Value {
        let mut o = Map::new();
        let t = match kind {
            Kind::Create => "session.create",
            Kind::Join => "session.join",
            Kind::Leave => "session.leave",
            Kind::Update => "player.update",
            Kind::Kick => "player.kick",
            Kind::SendTo => "control.send_to_player",
            Kind::Broadcast => "control.broadcast",
            Kind::Request => "control.request",
            Kind::Cancel => "control.request_cancel",
            Kind::Resend => "control.resend_request",
            Kind::Show => "screen.show",
            Kind::UpdateData => "screen.update_data",
            Kind::Widget => "input.widget_event",
            Kind::Response => "input.response",
            Kind::Ack => "screen.acknowledge",
            Kind::Query => "screen.query",
            Kind::BcAck => "control.ack",
            Kind::ResendAnswer => {
                if inp.byte() & 1 == 0 {
                    "control.resend_accepted"
                } else {
                    "control.resend_failed"
                }
            }
            Kind::Ping => "system.ping",
            _ => inp.pick(&CLIENT_TYPES),
        };
        o.insert("type".into(), json!(t));
        match kind {
            Kind::Create => {
                put(&mut o, "flow", flow_field(inp));
                put(&mut o, "protocol_version", version(inp));
                let b = inp.byte();
                let api = match b % 6 {
                    0 => None,
                    1 => Some(json!("nope")),
                    2 => Some(json!(5)),
                    _ => Some(json!(API_KEY)),
                };
                put(&mut o, "api_key", api);
                if b & 0x80 != 0 && !self.sessions.is_empty() {
                    let s = &self.sessions[usize::from(b >> 3) % self.sessions.len()];
                    let code = match b >> 5 & 3 {
                        0 => json!(s.code.to_lowercase()),
                        1 => json!("ZZZZ"),
                        _ => json!(s.code),
                    };
                    put(&mut o, "resume_code", Some(code));
                    let host_id = match inp.byte() % 6 {
                        0 => None,
                        1 => Some(json!("00000000000000000000000000000000")),
                        2 => Some(json!(7)),
                        _ => Some(json!(s.host_id)),
                    };
                    put(&mut o, "resume_host_id", host_id);
                }
            }
            Kind::Join => {
                put(&mut o, "code", self.code(inp));
                put(&mut o, "name", name(inp));
                put(&mut o, "color", color(inp));
                put(&mut o, "protocol_version", version(inp));
                let b = inp.byte();
                if b & 1 != 0 {
                    let s = self.slot_session(slot);
                    let pid = self.pid(slot, inp);
                    let token = pid.as_ref().and_then(|p| p.as_str()).and_then(|p| {
                        let sess = &self.sessions[s?];
                        sess.players
                            .iter()
                            .find(|x| x.pid == p)
                            .map(|x| x.token.clone())
                    });
                    put(&mut o, "resume_player_id", pid);
                    let token = match b >> 1 & 3 {
                        0 => None,
                        1 => Some(json!("ffffffffffffffffffffffffffffffff")),
                        _ => token.map(Value::String),
                    };
                    put(&mut o, "resume_token", token);
                }
            }
            Kind::Leave => put(&mut o, "reason", reason(inp)),
            Kind::Update => {
                put(&mut o, "name", name(inp));
                put(&mut o, "color", color(inp));
            }
            Kind::Kick => {
                put(&mut o, "player_id", self.pid(slot, inp));
                put(&mut o, "reason", reason(inp));
            }
            Kind::SendTo => {
                put(&mut o, "player_id", self.pid(slot, inp));
                put(
                    &mut o,
                    "event",
                    opt(inp, |i| pick_str(i, &["buzz", "tick", ""])),
                );
                put(&mut o, "payload", payload(inp));
            }
            Kind::Broadcast => {
                put(
                    &mut o,
                    "event",
                    opt(inp, |i| pick_str(i, &["round", "tick"])),
                );
                put(&mut o, "payload", payload(inp));
                put(&mut o, "broadcast_id", bid(inp, None));
                put(
                    &mut o,
                    "ack_timeout_ms",
                    ms_field(inp, &[1, 100, 2_000, 60_000, 60_001, 0, -5, 30_000]),
                );
            }
            Kind::Request => {
                put(&mut o, "request_id", rid(inp, None));
                put(&mut o, "player_id", self.pid(slot, inp));
                put(
                    &mut o,
                    "kind",
                    opt(inp, |i| pick_str(i, &["text", "vote", ""])),
                );
                put(&mut o, "payload", payload(inp));
                put(
                    &mut o,
                    "timeout_ms",
                    ms_field(inp, &[1, 500, 5_000, 600_000, 600_001, 0, 20_000, 100]),
                );
            }
            Kind::Cancel => put(&mut o, "request_id", rid(inp, self.open_request(slot))),
            Kind::Resend => {
                put(&mut o, "player_id", self.pid(slot, inp));
                put(&mut o, "widget_id", opt(inp, |i| pick_str(i, &WIDGETS)));
                put(
                    &mut o,
                    "stroke_id",
                    opt(inp, |i| pick_str(i, &["s1", "s2"])),
                );
                put(&mut o, "from_seq", ms_field(inp, &[0, 3, -1, 1 << 40]));
            }
            Kind::Show | Kind::UpdateData => {
                let b = inp.byte();
                let ids = match b % 8 {
                    0..=2 => None,
                    3 => Some(Value::Null),
                    4 => Some(json!([])),
                    5 => Some(json!(["p1", 5])),
                    6 => Some(json!("p1")),
                    _ => {
                        let mut v = Vec::new();
                        for k in 0..4 {
                            if b >> (4 + k) & 1 != 0 {
                                v.push(json!(format!("p{}", k + 1)));
                            }
                        }
                        Some(json!(v))
                    }
                };
                put(&mut o, "player_ids", ids);
                if matches!(kind, Kind::Show) {
                    put(&mut o, "screen", opt(inp, |i| pick_str(i, &SCREENS)));
                }
                put(&mut o, "data", data(inp));
                put(&mut o, "revision", self.revision(slot, inp));
            }
            Kind::Widget => {
                put(&mut o, "widget_id", opt(inp, |i| pick_str(i, &WIDGETS)));
                put(&mut o, "event_type", opt(inp, |i| pick_str(i, &EVENTS)));
                put(&mut o, "payload", widget_payload(inp));
                put(&mut o, "revision", self.revision(slot, inp));
                if inp.byte() % 4 == 0 {
                    put(&mut o, "player_id", Some(json!("p9")));
                }
            }
            Kind::Response => {
                put(&mut o, "request_id", rid(inp, self.open_request(slot)));
                put(&mut o, "payload", payload(inp));
            }
            Kind::Ack => {
                put(&mut o, "screen", opt(inp, |i| pick_str(i, &SCREENS)));
                put(&mut o, "revision", self.revision(slot, inp));
            }
            Kind::Query => {}
            Kind::BcAck => put(
                &mut o,
                "broadcast_id",
                bid(inp, self.pending_broadcast(slot)),
            ),
            Kind::ResendAnswer => {
                put(&mut o, "replayed_count", ms_field(inp, &[0, 4, -1]));
                put(&mut o, "reason", opt(inp, |i| pick_str(i, &["gone", ""])));
            }
            Kind::Ping => put(
                &mut o,
                "sent_at",
                opt(inp, |i| json!(i.pick(&[0.0, 1.5, 1.7e12, -3.0]))),
            ),
            _ => {
                for _ in 0..inp.byte() % 4 {
                    let k = inp.pick(&[
                        "player_id",
                        "request_id",
                        "broadcast_id",
                        "code",
                        "event",
                        "payload",
                        "data",
                        "revision",
                        "screen",
                        "reason",
                        "name",
                        "type",
                    ]);
                    o.insert(k.into(), inp.value(1));
                }
            }
        }
        Value::Object(o)
    }

    /// What a reconnecting slot sends first, if anything: a resume as it was, with a
    /// wrong secret, or a fresh create/join.
    fn auto_message(&self, slot: usize, how: u8) -> Option<Value> {
        let host_id_wrong = "0".repeat(32);
        match (how, &self.idents[slot]) {
            (0, _) => None,
            (1, Some(Ident::Host(s))) => Some(json!({"type": "session.create",
                "resume_code": self.sessions[*s].code, "resume_host_id": self.sessions[*s].host_id,
                "api_key": API_KEY})),
            (2, Some(Ident::Host(s))) => Some(json!({"type": "session.create",
                "resume_code": self.sessions[*s].code, "resume_host_id": host_id_wrong,
                "api_key": API_KEY})),
            (1 | 2, Some(Ident::Phone(s, pid))) => {
                let p = self.sessions[*s].players.iter().find(|p| &p.pid == pid);
                let token = match (how, p) {
                    (1, Some(p)) => p.token.clone(),
                    _ => "f".repeat(32),
                };
                Some(
                    json!({"type": "session.join", "code": self.sessions[*s].code,
                    "resume_player_id": pid, "resume_token": token}),
                )
            }
            (_, Some(Ident::Host(_))) | (_, None) if slot == 0 || slot == 5 => {
                Some(json!({"type": "session.create", "api_key": API_KEY}))
            }
            _ => {
                let s = self.slot_session(slot)?;
                Some(json!({"type": "session.join", "code": self.sessions[s].code}))
            }
        }
    }

    fn remember(&mut self) {
        for slot in 0..SLOTS {
            if let Some(c) = self.slots[slot] {
                match &self.clients[&c].role {
                    Role::Host(s) => self.idents[slot] = Some(Ident::Host(*s)),
                    Role::Phone(s, pid) => self.idents[slot] = Some(Ident::Phone(*s, pid.clone())),
                    Role::None => {}
                }
            }
        }
    }

    fn send_json(&mut self, slot: usize, v: &Value) {
        self.step(Act::Text(slot, v.to_string()));
    }
}

impl H {
    /// A step, then each slot remembers what it is (to resume as).
    fn run(&mut self, act: Act) {
        self.step(act);
        self.remember();
    }
}

/// The `pairkit_messages` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_pairkit_messages(data: &[u8]) {
    let mut inp = Input::new(data);
    let (setup, setup2) = (inp.byte(), inp.byte());
    let mut cfg = Config {
        seed: 17,
        ..Config::default()
    };
    // No idle closes or pings: the engine's, not the dialect's (other targets have them).
    cfg.limits.ping_ms = 1 << 40;
    cfg.limits.idle_ms = 1 << 41;
    let tight = setup2 & 3 == 3;
    let pk = &mut cfg.pairkit;
    if tight {
        pk.msgs_per_s = 2;
        pk.msgs_burst = 6;
    } else {
        pk.msgs_per_s = 100_000;
        pk.msgs_burst = 1_000_000;
    }
    pk.players_max = if setup2 & 4 != 0 { 3 } else { 100 };
    pk.join_failures_per_min = if setup2 & 8 != 0 { 2 } else { 10 };
    pk.session_ttl_ms = if setup2 & 0x40 != 0 {
        SHORT_TTL_MS
    } else {
        LONG_TTL_MS
    };
    pk.grace_ms = GRACE_MS;
    pk.strict_payloads = setup & 0x80 != 0;
    if setup2 & 0x80 != 0 {
        pk.auth = PairkitAuth::Strict;
        pk.api_keys = vec![API_KEY.into()];
    }
    let k = Knobs {
        tight,
        players_max: pk.players_max as usize,
        fail_limit: pk.join_failures_per_min as usize,
        ttl: pk.session_ttl_ms,
        strict_payloads: pk.strict_payloads,
        strict_auth: pk.auth == PairkitAuth::Strict,
    };
    let mut h = H {
        sim: Sim::new(SHARDS, cfg),
        k,
        slots: [None; SLOTS],
        idents: Default::default(),
        clients: BTreeMap::new(),
        sessions: Vec::new(),
        failures: HashMap::new(),
        seq: 0,
        secrets: HashSet::new(),
        exp: BTreeMap::new(),
        seen_rev: HashMap::new(),
        bc_sent: HashMap::new(),
        bc_results: HashMap::new(),
        req_opened: HashMap::new(),
        req_outcomes: HashMap::new(),
    };
    // Host A, host B, then the phones.
    let connect = |h: &mut H, slot: usize, shard: u8| {
        h.run(Act::Connect {
            slot,
            shard: usize::from(shard & 1),
            ip: IPS[slot],
            root: false,
        });
    };
    connect(&mut h, 0, setup);
    let mut create = json!({"type": "session.create", "api_key": API_KEY});
    if setup & 0x40 != 0 {
        create["flow"] = flow_json();
    }
    h.send_json(0, &create);
    h.remember();
    if setup2 & 0x10 != 0 {
        connect(&mut h, 5, setup >> 1);
        h.send_json(5, &json!({"type": "session.create", "api_key": API_KEY}));
        h.remember();
    }
    for slot in 1..=4 {
        connect(&mut h, slot, setup >> (1 + slot));
        {
            let b_session = h.idents[5].as_ref().and_then(|i| match i {
                Ident::Host(s) => Some(*s),
                _ => None,
            });
            let s = match b_session {
                Some(b) if slot == 4 && setup2 & 0x20 != 0 => b,
                _ => 0,
            };
            if let Some(sess) = h.sessions.get(s) {
                let join = json!({"type": "session.join", "code": sess.code,
                                  "name": format!("Phone {slot}")});
                h.send_json(slot, &join);
                h.remember();
            }
        }
    }
    while !inp.is_empty() {
        let op = inp.byte();
        let slot = match op & 7 {
            6 => 1,
            7 => 2,
            s => usize::from(s),
        };
        let kind = KINDS[usize::from(op >> 3)];
        match kind {
            Kind::Raw => {
                let text = inp.short_text();
                h.run(Act::Text(slot, text));
            }
            Kind::Binary => {
                let bytes = inp.short_bytes().to_vec();
                h.run(Act::Binary(slot, bytes));
            }
            Kind::Advance => {
                let ms = u64::from(inp.u16());
                h.run(Act::Advance(ms));
            }
            Kind::AdvanceLong => {
                let ms = u64::from(inp.byte()) * 1_000 + 1;
                h.run(Act::Advance(ms));
            }
            Kind::Drop => {
                let close_frame = inp.byte() & 1 != 0;
                h.run(Act::Drop(slot, close_frame));
            }
            Kind::Reconnect => {
                let b = inp.byte();
                h.run(Act::Drop(slot, b & 0x40 != 0));
                h.run(Act::Connect {
                    slot,
                    shard: usize::from(b & 1),
                    ip: IPS[usize::from(b >> 1 & 7)],
                    root: b & 0x80 != 0,
                });
                if let Some(m) = h.auto_message(slot, b >> 4 & 3) {
                    h.send_json(slot, &m);
                    h.remember();
                }
            }
            Kind::Repeated => {
                let b = inp.byte();
                let kind = REPEATED[usize::from(b) % REPEATED.len()];
                let mut v = h.message(slot, kind, &mut inp);
                if matches!(kind, Kind::Create) && b & 0x80 != 0 {
                    v["flow"] = flow_json();
                }
                let mut text = String::new();
                repeated_keys(&v, &mut inp, &mut text);
                h.run(Act::Text(slot, text));
            }
            Kind::NotObject => {
                let b = inp.byte();
                let text = match b % 6 {
                    0 => inp.value(2).to_string(),
                    1 => json!({"type": inp.value(1)}).to_string(),
                    2 => json!({"no_type": 1}).to_string(),
                    3 => json!({"type": "session.nope"}).to_string(),
                    4 => format!(
                        "{{\"type\":\"system.ping\",\"sent_at\":1,\"pad\":\"{}\"}}",
                        "x".repeat(FRAME_BYTES_MAX)
                    ),
                    _ => format!(
                        "{{\"type\":\"screen.query\",\"type\":\"{}\"}}",
                        inp.pick(&CLIENT_TYPES)
                    ),
                };
                h.run(Act::Text(slot, text));
            }
            _ => {
                let v = h.message(slot, kind, &mut inp);
                h.send_json(slot, &v);
                h.remember();
            }
        }
    }
}
