//! CloudLink 5 signaling on a simulated two-shard server (`protocols/cloudlink.md`), driven
//! by a script of client operations, checked against the page after every operation:
//!
//! - Every frame a client gets is a JSON object with a string `opcode` the server sends
//!   (`payload` present unless `KEEPALIVE_ACK`), its payload of the page's shape
//!   (`LIST_ACK` an array of names, `TRANSITION` host/peer/"", peers
//!   `{instance_id, user_id, username, pubkey?}` of the receiver's game, …); a `VIOLATION`
//!   is followed by close 1001, a kick warning by a close, and nothing follows a close; a
//!   relayed `G_*`/`P_*` carries `origin`, the instance id of a member of the receiver's
//!   relay lobby. `RELAY` never comes (there is no relay peer).
//! - The state after every operation: each lobby lives on its home shard with its host
//!   first among its members, each member's session says it is in that lobby (the host's
//!   that it hosts), each session in a lobby is among its members, sessions in no lobby
//!   are the game's idle clients (who hear `NEW_LOBBY`/`LOBBY_CLOSED`), every shard's
//!   directory (what `LIST_LOBBIES`/`FIND_LOBBY` answer from) lists exactly the lobbies
//!   with their current host and counts, no session outlives its connection, and in token
//!   mode one user has one session per game.
//! - A model of the page, run from the state before each operation, predicts what every
//!   client receives (in order, except the host's replies to a kick or a transfer) and the
//!   state after (lobbies, members in order, host, flags; each session's lobby, identity,
//!   idle listing). Operations the page leaves open (binary frames, frames with duplicate
//!   keys, the rate limiter, idle timeouts) are checked by the properties above only.
//!
//! Input: `[setup][setup2]` then operations `[op]…`; `op & 3` is a client slot and
//! `(op >> 2) % 16` the kind (see [`Kind`]); the bytes each kind reads follow it. `setup`
//! bits 0–3: the shard of slots 0–3; bit 4: slot 3 plays game `other` (else all play
//! `game`); bit 5: `max_players_cap = 3`; bit 6: token auth; bit 7: no automatic `INIT`.
//! `setup2` bit 0: default ping/idle timeouts (else none); bit 1: a tight rate limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::input::{json_eq, peerjs_id_ok, Input};
use crate::cloudlink::lobby::home;
use crate::codec::{self, Codec, Decoder};
use crate::config::{CloudlinkAuth, Config};
use crate::dialects::DialectSession;
use crate::sim::{ClientId, Received, Sim};
use serde_json::{json, Map, Value};

const SHARDS: usize = 2;
const GAMES: [&str; 2] = ["game", "other"];
const SECRET: &str = "fuzz-secret";
const NAME_CHARS_MAX: usize = 64;

/// HS512 tokens signed with [`SECRET`] (made with Python's `hmac`; `exp` in 2100 unless
/// said otherwise): users A (`ulid`, username Ann), B (`user_id`), C (`sub`, username Cy);
/// then an expired one, one signed with another key, one with no user claim, and text.
const TOKENS: [&str; 7] = [
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ1bGlkIjoiVVNFUl9BIiwidXNlcm5hbWUiOiJBbm4iLCJleHAiOjQxMDI0NDQ4MDB9.1by1kH4IjQoDFzDJ0OXs_1xDWXvXbOLK2mOKXvVKX4hDKzFNOmDalKm2_VAoc85GDqgjUAq5ELOAhx83kgupkA",
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ1c2VyX2lkIjoiVVNFUl9CIiwiZXhwIjo0MTAyNDQ0ODAwfQ.bw7U0X8xt7hoibuhA9IBeDsm7DnkQvbbwoK1D7lA6C2HIZoeahVo2BNJQ44f2TDgLbfBzOEP3g2lgVn7XPpuvw",
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJVU0VSX0MiLCJ1c2VybmFtZSI6IkN5IiwiZXhwIjo0MTAyNDQ0ODAwfQ.uIqjkAYJqGiiAL21r-CqXu3yatoVAXxh4G76n9vRllscq8vU4awOfY5c1Lf48PAHsY5U2IsNHHDLylF7Ax8aTA",
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ1bGlkIjoiVVNFUl9BIiwiZXhwIjoxMDAwMDAwMDAwfQ.qFhc7mICjKwu7OWyF5Y1Jyvg9YbzqE0DvJSXA7FiyqKK8_9M1eiU8Pm4AHx5AFteQaXqTpQOC8tecwMTXD5BGw",
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ1bGlkIjoiVVNFUl9CIiwiZXhwIjo0MTAyNDQ0ODAwfQ.uYA8a7ic_MNizNmEyqGw4Rr5pqgmvgM4MF7nK9z1Aq0JCkamRaIOibAqs1JETCdUTpg0ZRr84ctCgGmsAhNhyA",
    "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJ1c2VybmFtZSI6Ik5vYm9keSIsImV4cCI6NDEwMjQ0NDgwMH0.SoLTJ17j3B8iKaj6HEs77PWTTAVaFr8JWdR5LHmpeV--BmTJJJiZMNSDBxkD-tdWzekuUz5BwgQnvxh8uXxQ_g",
    "let me in",
];

/// What a valid token proves: (user id, username claim).
fn token_claims(token: &str) -> Option<(&'static str, Option<&'static str>)> {
    match TOKENS.iter().position(|t| *t == token)? {
        0 => Some(("USER_A", Some("Ann"))),
        1 => Some(("USER_B", None)),
        2 => Some(("USER_C", Some("Cy"))),
        _ => None,
    }
}

/// What the server sends (the relayed opcodes aside).
const SERVER_OPCODES: [&str; 17] = [
    "INIT_OK",
    "KEEPALIVE_ACK",
    "LIST_ACK",
    "FIND_ACK",
    "CREATE_ACK",
    "JOIN_ACK",
    "MANAGE_ACK",
    "TRANSITION",
    "NEW_HOST",
    "NEW_PEER",
    "PEER_JOIN",
    "PEER_LEFT",
    "NEW_LOBBY",
    "LOBBY_CLOSED",
    "WARNING",
    "VIOLATION",
    "RELAY",
];
const RELAYED: [&str; 6] = ["G_MSG", "G_VAR", "G_LIST", "P_MSG", "P_VAR", "P_LIST"];
const LOBBY_OPS: [&str; 5] = [
    "LIST_LOBBIES",
    "FIND_LOBBY",
    "CREATE_LOBBY",
    "JOIN_LOBBY",
    "MANAGE_LOBBY",
];
const KICKED: &str = "You have been kicked from the lobby.";

fn name_of(i: u8) -> String {
    match i % 14 {
        0 | 1 => "lobby".into(),
        2 | 3 => "room".into(),
        4 => "Lobby".into(),
        5 => "x".repeat(64),
        6 => "x".repeat(65),
        7 => String::new(),
        8 => "é".repeat(64),
        9 => "é".repeat(65),
        10 => "名前".into(),
        11 => " ".into(),
        12 => "a b".into(),
        _ => "L".into(),
    }
}

// --- What the server holds, as the harness sees it -------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Peer {
    iid: String,
    /// `None` in a prediction: a fresh `GUEST_<ULID>`.
    user_id: Option<String>,
    username: String,
    pubkey: Option<String>,
}

