//! The PeerJS-compatible broker, behaving as the `peer` npm server (1.0.x) does on the
//! wire: `<prefix>peerjs?key=…&id=…&token=…` (also `<prefix>peerjs/peerjs?…`), `OPEN`,
//! `ERROR`, `ID-TAKEN`, same-token takeover, `HEARTBEAT`, and `OFFER` / `ANSWER` /
//! `CANDIDATE` / `LEAVE` / `EXPIRE` forwarded as exactly `{type, src, dst, payload}` with the
//! server's `src`; a message for an id not connected is held 5 s, then `EXPIRE` goes back.
//! `GET <prefix><key>/id` and `/peers` (401 unless discovery is on).
//!
//! An id lives on its home shard (`hash(id)`): its socket moves there on connect, and a
//! message for it crosses the mesh once.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::{Cx, Host, Mesh, Timer};
use crate::codec::{as_str, field, is_null, Codec, Frame, Value, Writer};
use crate::config::CloudlinkConfig;
use crate::core::bucket::Verdict;
use crate::core::outbound::Class;
use crate::core::{HttpReply, SessionKey, ShardId, Upgrade};

/// How long a message for an id that is not connected waits (the `peer` server's
/// `expire_timeout`).
pub const HOLD_MS: u64 = 5_000;
/// Messages held for one id at most; past it they are dropped (a sender flooding an
/// absent id cannot grow the shard's memory).
pub const HELD_MAX: usize = 256;

/// Browsers fetch `/id` from pages of any origin (the `peer` server allows every one).
const CORS: &[(&str, &str)] = &[("Access-Control-Allow-Origin", "*")];

/// A broker connection's query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerRoute {
    /// `?key=`.
    pub key: Option<Box<str>>,
    /// `?id=`.
    pub id: Option<Arc<str>>,
    /// `?token=`.
    pub token: Option<Box<str>>,
}

/// What the dialect keeps for a broker session.
#[derive(Debug)]
pub struct PeerSession {
    /// What it connected with.
    pub route: PeerRoute,
    /// Where it stands.
    pub state: PeerState,
}

/// A broker session's standing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// Its id is not registered yet (it may be moving to the id's home).
    Connecting,
    /// It holds its id: messages for the id come here.
    Holding,
    /// Another socket with the same id and token took over; what this one sends still
    /// goes out from the id (as with the `peer` server), nothing comes to it.
    Replaced,
    /// Refused (`ERROR`, `ID-TAKEN`) or it sent `LEAVE` without a destination.
    Done,
}

/// A message held for an id that is not connected.
struct Held {
    /// Who sent it.
    src: Arc<str>,
    /// Its type (only `EXPIRE`s of distinct senders go back).
    frame: Frame,
}

/// The broker's state on one shard.
#[derive(Default)]
pub struct Broker {
    /// Ids whose home is this shard, with the session holding each and its token.
    ids: HashMap<Arc<str>, (SessionKey, Box<str>)>,
    /// Messages for ids of this shard that are not connected, and since when.
    held: HashMap<Arc<str>, (u64, Vec<Held>)>,
    /// Every shard's ids, kept only with `cloudlink.peerjs_discovery`.
    pub discoverable: BTreeSet<Arc<str>>,
}

