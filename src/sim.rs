//! A deterministic simulator of a whole server without sockets: N shard cores, a virtual
//! clock, the mesh as in-memory queues (moves included) and test clients that see decoded
//! frames. Tests and benches drive it; the reactor plays the same role with real IO.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::codec::{self, frame, Codec, Writer};
use crate::config::Config;
use crate::core::session::Phase;
use crate::core::{MeshMsg, Moved, SessionKey, ShardCore, ShardId};
use crate::metrics::ShardMetrics;

/// A simulated client.
pub type ClientId = usize;

/// What a client received.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// A data frame, decoded (JSON text or msgpack binary) into JSON.
    Frame(serde_json::Value),
    /// A WebSocket ping.
    Ping,
    /// A close frame with its code and reason.
    Close(u16, String),
}

struct Client {
    shard: usize,
    key: SessionKey,
    codec: Codec,
    inbox: VecDeque<Received>,
    connected: bool,
}

/// The simulated server.
pub struct Sim {
    /// One core per shard.
    pub cores: Vec<ShardCore>,
    /// Virtual time, ms.
    pub now: u64,
    clients: HashMap<ClientId, Client>,
    next_client: ClientId,
    mesh: VecDeque<(ShardId, ShardId, MeshMsg)>,
}

impl Sim {
    /// A server of `shards` shards with `cfg` (its `shards` is ignored).
    pub fn new(shards: usize, cfg: Config) -> Sim {
        let cfg = Arc::new(cfg);
        let cores = (0..shards)
            .map(|i| {
                ShardCore::new(
                    ShardId(i as u16),
                    shards,
                    cfg.clone(),
                    Arc::new(ShardMetrics::default()),
                    1_700_000_000_000,
                )
            })
            .collect();
        Sim {
            cores,
            now: 1,
            clients: HashMap::new(),
            next_client: 1,
            mesh: VecDeque::new(),
        }
    }

