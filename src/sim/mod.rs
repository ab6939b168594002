//! A deterministic simulator of a whole server without sockets (feature `sim`): N shard
//! cores on a virtual clock, driven through the same turn as the reactor
//! ([`ShardCore::turn`]), the mesh as one in-memory queue (moves included), and test
//! clients that see decoded frames. Generic over the dialect set; [`Sim`] runs huddle's,
//! with the rooms dialect's helpers in `rooms`.

mod cloudlink;
mod pairkit;
pub use pairkit::Phone;
mod rooms;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::codec::{self, frame, Codec, Writer};
use crate::config::Config;
use crate::core::{
    shard_seed, Dialect, Driver, MeshMsg, Message, Moved, SessionAt, SessionKey, ShardCore, ShardId,
};
use crate::dialects::Dialects;

/// A simulated client.
pub type ClientId = usize;

/// The simulator running huddle's dialects.
pub type Sim = SimServer<Dialects>;

/// What a client received.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// A data frame decoded (JSON text or msgpack binary) into JSON.
    Frame(serde_json::Value),
    /// A text frame that is not JSON.
    Text(String),
    /// A binary frame that is not MessagePack.
    Binary(Vec<u8>),
    /// A WebSocket ping.
    Ping,
    /// A close frame with its code and reason.
    Close(u16, String),
}

struct Client {
    shard: usize,
    key: SessionKey,
    codec: Codec,
    /// Receives frames as they came (`Text` / `Binary`), not decoded.
    raw: bool,
    inbox: VecDeque<Received>,
    connected: bool,
}

/// Mesh messages in flight: (from, to, message), in send order.
type InFlight<D> = VecDeque<(ShardId, ShardId, MeshMsg<D>)>;

/// The simulated server.
pub struct SimServer<D: Dialect> {
    /// One core per shard.
    pub cores: Vec<ShardCore<D>>,
    /// Virtual time, ms.
    pub now: u64,
    clients: HashMap<ClientId, Client>,
    next_client: ClientId,
    mesh: InFlight<D>,
    /// Decodes the frames clients receive (one for all: a decoder's buffers are reused).
    decoder: codec::Decoder,
}

impl<D: Dialect> SimServer<D> {
    /// A server of `shards` shards with `cfg` (its `shards` is ignored). The RNG seeds
    /// come from `cfg.seed` (1 when it is 0): a simulation always reproduces.
    pub fn new(shards: usize, cfg: Config) -> Self {
        let cfg = Arc::new(cfg);
        let seed = cfg.seed.max(1);
        let shared = Arc::new(D::shared(&cfg));
        let cores = (0..shards)
            .map(|i| {
                let id = ShardId(i as u16);
                let seed = shard_seed(seed, id);
                ShardCore::build(id, shards, cfg.clone(), &shared, seed, 1_700_000_000_000)
            })
            .collect();
        SimServer {
            cores,
            now: 1,
            clients: HashMap::new(),
            next_client: 1,
            mesh: VecDeque::new(),
            decoder: codec::Decoder::default(),
        }
    }

    /// A client connects (upgrade done) to `shard` on `route`; `codec` is how
    /// [`SimServer::send`] encodes what it sends.
    pub fn open(&mut self, shard: usize, route: D::Route, codec: Codec) -> ClientId {
        self.open_with(shard, route, codec, false)
    }

