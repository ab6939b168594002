//! End-to-end tests of the rooms dialect's second half (shared/protocols/rooms.md: State
//! sync, Matchmaking, Sessions and resume) over real sockets.
//!
//! Every test starts its own in-process server (2 shards, port 0) and talks to it with
//! real WebSocket clients over blocking sockets. Rules about frames run in both codecs.
//! Test names are the rule they check. The same rules are checked deterministically on the
//! simulator in tests/core_state.rs, core_matchmaking.rs and core_resume.rs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

use crate::support::*;

/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(150);

/// The two ways two clients can mix the codecs.
const PAIRS: [(Codec, Codec); 2] = [(Codec::Json, Codec::Msgpack), (Codec::Msgpack, Codec::Json)];

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// The base handshake with extra fields.
fn hello_with(codec: Codec, extra: Value) -> Value {
    merged(hello(codec), extra)
}

/// A client whose handshake adds `extra`.
fn client_with(s: &TestServer, codec: Codec, extra: Value) -> Client {
    Client::with_hello(s.addr, codec, hello_with(codec, extra))
}

/// CRC-32 (crc32fast, IEEE) of the RFC 8785 bytes of a state, as sent on the wire.
fn crc(state: &Value) -> u64 {
    u64::from(crc32fast::hash(&huddle::rooms::canon::to_vec(state)))
}

/// `state_room`: sets `path` to `value` (no rid).
fn set(c: &mut Client, room: &str, path: &str, value: Value) {
    c.send(set_env(room, path, value));
}

/// The `state.set` envelope of `state_room`.
fn set_env(room: &str, path: &str, value: Value) -> Value {
    json!({"v": 1, "t": "room.message", "room": room,
           "p": {"type": "state.set", "data": {"path": path, "value": value}}})
}

/// `state_room`: deletes `path` (no rid).
fn del(c: &mut Client, room: &str, path: &str) {
    c.send_env(
        "room.message",
        None,
        Some(room),
        json!({"type": "state.del", "data": {"path": path}}),
    );
}

/// `counter_room`: adds `by` (no rid).
fn inc(c: &mut Client, room: &str, by: i64) {
    c.send_env(
        "room.message",
        None,
        Some(room),
        json!({"type": "inc", "data": {"by": by}}),
    );
}

/// The next `state.patch` or `state.snapshot` of `room`.
fn next_state(c: &mut Client, room: &str) -> Msg {
    c.recv_until(&format!("state.patch/snapshot of {room}"), |m| {
        matches!(m.t(), "state.patch" | "state.snapshot") && m.room() == Some(room)
    })
}

/// The next `state.patch` of `room`, which must be a patch.
fn next_patch(c: &mut Client, room: &str) -> Msg {
    let m = next_state(c, room);
    assert_eq!(
        m.t(),
        "state.patch",
        "{}: expected a patch: {m}",
        c.client_id
    );
    m
}

/// The next `state.snapshot` of `room`, which must be a snapshot.
fn next_snapshot(c: &mut Client, room: &str) -> Msg {
    let m = next_state(c, room);
    assert_eq!(
        m.t(),
        "state.snapshot",
        "{}: expected a snapshot: {m}",
        c.client_id
    );
    m
}

/// The state frames (`state.patch`/`state.snapshot`) among frames.
fn state_frames(frames: &[Msg]) -> Vec<&Msg> {
    frames
        .iter()
        .filter(|m| matches!(m.t(), "state.patch" | "state.snapshot"))
        .collect()
}

/// Asserts that no state frame arrives within `QUIET`.
fn assert_no_state_frame(c: &mut Client, why: &str) {
    let rest = c.drain(QUIET);
    let states = state_frames(&rest);
    assert!(
        states.is_empty(),
        "{}: {why}, but got:\n{}",
        c.client_id,
        show(&rest)
    );
}

/// The last snapshot of `room` in the client's log (the join's).
fn last_snapshot(c: &Client, room: &str) -> Msg {
    c.log
        .iter()
        .rev()
        .find(|m| m.t() == "state.snapshot" && m.room() == Some(room))
        .cloned()
        .unwrap_or_else(|| panic!("no snapshot of {room} in:\n{}", show(&c.log)))
}

/// Asserts a checksum is present, an unsigned 32-bit integer (a msgpack integer, a JSON
/// number) and equal to `want`.
fn assert_checksum(m: &Msg, want: u64) {
    let got = m
        .p()
        .get("checksum")
        .unwrap_or_else(|| panic!("no checksum: {m}"));
    assert!(
        got.as_u64().is_some_and(|c| c <= u64::from(u32::MAX)),
        "checksum must be an unsigned 32-bit integer: {m}"
    );
    if let Some(mp) = &m.mp {
        let field = mp
            .as_map()
            .and_then(|e| e.iter().find(|(k, _)| k.as_str() == Some("p")))
            .and_then(|(_, p)| p.as_map())
            .and_then(|e| e.iter().find(|(k, _)| k.as_str() == Some("checksum")))
            .map(|(_, v)| v.clone())
            .expect("msgpack checksum");
        assert!(field.is_u64(), "msgpack checksum must be an integer: {m}");
        assert_eq!(msgpack_offence(&m.raw), None, "{m}");
    }
    assert_eq!(got.as_u64(), Some(want), "checksum of the state: {m}");
}

/// Asserts a frame has no `checksum` field at all (never null).
fn assert_no_checksum(m: &Msg) {
    assert!(
        m.p().get("checksum").is_none(),
        "no checksum was negotiated, so none may be sent (not even null): {m}"
    );
}

/// Sends a close frame with `code` and waits for the server's close (or the socket's end).
fn close_with(c: &mut Client, code: u16) {
    c.ws.close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: "bye".into(),
    }))
    .expect("send close");
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match c.read_for(Duration::from_millis(100)) {
            Read1::Close(_) | Read1::Gone(_) => return,
            _ => {}
        }
    }
    panic!("{}: the server never answered close {code}", c.client_id);
}

/// Disconnects in a way that parks the session: a close with 1001 (a closing tab). Tests
/// of the other resume rules use it; a drop without a close frame is
/// `resume_a_dropped_socket_parks_the_session_and_its_rooms_hear_room_dropped`'s.
fn leave_parked(mut c: Client) {
    close_with(&mut c, 1001);
}

/// Drops the connection with a TCP reset (SO_LINGER 0), no close frame.
fn reset(c: Client) {
    socket2::SockRef::from(c.ws.get_ref())
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(c);
}

/// A handshake that asks to resume `session_id`.
fn resume_hello(codec: Codec, session_id: &str) -> Value {
    hello_with(codec, json!({"session_id": session_id}))
}

/// `matchmaking.enqueue` → its `rpc.response`.
fn enqueue(c: &mut Client, room_type: &str, size: Value) -> Msg {
    c.rpc(
        "matchmaking.enqueue",
        None,
        json!({"room_type": room_type, "size": size}),
    )
}

/// Asserts a queued reply `{ok, queued:true, room_type, size, position}`.
fn assert_queued(reply: &Msg, room_type: &str, size: u64, position: u64) {
    assert_eq!(
        reply.p(),
        &json!({"ok": true, "queued": true, "room_type": room_type, "size": size,
                "position": position}),
        "{reply}"
    );
}