impl Peer {
    fn json(&self) -> Value {
        let mut m = Map::new();
        m.insert("instance_id".into(), json!(self.iid));
        m.insert(
            "user_id".into(),
            json!(self.user_id.as_deref().unwrap_or("")),
        );
        m.insert("username".into(), json!(self.username));
        if let Some(k) = &self.pubkey {
            m.insert("pubkey".into(), json!(k));
        }
        Value::Object(m)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
struct Cl {
    connected: bool,
    /// Where its session is (not compared: where a session lives is not the page's).
    shard: usize,
    ugi: String,
    iid: String,
    peer: Option<Peer>,
    lobby: Option<String>,
    hosting: bool,
    /// Listed among its game's clients in no lobby on its shard.
    idle: bool,
}

/// A lobby password as far as the harness knows it.
#[derive(Clone, Debug, PartialEq)]
enum Pw {
    Known(Option<String>),
    Unknown,
}

#[derive(Clone, Debug)]
struct Lob {
    members: Vec<ClientId>,
    locked: bool,
    max: i64,
    has_pw: bool,
    pw: Pw,
    relay: bool,
}

type LobbyKey = (String, String);

#[derive(Clone, Debug, Default)]
struct World {
    clients: BTreeMap<ClientId, Cl>,
    lobbies: BTreeMap<LobbyKey, Lob>,
}

/// Reads the server's state, checking on the way what must hold whatever happened.
fn snapshot(
    sim: &Sim,
    tracked: &[ClientId],
    pw: &HashMap<LobbyKey, Pw>,
    token_mode: bool,
) -> World {
    let mut w = World::default();
    let mut by_key = HashMap::new();
    for &c in tracked {
        let (shard, key) = (sim.shard_of(c), sim.key_of(c));
        if !sim.is_connected(c) {
            assert!(
                sim.cores[shard].session(key).is_none(),
                "client {c}'s session outlives its connection"
            );
            w.clients.insert(c, Cl::default());
            continue;
        }
        let s = sim.cores[shard]
            .session(key)
            .unwrap_or_else(|| panic!("client {c} is connected without a session"));
        let DialectSession::Cloudlink(cl) = &s.dialect else {
            panic!("client {c} is not a cloudlink session");
        };
        assert!(
            cl.pending.is_none() && cl.claiming.is_none() && !s.moving && !s.paused,
            "client {c}: a move or claim left unfinished once the server is quiet"
        );
        let idle_list = sim.cloudlink(shard).idle.get(&*cl.ugi);
        let listed = idle_list.map_or(0, |l| l.iter().filter(|k| **k == key).count());
        assert!(listed <= 1, "client {c} is listed idle twice");
        w.clients.insert(
            c,
            Cl {
                connected: true,
                shard,
                ugi: cl.ugi.to_string(),
                iid: cl.instance_id.to_string(),
                peer: cl.peer.as_ref().map(|p| Peer {
                    iid: p.instance_id.to_string(),
                    user_id: Some(p.user_id.to_string()),
                    username: p.username.to_string(),
                    pubkey: p.pubkey.as_deref().map(str::to_string),
                }),
                lobby: cl.lobby.as_deref().map(str::to_string),
                hosting: cl.hosting,
                idle: listed == 1,
            },
        );
        by_key.insert((shard, key), c);
    }
    let sessions: usize = sim.cores.iter().map(|core| core.session_count()).sum();
    let connected = w.clients.values().filter(|c| c.connected).count();
    assert_eq!(
        sessions, connected,
        "sessions on the server vs connected clients"
    );

    for shard in 0..SHARDS {
        let cl = sim.cloudlink(shard);
        // Idle lists hold only this shard's open sessions of that game in no lobby.
        for (ugi, keys) in &cl.idle {
            assert!(!keys.is_empty(), "an empty idle list is kept for {ugi}");
            for key in keys {
                let c = by_key.get(&(shard, *key)).unwrap_or_else(|| {
                    panic!("shard {shard}: an idle entry of {ugi} is no connected client")
                });
                let client = &w.clients[c];
                assert_eq!(&client.ugi, &**ugi, "client {c} idle under another game");
            }
        }
        let gauge = cl
            .metrics
            .lobbies
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            gauge as usize,
            cl.lobbies.len(),
            "shard {shard}: lobbies gauge"
        );
        for ((ugi, name), lobby) in &cl.lobbies {
            assert_eq!(
                (&lobby.ugi, &lobby.name),
                (ugi, name),
                "lobby keyed by its id"
            );
            let here = home(ugi, name, SHARDS).0 as usize;
            assert_eq!(here, shard, "lobby {ugi}/{name} is not on its home shard");
            assert!(!lobby.members.is_empty(), "lobby {name} has no host");
            let mut members = Vec::new();
            for (i, m) in lobby.members.iter().enumerate() {
                assert_eq!(m.at.shard.0 as usize, shard, "member of {name} elsewhere");
                let c = *by_key
                    .get(&(shard, m.at.key))
                    .unwrap_or_else(|| panic!("lobby {name}: member {i} is no connected client"));
                assert!(!members.contains(&c), "lobby {name}: client {c} twice");
                let client = &w.clients[&c];
                assert_eq!(client.lobby.as_deref(), Some(&**name), "{c} in {name}");
                assert_eq!(&client.ugi, &**ugi, "{c}'s game");
                assert_eq!(client.hosting, i == 0, "{c} hosts {name} iff it is first");
                let peer = client.peer.as_ref().expect("a member is authorized");
                assert_eq!(&peer.iid, &*m.peer.instance_id, "member identity");
                assert_eq!(peer.user_id.as_deref(), Some(&*m.peer.user_id));
                assert_eq!(&peer.username, &*m.peer.username);
                assert_eq!(peer.pubkey.as_deref(), m.peer.pubkey.as_deref());
                members.push(c);
            }
            let key = (ugi.to_string(), name.to_string());
            let known = pw.get(&key).cloned().unwrap_or(Pw::Unknown);
            w.lobbies.insert(
                key,
                Lob {
                    members,
                    locked: lobby.locked,
                    max: lobby.max_players,
                    has_pw: lobby.password.is_some(),
                    pw: known,
                    relay: lobby.relay,
                },
            );
        }
    }
    for (c, client) in &w.clients {
        if !client.connected {
            continue;
        }
        match &client.lobby {
            Some(name) => {
                let lobby = w
                    .lobbies
                    .get(&(client.ugi.clone(), name.clone()))
                    .unwrap_or_else(|| panic!("client {c} is in lobby {name}, which is gone"));
                assert!(
                    lobby.members.contains(c),
                    "client {c} not among {name}'s members"
                );
                assert!(!client.idle, "client {c} in a lobby and listed idle");
            }
            None => {
                assert!(!client.hosting, "client {c} hosts no lobby");
                assert!(client.idle, "client {c} in no lobby is not listed idle");
            }
        }
    }
    // Every shard's directory lists exactly the lobbies, as they are.
    for shard in 0..SHARDS {
        let dir = &sim.cloudlink(shard).directory;
        let mut listed = 0;
        for (ugi, names) in dir {
            assert!(!names.is_empty(), "shard {shard}: empty directory of {ugi}");
            for (name, l) in names {
                listed += 1;
                let key = (ugi.to_string(), name.to_string());
                let lobby = w.lobbies.get(&key).unwrap_or_else(|| {
                    panic!("shard {shard} lists {ugi}/{name}, which does not exist")
                });
                let host = w.clients[&lobby.members[0]].peer.as_ref().unwrap();
                assert_eq!(&*l.host.instance_id, host.iid, "listed host of {name}");
                assert_eq!(l.current_players, lobby.members.len() - 1, "{name} count");
                assert_eq!(l.max_players, lobby.max, "{name} max_players");
                assert_eq!(l.locked, lobby.locked, "{name} locked");
                assert_eq!(l.password_required, lobby.has_pw, "{name} password");
                assert_eq!(l.relay_enabled, lobby.relay, "{name} relay");
            }
        }
        assert_eq!(listed, w.lobbies.len(), "shard {shard} lists every lobby");
    }
    if token_mode {
        let mut users = BTreeMap::new();
        for (c, client) in &w.clients {
            if let (true, Some(p)) = (client.connected, &client.peer) {
                let user = (client.ugi.clone(), p.user_id.clone());
                if let Some(other) = users.insert(user, *c) {
                    panic!("clients {other} and {c}: one user twice in one game");
                }
            }
        }
    }
    w
}

// --- What a client receives ------------------------------------------------------------

#[derive(Clone, Debug)]
enum Got {
    Frame(Value),
    Close(u16),
}

#[derive(Clone, Debug)]
enum Exp {
    /// This frame (numbers by value).
    Frame(Value),
    /// `{opcode, payload: <a string>}`, but not `not`.
    Text(&'static str, Option<&'static str>),
    /// `INIT_OK` for this instance id and username, with this user id or a fresh guest's.
    InitOk(String, Option<String>, String),
    /// `LIST_ACK` with these names in any order.
    List(BTreeSet<String>),
    /// A close frame, with this code.
    Close(Option<u16>),
}

impl Exp {
    fn matches(&self, got: &Got) -> bool {
        match (self, got) {
            (Exp::Close(code), Got::Close(c)) => code.is_none_or(|code| code == *c),
            (Exp::Close(_), _) | (_, Got::Close(_)) => false,
            (Exp::Frame(want), Got::Frame(v)) => json_eq(want, v),
            (Exp::Text(op, not), Got::Frame(v)) => {
                v["opcode"] == *op
                    && v["payload"]
                        .as_str()
                        .is_some_and(|s| not.is_none_or(|n| n != s))
            }
            (Exp::InitOk(iid, user, name), Got::Frame(v)) => {
                let p = &v["payload"];
                let user_ok = match user {
                    Some(u) => p["user_id"] == *u,
                    None => p["user_id"].as_str().is_some_and(guest_id),
                };
                v["opcode"] == "INIT_OK"
                    && p["instance_id"] == *iid
                    && p["username"] == *name
                    && user_ok
            }
            (Exp::List(names), Got::Frame(v)) => {
                let got: Option<BTreeSet<String>> = v["payload"]
                    .as_array()
                    .and_then(|a| a.iter().map(|n| n.as_str().map(str::to_string)).collect());
                v["opcode"] == "LIST_ACK" && got.as_ref() == Some(names)
            }
        }
    }
}

/// `got` is `want`, in order.
fn sequence_matches(want: &[Exp], got: &[Got]) -> bool {
    want.len() == got.len() && want.iter().zip(got).all(|(e, g)| e.matches(g))
}

fn text(opcode: &str, payload: &str) -> Exp {
    Exp::Frame(json!({"opcode": opcode, "payload": payload}))
}

fn with_peer(opcode: &str, peer: &Peer) -> Exp {
    Exp::Frame(json!({"opcode": opcode, "payload": peer.json()}))
}

fn crockford(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
}

fn guest_id(u: &str) -> bool {
    u.strip_prefix("GUEST_").is_some_and(crockford)
}

/// `<ULID>_<ugi>`, a valid PeerJS id.
fn instance_id_ok(iid: &str, ugi: &str) -> bool {
    peerjs_id_ok(iid)
        && iid.len() > 27
        && crockford(&iid[..26])
        && iid.as_bytes()[26] == b'_'
        && &iid[27..] == ugi
}

fn peer_shape_ok(v: &Value, ugi: &str) -> bool {
    let Some(m) = v.as_object() else {
        return false;
    };
    let strings = ["instance_id", "user_id", "username"]
        .iter()
        .all(|k| m.get(*k).is_some_and(Value::is_string));
    let keys = m
        .keys()
        .all(|k| ["instance_id", "user_id", "username", "pubkey"].contains(&k.as_str()));
    let pubkey = m.get("pubkey").is_none_or(Value::is_string);
    strings && keys && pubkey && instance_id_ok(m["instance_id"].as_str().unwrap(), ugi)
}

fn lobby_name_ok(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| (1..=NAME_CHARS_MAX).contains(&s.chars().count()))
}

