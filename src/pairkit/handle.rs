//! The messages, in the page's order: transport checks, sessions, players, endings,
//! control, requests, screens, input, liveness. A handler answers a refusal by returning
//! an [`Answer`] (sent as `system.error`); what it sends otherwise it sends itself.

use std::sync::Arc;

use super::code::{self, Code};
use super::party::{
    self, Flow, Outcome, Party, Player, Request, Screen, Secret, Tracked, WidgetKind,
};
use super::wire::{self, cut, Bad, Fields};
use super::{
    Cx, Dropped, Host, JoinReq, Mesh, Pending, PkError, PkMetrics, Role, Timer, Verdict,
    ACK_TIMEOUT_MS, REQUEST_TIMEOUT_MAX_MS,
};
use crate::codec::{as_i64, as_str, Codec, Decoded, Frame, Value, Writer};
use crate::config::PairkitAuth;
use crate::core::bucket::{TokenBucket, Verdict as Rate};
use crate::core::outbound::Class;
use crate::core::{Engine, Message, SessionKey};

/// The largest revision a host may set: JavaScript's largest exact integer.
const REVISION_MAX: i64 = (1 << 53) - 1;
/// Names are cut to this many characters.
const NAME_MAX: usize = 32;
/// A `reason` reaches the other side as `message`, cut to this many characters.
const MESSAGE_MAX: usize = 128;
/// Secrets (`host_id`, `resume_token`): random bytes, sent as hex.
const SECRET_BYTES: usize = 16;

/// A refusal: the `system.error` to answer.
pub(super) struct Answer(PkError, String);

impl From<Bad> for Answer {
    fn from(bad: Bad) -> Self {
        Answer(PkError::MalformedMessage, bad.0)
    }
}

fn refuse<T>(code: PkError, text: impl Into<String>) -> Result<T, Answer> {
    Err(Answer(code, text.into()))
}

type Done = Result<(), Answer>;

/// Who may send a message type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sender {
    Host,
    Phone,
    Either,
}

fn sender_of(kind: &str) -> Option<Sender> {
    Some(match kind {
        "session.leave" | "control.request_cancel" => Sender::Either,
        "player.kick"
        | "control.send_to_player"
        | "control.broadcast"
        | "control.request"
        | "control.resend_request"
        | "screen.show"
        | "screen.update_data" => Sender::Host,
        "player.update"
        | "input.widget_event"
        | "input.response"
        | "screen.acknowledge"
        | "screen.query"
        | "control.ack"
        | "control.resend_accepted"
        | "control.resend_failed" => Sender::Phone,
        _ => return None,
    })
}

/// `{"type": kind, …}` in a pooled frame.
fn msg<H: Host>(eng: &mut Engine<H>, kind: &str, body: impl FnOnce(&mut Writer<'_>)) -> Frame {
    eng.encode(Codec::Json, |w| wire::write(w, kind, body))
}

/// Sends `system.error {code, message}` and counts it (and the drop it means).
fn answer<H: Host>(eng: &mut Engine<H>, metrics: &PkMetrics, key: SessionKey, a: &Answer) {
    metrics.errors.count(a.0);
    if let Some(why) = Dropped::of(a.0) {
        metrics.drop_one(why);
    }
    let code = crate::metrics::ErrorCode::as_str(a.0);
    let frame = msg(eng, "system.error", wire::error(code, &a.1));
    eng.send(key, frame, Class::Reliable);
}

/// One message from a socket.
pub(super) fn message<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, msg: Message<'_>, now: u64) {
    let result = match cx.eng.take_token(key, now) {
        Rate::Allow => read(cx, key, msg, now),
        Rate::Limited => refuse(PkError::RateLimited, "over this socket's message rate"),
        Rate::Abusive => {
            let a = Answer(
                PkError::RateLimited,
                "far over this socket's message rate".into(),
            );
            answer(cx.eng, &cx.pk.metrics, key, &a);
            return cx.eng.close(key, 1008, "rate limited");
        }
    };
    if let Err(a) = result {
        answer(cx.eng, &cx.pk.metrics, key, &a);
    }
}

fn read<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, msg: Message<'_>, now: u64) -> Done {
    if msg.binary {
        return refuse(
            PkError::MalformedMessage,
            "a binary frame is not a PairKit message (send JSON text)",
        );
    }
    let max = cx.eng.cfg.limits.frame_bytes_max;
    if msg.bytes.len() > max {
        return refuse(
            PkError::PayloadTooLarge,
            format!("a message is at most {max} bytes"),
        );
    }
    let role = cx.sock(key).map_or(Role::None, |s| s.role);
    // A phone's widget event (most of the traffic) is read straight off the JSON tape
    // when it is plainly well-formed; anything else builds the value tree.
    let decoded = match role {
        Role::Phone(..) => {
            // The message as it arrived (parsing unescapes it in place): a widget event
            // with nothing to drop or replace is forwarded as these bytes.
            cx.pk.raw.clear();
            cx.pk.raw.extend_from_slice(msg.bytes);
            cx.eng
                .decoder
                .decode_fast(Codec::Json, msg.bytes, tape_widget_event)
        }
        _ => cx
            .eng
            .decoder
            .decode(Codec::Json, msg.bytes)
            .map(Decoded::Tree),
    };
    let value = match decoded {
        Ok(Decoded::Tree(value)) => value,
        Ok(Decoded::Fast(event)) => {
            let Role::Phone(code, n) = role else {
                unreachable!("the fast reader runs for phones only")
            };
            player_gone(cx, code, n)?;
            return widget_event(cx, code, n, &event.fields());
        }
        Err(_) => return refuse(PkError::MalformedMessage, "a message is a JSON object"),
    };
    if !matches!(value, Value::Object(_)) {
        return refuse(PkError::MalformedMessage, "a message is a JSON object");
    }
    let f = Fields::of(&value);
    let Some(kind) = f.get("type").and_then(as_str) else {
        return refuse(PkError::MalformedMessage, "a message needs a string type");
    };
    match kind {
        "system.ping" => return ping(cx, key, f, now),
        "session.create" | "session.join" if role != Role::None => {
            return refuse(
                PkError::MalformedMessage,
                "this socket already holds a role in a session",
            )
        }
        "session.create" => return create(cx, key, f, now),
        "session.join" => return join(cx, key, f, now),
        _ => {}
    }
    let Some(sender) = sender_of(kind) else {
        return refuse(
            PkError::MalformedMessage,
            format!("unknown message type {kind:?}"),
        );
    };
    match (role, sender) {
        (Role::None, _) => refuse(PkError::SessionNotFound, "this socket is in no session"),
        (Role::Host(_), Sender::Phone) => refuse(
            PkError::MalformedMessage,
            format!("a host may not send {kind}"),
        ),
        (Role::Phone(..), Sender::Host) => refuse(
            PkError::MalformedMessage,
            format!("a phone may not send {kind}"),
        ),
        (Role::Host(code), _) => {
            if !cx.pk.parties.contains_key(&code) {
                return refuse(PkError::SessionNotFound, "the session has ended");
            }
            from_host(cx, key, code, kind, f, now)
        }
        (Role::Phone(code, n), _) => {
            player_gone(cx, code, n)?;
            from_phone(cx, key, code, n, kind, f, now)
        }
    }
}