impl Broker {
    /// Ids connected whose home is this shard.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// No id connected here.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Ids with messages waiting here.
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

/// The broker's WebSocket paths: `<prefix>peerjs` and `<prefix>peerjs/peerjs`.
pub fn is_socket_path(cfg: &CloudlinkConfig, path: &str) -> bool {
    path.strip_prefix(cfg.peerjs_prefix.as_str())
        .is_some_and(|rest| rest == "peerjs" || rest == "peerjs/peerjs")
}

/// The route of a broker upgrade (its parameters are checked once it is open).
pub fn route(upgrade: &Upgrade<'_>) -> PeerRoute {
    let nonempty = |name| upgrade.param(name).filter(|v| !v.is_empty());
    PeerRoute {
        key: nonempty("key").map(Box::from),
        id: nonempty("id").map(Arc::from),
        token: nonempty("token").map(Box::from),
    }
}

/// The home shard of an id.
pub fn home(id: &str, shards: usize) -> ShardId {
    // `home_shard("peerjs/<id>")`, without building the string on every signal.
    let mut crc = crc32fast::Hasher::new();
    crc.update(b"peerjs/");
    crc.update(id.as_bytes());
    ShardId((crc.finalize() as usize % shards) as u16)
}

/// `GET <prefix><key>/id` (a fresh UUIDv4) and `GET <prefix><key>/peers` (401 unless
/// discovery is on), under `<prefix>` and `<prefix>peerjs/`.
pub(crate) fn http_get<H: Host>(cx: &mut Cx<'_, H>, path: &str) -> Option<HttpReply> {
    let cfg = &cx.cl.cfg;
    let rest = path.strip_prefix(cfg.peerjs_prefix.as_str())?;
    let rest = rest
        .strip_prefix("peerjs/")
        .filter(|r| r.contains('/'))
        .unwrap_or(rest);
    let what = rest.strip_prefix(cfg.peerjs_key.as_str())?;
    match what {
        "/id" => {
            let mut bytes = [0u8; 16];
            rand::RngCore::fill_bytes(&mut cx.eng.rng, &mut bytes);
            let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
            Some(HttpReply {
                status: 200,
                reason: "OK",
                headers: CORS,
                content_type: "text/html; charset=utf-8",
                body: id.hyphenated().to_string().into_bytes(),
            })
        }
        "/peers" if cfg.peerjs_discovery => {
            let ids: Vec<&str> = cx.cl.broker.discoverable.iter().map(|s| &**s).collect();
            Some(HttpReply {
                status: 200,
                reason: "OK",
                headers: CORS,
                content_type: "application/json; charset=utf-8",
                body: serde_json::to_vec(&ids).unwrap_or_default(),
            })
        }
        "/peers" => Some(HttpReply {
            status: 401,
            reason: "Unauthorized",
            headers: CORS,
            content_type: "text/plain; charset=utf-8",
            body: b"Unauthorized".to_vec(),
        }),
        _ => None,
    }
}

/// `{"type": …, "payload": {"msg": …}}`, then close.
fn refuse<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, kind: &str, msg: &str) {
    let mut w = Writer::new(Codec::Json, &mut cx.eng.scratch);
    w.map(2).key("type").str(kind).key("payload");
    w.map(1).key("msg").str(msg).end_map();
    w.end_map();
    let frame = w.finish();
    cx.eng.send(key, frame, Class::Reliable);
    cx.eng.close(key, 1000, msg);
    set_state(cx, key, PeerState::Done);
}

fn set_state<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, state: PeerState) {
    if let Some(s) = cx.peer_mut(key) {
        s.state = state;
    }
}

/// A broker connection opened: its parameters are checked, then its id registers on the
/// id's home shard (moving there first when that is another shard).
pub(crate) fn open<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let Some(route) = cx.peer(key).map(|s| s.route.clone()) else {
        return;
    };
    let (Some(given), Some(id), Some(_)) = (route.key, route.id, route.token) else {
        let msg = "No id, token, or key supplied to websocket server";
        return refuse(cx, key, "ERROR", msg);
    };
    if *given != *cx.cl.cfg.peerjs_key {
        return refuse(cx, key, "ERROR", "Invalid key provided");
    }
    let home = home(&id, cx.eng.shards);
    if home == cx.eng.id {
        register(cx, key);
    } else {
        cx.eng.request_move(key, home);
    }
}

