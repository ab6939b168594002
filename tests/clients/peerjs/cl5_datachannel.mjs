// A real-client test of the cloudlink dialect and its PeerJS broker: two CL5 clients make
// a lobby on huddle's signaling socket, then each opens the official `peerjs` client
// (1.5.4, on @roamhq/wrtc's WebRTC stack) against huddle's broker with its instance_id,
// and the peer dials the host as the CL5 extension does. A G_MSG crosses the resulting
// data channel each way.
//
//     node cl5_datachannel.mjs ws://127.0.0.1:<port>
//
// Prints one `ok:` line and exits 0, or prints what failed and everything each side
// received (CL5 frames, broker frames, data-channel messages, PeerJS errors and warnings)
// and exits 1. HUDDLE_PEERJS_VERBOSE=1 prints all that on success too, with PeerJS's full log.
//
// The "default" channel carries what the extension sends on it: it calls
// `conn.send(JSON.stringify({opcode, payload}))` on the PeerJS DataConnection opened with
// `{label: "default", reliable: true}` and the default serialization (PeerJS's binarypack),
// and parses each `data` event with JSON.parse; so does this script. ICE stays on this
// machine: no STUN/TURN servers (`iceServers: []`), host candidates only.

import { createRequire } from "node:module";
import { format } from "node:util";
import wrtc from "@roamhq/wrtc";
import WebSocket from "ws";

const UGI = "peerjs-e2e";
const LOBBY = "dc";
// Each step's own limit; the whole run is bounded by the test that spawns this script.
const STEP_MS = 10_000;
// How long each side waits after the exchange for a stray second message.
const QUIET_MS = 200;
const VERBOSE = process.env.HUDDLE_PEERJS_VERBOSE === "1";

const base = process.argv[2];
if (!base || !/^wss?:\/\//.test(base)) {
  console.error("usage: node cl5_datachannel.mjs ws://127.0.0.1:<port>");
  process.exit(2);
}
const server = new URL(base);

// ---- what each side saw, printed on failure ----