/// The room id of a `{ok, matched:true, room}` reply (checked exactly).
fn matched_room(reply: &Msg) -> String {
    let room = reply.p()["room"]
        .as_str()
        .unwrap_or_else(|| panic!("no room in {reply}"))
        .to_string();
    assert_eq!(
        reply.p(),
        &json!({"ok": true, "matched": true, "room": room}),
        "{reply}"
    );
    room
}

/// Repeats `room.list` until `pred` holds for the room `id` (the directory reaches the
/// other shard asynchronously); returns its listing.
fn listed_until(c: &mut Client, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let r = c.rpc("room.list", None, json!({}));
        assert!(r.is_ok(), "room.list failed: {r}");
        let found = r.p()["rooms"]
            .as_array()
            .and_then(|rooms| rooms.iter().find(|x| x["id"] == json!(id)).cloned());
        if let Some(room) = found.filter(|x| pred(x)) {
            return room;
        }
        assert!(
            Instant::now() < deadline,
            "room.list never showed {id} {what}; last: {r}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many of the frames have type `t`.
fn of_type_in(frames: &[Msg], t: &str) -> usize {
    frames.iter().filter(|m| m.t() == t).count()
}

/// The participants of a `match.found` as a set.
fn participants(found: &Msg) -> BTreeSet<String> {
    found.p()["participants"]
        .as_array()
        .unwrap_or_else(|| panic!("no participants: {found}"))
        .iter()
        .map(|p| p.as_str().expect("client id").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------
// State sync
// ---------------------------------------------------------------------------------------

#[test]
fn state_new_room_snapshot_has_seq_0_and_the_first_patch_seq_1() {
    let s = TestServer::default_config();
    for codec in CODECS {
        for (room_type, initial, msg, first_op) in [
            (
                "counter_room",
                json!({"counter": 0}),
                json!({"type": "inc"}),
                json!({"op": "set", "path": "/counter", "value": 1}),
            ),
            (
                "state_room",
                json!({}),
                json!({"type": "state.set", "data": {"path": "/hp", "value": 10}}),
                json!({"op": "set", "path": "/hp", "value": 10}),
            ),
        ] {
            let room = format!("fresh-{room_type}-{}", codec.name());
            let mut c = Client::new(s.addr, codec);
            c.join(room_type, &room);
            let snap = last_snapshot(&c, &room);
            assert_eq!(
                snap.p(),
                &json!({"state": initial, "seq": 0}),
                "{codec:?}: {snap}"
            );
            c.send_env("room.message", None, Some(&room), msg);
            let patch = next_patch(&mut c, &room);
            assert_eq!(
                patch.p(),
                &json!({"ops": [first_op], "seq": 1}),
                "{codec:?}: {patch}"
            );
            assert_eq!(patch.binary, codec == Codec::Msgpack);
        }
    }
}

#[test]
fn state_seq_grows_by_one_per_patch_and_a_snapshot_carries_the_last_patch_seq() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = room_on(1, &format!("seq-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        a.join("counter_room", &room);
        b.join("counter_room", &room);
        for n in 1..=5i64 {
            let sender = if n % 2 == 0 { &mut b } else { &mut a };
            inc(sender, &room, n);
            let total = n * (n + 1) / 2;
            for cl in [&mut a, &mut b] {
                let p = next_patch(cl, &room);
                assert_eq!(
                    p.p(),
                    &json!({"ops": [{"op": "set", "path": "/counter", "value": total}],
                            "seq": n}),
                    "{}: {p}",
                    cl.client_id
                );
            }
        }
        // A resync's snapshot and a late joiner's snapshot carry the last patch's seq.
        a.send_env("state.resync", None, Some(&room), json!({}));
        let snap = next_snapshot(&mut a, &room);
        assert_eq!(
            snap.p(),
            &json!({"state": {"counter": 15}, "seq": 5}),
            "{snap}"
        );
        let mut late = Client::new(s.addr, cb);
        late.join("counter_room", &room);
        let snap = last_snapshot(&late, &room);
        assert_eq!(
            snap.p(),
            &json!({"state": {"counter": 15}, "seq": 5}),
            "{snap}"
        );
    }
}

#[test]
fn state_ops_of_one_turn_go_out_as_one_patch() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = room_on(0, &format!("batch-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        a.join("state_room", &room);
        b.join("state_room", &room);
        // Three frames in one socket write: the server reads them in one reactor turn.
        a.send_batch(&[
            set_env(&room, "/x", json!(1)),
            set_env(&room, "/y", json!("two")),
            set_env(&room, "/z", json!([3])),
        ]);
        for cl in [&mut a, &mut b] {
            let p = next_patch(cl, &room);
            assert_eq!(
                p.p(),
                &json!({"ops": [
                    {"op": "set", "path": "/x", "value": 1},
                    {"op": "set", "path": "/y", "value": "two"},
                    {"op": "set", "path": "/z", "value": [3]},
                ], "seq": 1}),
                "{}: one patch with the turn's ops in order: {p}",
                cl.client_id
            );
            assert_no_state_frame(cl, "the turn's ops were all in the first patch");
        }
    }
}

#[test]
fn state_only_set_and_del_op_names_go_out() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = format!("names-{}", ca.name());
        let mut flat = Client::new(s.addr, ca);
        let mut nested = client_with(&s, cb, json!({"features": ["nested_ops"]}));
        flat.join("state_room", &room);
        nested.join("state_room", &room);
        let steps = [
            set_env(&room, "/a", json!(1)),
            set_env(&room, "/b/c/d", json!({"e": null})),
            json!({"v": 1, "t": "room.message", "room": room,
                   "p": {"type": "state.del", "data": {"path": "/a"}}}),
            json!({"v": 1, "t": "room.message", "room": room,
                   "p": {"type": "state.del", "data": {"path": "/b/c/d"}}}),
            set_env(&room, "/arr", json!([1, 2])),
            set_env(&room, "/arr/0", json!(9)),
            set_env(&room, "", json!({"new": "root"})),
            json!({"v": 1, "t": "room.message", "room": room,
                   "p": {"type": "state.del", "data": {"path": "/new"}}}),
        ];
        let mut names = BTreeSet::new();
        for (i, env) in steps.into_iter().enumerate() {
            // From either client, one op per turn (each waits for the last one's frames).
            if i % 2 == 0 {
                flat.send(env);
            } else {
                nested.send(env);
            }
            for cl in [&mut flat, &mut nested] {
                let m = next_state(cl, &room);
                assert_eq!(m.p()["seq"], i + 1, "{m}");
                for op in m.p()["ops"].as_array().into_iter().flatten() {
                    let mut keys: Vec<&str> =
                        op.as_object().unwrap().keys().map(String::as_str).collect();
                    keys.sort_unstable();
                    match op["op"].as_str() {
                        Some("set") => assert_eq!(keys, ["op", "path", "value"], "{m}"),
                        Some("del") => assert_eq!(keys, ["op", "path"], "{m}"),
                        _ => panic!("{}: op name other than set/del: {m}", cl.client_id),
                    }
                    names.insert(op["op"].as_str().unwrap().to_string());
                }
            }
        }
        assert_eq!(
            names,
            BTreeSet::from(["del".to_string(), "set".to_string()])
        );
    }
}

#[test]
fn state_ops_that_change_nothing_emit_no_patch_and_keep_seq() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let room = format!("noop-{}", codec.name());
        let mut c = Client::new(s.addr, codec);
        c.join("state_room", &room);
        set(&mut c, &room, "/x", json!(1));
        assert_eq!(next_patch(&mut c, &room).p()["seq"], 1);
        del(&mut c, &room, "/missing");
        del(&mut c, &room, "/missing/deeper");
        set(&mut c, &room, "/x", json!(1));
        assert_no_state_frame(&mut c, "ops that changed nothing emit no patch");
        set(&mut c, &room, "/x", json!(2));
        let p = next_patch(&mut c, &room);
        assert_eq!(
            p.p(),
            &json!({"ops": [{"op": "set", "path": "/x", "value": 2}], "seq": 2}),
            "seq was left as it was: {p}"
        );
    }
}

