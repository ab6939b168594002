//! The signaling opcodes, in the page's order: `INIT`, `KEEPALIVE`, `LIST_LOBBIES`,
//! `FIND_LOBBY`, `CREATE_LOBBY`, `JOIN_LOBBY`, `MANAGE_LOBBY`, and the relay's `G_*` /
//! `P_*`. A frame or payload of the wrong shape is a `VIOLATION` and the connection closes
//! (1001), as the reference does; everything the page words is worded exactly so.

use std::sync::Arc;

use super::identity::{guest_username, verify_token};
use super::lobby::{self, Announce, PeerInfo};
use super::wire::{self, Packet};
use super::{ClSession, Claim, Create, Cx, Host, Join, LobbyOp, Mesh, Refusal};
use crate::codec::{as_bool, as_i64, as_str, field, is_null, Codec, Value};
use crate::config::CloudlinkAuth;
use crate::core::bucket::Verdict;
use crate::core::outbound::Class;
use crate::core::SessionKey;

/// Lobby names are 1 to this many characters (Unicode scalar values).
const NAME_CHARS_MAX: usize = 64;

/// The opcodes the server relays in a lobby created with `enable_relay`.
const RELAYED: [&str; 6] = ["G_MSG", "G_VAR", "G_LIST", "P_MSG", "P_VAR", "P_LIST"];

/// One frame from a signaling session.
pub(super) fn handle<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, bytes: &mut [u8], now: u64) {
    match cx.eng.take_token(key, now) {
        Verdict::Allow => {}
        Verdict::Limited => return warn(cx, key, Refusal::RateLimited, "rate limited"),
        Verdict::Abusive => {
            warn(cx, key, Refusal::RateLimited, "rate limited");
            return cx.eng.close(key, 1008, "rate limited");
        }
    }
    let Ok(value) = cx.eng.decoder.decode(Codec::Json, bytes) else {
        return violation(
            cx,
            key,
            Refusal::BadPayload,
            "a frame must be a JSON object",
        );
    };
    let packet = match wire::packet(&value) {
        Ok(p) => p,
        Err(why) => return violation(cx, key, Refusal::BadPayload, why),
    };
    let authorized = cx.client(key).is_some_and(|c| c.peer.is_some());
    match packet.opcode {
        "KEEPALIVE" => {
            let frame = wire::bare(&mut cx.eng.scratch, "KEEPALIVE_ACK");
            cx.eng.send(key, frame, Class::Reliable);
        }
        "INIT" => init(cx, key, &packet, now),
        "LIST_LOBBIES" | "FIND_LOBBY" | "CREATE_LOBBY" | "JOIN_LOBBY" | "MANAGE_LOBBY"
            if !authorized =>
        {
            warn(cx, key, Refusal::Unauthorized, "unauthorized")
        }
        op if RELAYED.contains(&op) && !authorized => {
            warn(cx, key, Refusal::Unauthorized, "unauthorized")
        }
        "LIST_LOBBIES" => list_lobbies(cx, key),
        "FIND_LOBBY" => find_lobby(cx, key, &packet),
        "CREATE_LOBBY" => create_lobby(cx, key, &packet),
        "JOIN_LOBBY" => join_lobby(cx, key, &packet),
        "MANAGE_LOBBY" => manage_lobby(cx, key, &packet),
        op if RELAYED.contains(&op) => relay(cx, key, &packet),
        _ => warn(
            cx,
            key,
            Refusal::UnknownOpcode,
            "unknown or unimplemented opcode",
        ),
    }
}

/// `WARNING "<text>"`.
fn warn<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, refusal: Refusal, text: &str) {
    cx.cl.metrics.refusals.count(refusal);
    cx.send_text(key, "WARNING", text);
}

/// `VIOLATION "<text>"`, then close 1001.
fn violation<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, refusal: Refusal, text: &str) {
    cx.cl.metrics.refusals.count(refusal);
    cx.send_text(key, "VIOLATION", text);
    cx.eng.close(key, 1001, text);
}

