// Unit tests of the controller page's own logic (src/pairkit/play/logic.mjs) under Node's
// test runner: `node --test tests/clients/play/logic.test.mjs` (tests/e2e/play.rs runs it
// from cargo test). No DOM, no socket, no clock: time is a parameter.

import { test } from "node:test";
import assert from "node:assert/strict";

import * as L from "../../../src/pairkit/play/logic.mjs";

/** Every message the phone sends: the relay sets player_id, the phone never does. */
function assertNoPlayerId(msg) {
  assert.equal(JSON.stringify(msg).includes('"player_id"'), false, JSON.stringify(msg));
}

test("codes are normalized, checked against the alphabet and read from the query", () => {
  assert.equal(L.normalizeCode(" k7-pq "), "K7PQ");
  assert.equal(L.isCode("K7PQ"), true);
  for (const bad of ["K7P", "K7PQR", "K0PQ", "KOPQ", "K1PQ", "KIPQ", "k7pq", ""]) assert.equal(L.isCode(bad), false, bad);
  assert.equal(L.codeFromQuery("?code=abcd"), "ABCD");
  assert.equal(L.codeFromQuery("?x=1"), "");
  assert.equal(L.codeFromQuery("?code=" + "a".repeat(50)).length, 8, "a long code is cut, not trusted");
  assert.equal(L.socketUrl({ protocol: "http:", host: "10.0.0.2:7777" }), "ws://10.0.0.2:7777/pairkit");
  assert.equal(L.socketUrl({ protocol: "https:", host: "play.example" }), "wss://play.example/pairkit");
});

test("session.join: a new player sends its name; a resume sends its id and token, not its name", () => {
  assert.deepEqual(L.joinMessage({ code: "ABCD", name: "Ann" }), {
    type: "session.join",
    code: "ABCD",
    protocol_version: 1,
    name: "Ann",
  });
  assert.deepEqual(L.joinMessage({ code: "ABCD", name: "" }), { type: "session.join", code: "ABCD", protocol_version: 1 });
  const resume = L.joinMessage({ code: "ABCD", name: "Ann", resume: { code: "ABCD", player_id: "p3", resume_token: "t" } });
  assert.deepEqual(resume, {
    type: "session.join",
    code: "ABCD",
    protocol_version: 1,
    resume_player_id: "p3",
    resume_token: "t",
  });
});

test("widget events have the page's shape, carry the screen's revision, and no player_id", () => {
  const press = L.buttonEvent("go", true, 4);
  assert.deepEqual(press, { type: "input.widget_event", widget_id: "go", event_type: "press", payload: {}, revision: 4 });
  assert.deepEqual(L.buttonEvent("go", false, 4).event_type, "release");
  assert.equal("revision" in L.buttonEvent("go", false, undefined), false, "no revision: never stale");
  assert.deepEqual(L.choiceEvent("pick", "a", 0).payload, { choice_id: "a" });
  assert.equal(L.choiceEvent("pick", "a", 0).revision, 0, "revision 0 is a revision");
  assert.deepEqual(L.joystickEvent("stick", { x: 0.5, y: -1 }, 2).payload, { x: 0.5, y: -1 });
  for (const m of [press, L.choiceEvent("p", "a", 1), L.joystickEvent("s", { x: 0, y: 0 }, 1)]) assertNoPlayerId(m);
});

test("a button is pressed by its first finger and released by its last", () => {
  const t = new L.PressTracker();
  assert.equal(t.down(1), "press");
  assert.equal(t.down(2), null, "a second finger on the same button");
  assert.equal(t.up(1), null, "one finger still holds it");
  assert.equal(t.up(7), null, "a finger that never pressed it");
  assert.equal(t.up(2), "release");
  assert.equal(t.up(2), null, "released once");
  t.down(3);
  assert.equal(t.reset(), "release");
  assert.equal(t.reset(), null);
});