/// `session_not_found` when a phone's party or player is gone.
fn player_gone<H: Host>(cx: &Cx<'_, H>, code: Code, n: u32) -> Done {
    match cx.pk.parties.get(&code).and_then(|p| p.nth(n)) {
        Some(_) => Ok(()),
        None => refuse(PkError::SessionNotFound, "the session has ended"),
    }
}

// ---- Liveness ----

fn ping<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, f: Fields<'_, '_>, now: u64) -> Done {
    let sent_at = f.number("sent_at")?;
    let received_at = cx.eng.unix_ms(now);
    let frame = msg(cx.eng, "system.pong", |w| {
        w.key("sent_at").value(sent_at);
        w.key("received_at").u64(received_at);
    });
    cx.eng.send(key, frame, Class::Reliable);
    Ok(())
}

// ---- Sessions ----

/// `protocol_version`, when given, must be 1.
fn check_version(f: &Fields<'_, '_>) -> Done {
    match f.get("protocol_version") {
        Some(v) if as_i64(v) != Some(1) => refuse(
            PkError::ProtocolVersionMismatch,
            "this relay speaks protocol_version 1",
        ),
        _ => Ok(()),
    }
}

fn create<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, f: Fields<'_, '_>, now: u64) -> Done {
    check_version(&f)?;
    let flow = f.opt_object("flow")?;
    let api_key = f.opt_str("api_key")?;
    let resume_code = f.opt_str("resume_code")?;
    let resume_host_id = f.opt_str("resume_host_id")?;
    if cx.pk.cfg.auth == PairkitAuth::Strict {
        let known = api_key.is_some_and(|k| {
            let given = Secret::of(k);
            cx.pk.cfg.api_keys.iter().any(|c| given == Secret::of(c))
        });
        if !known {
            return refuse(PkError::Unauthorized, "a valid api_key is required");
        }
    }
    let flow = flow.map(Flow::parse).transpose()?.map(Arc::new);
    let Some(resume) = resume_code else {
        return fresh(cx, key, flow, now);
    };
    let code = Code::parse(resume).filter(|c| cx.pk.live.contains(c));
    let host_id = resume_host_id.map(Box::from);
    match code {
        Some(code) if code.home(cx.eng.shards) != cx.eng.id => {
            if let Some(s) = cx.sock_mut(key) {
                s.pending = Some(Box::new(Pending::Reattach {
                    code,
                    host_id,
                    flow,
                }));
            }
            cx.eng.request_move(key, code.home(cx.eng.shards));
            Ok(())
        }
        Some(code) => reattach(cx, key, code, host_id.as_deref(), flow, now),
        None => rejected(cx, key, flow, now),
    }
}

/// `host_resume_rejected`, then a fresh session: the same answer for every refusal.
fn rejected<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    flow: Option<Arc<Flow>>,
    now: u64,
) -> Done {
    let a = Answer(
        PkError::HostResumeRejected,
        "no session to reattach to with this code and host_id; here is a new one".into(),
    );
    answer(cx.eng, &cx.pk.metrics, key, &a);
    fresh(cx, key, flow, now)
}

/// A host reattaching on the party's home shard.
fn reattach<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    code: Code,
    host_id: Option<&str>,
    flow: Option<Arc<Flow>>,
    now: u64,
) -> Done {
    let valid = match (cx.pk.parties.get(&code), host_id) {
        (Some(party), Some(given)) => party.host_id.matches(given),
        _ => false,
    };
    let (Some(host_id), true) = (host_id, valid) else {
        return rejected(cx, key, flow, now);
    };
    let party = cx.pk.parties.get_mut(&code).expect("checked above");
    if let Some(old) = party.host.replace(key).filter(|old| *old != key) {
        end_socket(cx.eng, old, "replaced", None);
    }
    become_host(cx, key, code, now);
    let party = &cx.pk.parties[&code];
    let frame = created(cx.eng, party, host_id, cx.pk.cfg.strict_payloads);
    cx.eng.send(key, frame, Class::Reliable);
    Ok(())
}

fn fresh<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, flow: Option<Arc<Flow>>, now: u64) -> Done {
    let parties = &cx.pk.parties;
    let code = code::allocate(
        &mut cx.eng.rng,
        cx.eng.id,
        cx.eng.shards,
        cx.pk.code_space,
        |c| parties.contains_key(&c),
    );
    let Some(code) = code else {
        return refuse(
            PkError::InternalError,
            "no session code is free; try again later",
        );
    };
    let host_id = cx.eng.random_hex(SECRET_BYTES);
    cx.pk.serial += 1;
    let serial = cx.pk.serial;
    let party = Party {
        code,
        serial,
        host_id: Secret::of(&host_id),
        host: Some(key),
        flow,
        players: Vec::new(),
        joined: 0,
        broadcasts: Vec::new(),
    };
    cx.pk.parties.insert(code, party);
    cx.pk.live.insert(code);
    cx.eng.post_to_others(|| {
        H::mesh(Mesh::Live {
            code,
            present: true,
        })
    });
    crate::metrics::ShardMetrics::add(&cx.pk.metrics.parties, 1);
    let ttl = cx.pk.cfg.session_ttl_ms;
    cx.eng
        .set_timer(now + ttl, H::timer(Timer::Ttl { code, serial }));
    become_host(cx, key, code, now);
    let frame = created(
        cx.eng,
        &cx.pk.parties[&code],
        &host_id,
        cx.pk.cfg.strict_payloads,
    );
    cx.eng.send(key, frame, Class::Reliable);
    Ok(())
}

/// The socket is the party's host: its role, and a host's message rate (10×: it speaks
/// for every phone).
fn become_host<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, code: Code, now: u64) {
    let (per_s, burst) = (cx.pk.cfg.msgs_per_s, cx.pk.cfg.msgs_burst);
    if let Some(s) = cx.eng.session_mut(key) {
        s.bucket = TokenBucket::new(per_s.saturating_mul(10), burst.saturating_mul(10), now);
    }
    if let Some(s) = cx.sock_mut(key) {
        s.role = Role::Host(code);
    }
}

/// `session.created {code, host_id, relay_capabilities, players}`.
fn created<H: Host>(eng: &mut Engine<H>, party: &Party, host_id: &str, strict: bool) -> Frame {
    msg(eng, "session.created", |w| {
        w.key("code").str(party.code.as_str());
        w.key("host_id").str(host_id);
        w.key("relay_capabilities").map(1);
        w.key("strict_payloads").bool(strict).end_map();
        w.key("players").array(party.players.len() as u32);
        for p in &party.players {
            w.map(4);
            w.key("player_id").str(&p.id).key("name").str(&p.name);
            w.key("color").str(&p.color);
            w.key("online").bool(p.socket.is_some()).end_map();
        }
        w.end_array();
    })
}