#[test]
fn state_nested_paths_go_out_flattened_to_top_level_keys_unless_nested_ops_was_asked() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = room_on(1, &format!("nest-{}", ca.name()));
        let mut flat = Client::new(s.addr, ca);
        let mut nested = client_with(&s, cb, json!({"features": ["nested_ops"]}));
        assert_eq!(nested.hello_ok.p()["features"], json!(["nested_ops"]));
        flat.join("state_room", &room);
        nested.join("state_room", &room);
        // (what is sent, the flat client's ops, the nested client's ops)
        let steps: Vec<(Vec<Value>, Value, Value)> = vec![
            (
                // Missing parents are created.
                vec![set_env(&room, "/a/b/c", json!(1))],
                json!([{"op": "set", "path": "/a", "value": {"b": {"c": 1}}}]),
                json!([{"op": "set", "path": "/a/b/c", "value": 1}]),
            ),
            (
                vec![set_env(&room, "/a/b/d", json!("x"))],
                json!([{"op": "set", "path": "/a", "value": {"b": {"c": 1, "d": "x"}}}]),
                json!([{"op": "set", "path": "/a/b/d", "value": "x"}]),
            ),
            (
                vec![json!({"v": 1, "t": "room.message", "room": room,
                            "p": {"type": "state.del", "data": {"path": "/a/b/c"}}})],
                json!([{"op": "set", "path": "/a", "value": {"b": {"d": "x"}}}]),
                json!([{"op": "del", "path": "/a/b/c"}]),
            ),
            (
                // A top-level key with a "/" in it stays escaped.
                vec![set_env(&room, "/k~1x/y", json!(true))],
                json!([{"op": "set", "path": "/k~1x", "value": {"y": true}}]),
                json!([{"op": "set", "path": "/k~1x/y", "value": true}]),
            ),
            (
                vec![json!({"v": 1, "t": "room.message", "room": room,
                            "p": {"type": "state.del", "data": {"path": "/a"}}})],
                json!([{"op": "del", "path": "/a"}]),
                json!([{"op": "del", "path": "/a"}]),
            ),
            (
                // One turn: one set per touched top-level key, with its whole new value.
                vec![
                    set_env(&room, "/p/q", json!(1)),
                    set_env(&room, "/s", json!(3)),
                    set_env(&room, "/p/r", json!(2)),
                ],
                json!([
                    {"op": "set", "path": "/p", "value": {"q": 1, "r": 2}},
                    {"op": "set", "path": "/s", "value": 3},
                ]),
                json!([
                    {"op": "set", "path": "/p/q", "value": 1},
                    {"op": "set", "path": "/s", "value": 3},
                    {"op": "set", "path": "/p/r", "value": 2},
                ]),
            ),
        ];
        for (i, (envs, flat_ops, nested_ops)) in steps.into_iter().enumerate() {
            let seq = i as u64 + 1;
            flat.send_batch(&envs);
            let p = next_patch(&mut flat, &room);
            assert_eq!(
                p.p(),
                &json!({"ops": flat_ops, "seq": seq}),
                "step {seq}, client without nested_ops: {p}"
            );
            let p = next_patch(&mut nested, &room);
            assert_eq!(
                p.p(),
                &json!({"ops": nested_ops, "seq": seq}),
                "step {seq}, client with nested_ops: {p}"
            );
        }
    }
}

#[test]
fn state_root_set_is_a_snapshot_for_clients_without_nested_ops() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = format!("root-{}", ca.name());
        let mut flat = Client::new(s.addr, ca);
        let mut nested = client_with(&s, cb, json!({"features": ["nested_ops"]}));
        flat.join("state_room", &room);
        nested.join("state_room", &room);
        set(&mut flat, &room, "/old", json!(1));
        for cl in [&mut flat, &mut nested] {
            assert_eq!(next_patch(cl, &room).p()["seq"], 1);
        }
        set(&mut nested, &room, "", json!({"fresh": {"n": 1}}));
        let snap = next_snapshot(&mut flat, &room);
        assert_eq!(
            snap.p(),
            &json!({"state": {"fresh": {"n": 1}}, "seq": 2}),
            "a snapshot with the seq the patch would have had: {snap}"
        );
        let p = next_patch(&mut nested, &room);
        assert_eq!(
            p.p(),
            &json!({"ops": [{"op": "set", "path": "", "value": {"fresh": {"n": 1}}}],
                    "seq": 2}),
            "{p}"
        );
        // And patches go on from there.
        set(&mut flat, &room, "/next", json!(0));
        for cl in [&mut flat, &mut nested] {
            let p = next_patch(cl, &room);
            assert_eq!(
                p.p(),
                &json!({"ops": [{"op": "set", "path": "/next", "value": 0}], "seq": 3}),
                "{p}"
            );
        }
    }
}

#[test]
fn state_checksum_is_crc32_of_the_jcs_state_only_for_clients_that_asked() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = room_on(0, &format!("crc-{}", ca.name()));
        let mut asked = client_with(&s, ca, json!({"checksum": "crc32"}));
        let mut by_feature = client_with(&s, cb, json!({"features": ["crc32", "nested_ops"]}));
        let mut plain_a = Client::new(s.addr, ca);
        let mut plain_b = Client::new(s.addr, cb);
        for cl in [&mut asked, &mut by_feature, &mut plain_a, &mut plain_b] {
            cl.join("state_room", &room);
        }
        assert_checksum(&last_snapshot(&asked, &room), crc(&json!({})));
        assert_checksum(&last_snapshot(&by_feature, &room), crc(&json!({})));
        assert_no_checksum(&last_snapshot(&plain_a, &room));
        assert_no_checksum(&last_snapshot(&plain_b, &room));

        let mut state = json!({});
        let steps = [
            ("/b", json!({"é": 1.5, "A": [1, "x"], "\u{1F600}": "ok"})),
            ("/n", json!(-7)),
            ("/b/z", json!({"deep": [true, false]})),
            ("/big", json!(4_000_000_000u64)),
        ];
        for (path, value) in steps {
            let key = path.split('/').nth(1).unwrap();
            match path.matches('/').count() {
                1 => state[key] = value.clone(),
                _ => state[key]["z"] = value.clone(),
            }
            set(&mut plain_a, &room, path, value);
            let want = crc(&state);
            for cl in [&mut asked, &mut by_feature] {
                let p = next_patch(cl, &room);
                assert_checksum(&p, want);
            }
            for cl in [&mut plain_a, &mut plain_b] {
                let p = next_patch(cl, &room);
                assert_no_checksum(&p);
            }
        }
        // A resync's snapshot carries it too.
        asked.send_env("state.resync", None, Some(&room), json!({}));
        let snap = next_snapshot(&mut asked, &room);
        assert_eq!(snap.p()["state"], state);
        assert_checksum(&snap, crc(&state));
        plain_b.send_env("state.resync", None, Some(&room), json!({}));
        assert_no_checksum(&next_snapshot(&mut plain_b, &room));
    }
}