/// What holds for any client's frames, whatever the operation: the page's shapes.
fn check_frames(c: ClientId, got: &[Got], before: &World, after: &World) {
    let me = after
        .clients
        .get(&c)
        .filter(|m| m.connected)
        .or_else(|| before.clients.get(&c))
        .cloned()
        .unwrap_or_default();
    let ugi = me.ugi.as_str();
    let mut closed = false;
    for (i, g) in got.iter().enumerate() {
        assert!(!closed, "client {c}: {g:?} after its close");
        let v = match g {
            Got::Close(_) => {
                closed = true;
                continue;
            }
            Got::Frame(v) => v,
        };
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {v}"));
        let op = v["opcode"]
            .as_str()
            .unwrap_or_else(|| panic!("no string opcode: {v}"));
        let payload = obj.get("payload");
        if RELAYED.contains(&op) {
            let keys = ["opcode", "payload", "origin", "id", "method"];
            assert!(obj.keys().all(|k| keys.contains(&k.as_str())), "{v}");
            let origin = v["origin"]
                .as_str()
                .unwrap_or_else(|| panic!("origin: {v}"));
            // The receiver was in a relay lobby, and `origin` is one of its members.
            let was = before.clients.get(&c).cloned().unwrap_or_default();
            let lobby = was
                .lobby
                .as_ref()
                .and_then(|n| before.lobbies.get(&(was.ugi.clone(), n.clone())))
                .unwrap_or_else(|| panic!("client {c} relayed to outside a lobby: {v}"));
            assert!(lobby.relay, "relayed in a lobby without relay: {v}");
            let members: Vec<&str> = lobby
                .members
                .iter()
                .map(|m| before.clients[m].iid.as_str())
                .collect();
            assert!(
                members.contains(&origin),
                "origin {origin} not a member: {v}"
            );
            assert!(
                !(op.starts_with("G_") && origin == was.iid),
                "G_* back to its sender: {v}"
            );
            continue;
        }
        assert!(SERVER_OPCODES.contains(&op), "not a server opcode: {v}");
        assert!(
            obj.keys().all(|k| k == "opcode" || k == "payload"),
            "extra fields: {v}"
        );
        assert_eq!(
            payload.is_none(),
            op == "KEEPALIVE_ACK",
            "payload omitted only for KEEPALIVE_ACK: {v}"
        );
        let p = payload.cloned().unwrap_or(Value::Null);
        let ok = match op {
            "KEEPALIVE_ACK" => true,
            "INIT_OK" => {
                let m = p.as_object();
                m.is_some_and(|m| m.len() == 3)
                    && peer_shape_ok(&p, ugi)
                    && p["instance_id"] == me.iid.as_str()
            }
            "LIST_ACK" => p.as_array().is_some_and(|a| a.iter().all(lobby_name_ok)),
            "FIND_ACK" => {
                p == "not found"
                    || p.as_object().is_some_and(|m| {
                        m.len() == 6
                            && peer_shape_ok(&m["host"], ugi)
                            && m.get("max_players")
                                .is_some_and(|n| n.as_i64().is_some_and(|n| n == -1 || n >= 1))
                            && m.get("current_players").is_some_and(Value::is_u64)
                            && ["currently_locked", "password_required", "relay_enabled"]
                                .iter()
                                .all(|k| m.get(*k).is_some_and(Value::is_boolean))
                    })
            }
            "CREATE_ACK" => ["ok", "exists", "invalid name", "invalid max_players"]
                .iter()
                .any(|s| p == *s),
            "JOIN_ACK" => ["ok", "not found", "locked", "full", "password"]
                .iter()
                .any(|s| p == *s),
            "TRANSITION" => ["host", "peer", ""].iter().any(|s| p == *s),
            "NEW_HOST" | "NEW_PEER" | "PEER_JOIN" => peer_shape_ok(&p, ugi),
            "PEER_LEFT" => p.as_str().is_some_and(|s| instance_id_ok(s, ugi)),
            "NEW_LOBBY" | "LOBBY_CLOSED" => lobby_name_ok(&p),
            "MANAGE_ACK" | "WARNING" => p.is_string(),
            "VIOLATION" => {
                assert!(
                    matches!(got.get(i + 1), Some(Got::Close(1001))),
                    "client {c}: VIOLATION not followed by close 1001: {got:?}"
                );
                p.is_string()
            }
            "RELAY" => panic!("RELAY without a relay peer: {v}"),
            _ => unreachable!(),
        };
        assert!(ok, "client {c} (game {ugi}): bad {op} payload: {v}");
        if op == "WARNING" && p == KICKED {
            assert!(
                matches!(got.get(i + 1), Some(Got::Close(_))),
                "kicked but not closed: {got:?}"
            );
        }
    }
}