const started = Date.now();
// PeerJS has one log function for all its peers, so its lines go to a log of their own.
const logs = { host: [], peer: [], peerjs: [] };
function note(side, what) {
  logs[side].push(`+${String(Date.now() - started).padStart(5)}ms ${what}`);
}
// The side ("host" / "peer") owning a PeerJS id, once known.
const sideOfPeerId = new Map();
function printLogs(print) {
  for (const [side, lines] of Object.entries(logs)) {
    if (lines.length === 0) continue;
    print(side === "peerjs" ? "---- PeerJS's log (both peers) ----" : `---- ${side} received ----`);
    for (const line of lines) print(line);
  }
}
function fail(message) {
  console.error(`FAIL: ${message}`);
  printLogs(console.error);
  process.exit(1);
}
process.on("uncaughtException", (e) => fail(`uncaught exception: ${e && e.stack ? e.stack : e}`));
process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${e && e.stack ? e.stack : e}`));

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ---- the globals PeerJS 1.5.4 expects of a browser ----
// Its Node entry (dist/bundler.cjs) opens the broker socket with the global `WebSocket`
// and builds connections with the global `RTCPeerConnection` / `RTCSessionDescription` /
// `RTCIceCandidate`. It probes WebRTC support once, when the module loads, so these must
// be set before it is required. It touches `window`, `location` and `fetch` only for a
// relative host ("/"), an unset `secure` and a server-assigned id, none of which apply
// here; `navigator` is optional (it checks `typeof`). Leaving `window` undefined also keeps
// webrtc-adapter from shimming anything.

// Resolvers waiting for a side's first HEARTBEAT to the broker.
const heartbeatWaiters = { host: [], peer: [] };
// Resolves once `side`'s PeerJS peer has sent the broker a HEARTBEAT.
function heartbeatSent(side) {
  return new Promise((resolve) => heartbeatWaiters[side].push(resolve));
}

// The broker socket PeerJS opens, recording every frame both ways under its side.
class RecordingWebSocket extends WebSocket {
  constructor(url, ...rest) {
    super(url, ...rest);
    const id = new URL(url).searchParams.get("id");
    const side = () => sideOfPeerId.get(id) ?? "peer";
    note(side(), `broker: connecting ${new URL(url).pathname}${new URL(url).search}`);
    this.on("message", (data) => note(side(), `broker < ${data.toString()}`));
    this.on("close", (code, reason) => note(side(), `broker: closed ${code} ${reason}`));
    this.on("error", (e) => note(side(), `broker: error ${e.message}`));
    this._side = side;
  }
  send(data, ...rest) {
    const side = this._side();
    note(side, `broker > ${data}`);
    if (JSON.parse(data).type === "HEARTBEAT") heartbeatWaiters[side].splice(0).forEach((wake) => wake());
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = RecordingWebSocket;
globalThis.RTCPeerConnection = wrtc.RTCPeerConnection;
globalThis.RTCSessionDescription = wrtc.RTCSessionDescription;
globalThis.RTCIceCandidate = wrtc.RTCIceCandidate;
globalThis.RTCDataChannel = wrtc.RTCDataChannel;
const { Peer } = createRequire(import.meta.url)("peerjs");

// ---- a CL5 signaling client ----

class Cl5 {
  constructor(side) {
    this.side = side;
    this.inbox = [];
    this.wake = null;
    this.ws = new WebSocket(`${base.replace(/\/$/, "")}/cl5?ugi=${UGI}`);
    this.ws.on("message", (data) => {
      const text = data.toString();
      note(side, `cl5 < ${text}`);
      let frame;
      try {
        frame = JSON.parse(text);
      } catch {
        frame = { opcode: "<not JSON>", payload: text };
      }
      this.inbox.push(frame);
      this.wake?.();
    });
    this.ws.on("close", (code, reason) => {
      note(side, `cl5: closed ${code} ${reason}`);
      this.closed = true;
      this.wake?.();
    });
    this.ws.on("error", (e) => note(side, `cl5: error ${e.message}`));
  }

  opened() {
    return within(STEP_MS, `${this.side}'s CL5 socket to open`, new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    }));
  }

  send(opcode, payload) {
    const text = JSON.stringify({ opcode, payload });
    note(this.side, `cl5 > ${text}`);
    this.ws.send(text);
  }

  // The payload of the next frame with this opcode; frames before it are skipped (they
  // stay in the log). A WARNING or VIOLATION on the way fails at once.
  expect(opcode) {
    const search = async () => {
      for (;;) {
        while (this.inbox.length > 0) {
          const frame = this.inbox.shift();
          if (frame.opcode === opcode) return frame.payload;
          if (frame.opcode === "WARNING" || frame.opcode === "VIOLATION") {
            throw new Error(`${this.side} got ${JSON.stringify(frame)} while waiting for ${opcode}`);
          }
        }
        if (this.closed) throw new Error(`${this.side}'s CL5 socket closed while waiting for ${opcode}`);
        await new Promise((resolve) => (this.wake = resolve));
        this.wake = null;
      }
    };
    return within(STEP_MS, `${opcode} on ${this.side}'s CL5 socket`, search());
  }
}

// ---- a PeerJS peer on huddle's broker ----

function openPeer(side, id) {
  sideOfPeerId.set(id, side);
  const peer = new Peer(id, {
    host: server.hostname,
    port: Number(server.port || (server.protocol === "wss:" ? 443 : 80)),
    path: "/",
    key: "peerjs",
    secure: server.protocol === "wss:",
    config: { iceServers: [] },
    // Shorter than the default 5 s so the broker sees HEARTBEATs during the run.
    pingInterval: 500,
    // Errors and warnings (2), or everything (3), into the log printed on failure.
    debug: VERBOSE ? 3 : 2,
    logFunction: (level, ...args) => note("peerjs", `[${level}] ${format(...args)}`),
  });
  peer.on("error", (e) => {
    note(side, `peerjs error ${e.type}: ${e.message}`);
    fail(`${side}'s PeerJS peer reported ${e.type}: ${e.message}`);
  });
  peer.on("disconnected", () => note(side, "peerjs: disconnected from the broker"));
  const opened = within(STEP_MS, `${side}'s PeerJS "open" from the broker`, new Promise((resolve) => {
    peer.once("open", (openedId) => {
      note(side, `peerjs: open as ${openedId}`);
      resolve(openedId);
    });
  }));
  return { peer, opened };
}