#[test]
fn state_checksum_every_sends_it_on_every_nth_patch() {
    let s = TestServer::start(|c| c.state.checksum_every = 2);
    for codec in CODECS {
        let room = format!("crc-every-{}", codec.name());
        let mut c = client_with(&s, codec, json!({"checksum": "crc32"}));
        c.join("state_room", &room);
        for x in 1..=4 {
            set(&mut c, &room, "/x", json!(x));
            let p = next_patch(&mut c, &room);
            if x % 2 == 0 {
                assert_checksum(&p, crc(&json!({"x": x})));
            } else {
                assert_no_checksum(&p);
            }
        }
    }
}

#[test]
fn state_ack_with_a_seq_ahead_of_the_server_gets_a_snapshot() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let room = room_on(1, &format!("ack-ahead-{}", codec.name()));
        let mut c = Client::new(s.addr, codec);
        c.join("counter_room", &room);
        inc(&mut c, &room, 4);
        next_patch(&mut c, &room);
        // Behind or equal: nothing.
        c.send_env("state.ack", None, Some(&room), json!({"seq": 0}));
        c.send_env("state.ack", None, None, json!({"room": room, "seq": 1}));
        assert_no_state_frame(&mut c, "an ack of the current seq needs nothing");
        // Ahead, with the room in the envelope, the payload `room` or `roomId`.
        for (env_room, p) in [
            (Some(room.as_str()), json!({"seq": 2})),
            (None, json!({"room": room, "seq": 9})),
            (None, json!({"roomId": room, "seq": 1000})),
        ] {
            c.send_env("state.ack", None, env_room, p.clone());
            let snap = next_snapshot(&mut c, &room);
            assert_eq!(
                snap.p(),
                &json!({"state": {"counter": 4}, "seq": 1}),
                "{codec:?} ack {p}: {snap}"
            );
            assert_no_state_frame(&mut c, "one snapshot per ack");
        }
    }
}

#[test]
fn state_ack_with_the_current_seq_and_a_wrong_crc_gets_a_snapshot_when_crc32_was_negotiated() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = format!("ack-crc-{}", ca.name());
        let mut c = client_with(&s, ca, json!({"checksum": "crc32"}));
        let mut plain = Client::new(s.addr, cb);
        c.join("state_room", &room);
        plain.join("state_room", &room);
        set(&mut plain, &room, "/x", json!("y"));
        let good = crc(&json!({"x": "y"}));
        assert_checksum(&next_patch(&mut c, &room), good);
        next_patch(&mut plain, &room);

        c.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 1, "checksum": good}),
        );
        assert_no_state_frame(&mut c, "an ack with the right CRC needs nothing");
        c.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 0, "checksum": good + 1}),
        );
        assert_no_state_frame(&mut c, "an ack behind the server needs nothing");
        c.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 1, "checksum": (good + 1) % (1u64 << 32)}),
        );
        let snap = next_snapshot(&mut c, &room);
        assert_eq!(snap.p()["state"], json!({"x": "y"}), "{snap}");
        assert_eq!(snap.p()["seq"], 1, "{snap}");
        assert_checksum(&snap, good);
        // A client that did not negotiate CRC-32 never triggers one by a checksum.
        plain.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 1, "checksum": good + 1}),
        );
        assert_no_state_frame(&mut plain, "a checksum without crc32 negotiated is ignored");
    }
}

#[test]
fn state_ack_with_a_sha256_string_checksum_is_ignored() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let room = format!("ack-sha-{}", codec.name());
        let mut c = Client::new(s.addr, codec);
        c.join("state_room", &room);
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        c.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 0, "checksum": sha}),
        );
        set(&mut c, &room, "/x", json!(1));
        next_patch(&mut c, &room);
        c.send_env(
            "state.ack",
            None,
            Some(&room),
            json!({"seq": 1, "checksum": sha}),
        );
        let rest = c.drain(QUIET);
        assert!(
            rest.is_empty(),
            "{codec:?}: the reference SDK's SHA-256 ack gets nothing:\n{}",
            show(&rest)
        );
        // Still in sync: the next patch follows.
        set(&mut c, &room, "/x", json!(2));
        assert_eq!(next_patch(&mut c, &room).p()["seq"], 2);
    }
}

#[test]
fn state_resync_in_both_spellings_gets_a_snapshot() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let room = room_on(0, &format!("resync-{}", codec.name()));
        let mut c = Client::new(s.addr, codec);
        c.join("counter_room", &room);
        inc(&mut c, &room, 2);
        next_patch(&mut c, &room);
        inc(&mut c, &room, 3);
        next_patch(&mut c, &room);
        let want = json!({"state": {"counter": 5}, "seq": 2});
        for (env_room, p) in [
            (None, json!({"room": room, "reason": "gap"})),
            (None, json!({"room": room})),
            (
                Some(room.as_str()),
                json!({"since": 0, "checksum": "deadbeef"}),
            ),
            (Some(room.as_str()), json!({"since": 1})),
            (None, json!({"roomId": room, "since": 0})),
        ] {
            c.send_env("state.resync", None, env_room, p.clone());
            let snap = next_snapshot(&mut c, &room);
            assert_eq!(snap.p(), &want, "{codec:?} resync {p}: {snap}");
            assert_eq!(snap.room(), Some(room.as_str()));
        }
        assert_no_state_frame(&mut c, "one snapshot per resync");
    }
}

#[test]
fn state_resyncs_in_one_turn_are_coalesced_into_one_snapshot() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let room = format!("coalesce-{}", codec.name());
        let mut c = Client::new(s.addr, codec);
        c.join("state_room", &room);
        let resync = json!({"v": 1, "t": "state.resync", "room": room, "p": {"reason": "gap"}});
        c.send_batch(&[resync.clone(), resync.clone(), resync]);
        let snap = next_snapshot(&mut c, &room);
        assert_eq!(snap.p(), &json!({"state": {}, "seq": 0}));
        assert_no_state_frame(&mut c, "resyncs of one turn make one snapshot");
    }
}