// --- The page, as a model run from the state before an operation -----------------------

/// `text_of`: absent and null are none; another non-string is a wrong shape.
fn text_field(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ()> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn flag_field(obj: &Map<String, Value>, key: &str) -> Result<bool, ()> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(()),
    }
}

/// A JSON number that is an integer (a float with no fractional part counts).
fn integer(v: &Value) -> Option<i64> {
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

/// A guest's username: 1–32 printable characters, trimmed.
fn guest_name(raw: Option<&str>) -> Option<String> {
    let name = raw.map(str::trim).unwrap_or("");
    let n = name.chars().count();
    ((1..=32).contains(&n) && !name.chars().any(char::is_control)).then(|| name.to_string())
}

struct Model<'h> {
    w: World,
    out: BTreeMap<ClientId, Vec<Exp>>,
    /// Clients whose frames are compared in any order.
    unordered: BTreeSet<ClientId>,
    /// The page does not settle the outcome: only the general properties are checked.
    exact: bool,
    cap: i64,
    token_mode: bool,
    query_tokens: &'h HashMap<ClientId, Option<String>>,
}

impl Model<'_> {
    fn send(&mut self, c: ClientId, e: Exp) {
        if self.w.clients.get(&c).is_some_and(|x| x.connected) {
            self.out.entry(c).or_default().push(e);
        }
    }

    fn cl(&mut self, c: ClientId) -> &mut Cl {
        self.w.clients.get_mut(&c).expect("tracked")
    }

    fn peer(&self, c: ClientId) -> Peer {
        self.w.clients[&c].peer.clone().expect("authorized")
    }

    fn warn(&mut self, x: ClientId, why: &str) {
        self.send(x, text("WARNING", why));
    }

    fn violation(&mut self, x: ClientId) {
        self.send(x, Exp::Text("VIOLATION", None));
        self.send(x, Exp::Close(Some(1001)));
        self.forget(x);
    }

    /// The connection is gone: out of its lobby, off the idle list.
    fn forget(&mut self, x: ClientId) {
        self.leave(x);
        let cl = self.cl(x);
        cl.idle = false;
        cl.connected = false;
    }

    /// `NEW_LOBBY` / `LOBBY_CLOSED` to the game's clients in no lobby.
    fn announce(&mut self, ugi: &str, opcode: &str, name: &str) {
        let idle: Vec<ClientId> = self
            .w
            .clients
            .iter()
            .filter(|(_, c)| c.connected && c.idle && c.ugi == ugi)
            .map(|(id, _)| *id)
            .collect();
        for c in idle {
            self.send(c, text(opcode, name));
        }
    }

    fn leave(&mut self, x: ClientId) {
        let cl = self.cl(x);
        let Some(name) = cl.lobby.take() else {
            return;
        };
        cl.hosting = false;
        let id = (cl.ugi.clone(), name.clone());
        let iid = cl.iid.clone();
        let lobby = self
            .w
            .lobbies
            .get_mut(&id)
            .expect("checked by the snapshot");
        let index = lobby.members.iter().position(|m| *m == x).expect("member");
        lobby.members.remove(index);
        if lobby.members.is_empty() {
            self.w.lobbies.remove(&id);
            return self.announce(&id.0, "LOBBY_CLOSED", &name);
        }
        let rest = lobby.members.clone();
        for &r in &rest {
            self.send(r, text("PEER_LEFT", &iid));
        }
        if index == 0 {
            let host = rest[0];
            self.cl(host).hosting = true;
            let peer = self.peer(host);
            self.send(host, text("TRANSITION", "host"));
            self.send(host, with_peer("NEW_HOST", &peer));
            for &r in &rest[1..] {
                self.send(r, with_peer("NEW_HOST", &peer));
            }
        }
    }

    fn enter(&mut self, x: ClientId, name: &str, hosting: bool) {
        let cl = self.cl(x);
        cl.idle = false;
        cl.lobby = Some(name.to_string());
        cl.hosting = hosting;
    }

    /// One frame from `x`, as the server reads it.
    fn message(&mut self, x: ClientId, v: &Value) {
        let Some(obj) = v.as_object() else {
            return self.violation(x);
        };
        let Some(opcode) = obj.get("opcode").and_then(Value::as_str) else {
            return self.violation(x);
        };
        let payload = obj.get("payload").filter(|p| !p.is_null());
        let authorized = self.w.clients[&x].peer.is_some();
        match opcode {
            "KEEPALIVE" => self.send(x, Exp::Frame(json!({"opcode": "KEEPALIVE_ACK"}))),
            "INIT" => self.init(x, payload),
            op if (LOBBY_OPS.contains(&op) || RELAYED.contains(&op)) && !authorized => {
                self.warn(x, "unauthorized")
            }
            "LIST_LOBBIES" => {
                let ugi = self.w.clients[&x].ugi.clone();
                let names = self
                    .w
                    .lobbies
                    .keys()
                    .filter(|(g, _)| *g == ugi)
                    .map(|(_, n)| n.clone())
                    .collect();
                self.send(x, Exp::List(names));
            }
            "FIND_LOBBY" => self.find(x, payload),
            "CREATE_LOBBY" => self.create_lobby(x, payload),
            "JOIN_LOBBY" => self.join_lobby(x, payload),
            "MANAGE_LOBBY" => self.manage(x, payload),
            op if RELAYED.contains(&op) => self.relay(x, op, obj),
            _ => self.warn(x, "unknown or unimplemented opcode"),
        }
    }

    fn init(&mut self, x: ClientId, payload: Option<&Value>) {
        let me = self.w.clients[&x].clone();
        if me.peer.is_some() {
            return self.warn(x, "already authorized");
        }
        let fields = match payload {
            None => Ok((None, None, None)),
            Some(Value::Object(obj)) => (|| {
                Ok::<_, ()>((
                    text_field(obj, "token")?,
                    text_field(obj, "username")?,
                    text_field(obj, "pubkey")?,
                ))
            })(),
            Some(_) => Err(()),
        };
        let Ok((token, username, pubkey)) = fields else {
            return self.violation(x);
        };
        let identity = if self.token_mode {
            let token = self.query_tokens.get(&x).cloned().flatten().or(token);
            match token.as_deref().and_then(token_claims) {
                None => None,
                Some((user, claimed)) => claimed
                    .map(str::to_string)
                    .or_else(|| guest_name(username.as_deref()))
                    .map(|name| (Some(user.to_string()), name)),
            }
        } else {
            guest_name(username.as_deref()).map(|name| (None, name))
        };
        let Some((user_id, name)) = identity else {
            return self.violation(x);
        };
        if let Some(user) = &user_id {
            let taken = self.w.clients.iter().any(|(c, o)| {
                *c != x
                    && o.connected
                    && o.ugi == me.ugi
                    && o.peer.as_ref().and_then(|p| p.user_id.as_ref()) == Some(user)
            });
            if taken {
                return self.violation(x);
            }
        }
        self.send(
            x,
            Exp::InitOk(me.iid.clone(), user_id.clone(), name.clone()),
        );
        self.cl(x).peer = Some(Peer {
            iid: me.iid,
            user_id,
            username: name,
            pubkey,
        });
    }

    fn find(&mut self, x: ClientId, payload: Option<&Value>) {
        let Some(name) = payload.and_then(Value::as_str) else {
            return self.violation(x);
        };
        let id = (self.w.clients[&x].ugi.clone(), name.to_string());
        let answer = match self.w.lobbies.get(&id) {
            None => json!("not found"),
            Some(l) => json!({
                "host": self.peer(l.members[0]).json(),
                "max_players": l.max,
                "current_players": l.members.len() - 1,
                "currently_locked": l.locked,
                "password_required": l.has_pw,
                "relay_enabled": l.relay,
            }),
        };
        self.send(
            x,
            Exp::Frame(json!({"opcode": "FIND_ACK", "payload": answer})),
        );
    }

    fn max_players(&self, v: Option<&Value>) -> Option<i64> {
        v.and_then(integer)
            .filter(|&n| n == -1 || (1..=self.cap).contains(&n))
    }

    fn create_lobby(&mut self, x: ClientId, payload: Option<&Value>) {
        let Some(Value::Object(obj)) = payload else {
            return self.violation(x);
        };
        let read = (|| {
            let name = text_field(obj, "name")?.ok_or(())?;
            Ok::<_, ()>((
                name,
                text_field(obj, "password")?,
                flag_field(obj, "locked")?,
                flag_field(obj, "enable_relay")?,
            ))
        })();
        let Ok((name, password, locked, relay)) = read else {
            return self.violation(x);
        };
        let chars = name.chars().count();
        if chars == 0 || chars > NAME_CHARS_MAX {
            return self.send(x, text("CREATE_ACK", "invalid name"));
        }
        let max = obj.get("max_players").filter(|v| !v.is_null());
        let Some(max) = self.max_players(max) else {
            return self.send(x, text("CREATE_ACK", "invalid max_players"));
        };
        self.leave_first(x, &name);
        let ugi = self.w.clients[&x].ugi.clone();
        let id = (ugi.clone(), name.clone());
        if self.w.lobbies.contains_key(&id) {
            self.send(x, text("CREATE_ACK", "exists"));
            return;
        }
        let password = password.filter(|p| !p.is_empty());
        self.w.lobbies.insert(
            id,
            Lob {
                members: vec![x],
                locked,
                max,
                has_pw: password.is_some(),
                pw: Pw::Known(password),
                relay,
            },
        );
        self.enter(x, &name, true);
        let peer = self.peer(x);
        self.send(x, text("TRANSITION", "host"));
        self.send(x, text("CREATE_ACK", "ok"));
        self.send(x, with_peer("NEW_HOST", &peer));
        self.announce(&ugi, "NEW_LOBBY", &name);
    }

    /// A client in a lobby leaves it before it creates or joins `name`, whose home it
    /// moves to. The old lobby's closing (when it was the last member) reaches every other
    /// shard before the session does, so nothing depends on the shard count: the mover
    /// never hears it, and the idle clients where it lands hear it before anything the
    /// create or join announces.
    fn leave_first(&mut self, x: ClientId, name: &str) {
        let me = self.w.clients[&x].clone();
        if me.lobby.is_some() {
            self.leave(x);
            self.send(x, text("TRANSITION", ""));
            self.cl(x).idle = true;
        }
        let there = home(&me.ugi, name, SHARDS).0 as usize;
        self.cl(x).shard = there;
    }

    fn join_lobby(&mut self, x: ClientId, payload: Option<&Value>) {
        let Some(Value::Object(obj)) = payload else {
            return self.violation(x);
        };
        let read = (|| {
            let name = text_field(obj, "name")?.ok_or(())?;
            Ok::<_, ()>((name, text_field(obj, "password")?))
        })();
        let Ok((name, password)) = read else {
            return self.violation(x);
        };
        self.leave_first(x, &name);
        let id = (self.w.clients[&x].ugi.clone(), name.clone());
        let Some(lobby) = self.w.lobbies.get(&id) else {
            self.send(x, text("JOIN_ACK", "not found"));
            return;
        };
        let wrong_password = match &lobby.pw {
            Pw::Known(p) => p
                .as_ref()
                .is_some_and(|p| *p != password.clone().unwrap_or_default()),
            Pw::Unknown if lobby.has_pw => {
                self.exact = false;
                false
            }
            Pw::Unknown => false,
        };
        let refusal = if lobby.locked {
            Some("locked")
        } else if lobby.max != -1 && (lobby.members.len() - 1) as i64 >= lobby.max {
            Some("full")
        } else if wrong_password {
            Some("password")
        } else {
            None
        };
        if let Some(why) = refusal {
            self.send(x, text("JOIN_ACK", why));
            return;
        }
        let lobby = self.w.lobbies.get_mut(&id).unwrap();
        lobby.members.push(x);
        let host = lobby.members[0];
        let others = lobby.members[1..lobby.members.len() - 1].to_vec();
        self.enter(x, &name, false);
        let (me, host_peer) = (self.peer(x), self.peer(host));
        self.send(x, text("TRANSITION", "peer"));
        self.send(x, text("JOIN_ACK", "ok"));
        self.send(x, with_peer("NEW_HOST", &host_peer));
        self.send(host, with_peer("NEW_PEER", &me));
        for o in others {
            self.send(o, with_peer("PEER_JOIN", &me));
        }
    }

    /// The member `args` names (not the host).
    fn peer_named(&self, id: &LobbyKey, args: Option<&Value>) -> Option<usize> {
        let target = args.and_then(Value::as_str)?;
        let lobby = &self.w.lobbies[id];
        lobby
            .members
            .iter()
            .position(|m| self.w.clients[m].iid == target)
            .filter(|&i| i > 0)
    }

    fn manage(&mut self, x: ClientId, payload: Option<&Value>) {
        let me = self.w.clients[&x].clone();
        let (Some(name), true) = (me.lobby.clone(), me.hosting) else {
            return self.warn(x, "unauthorized");
        };
        let Some(Value::Object(obj)) = payload else {
            return self.violation(x);
        };
        let Ok(Some(method)) = text_field(obj, "method") else {
            return self.violation(x);
        };
        let args = obj.get("args").filter(|a| !a.is_null());
        let id = (me.ugi.clone(), name.clone());
        let ack = |m: &mut Self, answer: &str| m.send(x, text("MANAGE_ACK", answer));
        let error = |m: &mut Self| m.send(x, Exp::Text("MANAGE_ACK", Some("ok")));
        match method.as_str() {
            "lock" | "unlock" => {
                self.w.lobbies.get_mut(&id).unwrap().locked = method == "lock";
                ack(self, "ok");
            }
            "kick" => match self.peer_named(&id, args) {
                None => error(self),
                Some(i) => {
                    let target = self.w.lobbies[&id].members[i];
                    self.send(target, text("WARNING", KICKED));
                    self.send(target, Exp::Close(None));
                    ack(self, "ok");
                    self.unordered.insert(x);
                    self.forget(target);
                }
            },
            "change_password" => match args.and_then(Value::as_str) {
                Some(t) => {
                    let p = (!t.is_empty()).then(|| t.to_string());
                    let lobby = self.w.lobbies.get_mut(&id).unwrap();
                    lobby.has_pw = p.is_some();
                    lobby.pw = Pw::Known(p);
                    ack(self, "ok");
                }
                None => error(self),
            },
            "change_max_players" => match self.max_players(args) {
                Some(max) => {
                    self.w.lobbies.get_mut(&id).unwrap().max = max;
                    ack(self, "ok");
                }
                None => ack(self, "invalid max_players"),
            },
            "close_lobby" => {
                ack(self, "ok");
                let lobby = self.w.lobbies.remove(&id).unwrap();
                for &m in &lobby.members {
                    let cl = self.cl(m);
                    cl.lobby = None;
                    cl.hosting = false;
                    self.send(m, text("TRANSITION", ""));
                    self.send(m, text("LOBBY_CLOSED", &name));
                }
                self.announce(&id.0, "LOBBY_CLOSED", &name);
                for &m in &lobby.members {
                    self.cl(m).idle = true;
                }
            }
            "transfer_ownership" => match self.peer_named(&id, args) {
                None => error(self),
                Some(i) => {
                    let lobby = self.w.lobbies.get_mut(&id).unwrap();
                    let new = lobby.members.remove(i);
                    let old = lobby.members.remove(0);
                    lobby.members.insert(0, new);
                    lobby.members.push(old);
                    let everyone = lobby.members.clone();
                    self.cl(old).hosting = false;
                    self.cl(new).hosting = true;
                    let peer = self.peer(new);
                    self.send(old, text("TRANSITION", "peer"));
                    self.send(new, text("TRANSITION", "host"));
                    for m in everyone {
                        self.send(m, with_peer("NEW_HOST", &peer));
                    }
                    ack(self, "ok");
                    self.unordered.insert(x);
                }
            },
            _ => ack(self, "unknown method"),
        }
    }

    fn relay(&mut self, x: ClientId, opcode: &str, obj: &Map<String, Value>) {
        let me = self.w.clients[&x].clone();
        let id = me.lobby.as_ref().map(|n| (me.ugi.clone(), n.clone()));
        let Some(lobby) = id
            .and_then(|id| self.w.lobbies.get(&id))
            .filter(|l| l.relay)
        else {
            return self.warn(x, "unknown or unimplemented opcode");
        };
        let members = lobby.members.clone();
        let mut frame = Map::new();
        frame.insert("opcode".into(), json!(opcode));
        let opt = |k: &str| obj.get(k).filter(|v| !v.is_null()).cloned();
        if let Some(p) = opt("payload") {
            frame.insert("payload".into(), p);
        }
        frame.insert("origin".into(), json!(me.iid));
        for k in ["id", "method"] {
            if let Some(v) = opt(k) {
                frame.insert(k.into(), v);
            }
        }
        let frame = Value::Object(frame);
        if opcode.starts_with("G_") {
            for m in members.into_iter().filter(|m| *m != x) {
                self.send(m, Exp::Frame(frame.clone()));
            }
            return;
        }
        let to = opt("recipient").and_then(|r| {
            let r = r.as_str()?.to_string();
            members.into_iter().find(|m| self.w.clients[m].iid == r)
        });
        match to {
            Some(m) => self.send(m, Exp::Frame(frame)),
            None => self.warn(x, "peer not found"),
        }
    }
}