    /// A client upgrades to `target` (path and query) on `shard`, from `peer` with `origin`:
    /// routed as the reactor routes it, then connected — or the HTTP status that refused it.
    pub fn upgrade(
        &mut self,
        shard: usize,
        target: &str,
        origin: Option<&str>,
        peer: Option<std::net::IpAddr>,
        codec: Codec,
    ) -> Result<ClientId, u16> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let upgrade = crate::core::Upgrade {
            path,
            query,
            origin,
            peer,
        };
        let routed = self.cores[shard].route(&upgrade, self.now);
        self.run();
        let routed = routed.map_err(|r| r.status)?;
        Ok(self.open(shard, routed.route, codec))
    }

    /// A plain HTTP `GET` of `target` (path and query) on `shard`, as the reactor hands it
    /// to the dialects: their reply, or `None` (a 404).
    pub fn http_get(&mut self, shard: usize, target: &str) -> Option<crate::core::HttpReply> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let get = crate::core::HttpGet { path, query };
        let reply = self.cores[shard].http_get(&get, self.now);
        self.run();
        reply
    }

    /// A client that receives every data frame as it came: [`Received::Text`] or
    /// [`Received::Binary`], never decoded.
    pub fn open_raw(&mut self, shard: usize, route: D::Route) -> ClientId {
        self.open_with(shard, route, Codec::Json, true)
    }

    fn open_with(&mut self, shard: usize, route: D::Route, codec: Codec, raw: bool) -> ClientId {
        let id = self.next_client;
        self.next_client += 1;
        let key = self.cores[shard].handle_open(id, route, b"", self.now);
        self.clients.insert(
            id,
            Client {
                shard,
                key,
                codec,
                raw,
                inbox: VecDeque::new(),
                connected: true,
            },
        );
        self.run();
        id
    }

    /// The shard a client's session is on now.
    pub fn shard_of(&self, c: ClientId) -> usize {
        self.clients[&c].shard
    }

    /// Sends a text message and runs the server until it is quiet.
    pub fn send_text(&mut self, c: ClientId, text: &str) {
        self.send_message(c, text.as_bytes().to_vec(), false);
    }

    /// Sends a binary message and runs the server until it is quiet.
    pub fn send_bytes(&mut self, c: ClientId, bytes: Vec<u8>) {
        self.send_message(c, bytes, true);
    }

    /// Sends a JSON value encoded in the client's codec (JSON text, MessagePack binary).
    pub fn send(&mut self, c: ClientId, value: serde_json::Value) {
        let codec = self.clients[&c].codec;
        let bytes = encode_as(codec, &value);
        self.send_message(c, bytes, codec == Codec::Msgpack);
    }

    /// Sends one message and runs the server until it is quiet.
    pub fn send_message(&mut self, c: ClientId, bytes: Vec<u8>, binary: bool) {
        self.input(c, bytes, binary);
        self.run();
    }

    /// The client's shard handles one message, and nothing else runs: no turn ends and
    /// nothing is written (several inputs then share one turn).
    pub fn input(&mut self, c: ClientId, mut bytes: Vec<u8>, binary: bool) {
        let client = &self.clients[&c];
        if client.connected {
            let (shard, key) = (client.shard, client.key);
            let message = Message {
                bytes: &mut bytes,
                binary,
            };
            self.cores[shard].handle_message(key, message, self.now);
        }
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

    /// The client closes with a WebSocket close code (then its socket goes).
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

    /// Advances the clock a tick (`TICK_MS`) at a time, running turns on the way.
    pub fn advance(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now = (self.now + crate::core::TICK_MS).min(end);
            self.run();
        }
    }

    /// Runs one turn on `shard` alone: what it posts to other shards waits in the mesh
    /// until they run (a race between shards, replayed in order).
    pub fn turn_on(&mut self, shard: usize) {
        self.turn(shard, &mut false);
    }

    /// One turn on `shard`; `busy` is set when it wrote or posted anything.
    fn turn(&mut self, shard: usize, busy: &mut bool) {
        let mut io = SimIo {
            shard: ShardId(shard as u16),
            mesh: &mut self.mesh,
            clients: &mut self.clients,
            decoder: &mut self.decoder,
            busy,
        };
        self.cores[shard].turn(&mut io, self.now);
    }

    /// Runs a turn on every shard, in shard order, until no shard has anything left to
    /// send or deliver.
    pub fn run(&mut self) {
        loop {
            let mut busy = false;
            for i in 0..self.cores.len() {
                self.turn(i, &mut busy);
            }
            if !busy && self.mesh.is_empty() {
                return;
            }
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

    /// Data frames a client received since the last call (decoded into JSON).
    pub fn frames(&mut self, c: ClientId) -> Vec<serde_json::Value> {
        self.drain(c)
            .into_iter()
            .filter_map(|r| match r {
                Received::Frame(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    /// Removes and returns the first received frame that matches (others stay queued).
    pub fn recv_where(
        &mut self,
        c: ClientId,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let inbox = &mut self.clients.get_mut(&c).expect("client").inbox;
        let i = inbox
            .iter()
            .position(|r| matches!(r, Received::Frame(v) if matches(v)))?;
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

/// One shard's driver in the simulator.
struct SimIo<'a, D: Dialect> {
    shard: ShardId,
    mesh: &'a mut InFlight<D>,
    clients: &'a mut HashMap<ClientId, Client>,
    decoder: &'a mut codec::Decoder,
    /// Set when a message was delivered or sent: another round of turns is due.
    busy: &'a mut bool,
}

impl<D: Dialect> Driver<D> for SimIo<'_, D> {
    /// Takes this shard's messages out of the queue in order; the others stay, in order.
    fn receive_mesh(&mut self, core: &mut ShardCore<D>, now: u64) {
        // The core's handlers post nothing (posts leave when it drains its outputs, later
        // in the turn), so one pass over the queue sees every message this shard has.
        for _ in 0..self.mesh.len() {
            let Some((from, to, msg)) = self.mesh.pop_front() else {
                break;
            };
            if to != self.shard {
                self.mesh.push_back((from, to, msg));
                continue;
            }
            *self.busy = true;
            match msg {
                MeshMsg::Adopt(moved) => {
                    let Moved { session, from, .. } = *moved;
                    let client_id = session.transport;
                    let key = core.handle_adopt(session, from, client_id, now);
                    if let Some(client) = self.clients.get_mut(&client_id) {
                        client.shard = self.shard.index();
                        client.key = key;
                    }
                }
                other => core.handle_mesh(from, other, now),
            }
        }
    }

    /// Clients here send explicitly: nothing waits unread in a connection.
    fn read(&mut self, _core: &mut ShardCore<D>, _key: SessionKey, _now: u64) {}

    fn rekey(&mut self, _core: &ShardCore<D>, old: SessionKey, new: SessionKey) {
        let shard = self.shard.index();
        for c in self.clients.values_mut() {
            if c.shard == shard && c.key == old {
                c.key = new;
            }
        }
    }

    fn move_session(&mut self, core: &mut ShardCore<D>, key: SessionKey, to: ShardId) {
        let Some(session) = core.take_session(key) else {
            return;
        };
        let moved = Moved {
            session,
            from: SessionAt {
                shard: self.shard,
                key,
            },
            transport: Box::new(()),
        };
        self.mesh
            .push_back((self.shard, to, MeshMsg::Adopt(Box::new(moved))));
        *self.busy = true;
    }

    fn post(&mut self, to: ShardId, msg: MeshMsg<D>) {
        self.mesh.push_back((self.shard, to, msg));
        *self.busy = true;
    }

    fn write(&mut self, core: &mut ShardCore<D>, keys: &[SessionKey], now: u64) {
        for &key in keys {
            self.deliver(core, key, now);
        }
    }
}

impl<D: Dialect> SimIo<'_, D> {
    /// Everything queued for a session reaches its client, decoded; a close frame written
    /// ends the connection.
    fn deliver(&mut self, core: &mut ShardCore<D>, key: SessionKey, now: u64) {
        let Some(session) = core.session_to_flush(key) else {
            return;
        };
        let id = session.transport;
        let bytes = session.out.take_all();
        let closing = session.is_closing();
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let mut at = 0;
        while let Some((op, payload, len)) = frame::parse(&bytes[at..]) {
            at += len;
            let frame = match op {
                0x1 if client.raw => Received::Text(String::from_utf8_lossy(payload).into()),
                0x2 if client.raw => Received::Binary(payload.to_vec()),
                _ => received(self.decoder, op, payload),
            };
            client.inbox.push_back(frame);
        }
        if closing {
            client.connected = false;
            core.handle_disconnect(key, now);
        }
    }
}

/// A server frame as a client sees it.
fn received(decoder: &mut codec::Decoder, op: u8, payload: &[u8]) -> Received {
    match op {
        0x1 | 0x2 => {
            let codec = if op == 0x1 {
                Codec::Json
            } else {
                Codec::Msgpack
            };
            let mut bytes = payload.to_vec();
            let decoded = decoder
                .decode(codec, &mut bytes)
                .map(|value| codec::to_json(&value));
            match decoded {
                Ok(value) => Received::Frame(value),
                Err(_) if op == 0x1 => Received::Text(String::from_utf8_lossy(payload).into()),
                Err(_) => Received::Binary(payload.to_vec()),
            }
        }
        0x8 => {
            let code = payload
                .get(..2)
                .map_or(1005, |c| u16::from_be_bytes([c[0], c[1]]));
            let reason = String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into();
            Received::Close(code, reason)
        }
        0x9 => Received::Ping,
        other => Received::Binary(vec![other]),
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