#[test]
fn state_snapshot_every_nth_patch_is_a_snapshot_with_that_seq() {
    let s = TestServer::start(|c| c.state.snapshot_every = 3);
    for (ca, cb) in PAIRS {
        let room = room_on(1, &format!("snap-every-{}", ca.name()));
        let mut plain = Client::new(s.addr, ca);
        let mut rich = client_with(&s, cb, json!({"features": ["crc32", "nested_ops"]}));
        plain.join("state_room", &room);
        rich.join("state_room", &room);
        for x in 1..=7u64 {
            set(&mut plain, &room, "/x", json!(x));
            for cl in [&mut plain, &mut rich] {
                let m = next_state(cl, &room);
                if x % 3 == 0 {
                    assert_eq!(m.t(), "state.snapshot", "seq {x}: {m}");
                    assert_eq!(m.p()["state"], json!({"x": x}), "{m}");
                } else {
                    assert_eq!(m.t(), "state.patch", "seq {x}: {m}");
                }
                assert_eq!(m.p()["seq"], x, "{m}");
            }
        }
        let snap = rich
            .log
            .iter()
            .rev()
            .find(|m| m.t() == "state.snapshot" && m.p()["seq"] == 6)
            .cloned()
            .expect("snapshot 6");
        assert_checksum(&snap, crc(&json!({"x": 6})));
    }
}

#[test]
fn state_ack_and_resync_do_not_count_against_msgs_per_s() {
    let s = TestServer::start(|c| {
        c.limits.msgs_per_s = 2;
        c.limits.msgs_burst = 2;
    });
    for codec in CODECS {
        let room = format!("acks-free-{}", codec.name());
        let mut c = Client::new(s.addr, codec);
        c.join("counter_room", &room); // one of the 2 tokens
        for _ in 0..15 {
            c.send_env("state.ack", None, Some(&room), json!({"seq": 0}));
        }
        c.send_env("state.resync", None, Some(&room), json!({}));
        next_snapshot(&mut c, &room);
        c.send_env(
            "state.resync",
            None,
            Some(&room),
            json!({"reason": "again"}),
        );
        next_snapshot(&mut c, &room);
        let rest = c.drain(QUIET);
        assert!(
            rest.iter().all(|m| m.code() != "rate_limited"),
            "{codec:?}: 17 acks/resyncs with msgs_per_s 2 must not be limited:\n{}",
            show(&rest)
        );
        let r = c.rpc("room.list", None, json!({}));
        assert!(
            r.is_ok(),
            "{codec:?}: the message budget is untouched by acks and resyncs: {r}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Matchmaking
// ---------------------------------------------------------------------------------------

#[test]
fn matchmaking_queued_reply_has_a_one_based_fifo_position_across_shards() {
    let s = TestServer::default_config();
    let mut strays = Vec::new();
    let mut clients: Vec<Client> = (0..4)
        .map(|i| {
            let (c, st) =
                Client::on_shard(s.addr, (i % 2) as u16, CODECS[i / 2], hello(CODECS[i / 2]));
            strays.extend(st);
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        // Both spellings of the room type.
        let p = if i % 2 == 0 {
            json!({"room_type": "echo_room", "size": 5})
        } else {
            json!({"roomType": "echo_room", "size": 5})
        };
        let r = c.rpc("matchmaking.enqueue", None, p);
        assert_queued(&r, "echo_room", 5, i as u64 + 1);
    }
    // Another size (or type) is another queue.
    let r = enqueue(&mut clients[3], "echo_room", json!(6));
    assert_queued(&r, "echo_room", 6, 1);
    let r = enqueue(&mut clients[2], "counter_room", json!(5));
    assert_queued(&r, "counter_room", 5, 1);
    // clients 2 and 3 moved: 0 and 1 remain in (echo_room, 5).
    let mut e = Client::new(s.addr, Codec::Msgpack);
    assert_queued(&enqueue(&mut e, "echo_room", json!(5)), "echo_room", 5, 3);
}

#[test]
fn matchmaking_enqueuing_again_replaces_the_old_ticket() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        let mut c = Client::new(s.addr, ca);
        let mut d = Client::new(s.addr, cb);
        let mut e = Client::new(s.addr, ca);
        assert_queued(&enqueue(&mut a, "echo_room", json!(3)), "echo_room", 3, 1);
        assert_queued(&enqueue(&mut a, "echo_room", json!(3)), "echo_room", 3, 1);
        assert_queued(&enqueue(&mut b, "echo_room", json!(3)), "echo_room", 3, 2);
        // a moves to another queue: its echo_room ticket is gone.
        assert_queued(
            &enqueue(&mut a, "counter_room", json!(2)),
            "counter_room",
            2,
            1,
        );
        assert_queued(&enqueue(&mut c, "echo_room", json!(3)), "echo_room", 3, 2);
        let counter = matched_room(&enqueue(&mut d, "counter_room", json!(2)));
        let echo = matched_room(&enqueue(&mut e, "echo_room", json!(3)));
        let found = a.recv_until("match.found", |m| m.t() == "match.found");
        assert_eq!(found.room(), Some(counter.as_str()), "{found}");
        assert_eq!(
            participants(&found),
            BTreeSet::from([a.client_id.clone(), d.client_id.clone()])
        );
        let want: BTreeSet<String> = [&b, &c, &e].iter().map(|x| x.client_id.clone()).collect();
        for cl in [&mut b, &mut c, &mut e] {
            let found = cl.recv_until("match.found", |m| m.t() == "match.found");
            assert_eq!(found.room(), Some(echo.as_str()), "{found}");
            assert_eq!(
                participants(&found),
                want,
                "a's old ticket must not match: {found}"
            );
        }
        let rest = a.drain(QUIET);
        assert!(
            rest.iter().all(|m| m.t() != "match.found"),
            "a got a second match:\n{}",
            show(&rest)
        );
    }
}

#[test]
fn matchmaking_completing_enqueue_gets_matched_and_every_participant_gets_match_found() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let mut strays = Vec::new();
        let (mut a, st) = Client::on_shard(s.addr, 0, ca, hello(ca));
        strays.extend(st);
        let (mut b, st) = Client::on_shard(s.addr, 1, cb, hello(cb));
        strays.extend(st);
        let (mut c, st) = Client::on_shard(s.addr, 1, ca, hello(ca));
        strays.extend(st);
        assert_queued(
            &enqueue(&mut a, "counter_room", json!(3)),
            "counter_room",
            3,
            1,
        );
        assert_queued(
            &enqueue(&mut b, "counter_room", json!(3)),
            "counter_room",
            3,
            2,
        );
        let room = matched_room(&enqueue(&mut c, "counter_room", json!(3)));
        let ids = [
            a.client_id.clone(),
            b.client_id.clone(),
            c.client_id.clone(),
        ];
        for cl in [&mut a, &mut b, &mut c] {
            let found = cl.recv_until("match.found", |m| m.t() == "match.found");
            assert_eq!(found.room(), Some(room.as_str()), "envelope room: {found}");
            assert_eq!(found.binary, cl.codec == Codec::Msgpack);
            let p = found.p().as_object().expect("payload");
            let mut keys: Vec<&str> = p.keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(
                keys,
                ["participants", "room", "room_type", "size"],
                "{found}"
            );
            assert_eq!(p["room"], json!(room));
            assert_eq!(p["room_type"], "counter_room");
            assert_eq!(p["size"], 3);
            assert_eq!(
                participants(&found),
                ids.iter().cloned().collect::<BTreeSet<_>>(),
                "{found}"
            );
            let rest = cl.drain(QUIET);
            assert!(
                rest.iter().all(|m| m.t() != "match.found"),
                "exactly one match.found:\n{}",
                show(&rest)
            );
        }
    }
}

