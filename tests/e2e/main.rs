//! End to end over loopback with real WebSocket clients: the server in this process (two
//! shards) or the `huddle` binary itself, the reference SDK from Node, every dialect's
//! rules again over sockets. One shared support module (`support`).

mod baseline;
mod cloudlink;
mod flush;
mod hostile;
mod node;
mod pairkit;
mod peerjs;
mod peerjs_client;
mod play;
mod process;
mod rooms;
mod routing;
mod sdk;
mod slow;
mod support;
mod sync;
mod turns;