test("the joystick: x right, y up, in [-1, 1], clamped to the unit circle", () => {
  assert.deepEqual(L.joystickVector(0, 0, 100), { x: 0, y: 0 });
  assert.deepEqual(L.joystickVector(100, 0, 100), { x: 1, y: 0 });
  assert.deepEqual(L.joystickVector(0, -50, 100), { x: 0, y: 0.5 }, "a finger above the centre is y > 0");
  assert.deepEqual(L.joystickVector(0, 400, 100), { x: 0, y: -1 }, "beyond the rim is the rim");
  const diag = L.joystickVector(300, -300, 100);
  assert.ok(Math.abs(Math.hypot(diag.x, diag.y) - 1) < 0.002, JSON.stringify(diag));
  assert.deepEqual(L.joystickVector(33.33333, 0, 100), { x: 0.333, y: 0 });
  assert.ok(Object.is(L.joystickVector(0, 0.0001, 100).y, 0), "no -0");
  assert.deepEqual(L.joystickVector(5, 5, 0), { x: 0, y: 0 }, "a pad with no size");
  for (let i = 0; i < 500; i++) {
    const v = L.joystickVector((Math.random() - 0.5) * 1000, (Math.random() - 0.5) * 1000, 1 + Math.random() * 200);
    assert.ok(v.x >= -1 && v.x <= 1 && v.y >= -1 && v.y <= 1, JSON.stringify(v));
  }
});

test("the throttle lets at most 30 moves a second through and always sends the last", () => {
  const interval = 1000 / L.JOYSTICK_EVENTS_PER_S;
  const th = new L.Throttle(interval);
  const sent = [];
  // A finger moving every 4 ms for one second (250 positions), then let go.
  for (let t = 0; t <= 1000; t += 4) {
    const out = th.offer({ x: L.round(t / 1000, 3), y: 0 }, t) ?? th.poll(t);
    if (out) sent.push([t, out]);
  }
  const release = th.offer({ x: 0, y: 0 }, 1001);
  assert.equal(release, undefined, "inside the interval: kept");
  assert.ok(th.dueAt() > 1001);
  assert.equal(th.poll(th.dueAt() - 1), undefined);
  const last = th.poll(th.dueAt());
  assert.deepEqual(last, { x: 0, y: 0 }, "the centre goes out when the interval ends");
  sent.push([1001 + interval, last]);
  assert.ok(sent.length <= 32, `${sent.length} moves in about a second`);
  assert.ok(sent.length >= 28, `${sent.length}: the rate is used, not starved`);
  for (let i = 1; i < sent.length; i++) assert.ok(sent[i][0] - sent[i - 1][0] >= interval - 4, "spaced by the interval");
});

test("the throttle never repeats a value and forgets a kept one that went back", () => {
  const th = new L.Throttle(100);
  assert.deepEqual(th.offer({ x: 1, y: 0 }, 0), { x: 1, y: 0 });
  assert.equal(th.offer({ x: 1, y: 0 }, 500), undefined, "unchanged: nothing to send");
  assert.equal(th.dueAt(), null);
  assert.deepEqual(th.offer({ x: 0, y: 0 }, 500), { x: 0, y: 0 });
  assert.equal(th.offer({ x: 0.5, y: 0 }, 550), undefined);
  assert.equal(th.offer({ x: 0, y: 0 }, 560), undefined, "back where the host thinks it is");
  assert.equal(th.dueAt(), null, "nothing left to send");
  th.reset();
  assert.deepEqual(th.offer({ x: 0, y: 0 }, 561), { x: 0, y: 0 }, "after a reset the next value goes at once");
});

test("canvas points are fractions of the canvas from its top-left corner, in [0, 1]", () => {
  const rect = { left: 10, top: 20, width: 200, height: 100 };
  assert.deepEqual(L.canvasPoint(10, 20, rect), [0, 0]);
  assert.deepEqual(L.canvasPoint(210, 120, rect), [1, 1]);
  assert.deepEqual(L.canvasPoint(60, 45, rect), [0.25, 0.25]);
  assert.deepEqual(L.canvasPoint(-100, 500, rect), [0, 1], "clamped");
  assert.deepEqual(L.canvasPoint(10 + 200 / 3, 20, rect), [0.3333, 0], "4 decimals");
  assert.deepEqual(L.canvasPoint(5, 5, { left: 0, top: 0, width: 0, height: 0 }), [0, 0]);
});

