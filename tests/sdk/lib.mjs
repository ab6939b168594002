// Shared harness for the reference-SDK end-to-end scenarios (tests/sdk/*.mjs).
//
// Each scenario script calls `runScenario(name, fn)`; it runs `fn(ctx)` once per
// codec mode (the SDK's default `["msgpack","json"]`, and `["json"]`), each run
// under its own 10 s timeout, prints one `ok`/`FAIL` line per run and exits
// non-zero if any run failed.
//
// Usage: node --experimental-websocket tests/sdk/<scenario>.mjs ws://127.0.0.1:PORT/rooms
//        [--verbose] [--codec msgpack|json]
// `--verbose` (or HUDDLE_SDK_VERBOSE=1) logs every frame the SDK sends and receives.
//
// The SDK is the unmodified bundle at <repo root>/../shared/clients/nexis-sdk/nexis-sdk.mjs,
// imported by path. Before importing it, `globalThis.WebSocket` is replaced by a
// subclass that records (and optionally logs) every frame, so that failures can
// show exactly what the server sent. The SDK itself is driven only through its API.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(HERE, "..", "..");
export const SDK_PATH = path.resolve(
  REPO_ROOT,
  "..",
  "shared",
  "clients",
  "nexis-sdk",
  "nexis-sdk.mjs",
);

/** Timeout of one scenario run (one codec). */
export const RUN_TIMEOUT_MS = 10_000;
/** How long to wait for one expected event or RPC answer. */
export const EVENT_TIMEOUT_MS = 3_000;
/** How long to watch for frames that must NOT arrive. */
export const QUIET_MS = 300;

export const CODEC_MODES = [
  { name: "msgpack", codecs: ["msgpack", "json"], expect: "msgpack" },
  { name: "json", codecs: ["json"], expect: "json" },
];

// ---------------------------------------------------------------- arguments

const argv = process.argv.slice(2);
const positional = argv.filter((a) => !a.startsWith("--"));
export const VERBOSE = argv.includes("--verbose") || process.env.HUDDLE_SDK_VERBOSE === "1";
const codecArg = (() => {
  const i = argv.findIndex((a) => a === "--codec" || a.startsWith("--codec="));
  if (i < 0) return null;
  return argv[i].includes("=") ? argv[i].split("=")[1] : argv[i + 1];
})();

// ------------------------------------------------------------ frame recorder

const NativeWebSocket = globalThis.WebSocket;
if (typeof NativeWebSocket !== "function") {
  console.error(
    "FAIL: no global WebSocket. Run with Node >= 20 and `node --experimental-websocket`.",
  );
  process.exit(2);
}

let socketCounter = 0;
let pendingLabel = null;
/** Every socket the SDK opened, in order (reconnects included). */
const allSockets = [];
let sdk = null; // the imported SDK module, set below

/** Prints a value readably: BigInt, binary and `undefined` are made visible. */
export function show(value) {
  try {
    return JSON.stringify(value, (_k, v) => {
      if (typeof v === "bigint") return `<BigInt ${v}n>`;
      if (v === undefined) return "<undefined>";
      if (v instanceof Uint8Array) return { "<bin>": Array.from(v) };
      if (v instanceof ArrayBuffer) return { "<bin>": Array.from(new Uint8Array(v)) };
      return v;
    });
  } catch (e) {
    return `<unprintable: ${e.message}>`;
  }
}

function decodeBinary(bytes) {
  const tryJson = () => ({ codec: "json", value: JSON.parse(new TextDecoder().decode(bytes)) });
  const tryMsgpack = () => ({ codec: "msgpack", value: new sdk.MsgpackCodec().decode(bytes) });
  const order = bytes[0] === 0x7b ? [tryJson, tryMsgpack] : [tryMsgpack, tryJson];
  for (const attempt of order) {
    try {
      return attempt();
    } catch {
      // try the next decoder
    }
  }
  return { codec: "undecodable", value: { "<bytes>": Array.from(bytes.slice(0, 64)) } };
}

async function decodeFrame(data) {
  if (typeof data === "string") {
    try {
      return { opcode: "text", codec: "json", value: JSON.parse(data) };
    } catch {
      return { opcode: "text", codec: "undecodable", value: data };
    }
  }
  let bytes;
  if (data instanceof Blob) bytes = new Uint8Array(await data.arrayBuffer());
  else if (data instanceof ArrayBuffer) bytes = new Uint8Array(data);
  else if (ArrayBuffer.isView(data)) bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  else return { opcode: "?", codec: "undecodable", value: String(data) };
  return { opcode: "binary", ...decodeBinary(bytes) };
}

class RecordingWebSocket extends NativeWebSocket {
  constructor(url, protocols) {
    super(url, protocols);
    this.huddleNo = ++socketCounter;
    this.huddleLabel = pendingLabel ?? `ws#${this.huddleNo}`;
    /** Every frame in order: {dir: "<-"|"->", ready: Promise, frame?: {opcode, codec, value}} */
    this.huddleFrames = [];
    this.huddleClose = null;
    allSockets.push(this);
    this.addEventListener("message", (event) => this.huddleRecord("<-", event.data));
    this.addEventListener("close", (event) => {
      this.huddleClose = { code: event.code, reason: event.reason };
      if (VERBOSE) log(`[${this.huddleLabel}] closed code=${event.code} reason=${show(event.reason)}`);
    });
  }

