//! The pairkit dialect over loopback on a 2-shard server: a host and eight phones spread
//! over both shards through a whole game (joins, screens, widget inputs, a tracked
//! broadcast, requests, a phone resuming inside its grace window and one after it, the
//! host dropping and reattaching), `/` settled by the first message with the transport
//! rules, and the per-address join throttle with real source addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use huddle::pairkit::code::{Code, ALPHABET};
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::{Message, WebSocket};

use crate::support::*;

/// A dropped phone keeps its place this long (short, so a test can outwait it).
const GRACE_MS: u64 = 1_000;

/// A pairkit client over a blocking socket. `expect` takes the very next message, so a
/// message the relay should not have sent fails the next expectation.
struct Pk {
    ws: WebSocket<TcpStream>,
    who: String,
    log: Vec<Value>,
}

impl Pk {
    fn over(ws: WebSocket<TcpStream>, who: &str) -> Pk {
        Pk {
            ws,
            who: who.to_string(),
            log: Vec::new(),
        }
    }

    fn connect(addr: SocketAddr, who: &str) -> Pk {
        Pk::over(ws_connect(addr, "/pairkit"), who)
    }

    /// A client whose connection landed on `shard`; the connections that landed elsewhere
    /// join `strays` (keep them open while more clients are placed).
    fn on_shard(
        addr: SocketAddr,
        shard: u16,
        who: &str,
        strays: &mut Vec<WebSocket<TcpStream>>,
    ) -> Pk {
        let (ws, more) = ws_connect_on_shard_at(addr, "/pairkit", shard);
        strays.extend(more);
        Pk::over(ws, who)
    }

    fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).expect("send");
    }

    /// Sends several messages in one socket write.
    fn send_batch(&mut self, vs: &[Value]) {
        for v in vs {
            self.ws.write(Message::text(v.to_string())).expect("queue");
        }
        self.ws.flush().expect("flush");
    }

    fn shown(&self) -> String {
        self.log.iter().map(|v| format!("  {v}\n")).collect()
    }

    /// The next message (WebSocket pings skipped).
    fn next(&mut self) -> Value {
        loop {
            match read1(&mut self.ws) {
                Read1::Data(m) => {
                    assert!(
                        !m.binary,
                        "{}: the relay sent a binary frame: {m}",
                        self.who
                    );
                    self.log.push(m.v.clone());
                    return m.v;
                }
                Read1::Ping => {}
                Read1::Close(c) => panic!(
                    "{}: closed ({c:?}) while waiting for a message; got:\n{}",
                    self.who,
                    self.shown()
                ),
                Read1::Timeout => panic!(
                    "{}: no message within {WAIT:?}; got:\n{}",
                    self.who,
                    self.shown()
                ),
                Read1::Gone(e) => panic!(
                    "{}: connection gone ({e}); got:\n{}",
                    self.who,
                    self.shown()
                ),
            }
        }
    }

    /// The next message, which must be of type `kind`.
    fn expect(&mut self, kind: &str) -> Value {
        let v = self.next();
        assert_eq!(
            v["type"],
            kind,
            "{}: expected {kind}, got {v}; log:\n{}",
            self.who,
            self.shown()
        );
        v
    }

    /// The next message, which must be a `system.error` with a message; its code.
    fn error(&mut self) -> String {
        let v = self.expect("system.error");
        assert!(v["message"].is_string(), "{}: {v}", self.who);
        v["code"].as_str().expect("a string code").to_string()
    }

    /// Sends a message and takes the `system.error` it is answered with; its code.
    fn refused(&mut self, v: Value) -> String {
        self.send(v);
        self.error()
    }

    /// The close frame that must come next: its code and reason.
    fn closed(&mut self) -> (u16, String) {
        loop {
            match self.ws.read() {
                Ok(Message::Close(f)) => {
                    return f.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    })
                }
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(m) => panic!("{}: expected a close, got {m:?}", self.who),
                Err(e) => panic!("{}: no close frame ({e})", self.who),
            }
        }
    }

    /// `system.ping {sent_at}` answered `system.pong {sent_at, received_at}`: the
    /// connection is open and its earlier messages were handled.
    fn ping(&mut self, sent_at: u64) -> Value {
        self.send(json!({"type": "system.ping", "sent_at": sent_at}));
        let pong = self.expect("system.pong");
        assert_eq!(pong["sent_at"], sent_at, "{}: {pong}", self.who);
        pong
    }
}

