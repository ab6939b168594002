// The controller page (/play) in a real browser against a running huddle:
//
//   node browser.mjs http://127.0.0.1:PORT SCREENSHOT_DIR
//
// Debian's chromium (headless, driven by playwright-core over CDP) opens two phones;
// a host scripted here over the WebSocket (`ws`) creates a session with a flow and
// checks every message the phones' pages send. tests/e2e/play.rs starts the server
// (pairkit.strict_payloads on, a 4 s grace window) and runs this script; it starts
// nothing itself. Each step prints `ok: …`; the last line is `ok: the controller page
// passed …`. A failure prints what the host had not consumed yet and exits 1.

import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

import { chromium } from "playwright-core";
import WebSocket from "ws";

const [base, shotDir] = process.argv.slice(2);
if (!base || !shotDir) {
  console.error("usage: node browser.mjs http://HOST:PORT SCREENSHOT_DIR");
  process.exit(2);
}
const CHROMIUM = process.env.HUDDLE_CHROMIUM ?? "/usr/bin/chromium";
/** Each wait of a step. */
const STEP_MS = 10000;
/** The server's pairkit.grace_ms (tests/e2e/play.rs sets it). */
const GRACE_MS = Number(process.env.HUDDLE_PLAY_GRACE_MS ?? 4000);
/** Phones are portrait phones, 1 CSS pixel a pixel (small screenshots). */
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ok = (what) => console.log(`ok: ${what}`);

// ---- The scripted host ----