/// Ends the party: its code is unknown from now on, everywhere.
fn end_party<H: Host>(cx: &mut Cx<'_, H>, code: Code) -> Option<Party> {
    let party = cx.pk.parties.remove(&code)?;
    cx.pk.live.remove(&code);
    cx.eng.post_to_others(|| {
        H::mesh(Mesh::Live {
            code,
            present: false,
        })
    });
    crate::metrics::ShardMetrics::sub(&cx.pk.metrics.parties, 1);
    Some(party)
}

/// `session.ended {reason, message?}`, then close 1000 with the reason; the socket has no
/// role any more.
fn end_socket<H: Host>(eng: &mut Engine<H>, key: SessionKey, reason: &str, text: Option<&str>) {
    let frame = msg(eng, "session.ended", wire::ended(reason, text));
    eng.send(key, frame, Class::Reliable);
    close_socket(eng, key, reason);
}

/// Close 1000 with `reason`, nothing sent before; the socket has no role any more.
fn close_socket<H: Host>(eng: &mut Engine<H>, key: SessionKey, reason: &str) {
    if let Some(s) = eng
        .session_mut(key)
        .and_then(|s| H::pairkit_mut(&mut s.dialect))
    {
        s.role = Role::None;
    }
    eng.close(key, 1000, reason);
}

/// Sends to the party's host, or counts the drop when none is attached.
fn to_host<H: Host>(
    eng: &mut Engine<H>,
    metrics: &PkMetrics,
    host: Option<SessionKey>,
    frame: Frame,
) {
    match host {
        Some(h) => eng.send(h, frame, Class::Reliable),
        None => metrics.drop_one(Dropped::HostAbsent),
    }
}

/// A `reason` given as a string, as the other side's `message`.
fn reason_text<'v>(f: &Fields<'v, '_>) -> Result<Option<&'v str>, Bad> {
    Ok(f.opt_str("reason")?.map(|r| cut(r, MESSAGE_MAX)))
}

// ---- Players ----

fn join<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, f: Fields<'_, '_>, now: u64) -> Done {
    check_version(&f)?;
    let code = f.str("code")?;
    let name = f.opt_str("name")?;
    let color = f.opt_str("color")?;
    let resume_id = f.opt_str("resume_player_id")?;
    let resume_token = f.opt_str("resume_token")?;
    let Some(code) = Code::parse(code) else {
        return refuse(
            PkError::InvalidCode,
            "a code is 4 characters of ABCDEFGHJKLMNPQRSTUVWXYZ23456789",
        );
    };
    let req = JoinReq {
        code,
        name: name.map(|n| cut(n, NAME_MAX).into()),
        color: color.map(Box::from),
        resume: resume_id.map(|id| (Box::from(id), resume_token.map(Box::from))),
    };
    let found = cx.pk.live.contains(&code);
    let code_home = code.home(cx.eng.shards);
    if !found && code_home != cx.eng.id {
        // This shard's directory may not have heard of a party opened a moment ago on its
        // home (the host can pass its code on faster than the mesh): only the home may say
        // a code is unknown.
        park(cx, key, req);
        cx.eng
            .post(code_home, H::mesh(Mesh::CodeCheck { code, from: key }));
        return Ok(());
    }
    throttle(cx, key, req, found, now)
}

/// Holds a join (and the socket's reads) until another shard answers for it.
fn park<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, req: JoinReq) {
    if let Some(s) = cx.sock_mut(key) {
        s.pending = Some(Box::new(Pending::Join(req)));
    }
    cx.eng.pause_reads(key);
}

/// The join failure throttle, on the address's home shard (here, or one round trip away),
/// then the join itself.
fn throttle<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    req: JoinReq,
    found: bool,
    now: u64,
) -> Done {
    let ip = code::ip_key(cx.sock(key).and_then(|s| s.peer));
    let home = code::ip_home(ip, cx.eng.shards);
    if home == cx.eng.id {
        let verdict = cx.check_join(ip, found, now);
        return checked(cx, key, req, verdict, now);
    }
    park(cx, key, req);
    cx.eng.post(
        home,
        H::mesh(Mesh::JoinCheck {
            ip,
            found,
            from: key,
        }),
    );
    Ok(())
}

/// Takes up a join `park` held, now that another shard answered for it: reads resume and
/// `then` goes on with it (its refusal answered). Nothing when the socket or its join is
/// gone.
fn unpark<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    then: impl FnOnce(&mut Cx<'_, H>, JoinReq) -> Done,
) {
    let pending = cx.sock_mut(key).and_then(|s| s.pending.take());
    let Some(Pending::Join(req)) = pending.map(|p| *p) else {
        return;
    };
    cx.eng.resume_reads(key);
    if let Err(a) = then(cx, req) {
        answer(cx.eng, &cx.pk.metrics, key, &a);
    }
}

/// The code's home shard said whether its party is open.
pub(super) fn code_checked<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, found: bool, now: u64) {
    unpark(cx, key, |cx, req| throttle(cx, key, req, found, now));
}

/// The throttle's answer came back from the address's home shard.
pub(super) fn join_checked<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    verdict: Verdict,
    now: u64,
) {
    unpark(cx, key, |cx, req| checked(cx, key, req, verdict, now));
}

fn checked<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    req: JoinReq,
    verdict: Verdict,
    now: u64,
) -> Done {
    match verdict {
        Verdict::Throttled => refuse(
            PkError::RateLimited,
            "too many joins with unknown codes from this address; try again in a minute",
        ),
        Verdict::NotFound => refuse(PkError::SessionNotFound, "no session has this code"),
        Verdict::Found => {
            let home = req.code.home(cx.eng.shards);
            if home == cx.eng.id {
                return join_here(cx, key, req, now);
            }
            if let Some(s) = cx.sock_mut(key) {
                s.pending = Some(Box::new(Pending::Join(req)));
            }
            cx.eng.request_move(key, home);
            Ok(())
        }
    }
}

/// A socket arrived on the party's home shard with a join or a reattach.
pub(super) fn arrived<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, now: u64) {
    let pending = cx.sock_mut(key).and_then(|s| s.pending.take());
    let result = match pending.map(|p| *p) {
        Some(Pending::Join(req)) => join_here(cx, key, req, now),
        Some(Pending::Reattach {
            code,
            host_id,
            flow,
        }) => reattach(cx, key, code, host_id.as_deref(), flow, now),
        None => Ok(()),
    };
    if let Err(a) = result {
        answer(cx.eng, &cx.pk.metrics, key, &a);
    }
}

