//! Deterministic whole-server tests: 1–2 shards driven without sockets through
//! `huddle::sim` (the same turn as the reactor), a virtual clock, seeded RNGs. One test
//! per protocol rule, named after it.

mod cloudlink;
mod dirty;
mod matchmaking;
mod pairkit;
mod peerjs;
mod play;
mod resume;
mod rooms;
mod secrets;
mod state;
mod vectors;