/// A payload that must be an object; its fields are read with [`text_of`] and [`flag_of`].
fn object<'v, 'a>(packet: &Packet<'v, 'a>, what: &str) -> Result<&'v Value<'a>, String> {
    match packet.payload {
        Some(v @ Value::Object(_)) => Ok(v),
        _ => Err(format!("{what} payload must be an object")),
    }
}

/// An optional string field (absent and `null` are the same).
fn text_of<'v>(obj: &'v Value<'_>, key: &str, what: &str) -> Result<Option<&'v str>, String> {
    match field(obj, key).filter(|v| !is_null(v)) {
        None => Ok(None),
        Some(v) => as_str(v)
            .map(Some)
            .ok_or_else(|| format!("{what} payload: {key} must be a string")),
    }
}

/// An optional boolean field.
fn flag_of(obj: &Value<'_>, key: &str, what: &str) -> Result<bool, String> {
    match field(obj, key).filter(|v| !is_null(v)) {
        None => Ok(false),
        Some(v) => as_bool(v).ok_or_else(|| format!("{what} payload: {key} must be a boolean")),
    }
}

/// `max_players`: an integer, -1 (unlimited) or 1..=`cloudlink.max_players_cap`.
fn max_players<H: Host>(cx: &Cx<'_, H>, value: Option<&Value<'_>>) -> Option<i64> {
    let cap = i64::from(cx.cl.cfg.max_players_cap);
    value
        .and_then(as_i64)
        .filter(|&n| n == -1 || (1..=cap).contains(&n))
}

fn init<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>, now: u64) {
    let Some(client) = cx.client(key) else {
        return;
    };
    if client.peer.is_some() || client.claiming.is_some() {
        return warn(cx, key, Refusal::AlreadyAuthorized, "already authorized");
    }
    let fields = match packet.payload {
        None => Ok(InitFields::default()),
        Some(_) => init_fields(packet),
    };
    let InitFields {
        token,
        username,
        pubkey,
    } = match fields {
        Ok(fields) => fields,
        Err(why) => return violation(cx, key, Refusal::BadPayload, &why),
    };
    let identity = match cx.cl.cfg.auth {
        // A guest's token is ignored (the extension sends "let me in").
        CloudlinkAuth::Guest => guest_username(username)
            .map(|name| {
                let unix_ms = cx.eng.unix_ms(now);
                let ulid = super::identity::ulid(&mut cx.eng.rng, unix_ms);
                (format!("GUEST_{ulid}"), name)
            })
            .map_err(str::to_string),
        CloudlinkAuth::Token => token_identity(cx, client_token(cx, key, token), username, now),
    };
    let (user_id, username) = match identity {
        Ok(id) => id,
        Err(why) => return violation(cx, key, Refusal::AuthFailed, &why),
    };
    let client = cx.client(key).expect("checked above");
    let peer = PeerInfo {
        instance_id: client.instance_id.clone(),
        user_id: Arc::from(user_id),
        username: Arc::from(username),
        pubkey: pubkey.map(Arc::from),
    };
    if cx.cl.cfg.auth == CloudlinkAuth::Guest {
        return authorized(cx, key, peer);
    }
    // Token mode: one session per user and game, decided on the claim's home shard.
    let ugi = client.ugi.clone();
    let home = cx.user_home(&ugi, &peer.user_id);
    if home == cx.eng.id {
        let ok = cx.claim(ugi, peer.user_id.clone(), peer.instance_id.clone());
        return finish_claim(cx, key, peer, ok);
    }
    let msg = Mesh::Claim {
        claim: Claim {
            ugi,
            user_id: peer.user_id.clone(),
            instance_id: peer.instance_id.clone(),
        },
        from: key,
    };
    if let Some(client) = cx.client_mut(key) {
        client.claiming = Some(Box::new(peer));
    }
    cx.eng.pause_reads(key);
    cx.post(home, msg);
}

/// What `INIT` may carry.
#[derive(Default)]
struct InitFields<'v> {
    token: Option<&'v str>,
    username: Option<&'v str>,
    pubkey: Option<&'v str>,
}