/// A join on the party's home shard: a resume (id and token), or a new player.
fn join_here<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, req: JoinReq, now: u64) -> Done {
    let code = req.code;
    let unix = cx.eng.unix_ms(now);
    let players_max = cx.pk.cfg.players_max as usize;
    let Some(party) = cx.pk.parties.get_mut(&code) else {
        return refuse(PkError::SessionNotFound, "no session has this code");
    };
    let (n, token, resumed) = if let Some((id, token)) = req.resume {
        let found = party
            .player(&id)
            .filter(|p| token.as_deref().is_some_and(|t| p.token.matches(t)));
        let Some(n) = found.map(|p| p.n) else {
            return refuse(
                PkError::PlayerNotFound,
                "no player to resume with this resume_player_id and resume_token",
            );
        };
        let host = party.host;
        let player = party.nth_mut(n).expect("found above");
        if let Some(old) = player.socket.take().filter(|old| *old != key) {
            end_request(
                cx.eng,
                &cx.pk.metrics,
                host,
                player,
                "player_disconnected",
                false,
            );
            end_socket(cx.eng, old, "replaced", None);
        }
        let player = party.nth_mut(n).expect("found above");
        player.socket = Some(key);
        player.epoch += 1;
        (n, token.expect("checked above"), true)
    } else {
        if party.players.len() >= players_max {
            return refuse(PkError::SessionFull, "the session is full");
        }
        party.joined += 1;
        let n = party.joined;
        let token: Box<str> = cx.eng.random_hex(SECRET_BYTES).into();
        let screen = match &party.flow {
            Some(flow) => Screen {
                name: Some(flow.initial.clone()),
                shown_at: Some(unix),
                ..Screen::default()
            },
            None => Screen::default(),
        };
        party.players.push(Player {
            n,
            id: format!("p{n}").into(),
            name: req.name.unwrap_or_else(|| format!("Player {n}").into()),
            color: party::color(req.color.as_deref(), n),
            token: Secret::of(&token),
            socket: Some(key),
            epoch: 0,
            screen,
            request: None,
        });
        (n, token, false)
    };
    if let Some(s) = cx.sock_mut(key) {
        s.role = Role::Phone(code, n);
    }
    let party = &cx.pk.parties[&code];
    let player = party.nth(n).expect("joined above");
    let flow = party.flow.as_ref().map(|f| &f.json);
    let joined = msg(cx.eng, "session.joined", |w| {
        w.key("player_id").str(&player.id);
        w.key("resume_token").str(&token);
        if let Some(flow) = flow {
            w.key("flow").json(flow);
        }
        if player.screen.name.is_some() {
            w.key("screen").map(0);
            screen_fields(w, &player.screen);
            w.end_map();
        }
    });
    cx.eng.send(key, joined, Class::Reliable);
    let announce = msg(cx.eng, "player.join", |w| {
        w.key("player_id")
            .str(&player.id)
            .key("name")
            .str(&player.name);
        w.key("color")
            .str(&player.color)
            .key("resumed")
            .bool(resumed);
    });
    to_host(cx.eng, &cx.pk.metrics, party.host, announce);
    Ok(())
}

/// The socket is gone (a drop, an idle close, an ending): a phone's player keeps its
/// place for the grace window (its open request ends); a host's party waits for it.
pub(super) fn closed<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, now: u64) {
    let Some(role) = cx.sock(key).map(|s| s.role) else {
        return;
    };
    match role {
        Role::None => {}
        Role::Host(code) => {
            if let Some(party) = cx.pk.parties.get_mut(&code) {
                if party.host == Some(key) {
                    party.host = None;
                }
            }
        }
        Role::Phone(code, n) => {
            let grace = cx.pk.cfg.grace_ms;
            let Some(party) = cx.pk.parties.get_mut(&code) else {
                return;
            };
            let (host, serial) = (party.host, party.serial);
            let Some(player) = party.nth_mut(n).filter(|p| p.socket == Some(key)) else {
                return;
            };
            player.socket = None;
            player.epoch += 1;
            let epoch = player.epoch;
            end_request(
                cx.eng,
                &cx.pk.metrics,
                host,
                player,
                "player_disconnected",
                false,
            );
            let timer = Timer::Grace {
                code,
                serial,
                n,
                epoch,
            };
            cx.eng.set_timer(now + grace, H::timer(timer));
        }
    }
}

/// Removes a player for good (left, kicked, grace over): its open request ends first
/// (`player_disconnected` to the host), then the host hears `player.leave`.
fn remove_player<H: Host>(
    cx: &mut Cx<'_, H>,
    code: Code,
    n: u32,
    reason: &str,
    text: Option<&str>,
) {
    let Some(party) = cx.pk.parties.get_mut(&code) else {
        return;
    };
    let host = party.host;
    let Some(at) = party.players.iter().position(|p| p.n == n) else {
        return;
    };
    let mut player = party.players.remove(at);
    end_request(
        cx.eng,
        &cx.pk.metrics,
        host,
        &mut player,
        "player_disconnected",
        false,
    );
    let frame = msg(cx.eng, "player.leave", |w| {
        w.key("player_id").str(&player.id).key("reason").str(reason);
        if let Some(text) = text {
            w.key("message").str(text);
        }
    });
    to_host(cx.eng, &cx.pk.metrics, host, frame);
}

fn from_host<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    code: Code,
    kind: &str,
    f: Fields<'_, '_>,
    now: u64,
) -> Done {
    match kind {
        "session.leave" => {
            let text = reason_text(&f)?;
            let party = end_party(cx, code).expect("the host's party");
            for p in &party.players {
                if let Some(phone) = p.socket {
                    end_socket(cx.eng, phone, "host_closed", text);
                }
            }
            close_socket(cx.eng, key, "host_closed");
            Ok(())
        }
        "player.kick" => {
            let id = f.str("player_id")?;
            let text = reason_text(&f)?;
            let party = cx.pk.parties.get_mut(&code).expect("checked");
            let Some(player) = party.player_mut(id) else {
                return refuse(PkError::PlayerNotFound, format!("no player {id:?}"));
            };
            let n = player.n;
            // Its open request ends in remove_player, before the host's player.leave.
            if let Some(phone) = player.socket.take() {
                end_socket(cx.eng, phone, "kicked", text);
            }
            remove_player(cx, code, n, "kicked", None);
            Ok(())
        }
        "control.send_to_player" => {
            let id = f.str("player_id")?;
            let event = f.str("event")?;
            let payload = f.get("payload");
            let phone = online(&cx.pk.parties[&code], id)?;
            let frame = msg(cx.eng, "control.event", |w| {
                w.key("event").str(event);
                if let Some(p) = payload {
                    w.key("payload").value(p);
                }
            });
            cx.eng.send(phone, frame, Class::Reliable);
            Ok(())
        }
        "control.broadcast" => broadcast(cx, code, f, now),
        "control.request" => request(cx, code, f, now),
        "control.request_cancel" => {
            let id = f.str("request_id")?;
            let party = cx.pk.parties.get_mut(&code).expect("checked");
            let Some(player) = party
                .players
                .iter_mut()
                .find(|p| p.request.as_ref().is_some_and(|r| &*r.id == id))
            else {
                return Ok(());
            };
            player.request = None;
            if let Some(phone) = player.socket {
                let frame = request_cancel(cx.eng, id, None, "cancelled");
                cx.eng.send(phone, frame, Class::Reliable);
            }
            Ok(())
        }
        "control.resend_request" => {
            let id = f.str("player_id")?;
            let widget = f.str("widget_id")?;
            let stroke = f.str("stroke_id")?;
            let from_seq = f.int("from_seq", 0, i64::MAX)?;
            let party = &cx.pk.parties[&code];
            let Some(player) = party.player(id) else {
                return refuse(PkError::PlayerNotFound, format!("no player {id:?}"));
            };
            let Some(phone) = player.socket else {
                let frame = msg(cx.eng, "control.resend_failed", |w| {
                    w.key("player_id")
                        .str(id)
                        .key("reason")
                        .str("player_offline");
                });
                cx.eng.send(key, frame, Class::Reliable);
                return Ok(());
            };
            let frame = msg(cx.eng, "control.resend_request", |w| {
                w.key("widget_id").str(widget).key("stroke_id").str(stroke);
                w.key("from_seq").i64(from_seq);
            });
            cx.eng.send(phone, frame, Class::Reliable);
            Ok(())
        }
        "screen.show" | "screen.update_data" => screen(cx, code, kind, f, now),
        _ => unreachable!("sender_of lists every host message"),
    }
}