#[test]
fn matchmaking_matched_room_has_max_players_size_and_its_seats_are_reserved() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        let mut outsider = Client::new(s.addr, ca);
        assert_queued(
            &enqueue(&mut a, "counter_room", json!(2)),
            "counter_room",
            2,
            1,
        );
        let room = matched_room(&enqueue(&mut b, "counter_room", json!(2)));
        let listing = listed_until(&mut outsider, &room, "with max_players", |r| {
            r.get("max_players").is_some()
        });
        assert_eq!(listing["room_type"], "counter_room", "{listing}");
        assert_eq!(listing["max_players"], 2, "max_players = size: {listing}");
        // An outsider cannot take a reserved seat, even while the room is empty.
        let r = outsider.rpc(
            "room.join_or_create",
            None,
            json!({"room_type": "counter_room", "room": room}),
        );
        assert_eq!(r.p()["ok"], false, "{r}");
        assert_eq!(r.code(), "room_full", "{r}");
        // Participants join as the reference SDK does.
        for cl in [&mut a, &mut b] {
            cl.recv_until("match.found", |m| m.t() == "match.found");
            let r = cl.rpc(
                "room.join_or_create",
                None,
                json!({"roomType": "counter_room", "roomId": room}),
            );
            assert!(r.is_ok(), "a participant joins its matched room: {r}");
            let snap = cl.recv_until("snapshot", |m| m.t() == "state.snapshot");
            assert_eq!(snap.room(), Some(room.as_str()));
        }
        let r = outsider.rpc(
            "room.join_or_create",
            None,
            json!({"room_type": "counter_room", "room": room}),
        );
        assert_eq!(r.code(), "room_full", "{r}");
        listed_until(&mut outsider, &room, "with 2 members", |r| {
            r["members"] == 2
        });
    }
}

#[test]
fn matchmaking_ticket_expires_after_ticket_ttl_with_matchmaking_expired() {
    let s = TestServer::start(|c| c.matchmaking.ticket_ttl_ms = 400);
    for codec in CODECS {
        let mut a = Client::new(s.addr, codec);
        let start = Instant::now();
        assert_queued(&enqueue(&mut a, "echo_room", json!(4)), "echo_room", 4, 1);
        assert!(
            matches!(a.read_for(Duration::from_millis(200)), Read1::Timeout),
            "{codec:?}: nothing before the TTL: {}",
            show(&a.log)
        );
        let expired = a.expect("matchmaking.expired");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(350),
            "expired too early ({waited:?})"
        );
        assert_eq!(
            expired.p(),
            &json!({"room_type": "echo_room", "size": 4}),
            "{expired}"
        );
        assert_eq!(expired.binary, codec == Codec::Msgpack);
        // The ticket is gone.
        let mut b = Client::new(s.addr, codec);
        assert_queued(&enqueue(&mut b, "echo_room", json!(4)), "echo_room", 4, 1);
        b.rpc("matchmaking.dequeue", None, json!({}));
    }
}

#[test]
fn matchmaking_dropping_the_socket_removes_the_ticket() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let a = {
            let mut a = Client::new(s.addr, ca);
            assert_queued(&enqueue(&mut a, "echo_room", json!(2)), "echo_room", 2, 1);
            a
        };
        drop(a); // no close frame
        std::thread::sleep(Duration::from_millis(100));
        let mut b = Client::new(s.addr, cb);
        assert_queued(&enqueue(&mut b, "echo_room", json!(2)), "echo_room", 2, 1);
        let rest = b.drain(QUIET);
        assert!(
            rest.iter().all(|m| m.t() != "match.found"),
            "matched with a dropped socket's ticket:\n{}",
            show(&rest)
        );
        let r = b.rpc("matchmaking.dequeue", None, json!({}));
        assert_eq!(r.p(), &json!({"ok": true, "removed": true}), "{r}");
    }
}

#[test]
fn matchmaking_dequeue_answers_removed() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let mut a = Client::new(s.addr, codec);
        assert_queued(&enqueue(&mut a, "echo_room", json!(2)), "echo_room", 2, 1);
        let r = a.rpc("matchmaking.dequeue", None, json!({}));
        assert_eq!(r.p(), &json!({"ok": true, "removed": true}), "{r}");
        let r = a.rpc("matchmaking.dequeue", None, json!({}));
        assert_eq!(r.p(), &json!({"ok": true, "removed": false}), "{r}");
        let r = a.rpc(
            "matchmaking.dequeue",
            None,
            json!({"room_type": "echo_room"}),
        );
        assert_eq!(r.p(), &json!({"ok": true, "removed": false}), "{r}");
        let mut b = Client::new(s.addr, codec);
        assert_queued(&enqueue(&mut b, "echo_room", json!(2)), "echo_room", 2, 1);
        let rest = a.drain(QUIET);
        assert!(
            rest.iter().all(|m| m.t() != "match.found"),
            "a dequeued ticket matched:\n{}",
            show(&rest)
        );
        b.rpc("matchmaking.dequeue", None, json!({}));
    }
}

#[test]
fn matchmaking_bad_size_or_unknown_room_type_is_refused() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let mut a = Client::new(s.addr, codec);
        for size in [
            json!(1),
            json!(0),
            json!(-2),
            json!(65),
            json!(2.5),
            json!("2"),
        ] {
            let r = enqueue(&mut a, "echo_room", size.clone());
            assert_eq!(r.p()["ok"], false, "{codec:?} size {size}: {r}");
            assert_eq!(r.code(), "bad_request", "{codec:?} size {size}: {r}");
        }
        let r = a.rpc(
            "matchmaking.enqueue",
            None,
            json!({"room_type": "echo_room"}),
        );
        assert_eq!(r.code(), "bad_request", "{codec:?} no size: {r}");
        let r = enqueue(&mut a, "poker_room", json!(2));
        assert_eq!(r.p()["ok"], false, "{r}");
        assert_eq!(r.code(), "unknown_room_type", "{codec:?}: {r}");
        // Bounds are inclusive.
        assert_queued(&enqueue(&mut a, "echo_room", json!(64)), "echo_room", 64, 1);
        assert_queued(&enqueue(&mut a, "echo_room", json!(2)), "echo_room", 2, 1);
        // Nothing refused was queued: a second client completes a's one ticket.
        let mut b = Client::new(s.addr, codec);
        matched_room(&enqueue(&mut b, "echo_room", json!(2)));
    }
}

#[test]
fn matchmaking_a_ticket_follows_its_session_to_another_shard() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let (mut a, strays) = Client::on_shard(s.addr, 0, ca, hello(ca));
        drop(strays);
        assert_queued(&enqueue(&mut a, "echo_room", json!(2)), "echo_room", 2, 1);
        // Joining a room homed on shard 1 moves a's session there.
        a.join("echo_room", &room_on(1, &format!("away-{}", ca.name())));
        let mut b = Client::new(s.addr, cb);
        let room = matched_room(&enqueue(&mut b, "echo_room", json!(2)));
        let found = a.recv_until("match.found", |m| m.t() == "match.found");
        assert_eq!(found.room(), Some(room.as_str()), "{found}");
        assert!(participants(&found).contains(&a.client_id), "{found}");
    }
}

// ---------------------------------------------------------------------------------------
// Sessions and resume
// ---------------------------------------------------------------------------------------