fn init_fields<'v>(packet: &Packet<'v, '_>) -> Result<InitFields<'v>, String> {
    let obj = object(packet, "INIT")?;
    Ok(InitFields {
        token: text_of(obj, "token", "INIT")?,
        username: text_of(obj, "username", "INIT")?,
        pubkey: text_of(obj, "pubkey", "INIT")?,
    })
}

/// Token mode's token: `?token=` first, else `INIT.token`.
fn client_token<'t, H: Host>(
    cx: &'t Cx<'_, H>,
    key: SessionKey,
    from_init: Option<&'t str>,
) -> Option<String> {
    let query = cx
        .client(key)
        .and_then(|c: &ClSession| c.query_token.clone());
    query
        .map(String::from)
        .or_else(|| from_init.map(str::to_string))
}

/// The user id and username a token proves (the username from its claims, else `INIT`'s).
fn token_identity<H: Host>(
    cx: &Cx<'_, H>,
    token: Option<String>,
    username: Option<&str>,
    now: u64,
) -> Result<(String, String), String> {
    let token = token.ok_or("unauthorized: no token")?;
    let secret = cx.cl.cfg.jwt_secret.as_bytes();
    let claims = verify_token(&token, secret, cx.eng.unix_ms(now) / 1000)
        .map_err(|e| format!("unauthorized: {e}"))?;
    let name = match claims.username {
        Some(name) => name,
        None => guest_username(username).map_err(str::to_string)?,
    };
    Ok((claims.user_id, name))
}

/// The claim of a token user came back (its reads were paused meanwhile). A session that
/// went in between gives a granted claim straight back.
pub(super) fn claimed<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, ok: bool, claim: Claim) {
    let peer = cx.client_mut(key).and_then(|c| c.claiming.take());
    let Some(peer) = peer.filter(|p| p.instance_id == claim.instance_id) else {
        if ok {
            cx.release(claim.ugi, claim.user_id, claim.instance_id);
        }
        return;
    };
    cx.eng.resume_reads(key);
    finish_claim(cx, key, *peer, ok);
}

fn finish_claim<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, peer: PeerInfo, ok: bool) {
    if ok {
        authorized(cx, key, peer);
    } else {
        let why = "session already in use for this game";
        violation(cx, key, Refusal::SessionInUse, why);
    }
}

/// `INIT_OK {instance_id, user_id, username}`.
fn authorized<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, peer: PeerInfo) {
    let peer = Arc::new(peer);
    let frame = wire::frame(&mut cx.eng.scratch, "INIT_OK", |w| {
        w.map(3);
        w.key("instance_id").str(&peer.instance_id);
        w.key("user_id").str(&peer.user_id);
        w.key("username").str(&peer.username);
        w.end_map();
    });
    if let Some(client) = cx.client_mut(key) {
        client.peer = Some(peer);
    }
    cx.eng.send(key, frame, Class::Reliable);
}

/// `LIST_ACK [names]` (`[]` when the game has none).
fn list_lobbies<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey) {
    let Some(ugi) = cx.client(key).map(|c| c.ugi.clone()) else {
        return;
    };
    let game = cx.cl.directory.get(&ugi);
    let frame = wire::frame(&mut cx.eng.scratch, "LIST_ACK", |w| {
        let names: Vec<&Arc<str>> = game.map(|g| g.keys().collect()).unwrap_or_default();
        w.array(names.len() as u32);
        for name in names {
            w.str(name);
        }
        w.end_array();
    });
    cx.eng.send(key, frame, Class::Reliable);
}