// Records a data connection's events under `side`; `messages` collects its `data`.
function watch(side, conn) {
  const messages = [];
  let gotMessage;
  const firstMessage = new Promise((resolve) => (gotMessage = resolve));
  const opened = new Promise((resolve) => conn.on("open", resolve));
  const closed = new Promise((resolve) => conn.on("close", resolve));
  conn.on("open", () => {
    note(side, `dc: open label=${conn.label} serialization=${conn.serialization} reliable=${conn.reliable} peer=${conn.peer}`);
    conn.dataChannel.addEventListener("message", (e) => {
      const raw = typeof e.data === "string" ? `text ${e.data.length} chars` : `binary ${e.data.byteLength} bytes`;
      note(side, `dc: raw message on the RTCDataChannel: ${raw}`);
    });
  });
  conn.on("data", (data) => {
    note(side, `dc < ${typeof data === "string" ? data : `(${typeof data}) ${JSON.stringify(data)}`}`);
    messages.push(data);
    gotMessage(data);
  });
  conn.on("close", () => note(side, "dc: close"));
  conn.on("error", (e) => {
    note(side, `dc error ${e.type}: ${e.message}`);
    fail(`${side}'s data connection reported ${e.type}: ${e.message}`);
  });
  return { conn, messages, opened, closed, firstMessage };
}

// Notes the ICE candidate pair a connection settled on (diagnostics only).
async function noteSelectedPair(side, conn) {
  try {
    const stats = await conn.peerConnection.getStats();
    const byId = new Map();
    stats.forEach((s) => byId.set(s.id, s));
    const transport = [...byId.values()].find((s) => s.type === "transport" && s.selectedCandidatePairId);
    const pair = transport
      ? byId.get(transport.selectedCandidatePairId)
      : [...byId.values()].find((s) => s.type === "candidate-pair" && s.nominated && s.state === "succeeded");
    const at = (id) => {
      const c = byId.get(id);
      return c ? `${c.address ?? c.ip}:${c.port} (${c.candidateType})` : "?";
    };
    note(side, pair ? `ice: selected pair ${at(pair.localCandidateId)} -> ${at(pair.remoteCandidateId)}` : "ice: no selected pair in getStats()");
  } catch (e) {
    note(side, `ice: getStats() failed: ${e.message}`);
  }
}

function sendJson(side, conn, frame) {
  const text = JSON.stringify(frame);
  note(side, `dc > ${text}`);
  conn.send(text);
}

