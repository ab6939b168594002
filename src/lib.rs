//! huddle: a real-time multiplayer WebSocket server — per-core shards, one engine, and
//! WebSocket dialects behind one seam (rooms today; echo for conformance testing).
//!
//! # Where bytes come in and go out
//!
//! ```text
//!  socket ─► reactor (mio; the only IO) ─► tungstenite context ─► complete messages
//!  upgrade path ─► dialects::Dialects::route ─► the session's dialect
//!  message ─► core::ShardCore ─► Dialect::handle_message (enum dispatch) ─► e.g. rooms:
//!            decode (simd-json / rmp, borrowed) ─► command ─► rooms, state, matchmaking
//!  frame (encoded once, pooled) ─► core::Engine::fan_out ─► each member's outbound queue
//!                                                       ─► one send per connection per turn
//! ```
//!
//! # Layout
//!
//! The engine — it knows no dialect:
//! - [`core`]: the sans-IO shard core. [`core::Engine`] owns sessions' transport side,
//!   outbound queues and policy, rate buckets, the frame pool, moves, take-overs, timers
//!   and metrics; [`core::dialect`] is the seam (the [`core::Dialect`] trait); a turn's
//!   order is [`core::ShardCore::turn`], for every driver.
//! - [`reactor`]: a shard's mio loop, the core's driver with real IO (accept, HTTP,
//!   WebSocket, writes, moves).
//! - [`mesh`]: the bounded queues and wakers between shards.
//! - [`server`]: binding the listeners, building the mesh, spawning pinned shard threads.
//!
//! The dialects — each a module behind the seam, with its own shard state:
//! - [`dialects`]: the set huddle runs — its routes and the dispatch to each dialect.
//! - [`rooms`]: rooms, state sync, matchmaking, resume (handshake, membership, relay,
//!   sync, matchmaking, resume; room logic, state ops and checksums, tokens).
//! - [`cloudlink`]: CloudLink 5 lobbies and signaling, and its server relay.
//! - [`echo`]: every message back unchanged, at `/echo` when enabled.
//!
//! Shared by both: [`codec`] (both wire codecs into one value tree, the frame writer,
//! frames), [`http`] (request heads), [`config`], [`limits`], [`metrics`]. With the `sim`
//! feature, `sim` runs a whole server in memory on the same turn order (tests, benches,
//! fuzzing); with `fuzzcheck`, `fuzzcheck` holds the fuzz targets' properties as plain
//! functions (the targets and `cargo test` call the same ones).
//!
//! # Example: a server without sockets (with the `sim` feature)
//!
#![cfg_attr(feature = "sim", doc = "```")]
#![cfg_attr(not(feature = "sim"), doc = "```ignore")]
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
pub mod cloudlink;
pub mod codec;
pub mod config;
pub mod core;
pub mod dialects;
pub mod echo;
#[cfg(feature = "fuzzcheck")]
pub mod fuzzcheck;
pub mod http;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod pairkit;
pub mod reactor;
pub mod rooms;
pub mod server;
#[cfg(feature = "sim")]
pub mod sim;

/// Starts huddle's server (every dialect in [`dialects::Dialects`]) on `cfg`.
pub fn start(cfg: config::Config) -> std::io::Result<server::Server> {
    server::Server::start::<dialects::Dialects>(cfg)
}
