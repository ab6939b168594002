//! A real client end to end: the official `peerjs` npm client (1.5.4) on Node's WebRTC
//! stack (`@roamhq/wrtc`) against the cloudlink dialect and its PeerJS broker, on a
//! 2-shard server in this process. `tests/clients/peerjs/cl5_datachannel.mjs` makes a CL5
//! lobby of two, registers both instance_ids on the broker, dials host ← peer as the CL5
//! extension does and sends a G_MSG each way over the data channel (ICE on this machine
//! only: `iceServers: []`).
//!
//! Node and npm are required: without them this test fails, it never skips. The client's
//! dependencies are pinned in `tests/clients/peerjs/package-lock.json`; when
//! `node_modules` lacks them at those versions they are installed with `npm ci` (from
//! the npm registry only) into a private staging directory and moved into place, so two
//! test runs at once never install over each other. On failure the script's output
//! (every frame each side received) is printed; `HUDDLE_PEERJS_VERBOSE=1` prints it on
//! success too.

use std::process::Command;
use std::time::Duration;

use crate::node::{client_dir, ensure_installed, require, run_script};
use crate::support::*;

/// The script's own steps time out after 10 s each; this is the last resort if node hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// The line the script prints when the data channel carried both messages.
const SUCCESS: &str = "ok: peerjs 1.5.4 data channel ";

/// cloudlink.md "Transport", "Client → server" and "PeerJS-compatible broker" with the
/// real client: INIT / CREATE_LOBBY / JOIN_LOBBY on `/cl5`, both instance_ids opened on
/// `/peerjs` by PeerJS 1.5.4, OFFER / ANSWER / CANDIDATE forwarded between them (their
/// homes may be different shards), HEARTBEATs taken silently, and the data channel the
/// peer dials (`label: "default", reliable: true`) carries a G_MSG each way.
#[test]
fn peerjs_client_opens_a_data_channel_between_two_cl5_lobby_members() {
    require(
        "node",
        "this test runs the peerjs npm client under Node.js 20 or newer (`apt-get install nodejs`)",
    );
    ensure_installed("peerjs");
    let s = TestServer::default_config();
    let script = client_dir("peerjs").join("cl5_datachannel.mjs");
    let url = format!("ws://{}", s.addr);
    run_script(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .current_dir(client_dir("peerjs")),
        SUCCESS,
        SCRIPT_TIMEOUT,
    );
}