  send(data) {
    this.huddleRecord("->", data);
    return super.send(data);
  }

  huddleRecord(dir, data) {
    const entry = { dir, frame: null, ready: null };
    entry.ready = decodeFrame(data).then((frame) => {
      entry.frame = frame;
      if (VERBOSE) {
        log(`[${this.huddleLabel}] ${dir} ${frame.opcode}/${frame.codec} ${show(frame.value)}`);
      }
      return frame;
    });
    this.huddleFrames.push(entry);
  }
}

globalThis.WebSocket = RecordingWebSocket;

if (!existsSync(SDK_PATH)) {
  console.error(`FAIL: reference SDK not found at ${SDK_PATH} (expected <repo root>/../shared/...)`);
  process.exit(2);
}
sdk = await import(pathToFileURL(SDK_PATH).href);
export { sdk };

const t0 = Date.now();
function log(line) {
  console.error(`${String(Date.now() - t0).padStart(6)}ms ${line}`);
}

/** All frames one client's current socket received (decoded), in arrival order. */
export async function framesOf(client, dir = "<-") {
  const entries = client.socket.huddleFrames.filter((e) => e.dir === dir);
  await Promise.all(entries.map((e) => e.ready));
  return entries.map((e) => e.frame);
}

/**
 * Waits until the client's socket has sent (dir "->") or received (dir "<-") a
 * frame whose decoded value matches `pred`; returns that frame.
 */
export async function waitFrame(client, dir, pred, what, ms = EVENT_TIMEOUT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = (await framesOf(client, dir)).find((f) => f.value && pred(f.value));
    if (found) return found;
    if (Date.now() >= deadline) throw new TimeoutError(`timed out after ${ms} ms: ${what}`);
    await sleep(20);
  }
}

/** A short dump of the frames a socket sent and received, for failure messages. */
export async function dumpFrames(clientOrSocket, { max = 40, dir = null } = {}) {
  const socket = clientOrSocket instanceof RecordingWebSocket ? clientOrSocket : clientOrSocket.socket;
  const entries = socket.huddleFrames.filter((e) => dir === null || e.dir === dir);
  await Promise.race([Promise.all(entries.map((e) => e.ready)), sleep(200)]);
  const lines = entries
    .slice(-max)
    .map((e) => (e.frame ? `  ${e.dir} ${e.frame.opcode}/${e.frame.codec} ${show(e.frame.value)}` : `  ${e.dir} <decoding>`));
  const skipped = entries.length > max ? `  ... ${entries.length - max} earlier frames\n` : "";
  const closed = socket.huddleClose ? `\n  (socket closed: ${show(socket.huddleClose)})` : "";
  return `frames of ${socket.huddleLabel} (${entries.length}):\n${skipped}${lines.join("\n")}${closed}`;
}

// ------------------------------------------------------------------ helpers

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class TimeoutError extends Error {}

/** Resolves like `promise`, or rejects with `what` after `ms`. */
export function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Subscribes at once and keeps everything the callback receives, so that an
 * event arriving before `next()` is called is not lost.
 * `subscribe(cb)` must register `cb` with the SDK.
 */
export function collect(subscribe) {
  const items = [];
  const waiters = new Set();
  subscribe((...args) => {
    const item = args.length === 1 ? args[0] : args;
    items.push(item);
    for (const w of waiters) {
      if (w.pred(item)) {
        waiters.delete(w);
        w.resolve(item);
      }
    }
  });
  return {
    items,
    /** How many items have arrived so far (pass as `from` to skip them). */
    mark() {
      return items.length;
    },
    /** The first item (already received or coming) at index >= `from` matching `pred`. */
    next(pred, what, { from = 0, ms = EVENT_TIMEOUT_MS } = {}) {
      const found = items.slice(from).find(pred);
      if (found !== undefined) return Promise.resolve(found);
      let waiter;
      const promise = new Promise((resolve) => {
        waiter = { pred, resolve };
        waiters.add(waiter);
      });
      return within(promise, ms, what).finally(() => waiters.delete(waiter));
    },
  };
}

/** Sends an RPC through the SDK and fails clearly if no rpc.response comes back. */
export function rpc(client, type, payload, room, ms = EVENT_TIMEOUT_MS) {
  const where = room === undefined ? "" : ` (envelope room ${show(room)})`;
  return within(
    client.sendRPC(type, payload, room),
    ms,
    `no rpc.response to ${type} ${show(payload)}${where} from ${client.socket.huddleLabel} ` +
      "(the reference SDK has no RPC timeout and would hang for ever)",
  );
}

/** Asserts an RPC answer is `{ok:false, code}` with a human `error` text. */
export function assertRpcError(response, code, what) {
  assert.ok(
    response && typeof response === "object",
    `${what}: rpc.response payload is not an object: ${show(response)}`,
  );
  assert.equal(response.ok, false, `${what}: expected ok:false, got ${show(response)}`);
  assert.equal(response.code, code, `${what}: expected code ${show(code)}, got ${show(response)}`);
  assert.equal(
    typeof response.error,
    "string",
    `${what}: expected a human-readable string in \`error\`, got ${show(response)}`,
  );
}