/// Two members in rooms on both shards; `b` disconnects by `how`: `a` must hear
/// `room.dropped` from both rooms and nothing else (the seat is kept), and `b` resumes.
fn dropped_socket_parks(how: fn(Client), what: &str) {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let r0 = room_on(0, &format!("drop-{}", ca.name()));
        let r1 = room_on(1, &format!("drop-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        for room in [&r0, &r1] {
            a.join("echo_room", room);
            b.join("echo_room", room);
        }
        a.drain(QUIET);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        how(b);
        let mut heard = BTreeSet::new();
        for _ in 0..2 {
            let m = a.recv();
            assert_eq!(
                m.t(),
                "room.dropped",
                "{what} must park the session ({cb:?}); got {m}"
            );
            assert_eq!(m.p(), &json!({"client_id": cid}), "{m}");
            heard.insert(m.room().expect("envelope room").to_string());
        }
        assert_eq!(heard, BTreeSet::from([r0.clone(), r1.clone()]));
        let rest = a.drain(QUIET);
        assert!(
            rest.is_empty(),
            "a parked member keeps its seat (no room.left/room.members):\n{}",
            show(&rest)
        );
        let b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
        assert_eq!(b2.hello_ok.p()["resumed"], true, "{}", b2.hello_ok);
        a.recv_until("room.reconnected", |m| m.t() == "room.reconnected");
    }
}

#[test]
fn resume_a_dropped_socket_parks_the_session_and_its_rooms_hear_room_dropped() {
    // The TCP connection ends (FIN) without a close frame: a killed process, a lost tab.
    dropped_socket_parks(drop, "a socket closed without a close frame");
}

#[test]
fn resume_a_reset_socket_parks_the_session_and_its_rooms_hear_room_dropped() {
    dropped_socket_parks(reset, "a reset socket");
}

#[test]
fn resume_within_the_window_gives_resumed_true_with_the_same_ids() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = format!("resume-{}", ca.name());
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, ca);
        a.join("counter_room", &room);
        b.join("counter_room", &room);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        leave_parked(b);
        a.recv_until("room.dropped", |m| m.t() == "room.dropped");
        // It comes back in the other codec.
        let mut b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
        let ok = b2.hello_ok.clone();
        assert_eq!(ok.binary, cb == Codec::Msgpack);
        assert_eq!(ok.p()["resumed"], true, "{ok}");
        assert_eq!(ok.p()["session_id"], json!(sid), "{ok}");
        assert_eq!(ok.p()["client_id"], json!(cid), "{ok}");
        assert_eq!(ok.p()["codec"], cb.name(), "{ok}");
        // A member again, in its new codec.
        next_snapshot(&mut b2, &room);
        a.send_env("room.message", None, Some(&room), json!({"type": "hi"}));
        let m = b2.recv_until("relay", |m| m.t() == "room.message");
        assert_eq!(m.binary, cb == Codec::Msgpack);
        b2.send_env("room.message", None, Some(&room), json!({"type": "back"}));
        let m = a.recv_until("relay from b", |m| {
            m.t() == "room.message" && m.p()["type"] == "back"
        });
        assert_eq!(m.p()["from"], json!(cid));
    }
}

#[test]
fn resume_frames_follow_handshake_ok_after_the_delay_never_in_the_same_burst() {
    let delay = Duration::from_millis(150);
    let s = TestServer::start(|c| c.session.resume_frames_delay_ms = 150);
    for (ca, cb) in PAIRS {
        let r0 = room_on(0, &format!("burst-{}", ca.name()));
        let r1 = room_on(1, &format!("burst-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        for room in [&r0, &r1] {
            a.join("counter_room", room);
            b.join("counter_room", room);
        }
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        leave_parked(b);
        for _ in 0..2 {
            a.recv_until("room.dropped", |m| m.t() == "room.dropped");
        }
        // The rooms move on while b is away.
        inc(&mut a, &r0, 5);
        next_patch(&mut a, &r0);
        inc(&mut a, &r1, 2);
        next_patch(&mut a, &r1);
        inc(&mut a, &r1, 2);
        next_patch(&mut a, &r1);
        a.drain(QUIET);

        let mut b2 = Client::with_hello(s.addr, ca, resume_hello(ca, &sid));
        let got_ok = Instant::now();
        assert_eq!(b2.hello_ok.p()["resumed"], true, "{}", b2.hello_ok);
        match b2.read_for(Duration::from_millis(20)) {
            Read1::Timeout => {}
            Read1::Data(m) => panic!("{ca:?}: a frame in the handshake.ok burst: {m}"),
            Read1::Ping => panic!("{ca:?}: a ping in the handshake.ok burst"),
            Read1::Close(c) => panic!("closed ({c:?})"),
            Read1::Gone(e) => panic!("gone: {e}"),
        }
        // The others hear room.reconnected, b gets a fresh snapshot of every room.
        let mut heard = BTreeSet::new();
        for _ in 0..2 {
            let m = a.recv_until("room.reconnected", |m| m.t() == "room.reconnected");
            assert!(
                got_ok.elapsed() >= delay - Duration::from_millis(40),
                "room.reconnected {:?} after handshake.ok, before resume_frames_delay_ms",
                got_ok.elapsed()
            );
            assert_eq!(m.p(), &json!({"client_id": cid}), "{m}");
            heard.insert(m.room().expect("envelope room").to_string());
        }
        assert_eq!(heard, BTreeSet::from([r0.clone(), r1.clone()]));
        let mut snaps = Vec::new();
        for _ in 0..2 {
            let m = b2.recv_until("snapshot", |m| m.t() == "state.snapshot");
            assert!(
                got_ok.elapsed() >= delay - Duration::from_millis(40),
                "snapshot {:?} after handshake.ok, before resume_frames_delay_ms",
                got_ok.elapsed()
            );
            snaps.push(m);
        }
        snaps.sort_by_key(|m| m.room().unwrap_or("").to_string());
        let mut want = vec![
            (r0.clone(), json!({"state": {"counter": 5}, "seq": 1})),
            (r1.clone(), json!({"state": {"counter": 4}, "seq": 2})),
        ];
        want.sort_by(|x, y| x.0.cmp(&y.0));
        for (m, (room, p)) in snaps.iter().zip(&want) {
            assert_eq!(m.room(), Some(room.as_str()), "{m}");
            assert_eq!(m.p(), p, "{m}");
        }
        let rest = b2.drain(QUIET);
        assert!(
            state_frames(&rest).is_empty(),
            "one snapshot per room:\n{}",
            show(&rest)
        );
    }
}

#[test]
fn resume_close_1000_leaves_at_once() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = room_on(1, &format!("bye-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        a.join("echo_room", &room);
        b.join("echo_room", &room);
        a.drain(QUIET);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        close_with(&mut b, 1000);
        let left = a.expect("room.left");
        assert_eq!(left.room(), Some(room.as_str()));
        assert_eq!(left.p(), &json!({"client_id": cid}), "{left}");
        let members = a.expect("room.members");
        assert_eq!(
            members.p(),
            &json!({"members": [a.client_id], "count": 1}),
            "{members}"
        );
        assert!(
            of_type_in(&a.log, "room.dropped") == 0,
            "a normal close is no drop"
        );
        let b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
        assert_eq!(
            b2.hello_ok.p()["resumed"],
            false,
            "a session that left cannot be resumed: {}",
            b2.hello_ok
        );
    }
}

#[test]
fn resume_close_1001_or_any_other_code_parks_the_session() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        for code in [1001u16, 1002, 4000] {
            let room = format!("away-{}-{code}", ca.name());
            let mut a = Client::new(s.addr, ca);
            let mut b = Client::new(s.addr, cb);
            a.join("echo_room", &room);
            b.join("echo_room", &room);
            a.drain(QUIET);
            let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
            close_with(&mut b, code);
            let dropped = a.expect("room.dropped");
            assert_eq!(dropped.room(), Some(room.as_str()));
            assert_eq!(dropped.p(), &json!({"client_id": cid}), "close {code}");
            let b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
            assert_eq!(
                b2.hello_ok.p()["resumed"],
                true,
                "close {code} parks: {}",
                b2.hello_ok
            );
            a.recv_until("room.reconnected", |m| m.t() == "room.reconnected");
        }
    }
}