/// The socket of an online player: `player_not_found` / `player_offline`.
fn online(party: &Party, id: &str) -> Result<SessionKey, Answer> {
    let Some(player) = party.player(id) else {
        return refuse(PkError::PlayerNotFound, format!("no player {id:?}"));
    };
    match player.socket {
        Some(s) => Ok(s),
        None => refuse(PkError::PlayerOffline, format!("player {id:?} is offline")),
    }
}

// ---- Control ----

fn broadcast<H: Host>(cx: &mut Cx<'_, H>, code: Code, f: Fields<'_, '_>, now: u64) -> Done {
    let event = f.str("event")?;
    let payload = f.get("payload");
    let id = f.opt_id("broadcast_id")?;
    let timeout = f.opt_int("ack_timeout_ms", 1, ACK_TIMEOUT_MS.1 as i64)?;
    let party = cx.pk.parties.get_mut(&code).expect("checked");
    if let Some(id) = id {
        if party.broadcasts.iter().any(|b| &*b.id == id) {
            return refuse(
                PkError::MalformedMessage,
                format!("broadcast_id {id:?} is still waiting for acks"),
            );
        }
    }
    let frame = msg(cx.eng, "control.event", |w| {
        w.key("event").str(event);
        if let Some(p) = payload {
            w.key("payload").value(p);
        }
        if let Some(id) = id {
            w.key("broadcast_id").str(id);
        }
    });
    for phone in party.players.iter().filter_map(|p| p.socket) {
        cx.eng.send(phone, frame.clone(), Class::Reliable);
    }
    let Some(id) = id else {
        return Ok(());
    };
    cx.pk.serial += 1;
    let tracked = Tracked {
        id: id.into(),
        serial: cx.pk.serial,
        results: party
            .players
            .iter()
            .map(|p| {
                let outcome = if p.socket.is_some() {
                    Outcome::Waiting
                } else {
                    Outcome::Missed
                };
                (p.n, p.id.clone(), outcome)
            })
            .collect(),
    };
    if tracked.done() {
        let frame = broadcast_result(cx.eng, &tracked);
        to_host(cx.eng, &cx.pk.metrics, party.host, frame);
        return Ok(());
    }
    let timer = Timer::Broadcast {
        code,
        serial: party.serial,
        broadcast: tracked.serial,
    };
    party.broadcasts.push(tracked);
    let due = now + timeout.map_or(ACK_TIMEOUT_MS.0, |t| t as u64);
    cx.eng.set_timer(due, H::timer(timer));
    Ok(())
}

/// `control.broadcast_result {broadcast_id, results}`: a counted player still waiting
/// is `timed_out`.
fn broadcast_result<H: Host>(eng: &mut Engine<H>, tracked: &Tracked) -> Frame {
    msg(eng, "control.broadcast_result", |w| {
        w.key("broadcast_id").str(&tracked.id);
        w.key("results").map(tracked.results.len() as u32);
        for (_, id, outcome) in &tracked.results {
            w.key(id).str(match outcome {
                Outcome::Delivered => "delivered",
                Outcome::Missed => "missed",
                Outcome::Waiting => "timed_out",
            });
        }
        w.end_map();
    })
}

/// `control.request_cancel {request_id, player_id?, reason}`.
fn request_cancel<H: Host>(
    eng: &mut Engine<H>,
    id: &str,
    player: Option<&str>,
    reason: &str,
) -> Frame {
    msg(eng, "control.request_cancel", |w| {
        w.key("request_id").str(id);
        if let Some(p) = player {
            w.key("player_id").str(p);
        }
        w.key("reason").str(reason);
    })
}

/// Ends a player's open request (if any): the host gets `control.request_cancel` with
/// `reason`; with `tell_phone`, the phone too.
fn end_request<H: Host>(
    eng: &mut Engine<H>,
    metrics: &PkMetrics,
    host: Option<SessionKey>,
    player: &mut Player,
    reason: &str,
    tell_phone: bool,
) {
    let Some(req) = player.request.take() else {
        return;
    };
    if tell_phone {
        if let Some(phone) = player.socket {
            let frame = request_cancel(eng, &req.id, None, reason);
            eng.send(phone, frame, Class::Reliable);
        }
    }
    let frame = request_cancel(eng, &req.id, Some(&player.id), reason);
    to_host(eng, metrics, host, frame);
}

fn request<H: Host>(cx: &mut Cx<'_, H>, code: Code, f: Fields<'_, '_>, now: u64) -> Done {
    let id = f.id("request_id")?;
    let player_id = f.str("player_id")?;
    let kind = f.str("kind")?;
    let payload = f.get("payload");
    let timeout = f.opt_int("timeout_ms", 1, REQUEST_TIMEOUT_MAX_MS as i64)?;
    let party = cx.pk.parties.get_mut(&code).expect("checked");
    let phone = online(party, player_id)?;
    let taken = party
        .players
        .iter()
        .any(|p| &*p.id != player_id && p.request.as_ref().is_some_and(|r| &*r.id == id));
    if taken {
        return refuse(
            PkError::MalformedMessage,
            format!("request_id {id:?} is open for another player"),
        );
    }
    let (host, serial) = (party.host, party.serial);
    let player = party.player_mut(player_id).expect("online above");
    let n = player.n;
    let resend = player.request.as_ref().is_some_and(|r| &*r.id == id);
    if !resend {
        end_request(cx.eng, &cx.pk.metrics, host, player, "superseded", true);
    }
    cx.pk.serial += 1;
    let epoch = cx.pk.serial;
    player.request = Some(Request {
        id: id.into(),
        epoch,
    });
    let frame = msg(cx.eng, "control.request", |w| {
        w.key("request_id").str(id).key("kind").str(kind);
        if let Some(p) = payload {
            w.key("payload").value(p);
        }
        if let Some(t) = timeout {
            w.key("timeout_ms").i64(t);
        }
    });
    cx.eng.send(phone, frame, Class::Reliable);
    if let Some(t) = timeout {
        let timer = Timer::Request {
            code,
            serial,
            n,
            epoch,
        };
        cx.eng.set_timer(now + t as u64, H::timer(timer));
    }
    Ok(())
}