/// `FIND_ACK "not found"` or `FIND_ACK {host, max_players, current_players, …}`.
fn find_lobby<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>) {
    let Some(name) = packet.payload.and_then(as_str) else {
        let why = "FIND_LOBBY payload must be a lobby name";
        return violation(cx, key, Refusal::BadPayload, why);
    };
    let Some(ugi) = cx.client(key).map(|c| c.ugi.clone()) else {
        return;
    };
    let listing = cx.cl.directory.get(&ugi).and_then(|g| g.get(name)).cloned();
    let frame = match listing {
        None => wire::text(&mut cx.eng.scratch, "FIND_ACK", "not found"),
        Some(l) => wire::frame(&mut cx.eng.scratch, "FIND_ACK", |w| l.write(w)),
    };
    cx.eng.send(key, frame, Class::Reliable);
}

/// `CREATE_LOBBY`: checked in the page's order (`invalid name`, `invalid max_players`,
/// then `exists` on the lobby's home, where the session moves).
fn create_lobby<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>) {
    let read = || -> Result<(&str, Option<&str>, bool, bool), String> {
        let obj = object(packet, "CREATE_LOBBY")?;
        let name = text_of(obj, "name", "CREATE_LOBBY")?
            .ok_or("CREATE_LOBBY payload: name must be a string")?;
        Ok((
            name,
            text_of(obj, "password", "CREATE_LOBBY")?,
            flag_of(obj, "locked", "CREATE_LOBBY")?,
            flag_of(obj, "enable_relay", "CREATE_LOBBY")?,
        ))
    };
    let (name, password, locked, relay) = match read() {
        Ok(fields) => fields,
        Err(why) => return violation(cx, key, Refusal::BadPayload, &why),
    };
    let chars = name.chars().count();
    if chars == 0 || chars > NAME_CHARS_MAX {
        return cx.send_text(key, "CREATE_ACK", "invalid name");
    }
    let max = packet
        .payload
        .and_then(|p| field(p, "max_players"))
        .filter(|v| !is_null(v));
    let Some(max_players) = max_players(cx, max) else {
        return cx.send_text(key, "CREATE_ACK", "invalid max_players");
    };
    let op = Create {
        name: Arc::from(name),
        max_players,
        password: password.map(str::to_string),
        locked,
        relay,
    };
    go_to_lobby(cx, key, LobbyOp::Create(op));
}

/// `JOIN_LOBBY {name, password}`: decided on the lobby's home, where the session moves.
fn join_lobby<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>) {
    let read = || -> Result<(&str, Option<&str>), String> {
        let obj = object(packet, "JOIN_LOBBY")?;
        let name = text_of(obj, "name", "JOIN_LOBBY")?
            .ok_or("JOIN_LOBBY payload: name must be a string")?;
        Ok((name, text_of(obj, "password", "JOIN_LOBBY")?))
    };
    let (name, password) = match read() {
        Ok(fields) => fields,
        Err(why) => return violation(cx, key, Refusal::BadPayload, &why),
    };
    let op = Join {
        name: Arc::from(name),
        password: password.map(str::to_string),
    };
    go_to_lobby(cx, key, LobbyOp::Join(op));
}

/// A client in a lobby first leaves it cleanly (*beyond*: `TRANSITION ""` and the
/// others hear `PEER_LEFT`); then the create or join runs on the lobby's home shard —
/// here, or after the session moves there.
fn go_to_lobby<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, op: LobbyOp) {
    let Some(client) = cx.client(key) else {
        return;
    };
    let (ugi, in_lobby) = (client.ugi.clone(), client.lobby.is_some());
    if in_lobby {
        cx.leave(key);
        cx.send_text(key, "TRANSITION", "");
        cx.set_idle(key, true);
    }
    let name = match &op {
        LobbyOp::Create(c) => c.name.clone(),
        LobbyOp::Join(j) => j.name.clone(),
    };
    let home = lobby::home(&ugi, &name, cx.eng.shards);
    if home == cx.eng.id {
        return match op {
            LobbyOp::Create(op) => cx.create(key, op),
            LobbyOp::Join(op) => cx.join(key, op),
        };
    }
    cx.set_idle(key, false);
    if let Some(client) = cx.client_mut(key) {
        client.pending = Some(Box::new(op));
    }
    cx.eng.request_move(key, home);
}