/// Are there two equal keys in an object anywhere (which reader wins is not the page's)?
fn duplicate_keys(v: &codec::Value<'_>) -> bool {
    match v {
        codec::Value::Object(map) => {
            let keys: BTreeSet<&str> = map.keys().map(|k| &**k).collect();
            keys.len() != map.len() || map.values().any(duplicate_keys)
        }
        codec::Value::Array(items) => items.iter().any(duplicate_keys),
        _ => false,
    }
}

// --- The script ------------------------------------------------------------------------

/// What an operation does (`(op >> 2) % 16`).
#[derive(Clone, Copy)]
enum Kind {
    RawText,
    RawBinary,
    Init,
    Keepalive,
    List,
    Find,
    Create,
    Join,
    Manage,
    Relay,
    Advance,
    Reconnect,
    Unknown,
    WrongShape,
    NotAnObject,
    Disconnect,
}

const KINDS: [Kind; 16] = [
    Kind::RawText,
    Kind::RawBinary,
    Kind::Init,
    Kind::Keepalive,
    Kind::List,
    Kind::Find,
    Kind::Create,
    Kind::Join,
    Kind::Manage,
    Kind::Relay,
    Kind::Advance,
    Kind::Reconnect,
    Kind::Unknown,
    Kind::WrongShape,
    Kind::NotAnObject,
    Kind::Disconnect,
];