// ---- Screens ----

/// `screen_name?, data, revision, shown_at?` (of `screen.state` and
/// `session.joined.screen`).
fn screen_fields(w: &mut Writer<'_>, s: &Screen) {
    if let Some(name) = &s.name {
        w.key("screen_name").str(name);
    }
    w.key("data").map(s.data.len() as u32);
    for (k, v) in &s.data {
        w.key(k).json(v);
    }
    w.end_map();
    w.key("revision").u64(s.revision);
    if let Some(at) = s.shown_at {
        w.key("shown_at").u64(at);
    }
}

fn screen<H: Host>(
    cx: &mut Cx<'_, H>,
    code: Code,
    kind: &str,
    f: Fields<'_, '_>,
    now: u64,
) -> Done {
    let show = kind == "screen.show";
    let targets = f.opt_strings("player_ids")?;
    let name = if show { Some(f.str("screen")?) } else { None };
    let data = if show {
        f.opt_object("data")?
    } else {
        Some(f.object("data")?)
    };
    // A host's revision stays within what a JavaScript phone reads exactly (2^53 - 1),
    // so that the phone can send it back.
    let revision = f.opt_int("revision", 0, REVISION_MAX)?.map(|r| r as u64);
    let unix = cx.eng.unix_ms(now);
    let party = cx.pk.parties.get_mut(&code).expect("checked");
    if let (Some(name), Some(flow)) = (name, &party.flow) {
        if flow.screen(name).is_none() {
            return refuse(
                PkError::ScreenNotFound,
                format!("the flow has no screen {name:?}"),
            );
        }
    }
    let is_target = |p: &Player| targets.as_ref().is_none_or(|ids| ids.contains(&&*p.id));
    if let Some(rev) = revision {
        if let Some(p) = party
            .players
            .iter()
            .find(|p| is_target(p) && p.screen.revision >= rev)
        {
            return refuse(
                PkError::RevisionConflict,
                format!(
                    "revision {rev} is not above player {:?}'s revision {}",
                    p.id, p.screen.revision
                ),
            );
        }
    }
    let owned: Option<serde_json::Map<String, serde_json::Value>> =
        data.map(|d| match crate::codec::to_json(d) {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("checked to be an object"),
        });
    for p in party.players.iter_mut().filter(|p| is_target(p)) {
        let s = &mut p.screen;
        s.revision = revision.unwrap_or(s.revision + 1);
        if let Some(name) = name {
            s.name = Some(name.into());
            s.data = owned.clone().unwrap_or_default();
            s.shown_rev = s.revision;
            s.shown_at = Some(unix);
        } else if let Some(patch) = &owned {
            for (k, v) in patch {
                s.data.insert(k.clone(), v.clone());
            }
        }
        let Some(phone) = p.socket else {
            continue;
        };
        let frame = if show {
            msg(cx.eng, "screen.show", |w| {
                w.key("screen").str(name.expect("show"));
                match data {
                    Some(d) => w.key("data").value(d),
                    None => w.key("data").map(0).end_map(),
                };
                w.key("revision").u64(s.revision);
                w.key("shown_at").u64(unix);
            })
        } else {
            msg(cx.eng, "screen.update_data", |w| {
                w.key("data").value(data.expect("update"));
                w.key("revision").u64(s.revision);
            })
        };
        cx.eng.send(phone, frame, Class::Reliable);
    }
    Ok(())
}

// ---- Phones ----

fn from_phone<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    code: Code,
    n: u32,
    kind: &str,
    f: Fields<'_, '_>,
    _now: u64,
) -> Done {
    let party = cx.pk.parties.get_mut(&code).expect("checked");
    let host = party.host;
    match kind {
        "session.leave" => {
            let text = reason_text(&f)?;
            if let Some(player) = party.nth_mut(n) {
                player.socket = None;
            }
            close_socket(cx.eng, key, "user_left");
            remove_player(cx, code, n, "user_left", text);
            Ok(())
        }
        "player.update" => {
            let name = f.opt_str("name")?.map(|s| cut(s, NAME_MAX));
            let color = f.opt_str("color")?;
            let player = party.nth_mut(n).expect("checked");
            if let Some(name) = name {
                player.name = name.into();
            }
            if color.is_some() {
                player.color = party::color(color, n);
            }
            let frame = msg(cx.eng, "player.update", |w| {
                w.key("player_id").str(&player.id);
                if name.is_some() {
                    w.key("name").str(&player.name);
                }
                if color.is_some() {
                    w.key("color").str(&player.color);
                }
            });
            to_host(cx.eng, &cx.pk.metrics, host, frame);
            Ok(())
        }
        "input.widget_event" => {
            let event = WidgetEvent {
                widget: f.str("widget_id")?,
                event: f.str("event_type")?,
                payload: f.any("payload")?,
                revision: f.opt_int("revision", 0, i64::MAX)?,
                verbatim: false,
            };
            widget_event(cx, code, n, &event)
        }
        "input.response" => {
            let id = f.str("request_id")?;
            let payload = f.any("payload")?;
            let player = party.nth_mut(n).expect("checked");
            if player.request.as_ref().is_none_or(|r| &*r.id != id) {
                return refuse(
                    PkError::RequestCancelled,
                    format!("request {id:?} is not open (superseded, cancelled, timed out or never sent)"),
                );
            }
            player.request = None;
            let frame = msg(cx.eng, "input.response", |w| {
                w.key("request_id").str(id).key("player_id").str(&player.id);
                w.key("payload").value(payload);
            });
            to_host(cx.eng, &cx.pk.metrics, host, frame);
            Ok(())
        }
        "control.request_cancel" => {
            let id = f.str("request_id")?;
            let player = party.nth_mut(n).expect("checked");
            if player.request.as_ref().is_some_and(|r| &*r.id == id) {
                player.request = None;
                let frame = request_cancel(cx.eng, id, Some(&player.id), "cancelled");
                to_host(cx.eng, &cx.pk.metrics, host, frame);
            }
            Ok(())
        }
        "screen.acknowledge" => {
            let screen = f.str("screen")?;
            let revision = f.int("revision", 0, i64::MAX)?;
            let player = party.nth(n).expect("checked");
            let frame = msg(cx.eng, "screen.acknowledge", |w| {
                w.key("screen").str(screen).key("revision").i64(revision);
                w.key("player_id").str(&player.id);
            });
            to_host(cx.eng, &cx.pk.metrics, host, frame);
            Ok(())
        }
        "screen.query" => {
            let player = party.nth(n).expect("checked");
            let frame = msg(cx.eng, "screen.state", |w| {
                screen_fields(w, &player.screen);
            });
            cx.eng.send(key, frame, Class::Reliable);
            Ok(())
        }
        "control.ack" => {
            let id = f.str("broadcast_id")?;
            let Some(at) = party.broadcasts.iter().position(|b| &*b.id == id) else {
                return Ok(());
            };
            let tracked = &mut party.broadcasts[at];
            if let Some(r) = tracked
                .results
                .iter_mut()
                .find(|r| r.0 == n && r.2 == Outcome::Waiting)
            {
                r.2 = Outcome::Delivered;
            }
            if tracked.done() {
                let tracked = party.broadcasts.remove(at);
                let frame = broadcast_result(cx.eng, &tracked);
                to_host(cx.eng, &cx.pk.metrics, host, frame);
            }
            Ok(())
        }
        "control.resend_accepted" | "control.resend_failed" => {
            let accepted = kind == "control.resend_accepted";
            let count = if accepted {
                Some(f.int("replayed_count", 0, i64::MAX)?)
            } else {
                None
            };
            let reason = if accepted {
                None
            } else {
                Some(f.str("reason")?)
            };
            let player = party.nth(n).expect("checked");
            let frame = msg(cx.eng, kind, |w| {
                if let Some(c) = count {
                    w.key("replayed_count").i64(c);
                }
                if let Some(r) = reason {
                    w.key("reason").str(r);
                }
                w.key("player_id").str(&player.id);
            });
            to_host(cx.eng, &cx.pk.metrics, host, frame);
            Ok(())
        }
        _ => unreachable!("sender_of lists every phone message"),
    }
}