test("a stroke is batched into stroke_progress with seq 0, 1, 2… and ends with the next seq", () => {
  const s = new L.Stroke("k-1");
  assert.equal(s.flush(), null, "nothing yet");
  assert.equal(s.add([0.1, 0.1]), null);
  assert.equal(s.add([0.1, 0.1]), null, "a repeated point is not kept");
  s.add([0.2, 0.2]);
  assert.deepEqual(s.flush(), { stroke_id: "k-1", seq: 0, points: [[0.1, 0.1], [0.2, 0.2]] });
  assert.equal(s.flush(), null);
  let full = null;
  for (let i = 0; i < L.STROKE_POINTS_MAX && !full; i++) full = s.add([i / 1000, 0.5]);
  assert.equal(full.seq, 1);
  assert.equal(full.points.length, L.STROKE_POINTS_MAX, "a full batch goes at once");
  s.add([0.9, 0.9]);
  const { last, end } = s.end();
  assert.deepEqual(last, { stroke_id: "k-1", seq: 2, points: [[0.9, 0.9]] });
  assert.deepEqual(end, { stroke_id: "k-1", seq: 3 }, "stroke_end says how many progress messages there were");
  assert.ok(JSON.stringify(full).length < 64 * 1024 / 4, "a batch is far below the relay's message bound");
  const ids = L.strokeIds(() => 0.5);
  const [a, b] = [ids(), ids()];
  assert.notEqual(a, b);
  assert.match(a, /^[0-9a-z]{6}-1$/);
});

test("the resend buffer replays a stroke from a seq, as first sent but without revision", () => {
  const buf = new L.ResendBuffer();
  const s = new L.Stroke("s1");
  const sent = [];
  const emit = (type, payload) => {
    if (!payload) return;
    buf.record("pad", type, payload);
    sent.push(L.widgetEvent("pad", type, payload, 7));
  };
  s.add([0.1, 0.2]);
  emit("stroke_progress", s.flush());
  s.add([0.3, 0.4]);
  emit("stroke_progress", s.flush());
  const { last, end } = s.end();
  emit("stroke_progress", last);
  emit("stroke_end", end);
  const all = buf.replay("pad", "s1", 0);
  assert.deepEqual(all.answer, { type: "control.resend_accepted", replayed_count: 3 });
  assert.deepEqual(
    all.events,
    sent.map(({ revision, ...e }) => e),
  );
  const tail = buf.replay("pad", "s1", 1);
  assert.deepEqual(
    tail.events.map((e) => [e.event_type, e.payload.seq]),
    [
      ["stroke_progress", 1],
      ["stroke_end", 2],
    ],
  );
  assert.deepEqual(buf.replay("pad", "s1", 9).answer, { type: "control.resend_accepted", replayed_count: 0 });
  assert.deepEqual(buf.replay("pad", "nope", 0).answer, { type: "control.resend_failed", reason: "unknown_stroke" });
  assert.deepEqual(buf.replay("other", "s1", 0).answer.reason, "unknown_stroke", "strokes are per widget");
  assert.deepEqual(buf.replay("pad", "s1", -1).answer.reason, "invalid_from_seq");
  assert.deepEqual(buf.replay("pad", "s1", 0.5).answer.reason, "invalid_from_seq");
  for (const m of [...all.events, all.answer]) assertNoPlayerId(m);
});