function assertEqual(actual, expected, what) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: got ${a}, expected ${e}`);
}

// ---- the scenario ----

async function main() {
  // 1. Signaling: INIT, a lobby, a join.
  const host = new Cl5("host");
  const peer = new Cl5("peer");
  await Promise.all([host.opened(), peer.opened()]);
  host.send("INIT", { username: "host" });
  peer.send("INIT", { username: "peer" });
  const hostInfo = await host.expect("INIT_OK");
  const peerInfo = await peer.expect("INIT_OK");
  for (const [side, info, name] of [["host", hostInfo, "host"], ["peer", peerInfo, "peer"]]) {
    if (!info || typeof info.instance_id !== "string" || typeof info.user_id !== "string") {
      throw new Error(`${side}'s INIT_OK lacks instance_id / user_id: ${JSON.stringify(info)}`);
    }
    assertEqual(info.username, name, `${side}'s INIT_OK username`);
    if (!info.instance_id.endsWith(`_${UGI}`)) {
      throw new Error(`${side}'s instance_id ${info.instance_id} is not <ULID>_${UGI}`);
    }
  }
  const hostId = hostInfo.instance_id;
  const peerId = peerInfo.instance_id;
  sideOfPeerId.set(hostId, "host");
  sideOfPeerId.set(peerId, "peer");

  host.send("CREATE_LOBBY", { name: LOBBY, max_players: -1, password: "", locked: false, enable_relay: false });
  assertEqual(await host.expect("CREATE_ACK"), "ok", "host's CREATE_ACK");
  peer.send("JOIN_LOBBY", { name: LOBBY, password: "" });
  assertEqual(await peer.expect("JOIN_ACK"), "ok", "peer's JOIN_ACK");
  assertEqual((await peer.expect("NEW_HOST")).instance_id, hostId, "the instance_id in the peer's NEW_HOST");
  assertEqual((await host.expect("NEW_PEER")).instance_id, peerId, "the instance_id in the host's NEW_PEER");

  // 2. Both register on the broker with their instance_id.
  const hostPeer = openPeer("host", hostId);
  const peerPeer = openPeer("peer", peerId);
  assertEqual(await hostPeer.opened, hostId, "the id in the host's PeerJS open");
  assertEqual(await peerPeer.opened, peerId, "the id in the peer's PeerJS open");

  // 3. The peer dials the host as the extension does; the host answers.
  const incoming = within(STEP_MS, 'the host\'s PeerJS "connection" (the OFFER through the broker)', new Promise((resolve) => {
    hostPeer.peer.once("connection", (conn) => {
      note("host", `peerjs: connection from ${conn.peer} label=${conn.label} serialization=${conn.serialization}`);
      resolve(conn);
    });
  }));
  const dialed = watch("peer", peerPeer.peer.connect(hostId, { label: "default", reliable: true }));
  const answered = watch("host", await incoming);
  assertEqual(answered.conn.peer, peerId, "the remote id of the host's incoming connection");
  assertEqual(answered.conn.label, "default", "the label of the host's incoming connection");
  await within(STEP_MS, "the peer's data connection to open (ICE + DTLS over loopback)", dialed.opened);
  await within(STEP_MS, "the host's data connection to open", answered.opened);
  await Promise.all([noteSelectedPair("peer", dialed.conn), noteSelectedPair("host", answered.conn)]);

  // 4. G_MSG each way.
  const fromPeer = { opcode: "G_MSG", payload: "hello from peer" };
  const fromHost = { opcode: "G_MSG", payload: "hello from host" };
  sendJson("peer", dialed.conn, fromPeer);
  const atHost = await within(STEP_MS, "the peer's G_MSG at the host", answered.firstMessage);
  assertEqual(JSON.parse(atHost), fromPeer, "what the host received");
  sendJson("host", answered.conn, fromHost);
  const atPeer = await within(STEP_MS, "the host's G_MSG at the peer", dialed.firstMessage);
  assertEqual(JSON.parse(atPeer), fromHost, "what the peer received");
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
  assertEqual(answered.messages, [JSON.stringify(fromPeer)], "everything the host received on the data channel");
  assertEqual(dialed.messages, [JSON.stringify(fromHost)], "everything the peer received on the data channel");

  // 5. The broker takes HEARTBEATs silently and keeps both peers registered.
  await within(STEP_MS, "a HEARTBEAT from each PeerJS peer", Promise.all([heartbeatSent("host"), heartbeatSent("peer")]));
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
  for (const [side, { peer }] of [["host", hostPeer], ["peer", peerPeer]]) {
    if (!peer.open || peer.disconnected) throw new Error(`${side}'s PeerJS peer lost the broker after its HEARTBEAT`);
  }

  // 6. Teardown: the peer hangs up and the host sees it; then everything closes.
  dialed.conn.close();
  await within(STEP_MS, "the host's data connection to close after the peer closed its end", answered.closed);
  hostPeer.peer.destroy();
  peerPeer.peer.destroy();
  host.ws.close(1000);
  peer.ws.close(1000);

  const ms = Date.now() - started;
  console.log(`ok: peerjs 1.5.4 data channel ${peerId} -> ${hostId} via huddle's broker carried G_MSG both ways (${ms} ms)`);
  if (VERBOSE) printLogs(console.log);
  // @roamhq/wrtc's native threads can outlive the closed connections; do not wait on them.
  process.exit(0);
}

main().catch((e) => fail(e && e.message ? e.message : String(e)));