#[derive(Debug)]
enum Action {
    /// A structured frame (sent as JSON text).
    Frame(usize, Value),
    /// Text as the client typed it.
    Raw(usize, String),
    Binary(usize, Vec<u8>),
    Advance(u64),
    /// The slot's client goes (a close frame, else a dropped socket) and, if `connect`, a
    /// new one takes the slot.
    Replace {
        slot: usize,
        close_frame: bool,
        connect: Option<Connect>,
    },
}

#[derive(Clone, Debug)]
struct Connect {
    shard: usize,
    game: usize,
    token: Option<&'static str>,
    root: bool,
}

struct Harness {
    sim: Sim,
    tracked: Vec<ClientId>,
    slots: [Option<ClientId>; 4],
    world: World,
    pw: HashMap<LobbyKey, Pw>,
    query_tokens: HashMap<ClientId, Option<String>>,
    cap: i64,
    token_mode: bool,
    /// No idle timeouts and no rate limit: every operation's outcome is the page's.
    exact: bool,
    /// Timeouts are off: advancing the clock changes nothing.
    timeless: bool,
}

impl Harness {
    fn iid(&self, slot: usize) -> String {
        self.slots[slot]
            .and_then(|c| self.world.clients.get(&c))
            .map(|c| c.iid.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| "01AAAAAAAAAAAAAAAAAAAAAAAA_game".into())
    }