test("the resend buffer keeps the newest strokes within its bounds", () => {
  const buf = new L.ResendBuffer({ strokesMax: 3, pointsMax: 10 });
  const stroke = (id, n) => {
    buf.record("pad", "stroke_progress", { stroke_id: id, seq: 0, points: Array.from({ length: n }, () => [0, 0]) });
    buf.record("pad", "stroke_end", { stroke_id: id, seq: 1 });
  };
  for (const id of ["a", "b", "c", "d"]) stroke(id, 1);
  assert.equal(buf.replay("pad", "a", 0).answer.reason, "unknown_stroke", "the oldest went (4 > 3 strokes)");
  assert.equal(buf.replay("pad", "d", 0).answer.replayed_count, 2);
  stroke("e", 9);
  assert.deepEqual(
    buf.strokes.map((s) => s.strokeId),
    ["d", "e"],
    "points over the bound: the oldest whole strokes go",
  );
  assert.ok(buf.points <= 10);
  stroke("huge", 50);
  assert.deepEqual(
    buf.strokes.map((s) => s.strokeId),
    ["huge"],
    "the newest is kept even alone over the bound",
  );
});

test("bound values: {key} from the screen data", () => {
  const data = { score: 12, name: "Ann", zero: 0, no: false, nil: null, team: { name: "Reds" }, list: [1, 2] };
  assert.equal(L.bind("Score: {score}", data), "Score: 12");
  assert.equal(L.bind("{name} has {zero} and {no}", data), "Ann has 0 and false");
  assert.equal(L.bind("[{missing}] [{nil}]", data), "[] []");
  assert.equal(L.bind("Team {team.name}", data), "Team Reds");
  assert.equal(L.bind("{team.nope.deeper}", data), "");
  assert.equal(L.bind("{list}", data), "[1,2]");
  assert.equal(L.bind("{{score}} is {score}", data), "{score} is 12", "doubled braces are literal");
  assert.equal(L.bind("{not a key}", data), "{not a key}");
  assert.equal(L.bind(undefined, data), "");
  assert.equal(L.bind("<b>{name}</b>", { name: "<i>" }), "<b><i></b>", "text, not HTML: the page sets textContent");
});

test("update_data merges top-level keys as the relay does", () => {
  assert.deepEqual(L.mergeData({ a: 1, n: { x: 1, y: 2 } }, { n: { x: 3 }, b: null }), { a: 1, n: { x: 3 }, b: null });
});

test("the screen state: show, update_data, state, and the acknowledge for each", () => {
  const s = new L.ScreenState();
  assert.equal(s.eventRevision, undefined, "no screen yet");
  let r = s.apply({ type: "screen.state", screen_name: "lobby", data: {}, revision: 0, shown_at: 1 });
  assert.deepEqual(r, { redraw: "screen", ack: { type: "screen.acknowledge", screen: "lobby", revision: 0 } });
  assert.equal(s.eventRevision, 0);
  r = s.apply({ type: "screen.update_data", data: { score: 1 }, revision: 1 });
  assert.deepEqual(r, { redraw: "data", ack: { type: "screen.acknowledge", screen: "lobby", revision: 1 } });
  r = s.apply({ type: "screen.show", screen: "vote", data: { q: "?" }, revision: 2, shown_at: 5 });
  assert.deepEqual(r, { redraw: "screen", ack: { type: "screen.acknowledge", screen: "vote", revision: 2 } });
  assert.deepEqual(s.data, { q: "?" }, "a show replaces the data");
  r = s.apply({ type: "screen.update_data", data: { q: "!", n: 1 }, revision: 3 });
  assert.deepEqual(s.data, { q: "!", n: 1 });
  r = s.apply({ type: "screen.state", screen_name: "vote", data: { q: "!", n: 1 }, revision: 3 });
  assert.deepEqual(r, { redraw: null, ack: null }, "the answer to screen.query with nothing new");
  r = s.apply({ type: "screen.state", screen_name: "lobby", data: {}, revision: 2 });
  assert.deepEqual(r, { redraw: null, ack: null }, "an older state is not drawn");
  r = s.apply({ type: "screen.state", screen_name: "vote", data: { q: "later" }, revision: 6 });
  assert.deepEqual(r, { redraw: "data", ack: { type: "screen.acknowledge", screen: "vote", revision: 6 } });
  r = s.apply({ type: "screen.state", screen_name: "end", data: {}, revision: 7 });
  assert.equal(r.redraw, "screen");
  assert.equal(s.eventRevision, 7);
  const blank = new L.ScreenState();
  assert.deepEqual(blank.apply({ type: "screen.update_data", data: { a: 1 }, revision: 1 }), { redraw: "data", ack: null }, "no screen to acknowledge");
});