/// `MANAGE_LOBBY {method, args}`, host only: `MANAGE_ACK "ok"` or an error string.
fn manage_lobby<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>) {
    let Some(client) = cx.client(key) else {
        return;
    };
    let (Some(name), true) = (client.lobby.clone(), client.hosting) else {
        return warn(cx, key, Refusal::Unauthorized, "unauthorized");
    };
    let ugi = client.ugi.clone();
    let read = || -> Result<(&str, Option<&Value<'_>>), String> {
        let obj = object(packet, "MANAGE_LOBBY")?;
        let method = text_of(obj, "method", "MANAGE_LOBBY")?
            .ok_or("MANAGE_LOBBY payload: method must be a string")?;
        Ok((method, field(obj, "args").filter(|v| !is_null(v))))
    };
    let (method, args) = match read() {
        Ok(fields) => fields,
        Err(why) => return violation(cx, key, Refusal::BadPayload, &why),
    };
    let id = (ugi.clone(), name.clone());
    let answer = match method {
        "lock" | "unlock" => {
            if let Some(lobby) = cx.cl.lobbies.get_mut(&id) {
                lobby.locked = method == "lock";
            }
            "ok"
        }
        "kick" => kick(cx, &id, args),
        "change_password" => match args.map(as_str) {
            Some(Some(text)) => {
                let password =
                    (!text.is_empty()).then(|| lobby::Password::new(text, &mut cx.eng.rng));
                if let Some(lobby) = cx.cl.lobbies.get_mut(&id) {
                    lobby.password = password;
                }
                "ok"
            }
            _ => "type error: argument (new password) should be a string",
        },
        "change_max_players" => match max_players(cx, args) {
            Some(max) => {
                if let Some(lobby) = cx.cl.lobbies.get_mut(&id) {
                    lobby.max_players = max;
                }
                "ok"
            }
            None => "invalid max_players",
        },
        "close_lobby" => {
            cx.send_text(key, "MANAGE_ACK", "ok");
            return close_lobby(cx, &id);
        }
        "transfer_ownership" => return transfer(cx, key, &id, args),
        _ => "unknown method",
    };
    cx.send_text(key, "MANAGE_ACK", answer);
    if answer == "ok" {
        if let Some(listing) = cx.cl.lobbies.get(&id).map(|l| l.listing()) {
            cx.publish(&id.0, &id.1, Some(listing), None);
        }
    }
}

/// The member `args` names (not the host), or the answer that says why not.
fn peer_named<H: Host>(
    cx: &Cx<'_, H>,
    id: &lobby::LobbyId,
    args: Option<&Value<'_>>,
) -> Result<usize, &'static str> {
    let Some(target) = args.and_then(as_str) else {
        return Err("type error: argument (peer id) should be a string");
    };
    match cx.cl.lobbies.get(id).and_then(|l| l.member(target)) {
        Some((index, _)) if index > 0 => Ok(index),
        _ => Err("no peer found"),
    }
}

/// The target is warned and disconnected; the others hear `PEER_LEFT` as it goes.
fn kick<H: Host>(
    cx: &mut Cx<'_, H>,
    id: &lobby::LobbyId,
    args: Option<&Value<'_>>,
) -> &'static str {
    let index = match peer_named(cx, id, args) {
        Ok(index) => index,
        Err(answer) => return answer,
    };
    let target = cx.cl.lobbies[id].members[index].at.key;
    let text = "You have been kicked from the lobby.";
    warn(cx, target, Refusal::Kicked, text);
    cx.eng.close(target, 1001, "kicked");
    "ok"
}