/// On the id's home: `OPEN` (or a silent takeover by the same token, or `ID-TAKEN`), then
/// the messages held for the id.
pub(crate) fn register<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let Some(route) = cx.peer(key).map(|s| s.route.clone()) else {
        return;
    };
    let (Some(id), Some(token)) = (route.id, route.token) else {
        return;
    };
    match cx.cl.broker.ids.get(&id) {
        Some((_, held)) if *held != token => {
            return refuse(cx, key, "ID-TAKEN", "ID is taken");
        }
        Some(&(old, _)) => {
            set_state(cx, old, PeerState::Replaced);
            cx.cl.broker.ids.insert(id.clone(), (key, token));
        }
        None => {
            cx.cl.broker.ids.insert(id.clone(), (key, token));
            let frame = super::wire::bare_typed(&mut cx.eng.scratch, "OPEN");
            cx.eng.send(key, frame, Class::Reliable);
            if cx.cl.cfg.peerjs_discovery {
                publish(cx, &id, true);
            }
        }
    }
    set_state(cx, key, PeerState::Holding);
    if let Some((_, held)) = cx.cl.broker.held.remove(&id) {
        for h in held {
            cx.eng.send(key, h.frame, Class::Reliable);
        }
    }
}

/// Discovery: every shard learns an id came or went.
fn publish<H: Host>(cx: &mut Cx<'_, H>, id: &Arc<str>, present: bool) {
    present_here(cx, id.clone(), present);
    cx.post_to_others(|| Mesh::PeerId {
        id: id.clone(),
        present,
    });
}

/// An id came or went (discovery).
pub(crate) fn present_here<H: Host>(cx: &mut Cx<'_, H>, id: Arc<str>, present: bool) {
    if present {
        cx.cl.broker.discoverable.insert(id);
    } else {
        cx.cl.broker.discoverable.remove(&id);
    }
}

/// The session is going: its id is free again, if it still held it.
pub(crate) fn close<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let Some(session) = cx.peer_mut(key) else {
        return;
    };
    let holding = session.state == PeerState::Holding;
    session.state = PeerState::Done;
    let Some(id) = session.route.id.clone() else {
        return;
    };
    if holding && cx.cl.broker.ids.get(&id).is_some_and(|(k, _)| *k == key) {
        unregister(cx, &id);
    }
}

fn unregister<H: Host>(cx: &mut Cx<'_, H>, id: &Arc<str>) {
    cx.cl.broker.ids.remove(id);
    if cx.cl.cfg.peerjs_discovery {
        publish(cx, id, false);
    }
}

/// One frame from a broker session.
pub(crate) fn handle<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, bytes: &mut [u8], now: u64) {
    match cx.eng.take_token(key, now) {
        Verdict::Allow => {}
        Verdict::Limited => return,
        Verdict::Abusive => return cx.eng.close(key, 1008, "rate limited"),
    }
    let Some((state, id)) = cx.peer(key).map(|s| (s.state, s.route.id.clone())) else {
        return;
    };
    let (PeerState::Holding | PeerState::Replaced, Some(src)) = (state, id) else {
        return;
    };
    let Ok(value) = cx.eng.decoder.decode(Codec::Json, bytes) else {
        return;
    };
    let Some(kind) = field(&value, "type").and_then(as_str) else {
        return;
    };
    // As the `peer` server reads it: a missing, null or empty `dst` is none (a `LEAVE`
    // without one unregisters the sender); another non-string matches no id.
    let dst = match field(&value, "dst") {
        None => None,
        Some(v) if is_null(v) => None,
        Some(v) => match as_str(v) {
            Some("") => None,
            Some(dst) => Some(dst),
            None => return,
        },
    };
    match (kind, dst) {
        ("HEARTBEAT", _) => {}
        ("LEAVE", None) if state == PeerState::Holding => {
            unregister(cx, &src);
            set_state(cx, key, PeerState::Done);
        }
        ("OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE" | "EXPIRE", Some(dst)) => {
            let payload = field(&value, "payload");
            let frame = forwarded(&mut cx.eng.scratch, kind, &src, dst, payload);
            let expires = !matches!(kind, "LEAVE" | "EXPIRE");
            forward(cx, dst, src, frame, expires, now);
        }
        _ => {}
    }
}

