//! The simulator's helpers for the pairkit dialect: a socket on `/pairkit` from an
//! address, a host with its session, a phone that joined, frames by `type`.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::{ClientId, Received, Sim};
use crate::codec::Codec;
use crate::pairkit::Pairkit;

/// A joined phone: its client, `player_id` and `resume_token`.
#[derive(Clone, Debug)]
pub struct Phone {
    /// The client.
    pub c: ClientId,
    /// Its `player_id`.
    pub id: String,
    /// Its `resume_token`.
    pub token: String,
}

impl Sim {
    /// A socket on `/pairkit` on `shard`, from `ip` (default 192.0.2.1).
    pub fn pk(&mut self, shard: usize, ip: Option<IpAddr>) -> ClientId {
        let ip = ip.or_else(|| "192.0.2.1".parse().ok());
        self.upgrade(shard, "/pairkit", None, ip, Codec::Json)
            .expect("/pairkit is routed")
    }

    /// A host on `shard` that created a session (with `create`'s extra fields): its client,
    /// code and host id.
    pub fn pk_host(&mut self, shard: usize, create: Value) -> (ClientId, String, String) {
        let c = self.pk(shard, None);
        let mut msg = json!({"type": "session.create"});
        if let (Some(m), Some(extra)) = (msg.as_object_mut(), create.as_object()) {
            m.extend(extra.clone());
        }
        self.send(c, msg);
        let created = self.pk_recv(c, "session.created").expect("session.created");
        let code = created["code"].as_str().expect("code").to_string();
        let host_id = created["host_id"].as_str().expect("host_id").to_string();
        (c, code, host_id)
    }

    /// A phone on `shard` that joined `code` as `name` (the host's `player.join` is left
    /// queued).
    pub fn pk_phone(&mut self, shard: usize, code: &str, name: &str) -> Phone {
        let c = self.pk(shard, None);
        self.send(
            c,
            json!({"type": "session.join", "code": code, "name": name}),
        );
        let joined = self
            .pk_recv(c, "session.joined")
            .unwrap_or_else(|| panic!("{name} joined: {:?}", self.pk_frames(c)));
        Phone {
            c,
            id: joined["player_id"].as_str().expect("player_id").into(),
            token: joined["resume_token"].as_str().expect("token").into(),
        }
    }

    /// Removes and returns the first received frame of this `type` (others stay).
    pub fn pk_recv(&mut self, c: ClientId, kind: &str) -> Option<Value> {
        self.recv_where(c, |v| v["type"] == kind)
    }

    /// Every frame received since the last call; a close is `{"close": code, "reason": …}`.
    pub fn pk_frames(&mut self, c: ClientId) -> Vec<Value> {
        self.drain(c)
            .into_iter()
            .filter_map(|r| match r {
                Received::Frame(v) => Some(v),
                Received::Close(code, reason) => Some(json!({"close": code, "reason": reason})),
                _ => None,
            })
            .collect()
    }

    /// The `type`s of every frame received since the last call (a close is `close <code>
    /// <reason>`).
    pub fn pk_types(&mut self, c: ClientId) -> Vec<String> {
        self.pk_frames(c)
            .into_iter()
            .map(|v| match v["type"].as_str() {
                Some(t) => t.to_string(),
                None => format!(
                    "close {} {}",
                    v["close"],
                    v["reason"].as_str().unwrap_or("")
                ),
            })
            .collect()
    }

    /// The pairkit dialect's state on `shard`.
    pub fn pairkit(&self, shard: usize) -> &Pairkit {
        &self.cores[shard].dialect.pairkit
    }

    /// The pairkit dialect's state on `shard`, mutably (to shrink its code space).
    pub fn pairkit_mut(&mut self, shard: usize) -> &mut Pairkit {
        &mut self.cores[shard].dialect.pairkit
    }
}
