//! huddle: a real-time multiplayer WebSocket server — per-core shards, WebSocket
//! dialects on one engine (today the rooms dialect).
//!
//! # Where bytes come in and go out
//!
//! ```text
//!  socket ─► reactor (mio; the only IO) ─► tungstenite context ─► complete messages
//!  message ─► rooms::decode (simd-json / rmp, borrowed) ─► Command
//!  Command ─► core::ShardCore (sessions, rooms, logic, state) ─► frames, mesh messages
//!  frame (encoded once, pooled) ─► each member's core::outbound queue ─► one send/turn
//! ```
//!
//! # Layout
//!
//! - [`server`] binds one `SO_REUSEPORT` listener per shard, builds the [`mesh`], and
//!   spawns the pinned [`reactor`] threads.
//! - [`reactor`]: a shard's mio loop: accept, HTTP ([`http`]), WebSocket, moves, flushes.
//! - [`core`]: the sans-IO shard core — sessions, rooms, fan-out, outbound policy,
//!   timers; [`core::logic`] room types, [`core::state`] ops, [`core::canon`] checksums.
//! - [`rooms`]: the rooms dialect (handshake, membership, relay, sync, matchmaking,
//!   resume).
//! - [`codec`]: decoding both codecs into one value tree, the frame writer, frames.
//! - [`auth`], [`config`], [`limits`], [`metrics`]: tokens, `huddle.toml`, bounds,
//!   counters.
//! - [`sim`]: a deterministic whole-server simulator for tests and benches.
//!
//! # Example: a server without sockets
//!
//! ```
//! use huddle::codec::Codec;
//! use huddle::config::Config;
//! use huddle::sim::Sim;
//! use serde_json::json;
//!
//! let mut sim = Sim::new(2, Config::default());
//! let (alice, _) = sim.handshaken(0, Codec::Json);
//! let (bob, hello) = sim.handshaken(1, Codec::Msgpack);
//! for who in [alice, bob] {
//!     sim.send(who, json!({"v": 1, "t": "room.join_or_create", "rid": "j", "room": "lobby"}));
//! }
//! sim.frames(alice);
//! sim.send(bob, json!({"v": 1, "t": "room.message", "room": "lobby", "p": {"type": "hi"}}));
//! let got = sim.frames(alice);
//! assert_eq!(got[0]["p"]["from"], hello["client_id"]);
//! ```
#![deny(unsafe_code)]
pub mod auth;
pub mod codec;
pub mod config;
pub mod core;
pub mod http;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod reactor;
pub mod rooms;
pub mod server;
pub mod sim;