test("a flow screen's widgets", () => {
  const flow = { screens: { a: { widgets: [{ id: "x", type: "button" }, null, { type: "text" }] }, b: {} } };
  assert.deepEqual(L.widgetsOf(flow, "a"), [{ id: "x", type: "button" }]);
  assert.deepEqual(L.widgetsOf(flow, "b"), []);
  assert.deepEqual(L.widgetsOf(flow, "nope"), []);
  assert.deepEqual(L.widgetsOf(null, "a"), []);
});

test("a request's prompt and its input.response", () => {
  const text = L.promptSpec({ request_id: "r1", kind: "text", payload: { prompt: "Team name?", max_length: 5 }, timeout_ms: 3000 });
  assert.equal(text.input, "text");
  assert.equal(text.question, "Team name?");
  assert.equal(text.timeoutMs, 3000);
  assert.deepEqual(L.responseMessage(text, "Pizza Cats"), { type: "input.response", request_id: "r1", payload: { text: "Pizza" } });
  const odd = L.promptSpec({ request_id: "r2", kind: "draw_a_cat" });
  assert.equal(odd.input, "text", "an unknown kind is a text answer");
  assert.equal(odd.timeoutMs, null);
  const confirm = L.promptSpec({ request_id: "r3", kind: "confirm", payload: { question: "Ready?" } });
  assert.deepEqual(L.responseMessage(confirm, false).payload, { confirmed: false });
  const choice = L.promptSpec({ request_id: "r4", kind: "choice", payload: { choices: [{ id: "a", label: "A" }, { id: 5 }] } });
  assert.deepEqual(choice.choices, [{ id: "a", label: "A" }]);
  assert.deepEqual(L.responseMessage(choice, "a").payload, { choice_id: "a" });
  assert.equal(L.promptSpec({ request_id: "r5", kind: "choice" }).input, "text", "a choice with no choices");
  assert.deepEqual(L.responseMessage(L.promptSpec({ request_id: "r6", kind: "number" }), "4.5").payload, { value: 4.5 });
  for (const m of [L.responseMessage(text, "x"), L.responseMessage(confirm, true)]) assertNoPlayerId(m);
});

test("control events: vibrate and flash, and the ack of a tracked broadcast", () => {
  assert.deepEqual(L.controlEffect("vibrate"), { vibrate: 200 });
  assert.deepEqual(L.controlEffect("vibrate", { pattern: [100, 50, 100] }), { vibrate: [100, 50, 100] });
  assert.deepEqual(L.controlEffect("vibrate", { duration_ms: 99999 }), { vibrate: L.VIBRATE_MS_MAX });
  assert.deepEqual(L.controlEffect("vibrate", { pattern: [4000, 4000, "x"] }), { vibrate: [4000, 1000, 0] });
  assert.deepEqual(L.controlEffect("flash"), { flash: { color: "#ffffff", ms: 250 } });
  assert.deepEqual(L.controlEffect("flash", { color: "#FF0000", duration_ms: 10 }), { flash: { color: "#FF0000", ms: 50 } });
  assert.equal(L.controlEffect("flash", { color: "red; background: url(x)" }).flash.color, "#ffffff");
  assert.equal(L.controlEffect("round_start", { round: 2 }), null);
  assert.deepEqual(L.ackFor({ type: "control.event", event: "x", broadcast_id: "b1" }), { type: "control.ack", broadcast_id: "b1" });
  assert.equal(L.ackFor({ type: "control.event", event: "x" }), null);
});