#[test]
fn resume_after_the_window_rooms_hear_room_left_and_members_and_it_no_longer_resumes() {
    let ttl = Duration::from_millis(400);
    let s = TestServer::start(|c| c.session.resume_ttl_ms = 400);
    for (ca, cb) in PAIRS {
        let room = room_on(0, &format!("expire-{}", ca.name()));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        a.join("counter_room", &room);
        b.join("counter_room", &room);
        a.drain(QUIET);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        leave_parked(b);
        let dropped_at = Instant::now();
        assert_eq!(a.expect("room.dropped").p(), &json!({"client_id": cid}));
        let left = a.expect("room.left");
        let waited = dropped_at.elapsed();
        assert!(
            waited >= ttl - Duration::from_millis(50),
            "room.left after {waited:?}, before resume_ttl_ms"
        );
        assert_eq!(left.room(), Some(room.as_str()));
        assert_eq!(left.p(), &json!({"client_id": cid}), "{left}");
        let members = a.expect("room.members");
        assert_eq!(
            members.p(),
            &json!({"members": [a.client_id], "count": 1}),
            "{members}"
        );
        let b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
        let ok = b2.hello_ok.p();
        assert_eq!(ok["resumed"], false, "{}", b2.hello_ok);
        assert_ne!(ok["session_id"], json!(sid), "a fresh session");
        assert_ne!(ok["client_id"], json!(cid), "a fresh session");
    }
}

#[test]
fn resume_with_an_unknown_session_id_starts_a_new_session() {
    let s = TestServer::default_config();
    for codec in CODECS {
        let fake = "0123456789abcdef0123456789abcdef";
        let c = Client::with_hello(s.addr, codec, resume_hello(codec, fake));
        let ok = c.hello_ok.p();
        assert_eq!(ok["resumed"], false, "{}", c.hello_ok);
        assert_ne!(ok["session_id"], json!(fake));
        // A live (not parked) session's id does not take it over either.
        let mut live = Client::new(s.addr, codec);
        live.join("echo_room", &format!("live-{}", codec.name()));
        let thief = Client::with_hello(s.addr, codec, resume_hello(codec, &live.session_id));
        assert_eq!(thief.hello_ok.p()["resumed"], false, "{}", thief.hello_ok);
        assert_ne!(thief.client_id, live.client_id);
        assert_eq!(
            live.rpc("room.list", None, json!({})).p()["ok"],
            true,
            "the live session is untouched"
        );
    }
}

#[test]
fn resume_with_another_projects_session_id_never_resumes() {
    let s = TestServer::default_config();
    for (ca, cb) in PAIRS {
        let room = format!("proj-{}", ca.name());
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, ca);
        a.join("echo_room", &room);
        b.join("echo_room", &room);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        leave_parked(b);
        a.recv_until("room.dropped", |m| m.t() == "room.dropped");
        let other = Client::with_hello(
            s.addr,
            cb,
            hello_with(
                cb,
                json!({"project_id": "other-project", "session_id": sid}),
            ),
        );
        assert_eq!(other.hello_ok.p()["resumed"], false, "{}", other.hello_ok);
        assert_ne!(other.client_id, cid);
        assert_ne!(other.session_id, sid);
        let rest = a.drain(QUIET);
        assert!(
            rest.iter().all(|m| m.t() != "room.reconnected"),
            "another project's handshake took the seat:\n{}",
            show(&rest)
        );
        // The rightful owner still can.
        let b2 = Client::with_hello(s.addr, cb, resume_hello(cb, &sid));
        assert_eq!(b2.hello_ok.p()["resumed"], true, "{}", b2.hello_ok);
        assert_eq!(b2.client_id, cid);
    }
}

/// A member of a room homed on each shard in turn parks, then resumes on a connection that
/// landed on the other shard, `pause` after another member heard `room.dropped`.
fn resume_on_the_other_shard(pause: Duration) {
    let s = TestServer::default_config();
    for (home, (ca, cb)) in [(0u16, PAIRS[0]), (1, PAIRS[1])] {
        let room = room_on(home, &format!("cross-{home}"));
        let mut a = Client::new(s.addr, ca);
        let mut b = Client::new(s.addr, cb);
        a.join("counter_room", &room);
        b.join("counter_room", &room); // b's session now lives on `home`
        inc(&mut a, &room, 7);
        next_patch(&mut b, &room);
        a.drain(QUIET);
        // Open the resuming connection on the other shard first (the gauges must be calm).
        let (ws, strays) = ws_connect_on_shard(s.addr, 1 - home);
        let (sid, cid) = (b.session_id.clone(), b.client_id.clone());
        leave_parked(b);
        a.recv_until("room.dropped", |m| m.t() == "room.dropped");
        std::thread::sleep(pause);
        let mut b2 = Client::over(ws, cb, resume_hello(cb, &sid));
        drop(strays);
        assert_eq!(
            b2.hello_ok.p()["resumed"],
            true,
            "landed on shard {}, parked on {home}, {pause:?} after the drop was heard: {}",
            1 - home,
            b2.hello_ok
        );
        assert_eq!(b2.client_id, cid);
        let m = a.recv_until("room.reconnected", |m| m.t() == "room.reconnected");
        assert_eq!(m.p(), &json!({"client_id": cid}));
        let snap = next_snapshot(&mut b2, &room);
        assert_eq!(
            snap.p(),
            &json!({"state": {"counter": 7}, "seq": 1}),
            "{snap}"
        );
        b2.send_env("room.message", None, Some(&room), json!({"type": "inc"}));
        for cl in [&mut a, &mut b2] {
            let p = next_patch(cl, &room);
            assert_eq!(p.p()["seq"], 2, "{p}");
        }
        let m = a.recv_until("relay", |m| m.t() == "room.message");
        assert_eq!(m.p()["from"], json!(cid));
    }
}

#[test]
fn resume_works_when_the_new_connection_lands_on_the_other_shard() {
    // The reference SDK reconnects 250 ms after a close.
    resume_on_the_other_shard(Duration::from_millis(250));
}

#[test]
fn resume_on_the_other_shard_right_after_the_drop_was_heard_still_resumes() {
    // The rooms already told the others the session is parked: it must be resumable.
    resume_on_the_other_shard(Duration::ZERO);
}