/// `TRANSITION "peer"` to the old host, `TRANSITION "host"` to the new one, `NEW_HOST` to
/// everyone, then `MANAGE_ACK "ok"`.
fn transfer<H: Host>(
    cx: &mut Cx<'_, H>,
    key: SessionKey,
    id: &lobby::LobbyId,
    args: Option<&Value<'_>>,
) {
    let index = match peer_named(cx, id, args) {
        Ok(index) => index,
        Err(answer) => return cx.send_text(key, "MANAGE_ACK", answer),
    };
    let lobby = cx.cl.lobbies.get_mut(id).expect("named above");
    let new_host = lobby.members.remove(index);
    let old_host = lobby.members.remove(0);
    lobby.members.insert(0, new_host.clone());
    lobby.members.push(old_host.clone());
    let everyone: Vec<SessionKey> = lobby.members.iter().map(|m| m.at.key).collect();
    let listing = lobby.listing();
    for (member, hosting) in [(old_host.at.key, false), (new_host.at.key, true)] {
        if let Some(client) = cx.client_mut(member) {
            client.hosting = hosting;
        }
    }
    cx.send_text(old_host.at.key, "TRANSITION", "peer");
    cx.send_text(new_host.at.key, "TRANSITION", "host");
    let frame = wire::frame(&mut cx.eng.scratch, "NEW_HOST", |w| new_host.peer.write(w));
    for member in everyone {
        cx.eng.send(member, frame.clone(), Class::Reliable);
    }
    cx.send_text(key, "MANAGE_ACK", "ok");
    cx.publish(&id.0, &id.1, Some(listing), None);
}

/// Every member, the host included, gets `TRANSITION ""` and `LOBBY_CLOSED` once; the
/// game's other clients in no lobby get `LOBBY_CLOSED`; the members are in no lobby now.
fn close_lobby<H: Host>(cx: &mut Cx<'_, H>, id: &lobby::LobbyId) {
    let Some(lobby) = cx.cl.lobbies.remove(id) else {
        return;
    };
    crate::metrics::ShardMetrics::sub(&cx.cl.metrics.lobbies, 1);
    for member in &lobby.members {
        let key = member.at.key;
        if let Some(client) = cx.client_mut(key) {
            client.lobby = None;
            client.hosting = false;
        }
        cx.send_text(key, "TRANSITION", "");
        cx.send_text(key, "LOBBY_CLOSED", &lobby.name);
    }
    cx.publish(&id.0, &id.1, None, Some(Announce::Closed));
    for member in &lobby.members {
        cx.set_idle(member.at.key, true);
    }
}

/// The relay (*beyond*): `G_*` to every other member, `P_*` to `recipient`, stamped with
/// `origin`; `id` and `method` pass through. One frame per message, whoever gets it.
fn relay<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, packet: &Packet<'_, '_>) {
    let Some(client) = cx.client(key) else {
        return;
    };
    let origin = client.instance_id.clone();
    let id = client.lobby.clone().map(|name| (client.ugi.clone(), name));
    let lobby = id.and_then(|id| cx.cl.lobbies.get(&id)).filter(|l| l.relay);
    let Some(lobby) = lobby else {
        let text = "unknown or unimplemented opcode";
        return warn(cx, key, Refusal::UnknownOpcode, text);
    };
    let encode = |w: &mut crate::codec::Writer<'_>, _: &lobby::Member| {
        let len = 2
            + u32::from(packet.payload.is_some())
            + u32::from(packet.id.is_some())
            + u32::from(packet.method.is_some());
        w.map(len).key("opcode").str(packet.opcode);
        if let Some(payload) = packet.payload {
            w.key("payload").value(payload);
        }
        w.key("origin").str(&origin);
        if let Some(v) = packet.id {
            w.key("id").value(v);
        }
        if let Some(v) = packet.method {
            w.key("method").value(v);
        }
        w.end_map();
    };
    if packet.opcode.starts_with("G_") {
        let sender = cx.eng.here(key);
        cx.eng
            .fan_out(&lobby.members, Class::Reliable, Some(sender), |_| 0, encode);
        return;
    }
    let to = packet
        .recipient
        .and_then(as_str)
        .and_then(|r| lobby.member(r))
        .map(|(_, m)| m.clone());
    match to {
        Some(member) => cx.eng.fan_out(
            std::slice::from_ref(&member),
            Class::Reliable,
            None,
            |_| 0,
            encode,
        ),
        None => warn(cx, key, Refusal::PeerNotFound, "peer not found"),
    }
}