    fn step(&mut self, action: Action) {
        let before = self.world.clone();
        let mut model = Model {
            w: before.clone(),
            out: BTreeMap::new(),
            unordered: BTreeSet::new(),
            exact: self.exact,
            cap: self.cap,
            token_mode: self.token_mode,
            query_tokens: &self.query_tokens,
        };
        // Clients whose frames this step are not the page's to predict (a client that
        // itself goes may get the server's close reply).
        let mut unpredicted = Vec::new();
        let mut connected = None;
        match &action {
            Action::Frame(slot, v) => {
                if let Some(x) = self.slots[*slot].filter(|x| before.clients[x].connected) {
                    model.message(x, v);
                }
            }
            Action::Raw(slot, text) => {
                if let Some(x) = self.slots[*slot].filter(|x| before.clients[x].connected) {
                    let mut bytes = text.as_bytes().to_vec();
                    let mut decoder = Decoder::default();
                    let decoded = decoder
                        .decode(Codec::Json, &mut bytes)
                        .ok()
                        .map(|v| (duplicate_keys(&v), codec::to_json(&v)));
                    match decoded {
                        None => model.violation(x),
                        Some((true, _)) => model.exact = false,
                        Some((false, v)) => model.message(x, &v),
                    }
                }
            }
            Action::Binary(..) => model.exact = false,
            Action::Advance(_) => model.exact &= self.timeless,
            Action::Replace { slot, .. } => {
                if let Some(x) = self.slots[*slot] {
                    if before.clients[&x].connected {
                        model.forget(x);
                    }
                    unpredicted.push(x);
                }
            }
        }
        let action_text = format!("{action:?}");
        let mut model_out = std::mem::take(&mut model.out);
        let (predicted, exact, unordered) = (model.w, model.exact, model.unordered);

        match action {
            Action::Frame(slot, v) => {
                if let Some(x) = self.slots[slot] {
                    self.sim.send_text(x, &v.to_string());
                }
            }
            Action::Raw(slot, text) => {
                if let Some(x) = self.slots[slot] {
                    self.sim.send_text(x, &text);
                }
            }
            Action::Binary(slot, bytes) => {
                if let Some(x) = self.slots[slot] {
                    self.sim.send_bytes(x, bytes);
                }
            }
            Action::Advance(ms) => self.sim.advance(ms),
            Action::Replace {
                slot,
                close_frame,
                connect,
            } => {
                if let Some(x) = self.slots[slot] {
                    if close_frame {
                        self.sim.close(x, 1000);
                    } else {
                        self.sim.disconnect(x);
                    }
                }
                if let Some(to) = connect {
                    let ugi = GAMES[to.game];
                    let path = if to.root { "/" } else { "/cl5" };
                    let target = match to.token {
                        Some(t) => format!("{path}?ugi={ugi}&token={t}"),
                        None => format!("{path}?ugi={ugi}"),
                    };
                    let c = self
                        .sim
                        .upgrade(to.shard, &target, None, None, Codec::Json)
                        .expect("a valid ugi is routed");
                    self.tracked.push(c);
                    self.slots[slot] = Some(c);
                    self.query_tokens.insert(c, to.token.map(str::to_string));
                    connected = Some((c, ugi));
                }
            }
        }

        let after = snapshot(&self.sim, &self.tracked, &self.pw, self.token_mode);
        if trace() {
            eprintln!("--- {}", describe(&action_text));
        }
        let mut predicted = predicted;
        if let Some((c, ugi)) = connected {
            let iid = after.clients[&c].iid.clone();
            assert!(instance_id_ok(&iid, ugi), "instance id {iid} of game {ugi}");
            let others = after.clients.iter().filter(|(o, _)| **o != c);
            assert!(
                others.clone().all(|(_, o)| o.iid != iid),
                "instance id {iid} given twice"
            );
            let new = Cl {
                connected: true,
                shard: after.clients[&c].shard,
                ugi: ugi.into(),
                iid,
                peer: None,
                lobby: None,
                hosting: false,
                idle: true,
            };
            predicted.clients.insert(c, new);
        }
        for &c in &self.tracked {
            let got: Vec<Got> = self
                .sim
                .drain(c)
                .into_iter()
                .filter_map(|r| match r {
                    Received::Frame(v) => Some(Got::Frame(v)),
                    Received::Close(code, _) => Some(Got::Close(code)),
                    Received::Ping => None,
                    other => panic!("client {c}: a frame that is not JSON: {other:?}"),
                })
                .collect();
            if trace() && !got.is_empty() {
                eprintln!("  {c}: {got:?}");
            }
            check_frames(c, &got, &before, &after);
            if unpredicted.contains(&c) {
                assert!(
                    got.iter().all(|g| matches!(g, Got::Close(_))),
                    "client {c} gets frames as it goes: {got:?}"
                );
                continue;
            }
            if !exact {
                continue;
            }
            let want = model_out.remove(&c).unwrap_or_default();
            let same = if unordered.contains(&c) {
                let mut left: Vec<&Exp> = want.iter().collect();
                got.len() == want.len()
                    && got
                        .iter()
                        .all(|g| match left.iter().position(|e| e.matches(g)) {
                            Some(i) => {
                                left.remove(i);
                                true
                            }
                            None => false,
                        })
            } else {
                sequence_matches(&want, &got)
            };
            assert!(
                same,
                "client {c} received\n  {got:?}\nthe page says\n  {want:?}"
            );
        }
        if exact {
            compare(&predicted, &after);
            self.pw = predicted
                .lobbies
                .iter()
                .map(|(k, l)| (k.clone(), l.pw.clone()))
                .collect();
        } else {
            // A password may have changed unseen.
            self.pw.clear();
        }
        self.world = after;
        // Keep the harness's password knowledge in the world it starts the next step from.
        for (k, l) in self.world.lobbies.iter_mut() {
            l.pw = self.pw.get(k).cloned().unwrap_or(Pw::Unknown);
        }
    }
}

/// `HUDDLE_FUZZ_TRACE=1`: print each operation and what every client received (to read a
/// crash or see what a seed exercises).
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("HUDDLE_FUZZ_TRACE").is_some())
}

fn describe(action: &str) -> String {
    action.chars().take(300).collect()
}

/// The state the page predicts is the state the server holds.
fn compare(want: &World, got: &World) {
    for (c, g) in &got.clients {
        let w = want.clients.get(c).cloned().unwrap_or_default();
        assert_eq!(w.connected, g.connected, "client {c} connected");
        if !g.connected {
            continue;
        }
        assert_eq!(
            (&w.ugi, &w.iid, &w.lobby, w.hosting, w.idle),
            (&g.ugi, &g.iid, &g.lobby, g.hosting, g.idle),
            "client {c}: (game, instance id, lobby, hosting, idle)"
        );
        match (&w.peer, &g.peer) {
            (None, None) => {}
            (Some(wp), Some(gp)) => {
                let user_ok = match &wp.user_id {
                    Some(u) => gp.user_id.as_ref() == Some(u),
                    None => gp.user_id.as_deref().is_some_and(guest_id),
                };
                assert!(
                    user_ok
                        && wp.iid == gp.iid
                        && wp.username == gp.username
                        && wp.pubkey == gp.pubkey,
                    "client {c}: identity {gp:?}, the page says {wp:?}"
                );
            }
            _ => panic!(
                "client {c}: identity {:?}, the page says {:?}",
                g.peer, w.peer
            ),
        }
    }
    let names = |w: &World| w.lobbies.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(want), names(got), "lobbies");
    for (k, g) in &got.lobbies {
        let w = &want.lobbies[k];
        assert_eq!(
            (&w.members, w.locked, w.max, w.has_pw, w.relay),
            (&g.members, g.locked, g.max, g.has_pw, g.relay),
            "lobby {k:?}: (members, locked, max_players, password, relay)"
        );
    }
}

// --- Building frames from input bytes --------------------------------------------------

fn field(obj: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        obj.insert(key.into(), v);
    }
}

fn name_field(inp: &mut Input<'_>) -> Option<Value> {
    let b = inp.byte();
    match b % 18 {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(Value::String(inp.short_text())),
        3 => Some(json!(5)),
        4 => Some(inp.value(1)),
        _ => Some(json!(name_of(b / 18 + b % 18))),
    }
}

fn max_field(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 16 {
        0 => return None,
        1 => Value::Null,
        2 | 13 => json!(-1),
        3 => json!(1),
        4 => json!(2),
        5 => json!(3),
        6 => json!(0),
        7 => json!(2.5),
        8 => json!("abc"),
        9 => json!(256),
        10 => json!(257),
        11 => json!(-2),
        12 => json!(2.0),
        14 => inp.value(1),
        _ => json!(4),
    })
}

fn password_field(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 8 {
        0 => return None,
        1 => Value::Null,
        2 => json!(""),
        3 | 6 => json!("pw"),
        4 => json!("PW"),
        5 => inp.value(1),
        _ => json!(7),
    })
}

fn flag(inp: &mut Input<'_>) -> Option<Value> {
    Some(match inp.byte() % 8 {
        0 => return None,
        1 => Value::Null,
        2 | 6 => json!(true),
        3 | 7 => json!(false),
        4 => json!("true"),
        _ => json!(1),
    })
}

fn small_value(inp: &mut Input<'_>) -> Option<Value> {
    match inp.byte() % 4 {
        0 => None,
        1 => Some(Value::Null),
        _ => Some(inp.value(2)),
    }
}

impl Harness {
    /// An instance id of a slot's client, or another value.
    fn who(&self, inp: &mut Input<'_>) -> Option<Value> {
        let b = inp.byte();
        Some(match b % 12 {
            0 => return None,
            1 => Value::Null,
            2..=5 => json!(self.iid(usize::from(b % 12 - 2))),
            6 => json!("nobody"),
            7 => json!(""),
            8 => json!(3),
            9 => inp.value(1),
            _ => json!(self.iid(usize::from(b / 12 % 4))),
        })
    }

