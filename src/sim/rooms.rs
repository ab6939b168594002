//! The simulator's helpers for the rooms dialect: connecting on its route, handshaking,
//! picking frames by envelope type, and looking at a shard's rooms.

use serde_json::json;

use super::{ClientId, Sim};
use crate::codec::Codec;
use crate::dialects::Route;
use crate::rooms::Rooms;

impl Sim {
    /// A client connects to `shard` on `/rooms`; after its handshake (always JSON) the
    /// frames it sends go in `codec`.
    pub fn connect(&mut self, shard: usize, codec: Codec) -> ClientId {
        self.open(shard, Route::Rooms, codec)
    }

    /// Connects and completes a handshake asking for the client's codec; returns the
    /// client and its `handshake.ok` payload.
    pub fn handshaken(&mut self, shard: usize, codec: Codec) -> (ClientId, serde_json::Value) {
        let c = self.connect(shard, codec);
        let hello = json!({"v": 1, "codecs": [codec.name()], "project_id": "demo", "token": ""});
        self.send_text(c, &hello.to_string());
        let ok = self.recv_type(c, "handshake.ok").expect("handshake.ok");
        (c, ok["p"].clone())
    }

    /// Removes and returns the first received frame of envelope type `t` (others stay
    /// queued).
    pub fn recv_type(&mut self, c: ClientId, t: &str) -> Option<serde_json::Value> {
        self.recv_where(c, |v| v["t"] == t)
    }

    /// The rooms dialect's state on `shard`.
    pub fn rooms(&self, shard: usize) -> &Rooms {
        &self.cores[shard].dialect.rooms
    }
}