    /// A client connects (upgrade done) to `shard`; frames it sends go in `codec` after
    /// the handshake (the handshake itself is always JSON).
    pub fn connect(&mut self, shard: usize, codec: Codec) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        let key = self.cores[shard].handle_open(id, self.now);
        self.clients.insert(
            id,
            Client {
                shard,
                key,
                codec,
                inbox: VecDeque::new(),
                connected: true,
            },
        );
        id
    }

    /// Connects and completes a handshake asking for the client's codec; returns the
    /// client and its `handshake.ok` payload.
    pub fn handshaken(&mut self, shard: usize, codec: Codec) -> (ClientId, serde_json::Value) {
        let c = self.connect(shard, codec);
        let hello = serde_json::json!({"v": 1, "codecs": [codec.name()], "project_id": "demo", "token": ""});
        self.send_text(c, &hello.to_string());
        let ok = self.recv_type(c, "handshake.ok").expect("handshake.ok");
        (c, ok["p"].clone())
    }

    /// The shard a client's session is on now.
    pub fn shard_of(&self, c: ClientId) -> usize {
        self.clients[&c].shard
    }

    /// Sends raw message bytes (a text or binary WebSocket message) and runs the server.
    pub fn send_text(&mut self, c: ClientId, text: &str) {
        self.send_bytes(c, text.as_bytes().to_vec());
    }

    /// Sends raw message bytes and runs the server until it is quiet.
    pub fn send_bytes(&mut self, c: ClientId, mut bytes: Vec<u8>) {
        let client = &self.clients[&c];
        if client.connected {
            let (shard, key) = (client.shard, client.key);
            self.cores[shard].handle_message(key, &mut bytes, self.now);
            self.apply_rekeys(shard);
        }
        self.run();
    }

    /// Sends a JSON envelope encoded in the client's codec.
    pub fn send(&mut self, c: ClientId, envelope: serde_json::Value) {
        let bytes = encode_as(self.clients[&c].codec, &envelope);
        self.send_bytes(c, bytes);
    }

    /// The client's socket drops.
    pub fn disconnect(&mut self, c: ClientId) {
        let client = self.clients.get_mut(&c).expect("client");
        if client.connected {
            client.connected = false;
            let (shard, key) = (client.shard, client.key);
            self.cores[shard].handle_disconnect(key, self.now);
        }
        self.run();
    }

    /// Advances the clock, running ticks on the way (every 100 ms).
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + crate::core::TICK_MS).min(end);
            for core in &mut self.cores {
                core.handle_tick(self.now);
            }
            self.run();
        }
    }

    /// Runs every shard until no mesh message, move or output is pending.
    pub fn run(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.cores.len() {
                self.cores[i].end_turn(self.now);
                let mut moves = Vec::new();
                self.cores[i].drain_moves(&mut moves);
                for (key, to) in moves {
                    let Some(session) = self.cores[i].take_session(key) else {
                        continue;
                    };
                    let moved = Moved {
                        session,
                        from: (ShardId(i as u16), key),
                        transport: Box::new(()),
                    };
                    self.mesh
                        .push_back((ShardId(i as u16), to, MeshMsg::Adopt(Box::new(moved))));
                }
                let mut out = Vec::new();
                self.cores[i].drain_mesh(&mut out);
                for (to, msg) in out {
                    self.mesh.push_back((ShardId(i as u16), to, msg));
                }
                // Clients here send explicitly; nothing waits unread in a connection.
                self.cores[i].drain_rereads(&mut Vec::new());
                let mut dirty = Vec::new();
                self.cores[i].drain_dirty(&mut dirty);
                for key in dirty {
                    self.collect(i, key);
                }
            }
            while let Some((from, to, msg)) = self.mesh.pop_front() {
                busy = true;
                let core = &mut self.cores[to.index()];
                match msg {
                    MeshMsg::Adopt(moved) => {
                        let transport = moved.session.transport;
                        let key = core.handle_adopt(moved.session, moved.from, transport, self.now);
                        if let Some(client) = self.clients.get_mut(&transport) {
                            client.shard = to.index();
                            client.key = key;
                        }
                    }
                    other => core.handle_mesh(from, other, self.now),
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn apply_rekeys(&mut self, shard: usize) {
        let mut rekeys = Vec::new();
        self.cores[shard].drain_rekeys(&mut rekeys);
        for (old, new) in rekeys {
            for c in self.clients.values_mut() {
                if c.shard == shard && c.key == old {
                    c.key = new;
                }
            }
        }
    }

    /// The client closes with a WebSocket close code (1000 = leaving for good).
    pub fn close(&mut self, c: ClientId, code: u16) {
        let client = self.clients.get_mut(&c).expect("client");
        if client.connected {
            client.connected = false;
            let (shard, key) = (client.shard, client.key);
            self.cores[shard].handle_peer_close(key, code, self.now);
            self.cores[shard].handle_disconnect(key, self.now);
        }
        self.run();
    }

    fn collect(&mut self, shard: usize, key: SessionKey) {
        let core = &mut self.cores[shard];
        let Some(session) = core.session_to_flush(key) else {
            return;
        };
        let id = session.transport;
        let bytes = session.out.take_all();
        let closing = session.phase == Phase::Closing;
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let mut at = 0;
        while let Some((op, payload, len)) = frame::parse(&bytes[at..]) {
            at += len;
            let received = match op {
                0x1 | 0x2 => {
                    let codec = if op == 0x1 {
                        Codec::Json
                    } else {
                        Codec::Msgpack
                    };
                    let mut payload = payload.to_vec();
                    let mut decoder = codec::Decoder::default();
                    let value = decoder
                        .decode(codec, &mut payload)
                        .expect("server frames decode");
                    Received::Frame(codec::to_json(&value))
                }
                0x8 => {
                    let code = payload
                        .get(..2)
                        .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
                    Received::Close(
                        code,
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into(),
                    )
                }
                0x9 => Received::Ping,
                _ => continue,
            };
            client.inbox.push_back(received);
        }
        if closing {
            client.connected = false;
            core.handle_disconnect(key, self.now);
        }
    }

    /// Everything a client received since the last call.
    pub fn drain(&mut self, c: ClientId) -> Vec<Received> {
        self.clients
            .get_mut(&c)
            .expect("client")
            .inbox
            .drain(..)
            .collect()
    }

    /// Data frames a client received since the last call.
    pub fn frames(&mut self, c: ClientId) -> Vec<serde_json::Value> {
        self.drain(c)
            .into_iter()
            .filter_map(|r| match r {
                Received::Frame(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    /// Removes and returns the first received frame of type `t` (others stay queued).
    pub fn recv_type(&mut self, c: ClientId, t: &str) -> Option<serde_json::Value> {
        let inbox = &mut self.clients.get_mut(&c).expect("client").inbox;
        let i = inbox
            .iter()
            .position(|r| matches!(r, Received::Frame(v) if v["t"] == t))?;
        match inbox.remove(i) {
            Some(Received::Frame(v)) => Some(v),
            _ => None,
        }
    }

    /// The client's session key on its shard now.
    pub fn key_of(&self, c: ClientId) -> SessionKey {
        self.clients[&c].key
    }

    /// Is the client's connection still open?
    pub fn is_connected(&self, c: ClientId) -> bool {
        self.clients[&c].connected
    }
}

/// Encodes a JSON value as a client would in `codec`.
pub fn encode_as(codec: Codec, value: &serde_json::Value) -> Vec<u8> {
    match codec {
        Codec::Json => value.to_string().into_bytes(),
        Codec::Msgpack => {
            let mut buf = Vec::new();
            let mut w = Writer::new(Codec::Msgpack, &mut buf);
            w.json(value);
            let f = w.finish();
            frame::parse(&f).expect("own frame").1.to_vec()
        }
    }
}