/// `input.widget_event {widget_id, event_type, payload, revision?}` as read.
pub(super) struct WidgetEvent<'v, 'a> {
    widget: &'v str,
    event: &'v str,
    payload: &'v Value<'a>,
    revision: Option<i64>,
    /// The message has exactly these fields (no `null`, no `player_id`, nothing unknown):
    /// it may be forwarded as it arrived, with `player_id` added.
    verbatim: bool,
}

/// A widget event read off the tape (owning its payload's tree).
pub(super) struct TapeEvent<'a> {
    widget: &'a str,
    event: &'a str,
    payload: Value<'a>,
    revision: Option<i64>,
    verbatim: bool,
}

/// Reads `input.widget_event` off the JSON tape, or `None` for anything the full path
/// must judge or word: another type, a field missing or of another type, a `null`
/// payload, a revision that is not a non-negative integer, a repeated key, more than 32
/// keys (which simd-json stores differently).
fn tape_widget_event<'a>(root: crate::codec::TapeValue<'_, 'a>) -> Option<TapeEvent<'a>> {
    use simd_json::prelude::{TypedScalarValue, ValueAsScalar, ValueIntoString};
    const KEYS_MAX: usize = 32;
    let top = root.as_object()?;
    if top.len() > KEYS_MAX {
        return None;
    }
    let (mut kind, mut widget, mut event, mut payload, mut revision) =
        (None, None, None, None, None);
    for (key, value) in top.iter() {
        let slot = match key {
            "type" => &mut kind,
            "widget_id" => &mut widget,
            "event_type" => &mut event,
            "payload" => &mut payload,
            "revision" => &mut revision,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    if kind?.as_str()? != "input.widget_event" {
        return None;
    }
    let revision = match revision {
        Some(r) if !r.is_null() => Some(i64::try_from(r.as_u64()?).ok()?),
        _ => None,
    };
    let payload = payload.filter(|p| !p.is_null())?;
    let known = 4 + usize::from(revision.is_some());
    Some(TapeEvent {
        verbatim: top.len() == known,
        widget: widget?.into_string()?,
        event: event?.into_string()?,
        payload: simd_json::value::lazy::Value::from_tape(payload).into_value(),
        revision,
    })
}

impl<'a> TapeEvent<'a> {
    fn fields(&self) -> WidgetEvent<'_, 'a> {
        WidgetEvent {
            widget: self.widget,
            event: self.event,
            payload: &self.payload,
            revision: self.revision,
            verbatim: self.verbatim,
        }
    }
}

/// A phone's widget event: stale input is dropped, strict payloads are checked, the rest
/// goes to the host with the phone's `player_id`.
fn widget_event<H: Host>(cx: &mut Cx<'_, H>, code: Code, n: u32, e: &WidgetEvent<'_, '_>) -> Done {
    let strict = cx.pk.cfg.strict_payloads;
    let party = cx.pk.parties.get(&code).expect("checked");
    let player = party.nth(n).expect("checked");
    if let Some(rev) = e.revision {
        if (rev as u64) < player.screen.shown_rev {
            return refuse(
                PkError::StaleInput,
                format!(
                    "revision {rev} is below the current screen's {}",
                    player.screen.shown_rev
                ),
            );
        }
    }
    if strict {
        if let Some(flow) = &party.flow {
            check_event(flow, &player.screen, e.widget, e.event, e.payload)?;
        }
    }
    if e.verbatim {
        let frame = cx.eng.encode(Codec::Json, |w| {
            w.open_json_object(&cx.pk.raw);
            w.key("player_id").str(&player.id).end_map();
        });
        to_host(cx.eng, &cx.pk.metrics, party.host, frame);
        return Ok(());
    }
    let frame = msg(cx.eng, "input.widget_event", |w| {
        w.key("widget_id")
            .str(e.widget)
            .key("event_type")
            .str(e.event);
        w.key("payload").value(e.payload);
        if let Some(r) = e.revision {
            w.key("revision").i64(r);
        }
        w.key("player_id").str(&player.id);
    });
    to_host(cx.eng, &cx.pk.metrics, party.host, frame);
    Ok(())
}

/// Strict payloads: the event names a widget of the player's current screen, and an
/// event on a widget of a checked type matches the page's table.
fn check_event(
    flow: &Flow,
    screen: &Screen,
    widget: &str,
    event: &str,
    payload: &Value<'_>,
) -> Result<(), Bad> {
    let name = screen.name.as_deref().unwrap_or("");
    let Some(w) = flow
        .screen(name)
        .and_then(|ws| ws.iter().find(|w| &*w.id == widget))
    else {
        return Err(Bad(format!("widget {widget:?} is not on screen {name:?}")));
    };
    // A repeated key would be checked as its first value and read by the host as its
    // last (the parsed object keeps both, and so does the forward).
    if let (Value::Object(map), false) = (payload, w.kind == WidgetKind::Other) {
        let keys: Vec<&str> = map.keys().map(|k| &**k).collect();
        if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
            return Err(Bad(format!(
                "the payload of widget {widget:?} repeats a key"
            )));
        }
    }
    let field = |k| crate::codec::field(payload, k);
    let unit = |k, lo: f64, hi: f64| {
        field(k)
            .and_then(number)
            .is_some_and(|x| (lo..=hi).contains(&x))
    };
    let ok = match (&w.kind, event) {
        (WidgetKind::Other, _) => true,
        (WidgetKind::Button, "press" | "release") => matches!(payload, Value::Object(_)),
        (WidgetKind::Joystick, "move") => unit("x", -1.0, 1.0) && unit("y", -1.0, 1.0),
        (WidgetKind::ChoiceList(choices), "select") => field("choice_id")
            .and_then(as_str)
            .is_some_and(|c| choices.iter().any(|x| &**x == c)),
        (WidgetKind::Canvas, "stroke_progress" | "stroke_end") => {
            let stroke = field("stroke_id").and_then(as_str).is_some();
            let seq = field("seq").and_then(as_i64).is_some_and(|s| s >= 0);
            let points = event == "stroke_end"
                || matches!(field("points"), Some(Value::Array(ps)) if !ps.is_empty() && ps.iter().all(point));
            stroke && seq && points
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(Bad(format!(
            "event {event:?} with this payload does not fit widget {widget:?}"
        )))
    }
}

fn number(v: &Value<'_>) -> Option<f64> {
    match v {
        Value::Static(simd_json::StaticNode::I64(i)) => Some(*i as f64),
        Value::Static(simd_json::StaticNode::U64(u)) => Some(*u as f64),
        Value::Static(simd_json::StaticNode::F64(x)) => Some(*x),
        _ => None,
    }
}

/// `[x, y]`, numbers in [0, 1].
fn point(v: &Value<'_>) -> bool {
    matches!(v, Value::Array(xy) if xy.len() == 2
        && xy.iter().all(|c| number(c).is_some_and(|x| (0.0..=1.0).contains(&x))))
}

// ---- Timers ----

pub(super) fn timer<H: Host>(cx: &mut Cx<'_, H>, timer: Timer, _now: u64) {
    let live = |cx: &Cx<'_, H>, code: &Code, serial: u64| {
        cx.pk.parties.get(code).is_some_and(|p| p.serial == serial)
    };
    match timer {
        Timer::Ttl { code, serial } => {
            if !live(cx, &code, serial) {
                return;
            }
            let party = end_party(cx, code).expect("live");
            for phone in party.players.iter().filter_map(|p| p.socket) {
                end_socket(cx.eng, phone, "timeout", None);
            }
            if let Some(host) = party.host {
                end_socket(cx.eng, host, "timeout", None);
            }
        }
        Timer::Grace {
            code,
            serial,
            n,
            epoch,
        } => {
            if !live(cx, &code, serial) {
                return;
            }
            let party = &cx.pk.parties[&code];
            if party
                .nth(n)
                .is_some_and(|p| p.epoch == epoch && p.socket.is_none())
            {
                remove_player(cx, code, n, "timeout", None);
            }
        }
        Timer::Broadcast {
            code,
            serial,
            broadcast,
        } => {
            if !live(cx, &code, serial) {
                return;
            }
            let party = cx.pk.parties.get_mut(&code).expect("live");
            let Some(at) = party.broadcasts.iter().position(|b| b.serial == broadcast) else {
                return;
            };
            let tracked = party.broadcasts.remove(at);
            let frame = broadcast_result(cx.eng, &tracked);
            to_host(cx.eng, &cx.pk.metrics, party.host, frame);
        }
        Timer::Request {
            code,
            serial,
            n,
            epoch,
        } => {
            if !live(cx, &code, serial) {
                return;
            }
            let party = cx.pk.parties.get_mut(&code).expect("live");
            let host = party.host;
            let Some(player) = party
                .nth_mut(n)
                .filter(|p| p.request.as_ref().is_some_and(|r| r.epoch == epoch))
            else {
                return;
            };
            end_request(cx.eng, &cx.pk.metrics, host, player, "timeout", true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decoder;

    /// What the tape reader took, or `None`; and what the full path reads from the same
    /// bytes.
    fn both(json: &str) -> (Option<String>, Result<String, Bad>) {
        let show = |w: &str, e: &str, p: &Value<'_>, r: Option<i64>| {
            format!("{w}|{e}|{}|{r:?}", crate::codec::to_json(p))
        };
        let mut d = Decoder::default();
        let mut bytes = json.as_bytes().to_vec();
        let fast = match d.decode_fast(Codec::Json, &mut bytes, tape_widget_event) {
            Ok(Decoded::Fast(t)) => Some(show(t.widget, t.event, &t.payload, t.revision)),
            _ => None,
        };
        let mut bytes = json.as_bytes().to_vec();
        let tree = d.decode(Codec::Json, &mut bytes).unwrap();
        let f = Fields::of(&tree);
        let full = (|| {
            let (w, e) = (f.str("widget_id")?, f.str("event_type")?);
            Ok(show(
                w,
                e,
                f.any("payload")?,
                f.opt_int("revision", 0, i64::MAX)?,
            ))
        })();
        (fast, full)
    }

    #[test]
    fn the_tape_reader_agrees_with_the_full_path_or_leaves_the_event_to_it() {
        let t = r#""type":"input.widget_event""#;
        for (json, fast_takes) in [
            (
                format!(
                    r#"{{{t},"widget_id":"w","event_type":"move","payload":{{"x":0.5,"y":-1}}}}"#
                ),
                true,
            ),
            (
                format!(
                    r#"{{"payload":[1,"a\n"],{t},"revision":3,"event_type":"e","widget_id":"w\u00e9","x":1}}"#
                ),
                true,
            ),
            (
                format!(
                    r#"{{{t},"widget_id":"w","event_type":"e","payload":"s","revision":null}}"#
                ),
                true,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":null}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e"}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":1,"event_type":"e","payload":1}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"revision":2.0}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"revision":-1}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","widget_id":"v","event_type":"e","payload":1}}"#),
                false,
            ),
            (
                r#"{"type":"input.response","widget_id":"w","event_type":"e","payload":1}"#
                    .to_string(),
                false,
            ),
        ] {
            let (fast, full) = both(&json);
            assert_eq!(fast.is_some(), fast_takes, "{json}");
            if let Some(fast) = fast {
                assert_eq!(Ok(fast), full, "{json}: the same fields either way");
            }
        }
    }

    #[test]
    fn only_an_event_with_exactly_its_fields_is_forwarded_verbatim() {
        let t = r#""type":"input.widget_event""#;
        for (json, verbatim) in [
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":{{}}}}"#),
                true,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"revision":4}}"#),
                true,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"revision":null}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"player_id":"p9"}}"#),
                false,
            ),
            (
                format!(r#"{{{t},"widget_id":"w","event_type":"e","payload":1,"extra":0}}"#),
                false,
            ),
        ] {
            let mut bytes = json.into_bytes();
            let mut d = Decoder::default();
            let taken = match d.decode_fast(Codec::Json, &mut bytes, tape_widget_event) {
                Ok(Decoded::Fast(e)) => Some(e.verbatim),
                _ => None,
            };
            assert_eq!(taken, Some(verbatim), "the tape reader takes it");
        }
    }
}