class Host {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.inbox = [];
    this.wakers = new Set();
    this.ws.on("message", (data) => {
      this.inbox.push(JSON.parse(String(data)));
      for (const wake of this.wakers) wake();
    });
  }
  open() {
    return new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", reject);
    });
  }
  send(msg) {
    this.ws.send(JSON.stringify(msg));
  }
  /** The first message matching `pred` (taken out of the inbox), waiting up to `ms`. */
  async take(what, pred, ms = STEP_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const at = this.inbox.findIndex(pred);
      if (at >= 0) return this.inbox.splice(at, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the host got no ${what} within ${ms} ms`);
      await new Promise((resolve) => {
        const wake = () => {
          this.wakers.delete(wake);
          resolve();
        };
        this.wakers.add(wake);
        setTimeout(wake, Math.min(left, 100));
      });
    }
  }
  /** Fails if a message matching `pred` arrives within `ms`. */
  async none(what, pred, ms) {
    await sleep(ms);
    const found = this.inbox.find(pred);
    assert.equal(found, undefined, `the host got ${what}: ${JSON.stringify(found)}`);
  }
  /** Every message matching `pred`, taken out. */
  takeAll(pred) {
    const all = this.inbox.filter(pred);
    this.inbox = this.inbox.filter((m) => !pred(m));
    return all;
  }
}

const event = (player, widget, type) => (m) =>
  m.type === "input.widget_event" && m.player_id === player && m.widget_id === widget && (!type || m.event_type === type);
const ackOf = (player, screen, revision) => (m) =>
  m.type === "screen.acknowledge" && m.player_id === player && m.screen === screen && m.revision === revision;

// ---- The flow ----

const LOGO =
  "data:image/svg+xml," +
  encodeURIComponent(
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="64"><rect width="160" height="64" rx="12" fill="#f0b429"/>' +
      '<text x="80" y="42" font-size="28" font-family="sans-serif" text-anchor="middle" fill="#111">huddle</text></svg>',
  );

const FLOW = {
  version: 1,
  id: "party",
  initial_screen: "play",
  screens: {
    play: {
      title: "Round {round}",
      widgets: [
        { id: "score", type: "text", text: "Score: {score}", size: "large" },
        { id: "stick", type: "joystick", label: "Move" },
        { id: "jump", type: "button", label: "Jump" },
      ],
    },
    vote: {
      widgets: [
        { id: "question", type: "text", text: "{question}", size: "large" },
        {
          id: "pick",
          type: "choice_list",
          choices: [
            { id: "a", label: "Margherita" },
            { id: "b", label: "Hawaiian" },
            { id: "c", label: "Four cheeses" },
          ],
        },
      ],
    },
    draw: { widgets: [{ id: "sketch", type: "drawing_canvas", label: "Draw a {thing}" }] },
    done: {
      widgets: [
        { id: "logo", type: "image", src: LOGO, alt: "huddle" },
        { id: "bye", type: "text", text: "Well played, {name}: {score} points", size: "large" },
      ],
    },
  },
};

// ---- Phones ----

const problems = []; // page errors and Content-Security-Policy reports, from every page
let shots = 0;

async function phone(browser, name) {
  const ctx = await browser.newContext(PHONE);
  await ctx.addInitScript(() => {
    window.__vibrations = [];
    navigator.vibrate = (pattern) => {
      window.__vibrations.push(pattern);
      return true;
    };
    window.__csp = [];
    document.addEventListener("securitypolicyviolation", (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  const page = await ctx.newPage();
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("console", (m) => {
    // The page logs a relay's system.error it did not expect as "pairkit: <code> …".
    if (/content.security.policy|^pairkit:/i.test(m.text())) problems.push(`${name}: ${m.text()}`);
  });
  const cdp = await ctx.newCDPSession(page);
  return { name, ctx, page, cdp };
}

const shotFiles = {};

async function shot(p, what) {
  const file = path.join(shotDir, `${String(++shots).padStart(2, "0")}-${what}.png`);
  await p.page.screenshot({ path: file });
  shotFiles[what] = file;
  return file;
}

/** `controller.png`: the top 680 pixels of some screens side by side (docs/play.png, the
 * README's picture, is one). */
async function composite(browser, names) {
  const [w, h, gap] = [390, 680, 24];
  const page = await browser.newPage({ viewport: { width: (w + gap) * names.length + gap, height: h + 2 * gap }, deviceScaleFactor: 1 });
  const imgs = names
    .map((n) => `<div style="width:${w}px;height:${h}px;overflow:hidden"><img src="data:image/png;base64,${fs.readFileSync(shotFiles[n]).toString("base64")}"></div>`)
    .join("");
  await page.setContent(
    `<body style="margin:0;background:#2d3a48;display:flex;gap:${gap}px;padding:${gap}px">${imgs}</body>`,
  );
  const file = path.join(shotDir, "controller.png");
  await page.screenshot({ path: file });
  await page.close();
  return file;
}

const state = (p) => p.page.evaluate(() => window.pairkit.state());
const until = (p, fn, arg) => p.page.waitForFunction(fn, arg, { timeout: STEP_MS });

/** Touches through CDP: each finger `{x, y, id}`; `touchStart`/`touchMove` list every
 * finger down, `touchEnd` those still down afterwards. */
const touch = (p, type, fingers) => p.cdp.send("Input.dispatchTouchEvent", { type, touchPoints: fingers });

async function box(p, selector) {
  const loc = p.page.locator(selector);
  await loc.scrollIntoViewIfNeeded();
  const b = await loc.boundingBox();
  assert.ok(b, `${p.name}: ${selector} is on screen`);
  return b;
}

async function join(p, code, name, host) {
  const response = await p.page.goto(`${base}/play?code=${code.toLowerCase()}`);
  assert.equal(await p.page.inputValue("#code"), code, "the query pre-fills the code");
  await p.page.fill("#name", name);
  await p.page.tap("#join-button");
  const joined = await host.take(`${name}'s player.join`, (m) => m.type === "player.join" && m.name === name);
  assert.equal(joined.resumed, false);
  await until(p, () => window.pairkit.state().phase === "joined");
  assert.equal((await state(p)).player_id, joined.player_id);
  p.id = joined.player_id;
  await host.take(`${name}'s acknowledge of the first screen`, ackOf(p.id, "play", 0));
  return response;
}

// ---- The scenario ----

async function main() {
  fs.mkdirSync(shotDir, { recursive: true });
  const wsBase = base.replace(/^http/, "ws");
  const host = new Host(`${wsBase}/pairkit`);
  await host.open();
  host.send({ type: "session.create", flow: FLOW });
  const created = await host.take("session.created", (m) => m.type === "session.created");
  const code = created.code;
  assert.equal(created.relay_capabilities.strict_payloads, true, "the test server checks payloads against the flow");
  ok(`the host created session ${code}`);

  if (!fs.existsSync(CHROMIUM)) throw new Error(`no browser at ${CHROMIUM} (apt-get install chromium)`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  try {
    await scenario(browser, host, code);
  } finally {
    await browser.close();
    host.ws.close();
  }
}

async function scenario(browser, host, code) {
  const ann = await phone(browser, "Ann");
  const bob = await phone(browser, "Bob");

  // -- The page, its headers, joining --
  const assets = [];
  ann.page.on("response", (r) => assets.push(r));
  await ann.page.goto(`${base}/play?code=${code.toLowerCase()}`);
  await shot(ann, "join");
  const page = await join(ann, code, "Ann", host);
  const h = page.headers();
  assert.equal(page.status(), 200);
  assert.equal(h["content-type"], "text/html; charset=utf-8");
  assert.equal(h["cache-control"], "no-cache");
  assert.match(h["content-security-policy"], /connect-src 'self'/);
  assert.equal(h["x-content-type-options"], "nosniff");
  const script = assets.find((r) => r.url().endsWith("/app.js"));
  assert.ok(script, "app.js was loaded");
  assert.equal(script.headers()["content-type"], "text/javascript; charset=utf-8");
  assert.match(script.headers()["cache-control"], /immutable/);
  ok("GET /play?code=… serves the page (text/html, no-cache, CSP, nosniff) and its versioned, cached scripts");
  await join(bob, code, "Bob", host);
  assert.deepEqual([ann.id, bob.id], ["p1", "p2"]);
  ok("two phones joined from /play?code=… (the WebSocket to /pairkit allowed by connect-src 'self')");

  // -- Bound values --
  host.send({ type: "screen.update_data", data: { round: 1, score: 0 } });
  for (const p of [ann, bob]) {
    await host.take(`${p.name}'s acknowledge of revision 1`, ackOf(p.id, "play", 1));
    await until(p, () => document.querySelector("[data-widget=score]").textContent === "Score: 0");
    assert.equal(await p.page.textContent(".w-title"), "Round 1");
  }
  await shot(ann, "play");
  await ann.page.setViewportSize({ width: 844, height: 390 });
  await shot(ann, "play-landscape");
  await ann.page.setViewportSize(PHONE.viewport);
  ok("screen.update_data fills {round} and {score} on both phones, each acknowledged");

  // -- Button: two fingers on it are one press, released by the last --
  const jump = await box(ann, "[data-widget=jump]");
  const y = jump.y + jump.height / 2;
  const f1 = { x: jump.x + jump.width * 0.25, y, id: 1 };
  const f2 = { x: jump.x + jump.width * 0.75, y, id: 2 };
  await touch(ann, "touchStart", [f1]);
  const press = await host.take("Ann's press", event(ann.id, "jump", "press"));
  assert.deepEqual(press.payload, {});
  assert.equal(press.revision, 1);
  await touch(ann, "touchStart", [f1, f2]);
  await touch(ann, "touchEnd", [f2]);
  await host.none("a second press or an early release", event(ann.id, "jump"), 300);
  await touch(ann, "touchEnd", []);
  await host.take("Ann's release", event(ann.id, "jump", "release"));
  await bob.page.tap("[data-widget=jump]");
  await host.take("Bob's press", event(bob.id, "jump", "press"));
  await host.take("Bob's release", event(bob.id, "jump", "release"));
  await host.none("another button event", event(ann.id, "jump"), 100);
  ok("button: press / release per player; two fingers at once make one press, released by the last");

  // -- Joystick --
  const pad = await box(ann, ".w-joystick");
  const centre = { x: pad.x + pad.width / 2, y: pad.y + pad.height / 2, id: 3 };
  // 120 finger positions sent without waiting for each other (far faster than 30/s),
  // right to the rim and beyond, then straight up.
  const started = Date.now();
  await touch(ann, "touchStart", [centre]);
  const right = Array.from({ length: 60 }, (_, i) => ({ ...centre, x: centre.x + (pad.width * (i + 1)) / 60 }));
  await Promise.all(right.map((f) => touch(ann, "touchMove", [f])));
  await sleep(150);
  const up = Array.from({ length: 60 }, (_, i) => ({ ...centre, y: centre.y - (pad.height * (i + 1)) / 60 }));
  await Promise.all(up.map((f) => touch(ann, "touchMove", [f])));
  await sleep(150);
  await touch(ann, "touchEnd", []);
  const released = Date.now();
  const moves = [];
  for (;;) {
    const m = await host.take("Ann's joystick moves", event(ann.id, "stick", "move"));
    moves.push(m);
    if (moves.length > 1 && m.payload.x === 0 && m.payload.y === 0) break;
  }
  for (const m of moves) {
    assert.equal(m.revision, 1);
    for (const k of ["x", "y"]) assert.ok(m.payload[k] >= -1 && m.payload[k] <= 1, JSON.stringify(m.payload));
  }
  assert.ok(moves.some((m) => m.payload.x > 0.95 && Math.abs(m.payload.y) < 0.05), "right is x = 1");
  assert.ok(moves.some((m) => m.payload.y > 0.95 && Math.abs(m.payload.x) < 0.05), "up is y = 1");
  const allowed = Math.ceil(((released - started + 40) * 30) / 1000) + 2;
  assert.ok(moves.length <= allowed, `${moves.length} moves in ${released - started} ms (at most ~30/s: ${allowed})`);
  ok(`joystick: 120 finger positions → ${moves.length} moves in ${released - started} ms, {x, y} in [-1, 1] (right x = 1, up y = 1), centred on release`);

  // -- A new screen, a choice --
  host.send({ type: "screen.show", screen: "vote", data: { question: "Best pizza?" } });
  for (const p of [ann, bob]) {
    await until(p, () => document.querySelector("#screen").dataset.screen === "vote");
    await host.take(`${p.name}'s acknowledge of vote`, ackOf(p.id, "vote", 2));
  }
  await ann.page.tap("[data-widget=pick] [data-choice=a]");
  await bob.page.click("[data-widget=pick] [data-choice=c]");
  const a = await host.take("Ann's choice", event(ann.id, "pick", "select"));
  const c = await host.take("Bob's choice", event(bob.id, "pick", "select"));
  assert.deepEqual([a.payload, a.revision, c.payload], [{ choice_id: "a" }, 2, { choice_id: "c" }]);
  assert.equal(await ann.page.getAttribute("[data-choice=a]", "aria-pressed"), "true");
  await shot(ann, "vote");
  ok("screen.show reaches both phones, drawn and acknowledged; choice_list select carries the choice id");

  // -- Drawing: a stroke, then the host asks for it again --
  host.send({ type: "screen.show", screen: "draw", data: { thing: "cat" } });
  for (const p of [ann, bob]) await host.take(`${p.name}'s acknowledge of draw`, ackOf(p.id, "draw", 3));
  await until(ann, () => document.querySelector(".w-caption").textContent === "Draw a cat");
  const canvas = await box(ann, ".w-canvas");
  const at = (fx, fy) => ({ x: canvas.x + canvas.width * fx, y: canvas.y + canvas.height * fy, id: 4 });
  await touch(ann, "touchStart", [at(0.1, 0.2)]);
  for (let i = 1; i <= 30; i++) {
    const t = i / 30;
    await touch(ann, "touchMove", [at(0.1 + 0.8 * t, 0.2 + 0.6 * t + 0.1 * Math.sin(t * 6))]);
    await sleep(8);
  }
  await touch(ann, "touchEnd", []);
  const end = await host.take("Ann's stroke_end", event(ann.id, "sketch", "stroke_end"));
  const progress = host.takeAll(event(ann.id, "sketch", "stroke_progress"));
  const strokeId = end.payload.stroke_id;
  assert.ok(progress.length >= 1);
  assert.deepEqual(
    progress.map((m) => [m.payload.stroke_id, m.payload.seq, m.revision]),
    progress.map((_, i) => [strokeId, i, 3]),
    "seq 0, 1, 2… on the screen's revision",
  );
  assert.equal(end.payload.seq, progress.length, "stroke_end carries the next seq");
  const points = progress.flatMap((m) => m.payload.points);
  for (const [x, yy] of points) assert.ok(x >= 0 && x <= 1 && yy >= 0 && yy <= 1);
  const near = (p, q) => Math.abs(p[0] - q[0]) < 0.02 && Math.abs(p[1] - q[1]) < 0.02;
  assert.ok(near(points[0], [0.1, 0.2]), `first point ${points[0]}`);
  assert.ok(near(points.at(-1), [0.9, 0.8 + 0.1 * Math.sin(6)]), `last point ${points.at(-1)}`);
  await shot(ann, "draw");
  host.send({ type: "control.resend_request", player_id: ann.id, widget_id: "sketch", stroke_id: strokeId, from_seq: 0 });
  const accepted = await host.take("control.resend_accepted", (m) => m.type === "control.resend_accepted");
  assert.deepEqual(accepted, { type: "control.resend_accepted", replayed_count: progress.length + 1, player_id: ann.id });
  const replayed = host.takeAll(event(ann.id, "sketch"));
  assert.deepEqual(
    replayed.map((m) => [m.event_type, m.payload, m.revision]),
    [...progress, end].map((m) => [m.event_type, m.payload, undefined]),
    "the same events again, before the answer, without revision",
  );
  host.send({ type: "control.resend_request", player_id: ann.id, widget_id: "sketch", stroke_id: "never", from_seq: 0 });
  const failed = await host.take("control.resend_failed", (m) => m.type === "control.resend_failed");
  assert.deepEqual(failed, { type: "control.resend_failed", reason: "unknown_stroke", player_id: ann.id });
  ok(`drawing_canvas: a stroke of ${points.length} points in ${progress.length} stroke_progress + stroke_end, replayed on control.resend_request; an unknown stroke is resend_failed`);

  // -- Control: a tracked broadcast (flash), a vibration --
  host.send({ type: "control.broadcast", event: "flash", payload: { color: "#e02424", duration_ms: 800 }, broadcast_id: "b1" });
  const result = await host.take("control.broadcast_result", (m) => m.type === "control.broadcast_result");
  assert.deepEqual(result.results, { [ann.id]: "delivered", [bob.id]: "delivered" });
  await until(bob, () => document.getElementById("flash").classList.contains("on"));
  await shot(bob, "flash");
  for (const p of [ann, bob]) await until(p, () => !document.getElementById("flash").classList.contains("on"));
  host.send({ type: "control.send_to_player", player_id: bob.id, event: "vibrate", payload: { pattern: [100, 50, 100] } });
  await until(bob, () => window.__vibrations.length === 1);
  assert.deepEqual(await bob.page.evaluate(() => window.__vibrations), [[100, 50, 100]]);
  ok("control.event: a tracked flash broadcast acked by both (delivered, delivered); vibrate reaches navigator.vibrate");

  // -- Requests: one answered through the prompt, one cancelled by the host --
  host.send({
    type: "control.request",
    request_id: "r1",
    player_id: bob.id,
    kind: "text",
    payload: { prompt: "Name your team" },
    timeout_ms: 30000,
  });
  await until(bob, () => document.getElementById("prompt").open);
  assert.equal(await bob.page.textContent("#prompt-question"), "Name your team");
  await bob.page.fill("#prompt-field", "Pizza Cats");
  await shot(bob, "prompt");
  await bob.page.tap("#prompt-send");
  const response = await host.take("Bob's input.response", (m) => m.type === "input.response");
  assert.deepEqual(response, { type: "input.response", request_id: "r1", player_id: bob.id, payload: { text: "Pizza Cats" } });
  await until(bob, () => !document.getElementById("prompt").open);
  host.send({ type: "control.request", request_id: "r2", player_id: ann.id, kind: "confirm", payload: { prompt: "Ready?" } });
  await until(ann, () => document.getElementById("prompt").open);
  host.send({ type: "control.request_cancel", request_id: "r2" });
  await until(ann, () => !document.getElementById("prompt").open && window.pairkit.state().prompt === null);
  ok("control.request answered through the prompt (input.response); control.request_cancel takes the prompt away");

  // -- Ann's phone loses its connection and comes back as the same player --
  // Chromium's offline emulation (context.setOffline) does not cut a WebSocket that is
  // already open, so the page closes its socket itself through its test hook, as the OS
  // does when Wi-Fi drops (the relay sees the connection end and starts the grace
  // window); being offline keeps every reconnect attempt failing until it is back.
  await ann.ctx.setOffline(true);
  await ann.page.evaluate(() => window.pairkit.dropSocket());
  await until(ann, () => window.pairkit.state().phase === "reconnecting");
  host.send({ type: "screen.show", player_ids: [ann.id], screen: "done", data: { name: "Ann", score: 42 } });
  await sleep(500);
  assert.equal((await state(ann)).phase, "reconnecting", "offline: no socket");
  await shot(ann, "reconnecting");
  await ann.ctx.setOffline(false);
  const back = await host.take("Ann's resume", (m) => m.type === "player.join" && m.player_id === ann.id);
  assert.equal(back.resumed, true);
  await host.take("Ann's acknowledge of the screen shown while away", ackOf(ann.id, "done", 4));
  await until(ann, () => window.pairkit.state().phase === "joined");
  const s = await state(ann);
  assert.deepEqual([s.player_id, s.screen, s.revision], [ann.id, "done", 4]);
  assert.equal(await ann.page.textContent("[data-widget=bye]"), "Well played, Ann: 42 points");
  await shot(ann, "resumed");
  ok("a dropped phone resumes inside the grace window as the same player and shows the screen it missed");

  // -- Bob stays away past the grace window --
  await bob.ctx.setOffline(true);
  await bob.page.evaluate(() => window.pairkit.dropSocket());
  const gone = await host.take("Bob's player.leave", (m) => m.type === "player.leave", GRACE_MS + STEP_MS);
  assert.deepEqual(gone, { type: "player.leave", player_id: bob.id, reason: "timeout" });
  await bob.ctx.setOffline(false);
  await until(bob, () => /away too long/.test(document.getElementById("join-error").textContent));
  assert.equal((await state(bob)).phase, "form");
  assert.equal(await bob.page.inputValue("#code"), code);
  await shot(bob, "away-too-long");
  ok("a phone back after the grace window is told plainly it lost its place, with the code still filled in");

  // -- The host ends the game --
  host.send({ type: "session.leave" });
  await until(ann, () => !document.getElementById("notice").hidden);
  assert.equal(await ann.page.textContent("#notice-text"), "The game has ended.");
  await shot(ann, "ended");
  ok("the host's session.leave: the page says the game has ended");

  // -- Wrong codes --
  const carl = await phone(browser, "Carl");
  const unknown = code === "WXYZ" ? "WXYA" : "WXYZ";
  await carl.page.goto(`${base}/play?code=${unknown}`);
  await carl.page.fill("#name", "Carl");
  await carl.page.tap("#join-button");
  await until(carl, () => /No game has this code/.test(document.getElementById("join-error").textContent));
  await shot(carl, "wrong-code");
  await carl.page.fill("#code", "0o1i");
  await carl.page.tap("#join-button");
  await until(carl, () => /not a game code/.test(document.getElementById("join-error").textContent));
  ok("an unknown code and a malformed one are each told plainly");

  await composite(browser, ["play", "vote", "prompt"]);
  for (const p of [ann, bob, carl]) problems.push(...(await p.page.evaluate(() => window.__csp)).map((v) => `${p.name}: CSP: ${v}`));
  assert.deepEqual(problems, [], "no page error and no Content-Security-Policy violation");
  const stray = host.inbox.filter((m) => m.type === "input.widget_event" || m.type === "input.response");
  assert.deepEqual(stray, [], "no input the test did not expect");
  console.log(`ok: the controller page passed every step (${shots} screenshots and controller.png in ${shotDir})`);
}

main().catch((e) => {
  console.error(e?.stack ?? String(e));
  process.exit(1);
});
