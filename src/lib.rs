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