test("joining: a first join, a drop and its resume, and the refusals", () => {
  const link = new L.Link(null);
  assert.equal(link.phase, L.Phase.FORM);
  assert.equal(link.closed(), null, "nothing to reconnect on the form");
  link.start("ABCD", "Ann");
  assert.deepEqual(link.opened(), { type: "session.join", code: "ABCD", protocol_version: 1, name: "Ann" });
  const { keep, resumed } = link.joined({ player_id: "p1", resume_token: "t1" });
  assert.deepEqual(keep, { code: "ABCD", player_id: "p1", resume_token: "t1" });
  assert.equal(resumed, false);
  // The socket drops: retries come quickly at first, then every 3 s.
  const delays = [];
  for (let i = 0; i < 8; i++) delays.push(link.closed().retryInMs);
  assert.deepEqual(delays, [0, 250, 500, 1000, 2000, 3000, 3000, 3000]);
  assert.equal(link.phase, L.Phase.RECONNECTING);
  assert.ok(link.wantsSocket);
  assert.deepEqual(link.opened(), {
    type: "session.join",
    code: "ABCD",
    protocol_version: 1,
    resume_player_id: "p1",
    resume_token: "t1",
  });
  assert.equal(link.joined({ player_id: "p1", resume_token: "t1" }).resumed, true);
  assert.equal(link.closed().retryInMs, 0, "a new drop starts the backoff again");
  // Back too late: the relay refuses the resume.
  const why = link.refused("player_not_found");
  assert.match(why.text, /away too long/);
  assert.equal(why.forget, true);
  assert.equal(link.resume, null);
  assert.equal(link.phase, L.Phase.FORM);
  assert.equal(link.refused("stale_input"), null, "an error about something else");
});

test("joining: a wrong code, no server, an ending, a kept player on another code", () => {
  const link = new L.Link(null);
  link.start("ZZZZ", "Bob");
  assert.match(link.refused("session_not_found").text, /No game has this code/);
  link.start("ZZZZ", "Bob");
  assert.deepEqual(link.closed(), { failed: true }, "a first join that never got an answer");
  assert.equal(link.phase, L.Phase.FORM);
  link.start("ABCD", "Bob");
  link.joined({ player_id: "p2", resume_token: "t" });
  link.ended();
  assert.equal(link.closed(), null, "no reconnect after session.ended");
  assert.equal(link.resume, null);
  assert.equal(link.wantsSocket, false);
  const kept = new L.Link({ code: "ABCD", player_id: "p2", resume_token: "t" });
  kept.start("WXYZ", "Bob");
  assert.equal(kept.opened().resume_player_id, undefined, "a kept player of another code is not resumed");
  const again = new L.Link({ code: "ABCD", player_id: "p2", resume_token: "t" });
  again.start("ABCD", "Bob");
  assert.equal(again.opened().resume_player_id, "p2");
  assert.equal(again.closed().retryInMs, 0, "a resume on load whose socket fails is retried");
  assert.match(again.refused("session_not_found").text, /over/);
  assert.equal(L.joinRefusal("rate_limited").forget, false);
  for (const reason of ["host_closed", "kicked", "timeout", "replaced", "whatever"]) assert.ok(L.endedText(reason).length > 0);
  assert.match(L.endedText("kicked", "cheating"), /removed.*cheating/);
});

test("liveness: a ping at a time, and a socket silent for SILENT_MS after one is dead", () => {
  assert.equal(L.liveness({ now: 0, lastHeardAt: 0, pingSentAt: null }), "ping");
  assert.equal(L.liveness({ now: 10000, lastHeardAt: 15, pingSentAt: 10 }), "ping", "the last ping was answered");
  assert.equal(L.liveness({ now: 10000, lastHeardAt: 5, pingSentAt: 6 }), null, "waiting for the pong");
  assert.equal(L.liveness({ now: 6 + L.SILENT_MS, lastHeardAt: 5, pingSentAt: 6 }), "dead");
  assert.equal(L.liveness({ now: 10 * 60000, lastHeardAt: 100, pingSentAt: 50 }), "ping", "a quiet game (or a late timer) is not dead");
  assert.ok(L.SILENT_MS > L.PING_MS, "a pong has a whole interval and more to come");
});