    fn frame(&self, kind: Kind, inp: &mut Input<'_>) -> Value {
        let mut obj = Map::new();
        let opcode = match kind {
            Kind::Init => "INIT",
            Kind::Keepalive => "KEEPALIVE",
            Kind::List => "LIST_LOBBIES",
            Kind::Find => "FIND_LOBBY",
            Kind::Create => "CREATE_LOBBY",
            Kind::Join => "JOIN_LOBBY",
            Kind::Manage => "MANAGE_LOBBY",
            Kind::Relay => inp.pick(&RELAYED),
            Kind::Unknown => inp.pick(&[
                "RELAY",
                "NEW_CHAN",
                "init",
                "",
                "G_",
                "P_MSGX",
                "LIST_ACK",
                "VIOLATION",
            ]),
            _ => inp.pick(&[
                "INIT",
                "KEEPALIVE",
                "LIST_LOBBIES",
                "FIND_LOBBY",
                "CREATE_LOBBY",
                "JOIN_LOBBY",
                "MANAGE_LOBBY",
                "G_MSG",
                "P_VAR",
            ]),
        };
        obj.insert("opcode".into(), json!(opcode));
        let payload = match kind {
            Kind::Init => match inp.byte() % 8 {
                0 => None,
                1 => Some(inp.value(2)),
                _ => {
                    let mut p = Map::new();
                    let user = inp.byte();
                    let username = match user % 16 {
                        0 => None,
                        1 => Some(Value::Null),
                        2 => Some(json!("Ann")),
                        3 => Some(json!("  Bob  ")),
                        4 => Some(json!("")),
                        5 => Some(json!("   ")),
                        6 => Some(json!("x".repeat(32))),
                        7 => Some(json!("x".repeat(33))),
                        8 => Some(json!("a\nb")),
                        9 => Some(json!("é".repeat(32))),
                        10 => Some(json!("名前")),
                        11 => Some(json!("\u{7f}")),
                        12 => Some(Value::String(inp.short_text())),
                        13 => Some(json!(5)),
                        _ => Some(json!(format!("p{user}"))),
                    };
                    field(&mut p, "username", username);
                    let t = inp.byte();
                    let token = match t % 10 {
                        0 => None,
                        1 => Some(Value::Null),
                        2..=8 => Some(json!(TOKENS[usize::from(t % 10 - 2)])),
                        _ => Some(json!(5)),
                    };
                    field(&mut p, "token", token);
                    let pubkey = match inp.byte() % 5 {
                        1 => Some(Value::Null),
                        2 => Some(json!("pk1")),
                        3 => Some(json!(5)),
                        _ => None,
                    };
                    field(&mut p, "pubkey", pubkey);
                    Some(Value::Object(p))
                }
            },
            Kind::Keepalive | Kind::List => small_value(inp),
            Kind::Find => name_field(inp),
            Kind::Create => {
                if inp.byte() % 8 == 0 {
                    Some(inp.value(2))
                } else {
                    let mut p = Map::new();
                    field(&mut p, "name", name_field(inp));
                    field(&mut p, "max_players", max_field(inp));
                    field(&mut p, "password", password_field(inp));
                    field(&mut p, "locked", flag(inp));
                    field(&mut p, "enable_relay", flag(inp));
                    Some(Value::Object(p))
                }
            }
            Kind::Join => {
                let mut p = Map::new();
                field(&mut p, "name", name_field(inp));
                field(&mut p, "password", password_field(inp));
                Some(Value::Object(p))
            }
            Kind::Manage => {
                let mut p = Map::new();
                let method = match inp.byte() % 12 {
                    0 => Some(json!("lock")),
                    1 => Some(json!("unlock")),
                    2 | 11 => Some(json!("kick")),
                    3 => Some(json!("change_password")),
                    4 => Some(json!("change_max_players")),
                    5 => Some(json!("close_lobby")),
                    6 => Some(json!("transfer_ownership")),
                    7 => Some(json!("explode")),
                    8 => Some(json!("")),
                    9 => None,
                    _ => Some(inp.value(1)),
                };
                field(&mut p, "method", method);
                let args = match inp.byte() % 3 {
                    0 => self.who(inp),
                    1 => max_field(inp),
                    _ => password_field(inp),
                };
                field(&mut p, "args", args);
                Some(Value::Object(p))
            }
            Kind::Relay => {
                let payload = small_value(inp);
                field(&mut obj, "recipient", self.who(inp));
                field(&mut obj, "id", small_value(inp));
                field(&mut obj, "method", small_value(inp));
                field(&mut obj, "origin", small_value(inp));
                payload
            }
            _ => Some(inp.value(2)),
        };
        field(&mut obj, "payload", payload);
        Value::Object(obj)
    }
}

/// The `cloudlink_frames` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_cloudlink_frames(data: &[u8]) {
    let mut inp = Input::new(data);
    let (setup, setup2) = (inp.byte(), inp.byte());
    let token_mode = setup & 0x40 != 0;
    let timeless = setup2 & 1 == 0;
    let unlimited = setup2 & 2 == 0;
    let mut cfg = Config {
        seed: 13,
        ..Config::default()
    };
    cfg.cloudlink.max_players_cap = if setup & 0x20 != 0 { 3 } else { 256 };
    cfg.cloudlink.jwt_secret = SECRET.into();
    if token_mode {
        cfg.cloudlink.auth = CloudlinkAuth::Token;
    }
    if timeless {
        cfg.limits.ping_ms = 1 << 40;
        cfg.limits.idle_ms = 1 << 41;
    }
    if unlimited {
        cfg.limits.msgs_burst = 1 << 20;
        cfg.limits.msgs_per_s = 1 << 20;
    } else {
        cfg.limits.msgs_burst = 6;
        cfg.limits.msgs_per_s = 2;
    }
    let mut h = Harness {
        cap: i64::from(cfg.cloudlink.max_players_cap),
        sim: Sim::new(SHARDS, cfg),
        tracked: Vec::new(),
        slots: [None; 4],
        world: World::default(),
        pw: HashMap::new(),
        query_tokens: HashMap::new(),
        token_mode,
        exact: unlimited,
        timeless,
    };
    let init = |h: &mut Harness, slot: usize| {
        let mut p = json!({ "username": format!("p{slot}") });
        if token_mode {
            p["token"] = json!(TOKENS[slot % 3]);
        }
        h.step(Action::Frame(slot, json!({"opcode": "INIT", "payload": p})));
    };
    for slot in 0..4 {
        let connect = Connect {
            shard: usize::from(setup >> slot & 1),
            game: usize::from(slot == 3 && setup & 0x10 != 0),
            token: None,
            root: false,
        };
        h.step(Action::Replace {
            slot,
            close_frame: false,
            connect: Some(connect),
        });
        if setup & 0x80 == 0 {
            init(&mut h, slot);
        }
    }
    while !inp.is_empty() {
        let op = inp.byte();
        let slot = usize::from(op & 3);
        let kind = KINDS[usize::from(op >> 2) % KINDS.len()];
        match kind {
            Kind::RawText => {
                let text = inp.short_text();
                h.step(Action::Raw(slot, text));
            }
            Kind::RawBinary => {
                let bytes = inp.short_bytes().to_vec();
                h.step(Action::Binary(slot, bytes));
            }
            Kind::Advance => {
                let ms = u64::from(inp.u16());
                h.step(Action::Advance(ms));
            }
            Kind::Reconnect => {
                let b = inp.byte();
                let token = match b >> 4 & 7 {
                    0 => None,
                    t => Some(TOKENS[usize::from(t - 1) % TOKENS.len()]),
                };
                let connect = Connect {
                    shard: usize::from(b & 1),
                    game: usize::from(b >> 1 & 1),
                    token,
                    root: b & 0x80 != 0,
                };
                h.step(Action::Replace {
                    slot,
                    close_frame: b & 8 != 0,
                    connect: Some(connect),
                });
                if b & 4 != 0 {
                    init(&mut h, slot);
                }
            }
            Kind::Disconnect => {
                let close_frame = inp.byte() & 1 != 0;
                h.step(Action::Replace {
                    slot,
                    close_frame,
                    connect: None,
                });
            }
            Kind::NotAnObject => {
                let v = match inp.byte() % 3 {
                    0 => inp.value(2),
                    1 => json!({ "opcode": inp.value(1) }),
                    _ => json!({ "payload": inp.value(1) }),
                };
                h.step(Action::Frame(slot, v));
            }
            _ => {
                let v = h.frame(kind, &mut inp);
                h.step(Action::Frame(slot, v));
            }
        }
    }
}
