//! The engine with a dialect of its own (`Toy`): it runs any dialect behind the seam, and
//! its own rules — closes heard once, parking and take-overs, timers, overflow, the order
//! of a turn — hold whatever the dialect.

use std::sync::Arc;

use super::*;
use crate::codec::frame::{self, OpCode};
use crate::codec::Frame;
use crate::config::Config;
use crate::core::outbound::Class;
use crate::metrics::DialectMetrics;

/// What a toy session keeps.
#[derive(Debug, Default)]
struct ToySession {
    /// Parked (not ended) when its connection drops.
    parks: bool,
}

/// A dialect that echoes upper-cased, and obeys a few commands.
#[derive(Default)]
struct Toy {
    /// What the engine told it, in order.
    log: Vec<String>,
    /// Sends `welcome` as a session opens.
    greets: bool,
}

impl Dialect for Toy {
    type Session = ToySession;
    type Mesh = String;
    type Timer = (SessionKey, &'static str);
    type Route = bool;
    type Shared = ();

    fn shared(_: &Arc<Config>) {}

    fn new(_: ShardId, _: usize, _: &Arc<Config>, _: &Arc<()>) -> Self {
        Toy::default()
    }

    fn metrics(&self) -> Vec<Arc<dyn DialectMetrics>> {
        Vec::new()
    }

    fn route(
        &mut self,
        _: &mut Engine<Self>,
        upgrade: &Upgrade<'_>,
        _: u64,
    ) -> Result<Routed<bool>, HttpRefusal> {
        match upgrade.path {
            "/toy" => Ok(Routed {
                route: upgrade.param("park").is_some(),
                message_bytes_max: 1024,
            }),
            _ => Err(HttpRefusal::NOT_FOUND),
        }
    }

    fn http_get(&mut self, _: &mut Engine<Self>, get: &HttpGet<'_>, _: u64) -> Option<HttpReply> {
        (get.path == "/toy/hello").then(|| HttpReply {
            status: 200,
            reason: "OK",
            content_type: "text/plain",
            headers: &[],
            body: b"hello".to_vec(),
        })
    }

    fn session(parks: &bool) -> ToySession {
        ToySession { parks: *parks }
    }

    fn handle_open(&mut self, eng: &mut Engine<Self>, key: SessionKey, parks: bool, _: u64) {
        self.log.push(format!("open {} parks={parks}", key.index));
        if self.greets {
            let frame = frame::from_payload(OpCode::Text, b"welcome");
            eng.send(key, frame, Class::Reliable);
        }
    }

    fn handle_message(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        m: Message<'_>,
        now: u64,
    ) {
        let text = String::from_utf8_lossy(m.bytes).to_string();
        match text.as_str() {
            "close" => eng.close(key, 4000, "asked"),
            "timer" => {
                eng.set_timer(now + 30, (key, "late"));
                eng.set_timer(now + 10, (key, "soon"));
            }
            "flood" => {
                for _ in 0..300 {
                    eng.send(
                        key,
                        frame::from_payload(OpCode::Binary, &[0; 1000]),
                        Class::Reliable,
                    );
                }
            }
            "move" => eng.request_move(key, ShardId(1)),
            "post" => eng.post(ShardId(1), "hello".into()),
            _ => {
                let frame = frame::from_payload(OpCode::Text, text.to_uppercase().as_bytes());
                eng.send(key, frame, Class::Reliable);
            }
        }
    }

    fn handle_close(
        &mut self,
        eng: &mut Engine<Self>,
        key: SessionKey,
        why: CloseReason,
        now: u64,
    ) -> AfterClose {
        self.log.push(format!("close {} {why:?}", key.index));
        match eng.session(key) {
            Some(s) if s.dialect.parks && why == CloseReason::Dropped => {
                AfterClose::Park { until_ms: now + 50 }
            }
            _ => AfterClose::Gone,
        }
    }

    fn handle_end(&mut self, _: &mut Engine<Self>, key: SessionKey, now: u64) {
        self.log.push(format!("end {} at {now}", key.index));
    }

    fn handle_timer(
        &mut self,
        _: &mut Engine<Self>,
        (key, what): (SessionKey, &'static str),
        now: u64,
    ) {
        self.log
            .push(format!("timer {what} {} at {now}", key.index));
    }

    fn handle_tick(&mut self, _: &mut Engine<Self>, now: u64) {
        self.log.push(format!("tick {now}"));
    }

    fn handle_mesh(&mut self, _: &mut Engine<Self>, from: ShardId, msg: String, _: u64) {
        self.log.push(format!("mesh {msg} from {}", from.0));
    }

    fn handle_arrival(&mut self, _: &mut Engine<Self>, key: SessionKey, from: SessionAt, _: u64) {
        self.log
            .push(format!("arrival {} from {}", key.index, from.shard.0));
    }

    fn end_turn(&mut self, _: &mut Engine<Self>, _: u64) {
        self.log.push("end_turn".into());
    }

    fn overflow_frame(&mut self, _: &mut Engine<Self>, _: SessionKey) -> Option<Frame> {
        Some(frame::from_payload(OpCode::Text, b"overflow"))
    }
}

fn toy_core(shards: usize) -> ShardCore<Toy> {
    let cfg = Arc::new(Config::default());
    ShardCore::build(
        ShardId(0),
        shards,
        cfg,
        &Arc::new(()),
        shard_seed(1, ShardId(0)),
        0,
    )
}

fn say(core: &mut ShardCore<Toy>, key: SessionKey, text: &str, now: u64) {
    let mut bytes = text.as_bytes().to_vec();
    let message = Message {
        bytes: &mut bytes,
        binary: false,
    };
    core.handle_message(key, message, now);
}

/// Every frame queued for a session, as (opcode, payload), and the queue emptied.
fn written(core: &mut ShardCore<Toy>, key: SessionKey) -> Vec<(u8, Vec<u8>)> {
    let Some(session) = core.session_to_flush(key) else {
        return Vec::new();
    };
    let bytes = session.out.take_all();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((op, payload, len)) = frame::parse(&bytes[at..]) {
        frames.push((op, payload.to_vec()));
        at += len;
    }
    frames
}

#[test]
fn the_engine_runs_a_dialect_of_its_own_and_each_close_is_heard_once() {
    let mut core = toy_core(1);
    let up = Upgrade {
        path: "/toy",
        query: "",
        origin: None,
        peer: None,
    };
    let routed = core.route(&up, 1).unwrap();
    assert_eq!(routed.message_bytes_max, 1024);
    let rooms = Upgrade {
        path: "/rooms",
        ..up
    };
    assert!(core.route(&rooms, 1).is_err());
    let key = core.handle_open(7, routed.route, b"", 1);
    say(&mut core, key, "hi", 2);
    assert_eq!(written(&mut core, key), vec![(0x1, b"HI".to_vec())]);
    say(&mut core, key, "close", 3);
    let frames = written(&mut core, key);
    assert_eq!(
        frames.last().map(|f| f.0),
        Some(0x8),
        "a close frame went out"
    );
    say(&mut core, key, "ignored", 4);
    assert!(
        written(&mut core, key).is_empty(),
        "a closing session reads nothing"
    );
    core.handle_peer_close(key, 1000, 5);
    core.handle_disconnect(key, 6);
    assert!(core.session(key).is_none());
    let log = &core.dialect.log;
    assert_eq!(
        log.iter().filter(|l| l.starts_with("close")).count(),
        1,
        "{log:?}"
    );
    assert!(log.contains(&format!("close {} Server", key.index)));
    assert!(log.contains(&format!("end {} at 6", key.index)));
}

#[test]
fn a_parked_session_ends_at_its_deadline_unless_a_connection_takes_it_over() {
    let mut core = toy_core(1);
    let parked = core.handle_open(1, true, b"", 10);
    core.handle_disconnect(parked, 20);
    assert!(matches!(
        core.session(parked).map(|s| s.phase),
        Some(Phase::Parked { until_ms: 70 })
    ));
    core.handle_tick(69);
    assert!(core.session(parked).is_some(), "not before its deadline");
    core.handle_tick(70);
    assert!(core.session(parked).is_none(), "gone at its deadline");
    assert!(core
        .dialect
        .log
        .contains(&format!("end {} at 70", parked.index)));

    let parked = core.handle_open(2, true, b"", 100);
    core.handle_disconnect(parked, 110);
    let fresh = core.handle_open(3, false, b"", 120);
    say(&mut core, fresh, "queued", 120);
    assert!(core.engine.take_over(fresh, parked, 125).is_some());
    assert!(core.session(fresh).is_none());
    let s = core.session(parked).unwrap();
    assert_eq!((s.phase, s.transport), (Phase::Open, 3));
    let mut rekeys = Vec::new();
    core.drain_rekeys(&mut rekeys);
    assert_eq!(rekeys, vec![(fresh, parked)]);
    assert_eq!(written(&mut core, parked), vec![(0x1, b"QUEUED".to_vec())]);
    core.handle_tick(200);
    assert!(
        core.session(parked).is_some(),
        "a stale park deadline ends nothing"
    );
    assert!(
        core.engine.take_over(fresh, parked, 201).is_none(),
        "only a parked session is taken over"
    );
}

#[test]
fn timers_fire_in_deadline_order_and_the_tick_every_tick_ms() {
    let mut core = toy_core(1);
    let key = core.handle_open(1, false, b"", 1);
    say(&mut core, key, "timer", 5);
    assert_eq!(core.next_deadline(), 15);
    core.handle_tick(14);
    core.handle_tick(40);
    let i = key.index;
    let fired: Vec<&String> = core
        .dialect
        .log
        .iter()
        .filter(|l| l.starts_with("timer"))
        .collect();
    assert_eq!(
        fired,
        [
            &format!("timer soon {i} at 40"),
            &format!("timer late {i} at 40")
        ]
    );
    core.handle_tick(TICK_MS);
    core.handle_tick(TICK_MS + 1);
    let ticks = core
        .dialect
        .log
        .iter()
        .filter(|l| l.starts_with("tick"))
        .count();
    assert_eq!(ticks, 1, "one tick per TICK_MS");
}

#[test]
fn an_overflowing_session_gets_the_dialects_frame_then_1008() {
    let mut core = toy_core(1);
    let key = core.handle_open(1, false, b"", 1);
    say(&mut core, key, "flood", 2);
    let frames = written(&mut core, key);
    let (last, before) = frames.split_last().unwrap();
    assert_eq!(last.0, 0x8);
    assert_eq!(&last.1[..2], &1008u16.to_be_bytes());
    assert_eq!(before.last(), Some(&(0x1, b"overflow".to_vec())));
    assert!(core
        .dialect
        .log
        .contains(&format!("close {} Server", key.index)));
}

/// Records the driver calls of a turn, in order.
#[derive(Default)]
struct Recorder {
    calls: Vec<String>,
    moved: Vec<Moved<Toy>>,
}

impl Driver<Toy> for Recorder {
    fn receive_mesh(&mut self, core: &mut ShardCore<Toy>, now: u64) {
        self.calls.push("receive".into());
        core.handle_mesh(ShardId(1), MeshMsg::Dialect("ping".into()), now);
    }
    fn read(&mut self, _: &mut ShardCore<Toy>, key: SessionKey, _: u64) {
        self.calls.push(format!("read {}", key.index));
    }
    fn rekey(&mut self, _: &ShardCore<Toy>, _: SessionKey, _: SessionKey) {
        self.calls.push("rekey".into());
    }
    fn move_session(&mut self, core: &mut ShardCore<Toy>, key: SessionKey, to: ShardId) {
        self.calls.push(format!("move {} to {}", key.index, to.0));
        let session = core.take_session(key).unwrap();
        self.moved.push(Moved {
            session,
            from: core.engine.here(key),
            transport: Box::new(()),
        });
    }
    fn post(&mut self, to: ShardId, msg: MeshMsg<Toy>) {
        if let MeshMsg::Dialect(text) = msg {
            self.calls.push(format!("post {text} to {}", to.0));
        }
    }
    fn write(&mut self, core: &mut ShardCore<Toy>, keys: &[SessionKey], _: u64) {
        for &key in keys {
            let frames = written(core, key);
            self.calls
                .push(format!("write {} ({} frames)", key.index, frames.len()));
        }
    }
}

#[test]
fn a_turn_runs_mesh_reads_timers_end_of_turn_then_moves_posts_and_writes() {
    let mut core = toy_core(2);
    let a = core.handle_open(1, false, b"", 1);
    let b = core.handle_open(2, false, b"", 1);
    core.engine.pause_reads(b);
    say(&mut core, a, "move", 1);
    say(&mut core, a, "post", 1);
    say(&mut core, b, "hi", 1);
    core.engine.resume_reads(b);
    core.dialect.log.clear();
    let mut driver = Recorder::default();
    core.turn(&mut driver, TICK_MS);
    assert_eq!(
        driver.calls,
        [
            "receive".to_string(),
            format!("read {}", b.index),
            format!("move {} to 1", a.index),
            "post hello to 1".to_string(),
            format!("write {} (1 frames)", b.index),
        ]
    );
    assert_eq!(
        core.dialect.log,
        [
            "mesh ping from 1".to_string(),
            format!("tick {TICK_MS}"),
            "end_turn".to_string()
        ]
    );
    // The moved session arrives on another shard's core; its dialect hears where from.
    let moved = driver.moved.pop().unwrap();
    assert!(moved.session.moving, "it left while its reads were held");
    let cfg = Arc::new(Config::default());
    let seed = shard_seed(1, ShardId(1));
    let mut other: ShardCore<Toy> = ShardCore::build(ShardId(1), 2, cfg, &Arc::new(()), seed, 0);
    let key = other.handle_adopt(moved.session, moved.from, 9, 2);
    let s = other.session(key).unwrap();
    assert!(!s.reads_held() && s.transport == 9);
    assert_eq!(other.dialect.log, [format!("arrival {} from 0", key.index)]);
}

#[test]
fn a_plain_get_the_engine_does_not_serve_goes_to_the_dialect() {
    let mut core = toy_core(1);
    let hello = HttpGet {
        path: "/toy/hello",
        query: "",
    };
    let reply = core.http_get(&hello, 1).expect("the toy serves it");
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"hello"[..]));
    let other = HttpGet {
        path: "/toy/other",
        query: "",
    };
    assert!(core.http_get(&other, 1).is_none(), "a 404");
}