/// `{type, src, dst, payload?}`, nothing else (a `null` payload stays, as `JSON.stringify`
/// keeps it; an absent one stays absent).
fn forwarded(
    buf: &mut Vec<u8>,
    kind: &str,
    src: &str,
    dst: &str,
    payload: Option<&Value<'_>>,
) -> Frame {
    let mut w = Writer::new(Codec::Json, buf);
    w.map(3 + u32::from(payload.is_some()));
    w.key("type")
        .str(kind)
        .key("src")
        .str(src)
        .key("dst")
        .str(dst);
    if let Some(p) = payload {
        w.key("payload").value(p);
    }
    w.end_map();
    w.finish()
}

/// Sends a message to an id wherever its home is.
fn forward<H: Host>(
    cx: &mut Cx<'_, H>,
    dst: &str,
    src: Arc<str>,
    frame: Frame,
    held_if_absent: bool,
    now: u64,
) {
    let home = home(dst, cx.eng.shards);
    if home == cx.eng.id {
        deliver(cx, dst, src, frame, held_if_absent, now);
    } else {
        cx.post(
            home,
            Mesh::Peer {
                dst: Arc::from(dst),
                src,
                frame,
                held_if_absent,
            },
        );
    }
}

/// On the id's home: to its socket, or held (`LEAVE` and `EXPIRE` for an absent id are
/// dropped, as the `peer` server does).
pub(crate) fn deliver<H: Host>(
    cx: &mut Cx<'_, H>,
    dst: &str,
    src: Arc<str>,
    frame: Frame,
    held_if_absent: bool,
    now: u64,
) {
    if let Some(&(key, _)) = cx.cl.broker.ids.get(dst) {
        return cx.eng.send(key, frame, Class::Reliable);
    }
    if !held_if_absent {
        return;
    }
    let fresh = !cx.cl.broker.held.contains_key(dst);
    let dst: Arc<str> = Arc::from(dst);
    let (since, held) = cx
        .cl
        .broker
        .held
        .entry(dst.clone())
        .or_insert((now, Vec::new()));
    if held.len() < HELD_MAX {
        held.push(Held { src, frame });
    }
    if fresh {
        let since = *since;
        cx.eng.set_timer(
            now + HOLD_MS,
            H::timer(Timer::PeerExpire { id: dst, since }),
        );
    }
}

/// The hold passed with the id still absent: `EXPIRE {src: <id>, dst: <sender>}` to each
/// sender, once.
pub(crate) fn expire<H: Host>(cx: &mut Cx<'_, H>, id: Arc<str>, since: u64, now: u64) {
    if cx.cl.broker.held.get(&id).is_none_or(|(s, _)| *s != since) {
        return;
    }
    let (_, held) = cx.cl.broker.held.remove(&id).expect("checked above");
    let mut told: Vec<Arc<str>> = Vec::new();
    for h in held {
        if told.contains(&h.src) {
            continue;
        }
        let frame = forwarded(&mut cx.eng.scratch, "EXPIRE", &id, &h.src, None);
        forward(cx, &h.src, id.clone(), frame, false, now);
        told.push(h.src);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ids_home_is_home_shard_of_peerjs_slash_id() {
        for id in ["a", "01HX_game-1", "ünï", ""] {
            for shards in [1, 2, 3, 7, 64] {
                let want = crate::core::home_shard(&format!("peerjs/{id}"), shards);
                assert_eq!(home(id, shards), want, "{id} of {shards}");
            }
        }
    }

    #[test]
    fn socket_paths_follow_the_prefix() {
        let mut cfg = CloudlinkConfig::default();
        assert!(is_socket_path(&cfg, "/peerjs") && is_socket_path(&cfg, "/peerjs/peerjs"));
        assert!(!is_socket_path(&cfg, "/peerjs/") && !is_socket_path(&cfg, "/x/peerjs"));
        cfg.peerjs_prefix = "/x/".into();
        assert!(is_socket_path(&cfg, "/x/peerjs") && is_socket_path(&cfg, "/x/peerjs/peerjs"));
        assert!(!is_socket_path(&cfg, "/peerjs"));
    }
}