/// The game's flow: a lobby with a button, a play screen with a joystick and a choice.
fn flow() -> Value {
    json!({"version": 1, "id": "quiz", "initial_screen": "lobby", "screens": {
        "lobby": {"widgets": [{"id": "ready", "type": "button", "label": "Ready"}]},
        "play": {"widgets": [
            {"id": "stick", "type": "joystick"},
            {"id": "pick", "type": "choice_list", "choices": [{"id": "a", "label": "A"}, {"id": "b", "label": "B"}]}
        ]}
    }})
}

fn is_code(code: &str) -> bool {
    code.len() == 4 && code.bytes().all(|b| ALPHABET.contains(&b))
}

/// A secret of at least 128 bits, as hex.
fn is_secret(s: &Value) -> bool {
    s.as_str()
        .is_some_and(|s| s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_color(c: &Value) -> bool {
    c.as_str().is_some_and(|c| {
        c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// Opens a session; returns `session.created`.
fn create(host: &mut Pk, body: Value) -> Value {
    host.send(merged(json!({"type": "session.create"}), body));
    let created = host.expect("session.created");
    assert!(is_code(created["code"].as_str().unwrap_or("")), "{created}");
    assert!(is_secret(&created["host_id"]), "{created}");
    created
}

/// `huddle_session_moves_total` of each of 2 shards.
fn moves(addr: SocketAddr) -> [f64; 2] {
    [0, 1].map(|i| {
        metric(
            addr,
            &format!("huddle_session_moves_total{{shard=\"{i}\"}}"),
        )
    })
}

/// A series summed over the shards: `name{shard="all",labels}`.
fn all_shards(addr: SocketAddr, name: &str, labels: &str) -> f64 {
    metric(addr, &format!("{name}{{shard=\"all\",{labels}}}"))
}

/// Waits until the per-shard connection gauges read `want`.
fn await_connections(addr: SocketAddr, want: [f64; 2]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = connections_per_shard(addr, 2);
        if now == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connections per shard {now:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pairkit_a_host_and_eight_phones_on_two_shards_play_a_whole_game() {
    let s = TestServer::start(|c| {
        c.shards = 2;
        c.pairkit.grace_ms = GRACE_MS;
        c.pairkit.strict_payloads = true;
    });

    // The host opens a session; its home is the shard that created it.
    let mut host = Pk::connect(s.addr, "host");
    let created = create(&mut host, json!({"flow": flow(), "protocol_version": 1}));
    assert_eq!(created["players"], json!([]));
    assert_eq!(
        created["relay_capabilities"],
        json!({"strict_payloads": true})
    );
    let code = created["code"].as_str().unwrap().to_string();
    let host_id = created["host_id"].as_str().unwrap().to_string();
    let home = usize::from(Code::parse(&code).unwrap().home(2).0);
    let away = 1 - home;

    // Eight phones, four on each shard.
    let mut strays = Vec::new();
    let mut phones: Vec<Pk> = (0..8)
        .map(|i| Pk::on_shard(s.addr, i % 2, &format!("p{}", i + 1), &mut strays))
        .collect();
    drop(strays);
    let moved_before = moves(s.addr);

    // Joins: the code in either case; names cut to 32; colours #rrggbb or picked.
    let long_name = "D".repeat(40);
    let asks = [
        json!({"code": code.to_lowercase(), "name": "Ann", "color": "#A0B1C2"}),
        json!({"code": code, "name": "Ben", "color": "red"}),
        json!({"code": code}),
        json!({"code": code, "name": long_name}),
        json!({"code": code, "name": "Eve"}),
        json!({"code": code, "name": "Fay"}),
        json!({"code": code, "name": "Gus", "protocol_version": 1}),
        json!({"code": code, "name": "Hal", "player_id": "forged"}),
    ];
    let names = [
        "Ann",
        "Ben",
        "Player 3",
        &"D".repeat(32),
        "Eve",
        "Fay",
        "Gus",
        "Hal",
    ];
    let mut tokens = Vec::new();
    let mut roster = Vec::new();
    for (i, (phone, ask)) in phones.iter_mut().zip(asks).enumerate() {
        let id = format!("p{}", i + 1);
        // A query right behind the join, in one write: read after the join, wherever the
        // join took the socket.
        phone.send_batch(&[
            merged(json!({"type": "session.join"}), ask),
            json!({"type": "screen.query"}),
        ]);
        let joined = phone.expect("session.joined");
        assert_eq!(joined["player_id"], id, "{joined}");
        assert!(is_secret(&joined["resume_token"]), "{joined}");
        assert_ne!(joined["resume_token"], host_id);
        assert_eq!(joined["flow"], flow());
        let screen = &joined["screen"];
        assert_eq!(screen["screen_name"], "lobby", "{joined}");
        assert_eq!(
            (&screen["data"], &screen["revision"]),
            (&json!({}), &json!(0))
        );
        assert!(
            screen["shown_at"].as_u64().is_some_and(|t| t > 0),
            "{joined}"
        );
        let mut state = screen.clone();
        state["type"] = json!("screen.state");
        assert_eq!(phone.expect("screen.state"), state);
        tokens.push(joined["resume_token"].as_str().unwrap().to_string());
        let announced = host.expect("player.join");
        assert!(is_color(&announced["color"]), "{announced}");
        let color = announced["color"].clone();
        assert_eq!(
            announced,
            json!({"type": "player.join", "player_id": id, "name": names[i], "color": color, "resumed": false})
        );
        roster.push(json!({"player_id": id, "name": names[i], "color": color, "online": true}));
    }
    assert_eq!(roster[0]["color"], "#a0b1c2");
    assert_ne!(roster[1]["color"], "red");
    let distinct: BTreeSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), 8, "every player has its own resume_token");

    // The four phones that landed away from the session's home moved there, and no other.
    let moved = moves(s.addr);
    assert_eq!(
        moved[away] - moved_before[away],
        4.0,
        "moves out of shard {away}"
    );
    assert_eq!(
        moved[home] - moved_before[home],
        0.0,
        "moves out of shard {home}"
    );
    let mut want = [0.0; 2];
    want[home] = 9.0;
    await_connections(s.addr, want);

    // Screens: a show to everyone, an update to two (one id unknown), a conflict.
    host.send(json!({"type": "screen.show", "screen": "play", "data": {"round": 1}}));
    let shows: Vec<Value> = phones.iter_mut().map(|p| p.expect("screen.show")).collect();
    let play_shown_at = shows[0]["shown_at"].as_u64().expect("shown_at");
    for (show, phone) in shows.iter().zip(&mut phones) {
        assert_eq!(
            show,
            &json!({"type": "screen.show", "screen": "play", "data": {"round": 1}, "revision": 1, "shown_at": play_shown_at})
        );
        phone.send(json!({"type": "screen.acknowledge", "screen": "play", "revision": 1}));
    }
    let mut acked = BTreeSet::new();
    for _ in 0..8 {
        let ack = host.expect("screen.acknowledge");
        assert_eq!(
            (&ack["screen"], &ack["revision"]),
            (&json!("play"), &json!(1))
        );
        acked.insert(ack["player_id"].as_str().unwrap().to_string());
    }
    assert_eq!(acked, (1..=8).map(|n| format!("p{n}")).collect());
    assert_eq!(
        host.refused(json!({"type": "screen.show", "screen": "nowhere"})),
        "screen_not_found"
    );
    host.send(json!({"type": "screen.update_data", "player_ids": ["p1", "p2", "ghost"], "data": {"score": 5}}));
    for phone in &mut phones[..2] {
        assert_eq!(
            phone.expect("screen.update_data"),
            json!({"type": "screen.update_data", "data": {"score": 5}, "revision": 2})
        );
    }
    assert_eq!(
        host.refused(json!({"type": "screen.update_data", "player_ids": ["p1", "p3"], "data": {"score": 6}, "revision": 2})),
        "revision_conflict",
        "p1 is at revision 2 already"
    );
    phones[0].send(json!({"type": "screen.query"}));
    assert_eq!(
        phones[0].expect("screen.state"),
        json!({"type": "screen.state", "screen_name": "play", "data": {"round": 1, "score": 5}, "revision": 2, "shown_at": play_shown_at})
    );

    // Widget inputs reach the host with the sender's player_id (a forged one is replaced).
    for (i, phone) in phones.iter_mut().enumerate() {
        let choice = if i % 3 == 0 { "a" } else { "b" };
        phone.send(json!({"type": "input.widget_event", "widget_id": "pick", "event_type": "select", "payload": {"choice_id": choice}, "revision": 1, "player_id": "p99"}));
    }
    let mut picks = BTreeMap::new();
    for _ in 0..8 {
        let ev = host.expect("input.widget_event");
        assert_eq!(
            (&ev["widget_id"], &ev["event_type"], &ev["revision"]),
            (&json!("pick"), &json!("select"), &json!(1)),
            "{ev}"
        );
        let id = ev["player_id"].as_str().unwrap().to_string();
        assert!(
            picks.insert(id, ev["payload"].clone()).is_none(),
            "one each"
        );
    }
    let want: BTreeMap<String, Value> = (0..8)
        .map(|i| {
            let choice = if i % 3 == 0 { "a" } else { "b" };
            (format!("p{}", i + 1), json!({"choice_id": choice}))
        })
        .collect();
    assert_eq!(picks, want);
    assert_eq!(
        phones[0].refused(json!({"type": "input.widget_event", "widget_id": "stick", "event_type": "move", "payload": {"x": 2, "y": 0}})),
        "malformed_message",
        "strict payloads: x out of [-1, 1]"
    );
    assert_eq!(
        phones[1].refused(json!({"type": "input.widget_event", "widget_id": "stick", "event_type": "move", "payload": {"x": 0, "y": 0}, "revision": 0})),
        "stale_input",
        "revision 0 is below the play screen's 1"
    );
    phones[0].send(json!({"type": "input.widget_event", "widget_id": "stick", "event_type": "move", "payload": {"x": 0.5, "y": -1}, "revision": 2}));
    assert_eq!(
        host.expect("input.widget_event"),
        json!({"type": "input.widget_event", "widget_id": "stick", "event_type": "move", "payload": {"x": 0.5, "y": -1}, "revision": 2, "player_id": "p1"}),
        "an update does not make input stale; the refused events never reached the host"
    );

    // A tracked broadcast: seven phones ack, the eighth does not.
    host.send(json!({"type": "control.broadcast", "event": "round", "payload": {"n": 1}, "broadcast_id": "b1", "ack_timeout_ms": 1000}));
    assert_eq!(
        host.refused(json!({"type": "control.broadcast", "event": "again", "broadcast_id": "b1"})),
        "malformed_message",
        "b1 is still waiting for acks"
    );
    for phone in &mut phones {
        assert_eq!(
            phone.expect("control.event"),
            json!({"type": "control.event", "event": "round", "payload": {"n": 1}, "broadcast_id": "b1"})
        );
    }
    for phone in &mut phones[..7] {
        phone.send(json!({"type": "control.ack", "broadcast_id": "b1"}));
    }
    let mut results: serde_json::Map<String, Value> = (1..=7)
        .map(|n| (format!("p{n}"), json!("delivered")))
        .collect();
    results.insert("p8".into(), json!("timed_out"));
    assert_eq!(
        host.expect("control.broadcast_result"),
        json!({"type": "control.broadcast_result", "broadcast_id": "b1", "results": results})
    );
    phones[7].send(json!({"type": "control.ack", "broadcast_id": "b1"}));

    // A request answered, and one timed out.
    assert_eq!(
        host.refused(json!({"type": "control.request", "request_id": "q0", "player_id": "ghost", "kind": "text"})),
        "player_not_found"
    );
    host.send(json!({"type": "control.request", "request_id": "q1", "player_id": "p3", "kind": "text", "payload": {"prompt": "Your name?"}}));
    assert_eq!(
        phones[2].expect("control.request"),
        json!({"type": "control.request", "request_id": "q1", "kind": "text", "payload": {"prompt": "Your name?"}})
    );
    phones[2]
        .send(json!({"type": "input.response", "request_id": "q1", "payload": {"text": "Cleo"}}));
    assert_eq!(
        host.expect("input.response"),
        json!({"type": "input.response", "request_id": "q1", "player_id": "p3", "payload": {"text": "Cleo"}})
    );
    assert_eq!(
        phones[2].refused(json!({"type": "input.response", "request_id": "q1", "payload": {}})),
        "request_cancelled",
        "q1 is answered already"
    );
    host.send(json!({"type": "control.request", "request_id": "q2", "player_id": "p4", "kind": "confirm", "timeout_ms": 200}));
    assert_eq!(
        phones[3].expect("control.request"),
        json!({"type": "control.request", "request_id": "q2", "kind": "confirm", "timeout_ms": 200})
    );
    assert_eq!(
        phones[3].expect("control.request_cancel"),
        json!({"type": "control.request_cancel", "request_id": "q2", "reason": "timeout"})
    );
    assert_eq!(
        host.expect("control.request_cancel"),
        json!({"type": "control.request_cancel", "request_id": "q2", "player_id": "p4", "reason": "timeout"})
    );
    assert_eq!(
        phones[3].refused(json!({"type": "input.response", "request_id": "q2", "payload": true})),
        "request_cancelled",
        "q2 timed out"
    );

    // p5 drops with a request open: the host hears the request end, not the drop.
    host.send(
        json!({"type": "control.request", "request_id": "q3", "player_id": "p5", "kind": "text"}),
    );
    phones[4].expect("control.request");
    drop(std::mem::replace(
        &mut phones[4],
        Pk::connect(s.addr, "p5 again"),
    ));
    assert_eq!(
        host.expect("control.request_cancel"),
        json!({"type": "control.request_cancel", "request_id": "q3", "player_id": "p5", "reason": "player_disconnected"})
    );
    assert_eq!(
        host.refused(
            json!({"type": "control.send_to_player", "player_id": "p5", "event": "hello"})
        ),
        "player_offline"
    );
    // A tracked broadcast while p5 is away: it missed it; everyone else acks at once.
    host.send(json!({"type": "control.broadcast", "event": "round", "payload": {"n": 2}, "broadcast_id": "b2"}));
    for (i, phone) in phones.iter_mut().enumerate().filter(|(i, _)| *i != 4) {
        let ev = phone.expect("control.event");
        assert_eq!(ev["broadcast_id"], "b2", "p{}: {ev}", i + 1);
        phone.send(json!({"type": "control.ack", "broadcast_id": "b2"}));
    }
    let mut results: serde_json::Map<String, Value> = (1..=8)
        .map(|n| (format!("p{n}"), json!("delivered")))
        .collect();
    results.insert("p5".into(), json!("missed"));
    assert_eq!(
        host.expect("control.broadcast_result"),
        json!({"type": "control.broadcast_result", "broadcast_id": "b2", "results": results})
    );
    // A screen update reaches the players online, and p5's state too.
    host.send(
        json!({"type": "screen.update_data", "player_ids": ["p3", "p5"], "data": {"bonus": true}}),
    );
    assert_eq!(
        phones[2].expect("screen.update_data"),
        json!({"type": "screen.update_data", "data": {"bonus": true}, "revision": 2})
    );
    // p5 resumes inside its grace window: same id, token, name and screen (with its data).
    phones[4].send(json!({"type": "session.join", "code": code, "name": "Imposter", "resume_player_id": "p5", "resume_token": tokens[4]}));
    let resumed = phones[4].expect("session.joined");
    assert_eq!(
        resumed,
        json!({"type": "session.joined", "player_id": "p5", "resume_token": tokens[4], "flow": flow(),
            "screen": {"screen_name": "play", "data": {"round": 1, "bonus": true}, "revision": 2, "shown_at": play_shown_at}})
    );
    assert_eq!(
        host.expect("player.join"),
        json!({"type": "player.join", "player_id": "p5", "name": "Eve", "color": roster[4]["color"], "resumed": true})
    );

    // p6 drops and comes back after its grace window: refused, then a new player.
    drop(std::mem::replace(
        &mut phones[5],
        Pk::connect(s.addr, "p6 again"),
    ));
    assert_eq!(
        host.expect("player.leave"),
        json!({"type": "player.leave", "player_id": "p6", "reason": "timeout"})
    );
    assert_eq!(
        phones[5].refused(json!({"type": "session.join", "code": code, "resume_player_id": "p6", "resume_token": tokens[5]})),
        "player_not_found",
        "p6's grace window is over"
    );
    assert_eq!(
        phones[5].refused(json!({"type": "session.join", "code": code, "resume_player_id": "p5", "resume_token": tokens[5]})),
        "player_not_found",
        "p5 with another player's token"
    );
    phones[5].send(json!({"type": "session.join", "code": code, "name": "Fay"}));
    let rejoined = phones[5].expect("session.joined");
    assert_eq!(
        rejoined["player_id"], "p9",
        "ids are never reused: {rejoined}"
    );
    assert_eq!(
        rejoined["screen"]["screen_name"], "lobby",
        "a new player starts on the initial screen"
    );
    let p9 = host.expect("player.join");
    assert_eq!(
        (&p9["player_id"], &p9["resumed"]),
        (&json!("p9"), &json!(false))
    );
    roster.remove(5);
    roster.push(json!({"player_id": "p9", "name": "Fay", "color": p9["color"], "online": true}));

    // The host drops with a request open to p7; input meanwhile is dropped and counted.
    host.send(
        json!({"type": "control.request", "request_id": "q4", "player_id": "p7", "kind": "text"}),
    );
    phones[6].expect("control.request");
    drop(host);
    let absent = || {
        all_shards(
            s.addr,
            "huddle_pairkit_dropped_total",
            "reason=\"host_absent\"",
        )
    };
    let deadline = Instant::now() + WAIT;
    while absent() == 0.0 {
        assert!(Instant::now() < deadline, "no input counted host_absent");
        phones[0].send(json!({"type": "input.widget_event", "widget_id": "stick", "event_type": "move", "payload": {"x": 0, "y": 0}}));
        std::thread::sleep(Duration::from_millis(20));
    }
    phones[0].send(json!({"type": "screen.query"}));
    phones[0].expect("screen.state");

    // A wrong host_id gets a fresh session, not this one.
    let mut intruder = Pk::connect(s.addr, "intruder");
    intruder.send(
        json!({"type": "session.create", "resume_code": code, "resume_host_id": "00".repeat(16)}),
    );
    assert_eq!(intruder.error(), "host_resume_rejected");
    let fresh = intruder.expect("session.created");
    assert_ne!(fresh["code"], code);
    assert_eq!(fresh["players"], json!([]));
    drop(intruder);

    // The host reattaches from the other shard: the same code, host id and players.
    let mut host = Pk::on_shard(s.addr, away as u16, "host again", &mut Vec::new());
    host.send(json!({"type": "session.create", "resume_code": code.to_lowercase(), "resume_host_id": host_id, "flow": flow()}));
    assert_eq!(
        host.expect("session.created"),
        json!({"type": "session.created", "code": code, "host_id": host_id,
            "relay_capabilities": {"strict_payloads": true}, "players": roster})
    );
    // The open request survived; nothing was queued for the absent host.
    phones[6].send(
        json!({"type": "input.response", "request_id": "q4", "payload": {"text": "still here"}}),
    );
    assert_eq!(
        host.expect("input.response"),
        json!({"type": "input.response", "request_id": "q4", "player_id": "p7", "payload": {"text": "still here"}})
    );
    host.send(json!({"type": "control.send_to_player", "player_id": "p1", "event": "welcome_back", "payload": {"ok": true}}));
    assert_eq!(
        phones[0].expect("control.event"),
        json!({"type": "control.event", "event": "welcome_back", "payload": {"ok": true}})
    );

    // The host ends the session: every phone is told, then closed; the code is gone.
    host.send(json!({"type": "session.leave", "reason": "good game"}));
    for phone in &mut phones {
        assert_eq!(
            phone.expect("session.ended"),
            json!({"type": "session.ended", "reason": "host_closed", "message": "good game"})
        );
        assert_eq!(phone.closed(), (1000, "host_closed".to_string()));
    }
    assert_eq!(host.closed(), (1000, "host_closed".to_string()));
    let mut late = Pk::connect(s.addr, "late");
    assert_eq!(
        late.refused(json!({"type": "session.join", "code": code})),
        "session_not_found"
    );
}

#[test]
fn pairkit_slash_by_first_message_and_the_transport_rules() {
    let s = TestServer::default_config();

    // `/`: a first message with a `type` is pairkit, a rooms handshake is rooms.
    let mut on_slash = Pk::over(ws_connect(s.addr, "/"), "slash host");
    let created = create(&mut on_slash, json!({}));
    assert_eq!(created["players"], json!([]));
    let mut rooms = Client::over(ws_connect(s.addr, "/"), Codec::Json, hello(Codec::Json));
    assert!(rooms.rpc("room.list", None, json!({})).is_ok());

    // Liveness: the pong echoes sent_at and stamps the relay's unix ms.
    let mut c = Pk::connect(s.addr, "client");
    let before = now_ms();
    let pong = c.ping(before);
    let after = now_ms();
    let received_at = pong["received_at"].as_u64().expect("received_at");
    assert!(
        received_at + 1_000 >= before && received_at <= after + 1_000,
        "received_at {received_at} is not the relay's clock ({before}..{after})"
    );

    // Refusals that leave the connection open.
    c.ws.send(Message::binary(
        br#"{"type":"system.ping","sent_at":1}"#.to_vec(),
    ))
    .unwrap();
    assert_eq!(c.error(), "malformed_message", "a binary frame");
    let max = huddle::config::Config::default().limits.frame_bytes_max;
    let oversize = json!({"type": "system.ping", "sent_at": 2, "pad": "x".repeat(max)});
    assert_eq!(c.refused(oversize), "payload_too_large");
    c.ws.send(Message::text("[1, 2]")).unwrap();
    assert_eq!(c.error(), "malformed_message", "not an object");
    assert_eq!(
        c.refused(json!({"type": "no.such"})),
        "malformed_message",
        "an unknown type"
    );
    assert_eq!(
        c.refused(json!({"type": "control.broadcast", "event": "x"})),
        "session_not_found",
        "a host's message on a socket in no session"
    );
    c.ping(3);
    let dropped = |why: &str| {
        all_shards(
            s.addr,
            "huddle_pairkit_dropped_total",
            &format!("reason=\"{why}\""),
        )
    };
    assert_eq!(dropped("payload_too_large"), 1.0);
    assert_eq!(dropped("malformed_message"), 3.0);

    // Invalid UTF-8 in a text frame closes 1007.
    let text = Frame::message(
        b"{\"type\":\"\xff\"}".to_vec(),
        OpCode::Data(Data::Text),
        true,
    );
    c.ws.send(Message::Frame(text)).unwrap();
    assert_eq!(c.closed().0, 1007);
}

/// A WebSocket on `/pairkit` from the source address `source` (any of 127/8 on loopback).
fn connect_from(addr: SocketAddr, source: &str) -> WebSocket<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).expect("bind the source address");
    socket.connect(&addr.into()).expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tungstenite::client::client_with_config(
        format!("ws://{addr}/pairkit").as_str(),
        stream,
        None,
    )
    .expect("upgrade");
    ws
}

#[test]
fn pairkit_join_throttle_counts_unknown_codes_per_address_across_shards() {
    const FAILURES: u32 = 5;
    let s = TestServer::start(|c| {
        c.shards = 2;
        c.pairkit.join_failures_per_min = FAILURES;
    });
    let mut host = Pk::connect(s.addr, "host");
    let code = create(&mut host, json!({}))["code"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = ["WXYZ", "ABCD"].into_iter().find(|c| *c != code).unwrap();
    // One guesser on each shard: the failures of 127.0.0.1 are counted in one place.
    let mut strays = Vec::new();
    let mut guessers =
        [0, 1].map(|i| Pk::on_shard(s.addr, i, &format!("guesser {i}"), &mut strays));
    drop(strays);
    for bad in ["AB0D", "ABC", "abcde"] {
        assert_eq!(
            guessers[0].refused(json!({"type": "session.join", "code": bad})),
            "invalid_code",
            "{bad}"
        );
    }
    for i in 0..FAILURES as usize {
        assert_eq!(
            guessers[i % 2].refused(json!({"type": "session.join", "code": unknown})),
            "session_not_found",
            "guess {} (invalid codes do not count)",
            i + 1
        );
    }
    assert_eq!(
        guessers[1].refused(json!({"type": "session.join", "code": unknown})),
        "rate_limited"
    );
    for (i, g) in guessers.iter_mut().enumerate() {
        assert_eq!(
            g.refused(json!({"type": "session.join", "code": code})),
            "rate_limited",
            "a valid code from a throttled address (guesser {i})"
        );
    }
    let mut fresh = Pk::connect(s.addr, "fresh socket");
    assert_eq!(
        fresh.refused(json!({"type": "session.join", "code": code.to_lowercase()})),
        "rate_limited",
        "the address is throttled, not the socket"
    );

    // Another address still joins.
    let mut other = Pk::over(connect_from(s.addr, "127.0.0.2"), "127.0.0.2");
    other.send(json!({"type": "session.join", "code": code, "name": "Neighbour"}));
    assert_eq!(other.expect("session.joined")["player_id"], "p1");
    let join = host.expect("player.join");
    assert_eq!(
        (&join["player_id"], &join["name"]),
        (&json!("p1"), &json!("Neighbour")),
        "the throttled joins never reached the host"
    );
    let errors = |code: &str| {
        let labels = format!("dialect=\"pairkit\",code=\"{code}\"");
        all_shards(s.addr, "huddle_errors_total", &labels)
    };
    assert_eq!(errors("invalid_code"), 3.0);
    assert_eq!(errors("session_not_found"), f64::from(FAILURES));
    assert_eq!(errors("rate_limited"), 4.0);
}

#[test]
fn pairkit_a_message_declared_over_sixteen_frames_is_not_read_and_closes_1009() {
    let s = TestServer::start(|c| c.limits.frame_bytes_max = 1024);
    let mut c = Pk::connect(s.addr, "big");
    // Up to 16 × the bound is read, then refused as too large; the socket stays.
    let pad = "x".repeat(16 * 1024 - 64);
    assert_eq!(
        c.refused(json!({"type": "system.ping", "sent_at": 1, "pad": pad})),
        "payload_too_large"
    );
    c.ping(2);
    // One byte past 16 × the bound is not read: close 1009.
    let over = format!("{{\"type\":\"x\",\"pad\":\"{}\"}}", "y".repeat(16 * 1024));
    let _ = c.ws.send(Message::text(over));
    assert_eq!(c.closed().0, 1009);
}