#[test]
fn the_upgrade_response_goes_out_before_what_the_dialect_sends_at_open() {
    let mut core = toy_core(1);
    core.dialect.greets = true;
    let response = b"HTTP/1.1 101 Switching Protocols\r\n\r\n";
    let key = core.handle_open(1, false, response, 1);
    let bytes = core.session_to_flush(key).unwrap().out.take_all();
    assert!(
        bytes.starts_with(response),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    let (_, payload, _) = frame::parse(&bytes[response.len()..]).unwrap();
    assert_eq!(payload, b"welcome");
}

#[test]
fn moves_and_posts_to_a_shard_leave_in_the_order_they_were_asked_for() {
    let mut core = toy_core(2);
    let a = core.handle_open(1, false, b"", 1);
    say(&mut core, a, "post", 1);
    say(&mut core, a, "move", 1);
    let mut driver = Recorder::default();
    core.turn(&mut driver, 2);
    let out: Vec<&String> = driver
        .calls
        .iter()
        .filter(|c| c.starts_with("post") || c.starts_with("move"))
        .collect();
    assert_eq!(
        out,
        [
            &"post hello to 1".to_string(),
            &format!("move {} to 1", a.index)
        ],
        "the message posted first is handled there before the session arrives"
    );
}

#[test]
fn encoded_frames_come_from_the_pool_and_return_to_it_once_written() {
    let mut core = toy_core(1);
    let eng = &mut core.engine;
    let first = eng.encode(crate::codec::Codec::Json, |w| {
        w.map(1).key("a").u64(1).end_map();
    });
    assert_eq!(frame::parse(&first).unwrap().1, br#"{"a":1}"#);
    let held = Arc::as_ptr(&first);
    let second = eng.encode(crate::codec::Codec::Json, |w| {
        w.str("b");
    });
    assert_ne!(
        Arc::as_ptr(&second),
        held,
        "a frame still held is not reused"
    );
    drop(first);
    let third = eng.encode(crate::codec::Codec::Json, |w| {
        w.str("c");
    });
    assert_eq!(
        Arc::as_ptr(&third),
        held,
        "its buffer again, once nobody holds it"
    );
    assert_eq!(frame::parse(&third).unwrap().1, br#""c""#);
}
