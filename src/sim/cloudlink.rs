//! The simulator's helpers for the cloudlink dialect: connecting a signaling client to a
//! game, sending `{opcode, payload}` frames, reading frames by opcode, looking at lobbies.

use serde_json::{json, Value};

use super::{ClientId, Received, Sim};
use crate::cloudlink::Cloudlink;
use crate::codec::Codec;

impl Sim {
    /// A signaling client of game `ugi` connects to `shard` (`/cl5?ugi=…`).
    pub fn cl5(&mut self, shard: usize, ugi: &str) -> ClientId {
        self.upgrade(shard, &format!("/cl5?ugi={ugi}"), None, None, Codec::Json)
            .expect("a valid ugi is routed")
    }

    /// Sends `{"opcode": opcode, "payload": payload}` (no payload when it is `null`).
    pub fn cl_send(&mut self, c: ClientId, opcode: &str, payload: Value) {
        let frame = if payload.is_null() {
            json!({ "opcode": opcode })
        } else {
            json!({ "opcode": opcode, "payload": payload })
        };
        self.send_text(c, &frame.to_string());
    }

    /// A signaling client of `ugi` on `shard` that sent `INIT` as `username`; its
    /// `INIT_OK` payload.
    pub fn cl_client(&mut self, shard: usize, ugi: &str, username: &str) -> (ClientId, Value) {
        let c = self.cl5(shard, ugi);
        self.cl_send(c, "INIT", json!({ "username": username }));
        let ok = self.recv_opcode(c, "INIT_OK").expect("INIT_OK");
        (c, ok["payload"].clone())
    }

    /// Removes and returns the first received frame with this opcode (others stay).
    pub fn recv_opcode(&mut self, c: ClientId, opcode: &str) -> Option<Value> {
        self.recv_where(c, |v| v["opcode"] == opcode)
    }

    /// The (opcode, payload) of every frame received since the last call, in order;
    /// a close frame is `("close", code)`.
    pub fn cl_frames(&mut self, c: ClientId) -> Vec<(String, Value)> {
        self.drain(c)
            .into_iter()
            .filter_map(|r| match r {
                Received::Frame(v) => Some((
                    v["opcode"].as_str().unwrap_or("").to_string(),
                    v.get("payload").cloned().unwrap_or(Value::Null),
                )),
                Received::Close(code, _) => Some(("close".to_string(), json!(code))),
                _ => None,
            })
            .collect()
    }

    /// A PeerJS client connects to `shard` on `/peerjs?<query>`.
    pub fn peerjs(&mut self, shard: usize, query: &str) -> ClientId {
        self.upgrade(shard, &format!("/peerjs?{query}"), None, None, Codec::Json)
            .expect("the broker's path is routed")
    }

    /// A PeerJS client with id `id` and token `token` on `shard` (key `peerjs`) that got
    /// its `OPEN`.
    pub fn peer(&mut self, shard: usize, id: &str, token: &str) -> ClientId {
        let c = self.peerjs(
            shard,
            &format!("key=peerjs&id={id}&token={token}&version=1.5.4"),
        );
        let open = self.frames(c);
        assert_eq!(open, vec![json!({"type": "OPEN"})], "{id} opens");
        c
    }

    /// The cloudlink dialect's state on `shard`.
    pub fn cloudlink(&self, shard: usize) -> &Cloudlink {
        &self.cores[shard].dialect.cloudlink
    }
}