// ------------------------------------------------------------------ context

let uidCounter = 0;

/** One scenario run in one codec mode: owns its clients and closes them. */
export class Context {
  constructor(url, mode, scenario) {
    this.url = url;
    this.mode = mode;
    this.scenario = scenario;
    this.clients = [];
    this.firstSocket = allSockets.length;
  }

  /** A room id unique to this process, scenario and codec. */
  uid(prefix = "room") {
    uidCounter += 1;
    const rand = Math.random().toString(36).slice(2, 8);
    return `${prefix}-${this.scenario}-${this.mode.name}-${process.pid}-${uidCounter}-${rand}`;
  }

  /** Connects an SDK client with this run's codecs; `label` names it in logs. */
  async connect(label, extra = {}) {
    pendingLabel = `${label}/${this.mode.name}`;
    let promise;
    try {
      promise = sdk.connect(this.url, {
        projectId: "demo",
        token: "",
        codecs: this.mode.codecs,
        ...extra,
      });
    } finally {
      pendingLabel = null;
    }
    const client = await within(
      promise,
      EVENT_TIMEOUT_MS,
      `connect(${show(this.url)}, codecs ${show(this.mode.codecs)}) for client ${label} did not resolve`,
    );
    client.huddleLabel = label;
    this.clients.push(client);
    // The SDK reconnects by itself after any close: make that visible.
    client.onEvent("reconnect.start", () => {
      log(`[${label}/${this.mode.name}] the SDK is reconnecting (its socket closed: ${show(client.socket.huddleClose)})`);
    });
    client.onEvent("reconnect.ok", () => {
      client.socket.huddleLabel = `${label}/${this.mode.name} (reconnected)`;
    });
    return client;
  }

  /** The decoded handshake.ok frame the client's socket received. */
  async handshakeOk(client) {
    const frames = await framesOf(client);
    const ok = frames.find((f) => f.value && f.value.t === "handshake.ok");
    assert.ok(ok, `${client.huddleLabel}: no handshake.ok frame recorded\n${await dumpFrames(client)}`);
    return ok;
  }

  /** The public client_id of a client, from its handshake.ok. */
  async clientId(client) {
    const ok = await this.handshakeOk(client);
    const id = ok.value.p && ok.value.p.client_id;
    assert.equal(
      typeof id,
      "string",
      `${client.huddleLabel}: handshake.ok has no string p.client_id: ${show(ok.value)}`,
    );
    return id;
  }

  async dumpAll() {
    const parts = [];
    for (const socket of allSockets.slice(this.firstSocket)) parts.push(await dumpFrames(socket));
    return parts.join("\n");
  }

  closeAll() {
    for (const client of this.clients) {
      try {
        client.close();
      } catch {
        // already closed
      }
    }
  }
}

// ------------------------------------------------------------------- runner

/**
 * Runs `fn(ctx)` in every codec mode (or the one named by --codec), each under
 * RUN_TIMEOUT_MS; prints one line per run; exits 1 if any run failed.
 */
export async function runScenario(name, fn) {
  const url = positional[0];
  if (!url || !/^wss?:\/\//.test(url)) {
    console.error(`usage: node --experimental-websocket ${process.argv[1]} ws://HOST:PORT/rooms [--verbose] [--codec msgpack|json]`);
    process.exit(2);
  }
  const modes = codecArg ? CODEC_MODES.filter((m) => m.name === codecArg) : CODEC_MODES;
  if (modes.length === 0) {
    console.error(`unknown --codec ${show(codecArg)}`);
    process.exit(2);
  }
  // A last resort: whatever happens, never hang.
  setTimeout(() => {
    console.log(`FAIL ${name}: the script as a whole did not finish within ${RUN_TIMEOUT_MS * modes.length + 5000} ms`);
    process.exit(1);
  }, RUN_TIMEOUT_MS * modes.length + 5000).unref();

  let failed = 0;
  for (const mode of modes) {
    const ctx = new Context(url, mode, name);
    const label = `${name} [codecs ${mode.codecs.join(",")}]`;
    try {
      await within(fn(ctx), RUN_TIMEOUT_MS, `scenario ${label} did not finish`);
      console.log(`ok   ${label}`);
    } catch (error) {
      failed += 1;
      const message = error && error.message ? error.message : String(error);
      console.log(`FAIL ${label}: ${message}`);
      if (error && error.stack && !(error instanceof TimeoutError)) {
        console.log(error.stack.split("\n").slice(1, 4).join("\n"));
      }
      console.log(`  frames observed by each client (most recent last):\n${await ctx.dumpAll()}`);
    } finally {
      ctx.closeAll();
    }
  }
  console.log(`sdk ${name}: ${modes.length - failed} of ${modes.length} codec runs passed`);
  // Open sockets and pending timers must not keep the process alive.
  process.exit(failed === 0 ? 0 : 1);
}

export { assert };
