// The controller page's logic with no DOM, no socket and no clock: what each widget
// sends, the screen state a phone keeps, the stroke resend buffer, bound values, the
// prompt of a request, what a control event does, and when to reconnect. app.js wires
// it to the page; tests/clients/play/logic.test.mjs tests it under Node. The wire
// contract is protocols/pairkit.md (the phone never sends player_id: the relay sets it).

// ---- Codes and the socket ----

/** The code alphabet: no 0/O/1/I. */
export const CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/** A code as typed (any case, spaces or dashes around) in the relay's form. */
export function normalizeCode(text) {
  return String(text ?? "")
    .replace(/[\s-]/g, "")
    .toUpperCase();
}

/** Whether a normalized code is 4 characters of the alphabet. */
export function isCode(code) {
  return typeof code === "string" && code.length === 4 && [...code].every((c) => CODE_ALPHABET.includes(c));
}

/** The code a page URL's query pre-fills (`?code=abcd` → `ABCD`), or "". */
export function codeFromQuery(search) {
  return normalizeCode(new URLSearchParams(search).get("code") ?? "").slice(0, 8);
}

/** The relay's WebSocket on the page's own origin (wss behind https). */
export function socketUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/pairkit`;
}

// ---- Messages the phone sends ----

/** `session.join`: a new player (`name`), or a resume with the id and token it was given. */
export function joinMessage({ code, name, resume }) {
  const msg = { type: "session.join", code, protocol_version: 1 };
  if (resume) {
    msg.resume_player_id = resume.player_id;
    msg.resume_token = resume.resume_token;
  } else if (name) {
    msg.name = name;
  }
  return msg;
}

/** `input.widget_event`; `revision` (the screen's, so the relay can tell stale input) is
 * left out when the phone has no screen. */
export function widgetEvent(widgetId, eventType, payload, revision) {
  const msg = { type: "input.widget_event", widget_id: widgetId, event_type: eventType, payload };
  if (Number.isInteger(revision) && revision >= 0) msg.revision = revision;
  return msg;
}

/** A button's `press` / `release` (the payload is an object; nothing more to say). */
export function buttonEvent(widgetId, pressed, revision) {
  return widgetEvent(widgetId, pressed ? "press" : "release", {}, revision);
}

/** A choice list's `select`. */
export function choiceEvent(widgetId, choiceId, revision) {
  return widgetEvent(widgetId, "select", { choice_id: choiceId }, revision);
}

/** A joystick's `move`. */
export function joystickEvent(widgetId, vector, revision) {
  return widgetEvent(widgetId, "move", { x: vector.x, y: vector.y }, revision);
}

// ---- Buttons: several fingers at once ----

/** Which pointers hold a button down: it is pressed by the first and released by the
 * last, so two fingers (or a finger sliding off and another landing) never send a
 * release while one still holds it. `down` / `up` answer the event to send, or null. */
export class PressTracker {
  constructor() {
    this.pointers = new Set();
  }
  down(pointerId) {
    const first = this.pointers.size === 0;
    this.pointers.add(pointerId);
    return first ? "press" : null;
  }
  up(pointerId) {
    if (!this.pointers.delete(pointerId)) return null;
    return this.pointers.size === 0 ? "release" : null;
  }
  /** Every pointer let go at once (the screen changed, the socket dropped). */
  reset() {
    const held = this.pointers.size > 0;
    this.pointers.clear();
    return held ? "release" : null;
  }
  get pressed() {
    return this.pointers.size > 0;
  }
}

// ---- Joystick ----

/** A joystick sends at most this many `move`s a second. */
export const JOYSTICK_EVENTS_PER_S = 30;

/** Rounds to `places` decimals, and -0 to 0. */
export function round(x, places) {
  const f = 10 ** places;
  const r = Math.round(x * f) / f;
  return r === 0 ? 0 : r;
}

/** The stick's position from the finger's offset to the pad's centre (screen pixels, y
 * down) and the pad's radius: `x` right and `y` **up** in [-1, 1] (like a gamepad stick in
 * a game engine), clamped to the unit circle, 3 decimals. */
export function joystickVector(dx, dy, radius) {
  if (!(radius > 0)) return { x: 0, y: 0 };
  let x = dx / radius;
  let y = -dy / radius;
  const len = Math.hypot(x, y);
  if (len > 1) {
    x /= len;
    y /= len;
  }
  const clamp = (v) => Math.max(-1, Math.min(1, round(v, 3)));
  return { x: clamp(x), y: clamp(y) };
}

/** At most one value per `intervalMs`, and never the same value twice in a row; the last
 * value offered inside an interval is kept and sent when it ends (so the final position,
 * the centre on release, always goes out). Time is a parameter. */
export class Throttle {
  constructor(intervalMs, same = (a, b) => JSON.stringify(a) === JSON.stringify(b)) {
    this.intervalMs = intervalMs;
    this.same = same;
    this.lastSentAt = -Infinity;
    this.lastSent = undefined;
    this.pending = undefined;
  }
  /** A new value: returns it if it may go now, else keeps it and returns undefined. */
  offer(value, now) {
    if (this.lastSent !== undefined && this.same(value, this.lastSent)) {
      this.pending = undefined;
      return undefined;
    }
    if (now - this.lastSentAt >= this.intervalMs) return this.sent(value, now);
    this.pending = value;
    return undefined;
  }
  /** When the kept value may go (a timer for app.js), or null when none is kept. */
  dueAt() {
    return this.pending === undefined ? null : this.lastSentAt + this.intervalMs;
  }
  /** The kept value if its time has come. */
  poll(now) {
    if (this.pending === undefined || now < this.dueAt()) return undefined;
    const value = this.pending;
    this.pending = undefined;
    return this.sent(value, now);
  }
  /** Forgets what was sent (a new screen or socket: the next value goes at once). */
  reset() {
    this.lastSentAt = -Infinity;
    this.lastSent = undefined;
    this.pending = undefined;
  }
  sent(value, now) {
    this.lastSentAt = now;
    this.lastSent = value;
    return value;
  }
}

// ---- Drawing canvas ----

/** A point of the canvas as fractions of its width and height from its top-left corner,
 * clamped to [0, 1], 4 decimals (a tenth of a pixel on a 1000-pixel canvas). */
export function canvasPoint(clientX, clientY, rect) {
  const f = (v, lo, size) => (size > 0 ? Math.max(0, Math.min(1, round((v - lo) / size, 4))) : 0);
  return [f(clientX, rect.left, rect.width), f(clientY, rect.top, rect.height)];
}

/** A `stroke_progress` carries at most this many points (each about 16 bytes of JSON:
 * 4 KiB a message, far below the relay's 64 KiB). */
export const STROKE_POINTS_MAX = 256;
/** A stroke's points go out at most this often (20 messages a second while drawing). */
export const STROKE_FLUSH_MS = 50;

/** One stroke being drawn: its points are batched into `stroke_progress {stroke_id, seq,
 * points}` with `seq` 0, 1, 2…; `stroke_end {stroke_id, seq}` carries the next seq, so
 * it also says how many progress messages the stroke had. */
export class Stroke {
  constructor(strokeId) {
    this.id = strokeId;
    this.seq = 0;
    this.pending = [];
    this.ended = false;
  }
  /** Adds a point; returns a full batch's payload when it reaches STROKE_POINTS_MAX. */
  add(point) {
    const last = this.pending[this.pending.length - 1];
    if (last && last[0] === point[0] && last[1] === point[1]) return null;
    this.pending.push(point);
    return this.pending.length >= STROKE_POINTS_MAX ? this.flush() : null;
  }
  /** The points gathered so far as a `stroke_progress` payload, or null when none. */
  flush() {
    if (this.pending.length === 0) return null;
    const payload = { stroke_id: this.id, seq: this.seq++, points: this.pending };
    this.pending = [];
    return payload;
  }
  /** The last batch (if any) and the `stroke_end` payload. */
  end() {
    const last = this.flush();
    this.ended = true;
    return { last, end: { stroke_id: this.id, seq: this.seq } };
  }
}

/** Stroke ids: a random prefix per page load (two tabs of one player never collide) and a
 * counter. */
export function strokeIds(random = Math.random) {
  const prefix = Math.floor(random() * 36 ** 6)
    .toString(36)
    .padStart(6, "0");
  let n = 0;
  return () => `${prefix}-${++n}`;
}

/** The strokes a phone keeps so it can answer `control.resend_request {widget_id,
 * stroke_id, from_seq}`: the most recent `strokesMax` strokes and at most `pointsMax`
 * points (the oldest whole stroke goes first; the newest is always kept). What is
 * replayed is the events as first sent, without `revision` (a replay answers the host;
 * it is not fresh input, and must not be refused as stale after a screen change). */
export class ResendBuffer {
  constructor({ strokesMax = 32, pointsMax = 20000 } = {}) {
    this.strokesMax = strokesMax;
    this.pointsMax = pointsMax;
    this.strokes = []; // {widgetId, strokeId, events: [{seq, event_type, payload}], points}
    this.points = 0;
  }
  /** Keeps an event a canvas sent (`stroke_progress` or `stroke_end`). */
  record(widgetId, eventType, payload) {
    let stroke = this.find(widgetId, payload.stroke_id);
    if (!stroke) {
      stroke = { widgetId, strokeId: payload.stroke_id, events: [], points: 0 };
      this.strokes.push(stroke);
    }
    const points = Array.isArray(payload.points) ? payload.points.length : 0;
    stroke.events.push({ seq: payload.seq, event_type: eventType, payload });
    stroke.points += points;
    this.points += points;
    this.evict();
  }
  find(widgetId, strokeId) {
    return this.strokes.find((s) => s.widgetId === widgetId && s.strokeId === strokeId);
  }
  evict() {
    while (this.strokes.length > 1 && (this.strokes.length > this.strokesMax || this.points > this.pointsMax)) {
      const gone = this.strokes.shift();
      this.points -= gone.points;
    }
  }
  /** The answer to a resend request: the events to send again (each an
   * `input.widget_event`) and `control.resend_accepted {replayed_count}` after them, or
   * `control.resend_failed {reason}` when the stroke is not kept (`unknown_stroke`: never
   * drawn here, or dropped from the buffer) or `from_seq` is not a seq ≥ 0. */
  replay(widgetId, strokeId, fromSeq) {
    if (!Number.isInteger(fromSeq) || fromSeq < 0) {
      return { events: [], answer: { type: "control.resend_failed", reason: "invalid_from_seq" } };
    }
    const stroke = this.find(widgetId, strokeId);
    if (!stroke) {
      return { events: [], answer: { type: "control.resend_failed", reason: "unknown_stroke" } };
    }
    const events = stroke.events
      .filter((e) => e.seq >= fromSeq)
      .map((e) => widgetEvent(widgetId, e.event_type, e.payload));
    return { events, answer: { type: "control.resend_accepted", replayed_count: events.length } };
  }
}

// ---- Screens and bound values ----

/** `{key}` in a widget's text replaced by the screen data's value (`{a.b}` reads a nested
 * object); a missing key or `null` reads as empty. `{{` and `}}` are literal braces. */
export function bind(template, data) {
  if (typeof template !== "string") return "";
  return template.replace(/\{\{|\}\}|\{([A-Za-z0-9_.-]+)\}/g, (whole, key) => {
    if (whole === "{{") return "{";
    if (whole === "}}") return "}";
    let value = data;
    for (const part of key.split(".")) {
      value = value !== null && typeof value === "object" ? value[part] : undefined;
    }
    if (value === undefined || value === null) return "";
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  });
}

/** `screen.update_data`'s patch on the data: top-level keys replaced (nested objects are
 * not merged, `null` is kept as a value), as the relay merges it. */
export function mergeData(data, patch) {
  return { ...data, ...patch };
}

/** The screen a phone shows: its name, data and revision. `apply` takes `screen.show`,
 * `screen.update_data`, `screen.state` (the answer to `screen.query`) and
 * `session.joined.screen` (`{screen_name, data, revision}`), and says what to redraw
 * (`"screen"`: the widgets, `"data"`: bound values only, null: nothing) and the
 * `screen.acknowledge` to send once it is drawn. */
export class ScreenState {
  constructor() {
    this.name = null;
    this.data = {};
    this.revision = -1;
  }
  apply(msg) {
    const revision = Number.isInteger(msg.revision) ? msg.revision : this.revision + 1;
    let redraw;
    if (msg.type === "screen.show") {
      redraw = "screen";
      this.name = msg.screen;
      this.data = { ...(msg.data ?? {}) };
    } else if (msg.type === "screen.update_data") {
      redraw = "data";
      this.data = mergeData(this.data, msg.data ?? {});
    } else {
      // A whole state: screen.state or session.joined.screen.
      if (revision < this.revision) return { redraw: null, ack: null };
      const name = msg.screen_name ?? null;
      if (revision === this.revision && name === this.name) return { redraw: null, ack: null };
      redraw = name === this.name ? "data" : "screen";
      this.name = name;
      this.data = { ...(msg.data ?? {}) };
    }
    this.revision = Math.max(this.revision, revision);
    const ack = this.name === null ? null : { type: "screen.acknowledge", screen: this.name, revision: this.revision };
    return { redraw, ack };
  }
  /** The revision widget events carry (none before the first screen). */
  get eventRevision() {
    return this.revision >= 0 ? this.revision : undefined;
  }
}

/** A flow screen's widgets (an empty list for a screen the flow does not name, or no
 * flow). */
export function widgetsOf(flow, screenName) {
  const screen = flow?.screens?.[screenName];
  return Array.isArray(screen?.widgets) ? screen.widgets.filter((w) => w && typeof w.id === "string") : [];
}

// ---- Requests ----

/** What the prompt of a `control.request {request_id, kind, payload?, timeout_ms?}`
 * shows. `kind`: `text` (the default for an unknown kind), `number`, `confirm` (yes / no)
 * or `choice` (`payload.choices: [{id, label}]`); `payload.prompt` (or `question`,
 * `title`) is the question, `payload.placeholder` and `payload.max_length` shape a text
 * field. */
export function promptSpec(request) {
  const p = request.payload && typeof request.payload === "object" ? request.payload : {};
  const choices = Array.isArray(p.choices)
    ? p.choices.filter((c) => c && typeof c.id === "string").map((c) => ({ id: c.id, label: String(c.label ?? c.id) }))
    : [];
  let input = ["text", "number", "confirm", "choice"].includes(request.kind) ? request.kind : "text";
  if (input === "choice" && choices.length === 0) input = "text";
  const maxLength = Number.isInteger(p.max_length) && p.max_length > 0 ? Math.min(p.max_length, 1000) : 200;
  return {
    requestId: request.request_id,
    input,
    question: String(p.prompt ?? p.question ?? p.title ?? (input === "confirm" ? "Are you sure?" : "Your answer")),
    placeholder: typeof p.placeholder === "string" ? p.placeholder : "",
    maxLength,
    choices,
    timeoutMs: Number.isInteger(request.timeout_ms) ? request.timeout_ms : null,
  };
}

/** `input.response` for a prompt's answer: `{text}`, `{value}` (a number), `{confirmed}`
 * or `{choice_id}`. */
export function responseMessage(spec, answer) {
  let payload;
  switch (spec.input) {
    case "number":
      payload = { value: Number(answer) };
      break;
    case "confirm":
      payload = { confirmed: Boolean(answer) };
      break;
    case "choice":
      payload = { choice_id: String(answer) };
      break;
    default:
      payload = { text: String(answer ?? "").slice(0, spec.maxLength) };
  }
  return { type: "input.response", request_id: spec.requestId, payload };
}

// ---- Control events ----

/** A vibration's total length is capped at this. */
export const VIBRATE_MS_MAX = 5000;

/** What `control.event {event, payload}` does on the phone: `vibrate` (`payload.pattern`,
 * ms or an array of on/off ms, or `payload.duration_ms`; default 200) and `flash`
 * (`payload.color` `#rrggbb`, default white; `payload.duration_ms`, default 250, 50–2000).
 * Any other event does nothing visible (a tracked one is acked all the same). */
export function controlEffect(event, payload) {
  const p = payload && typeof payload === "object" ? payload : {};
  if (event === "vibrate") {
    let pattern = p.pattern ?? p.duration_ms ?? 200;
    if (!Array.isArray(pattern)) pattern = [pattern];
    let total = 0;
    const clean = [];
    for (const ms of pattern) {
      const v = Math.max(0, Math.min(VIBRATE_MS_MAX - total, Math.round(Number(ms) || 0)));
      clean.push(v);
      total += v;
    }
    return { vibrate: clean.length === 1 ? clean[0] : clean };
  }
  if (event === "flash") {
    const color = typeof p.color === "string" && /^#[0-9a-fA-F]{6}$/.test(p.color) ? p.color : "#ffffff";
    const ms = Number.isFinite(p.duration_ms) ? Math.max(50, Math.min(2000, p.duration_ms)) : 250;
    return { flash: { color, ms } };
  }
  return null;
}

/** `control.ack {broadcast_id}` for a tracked broadcast, else null. */
export function ackFor(msg) {
  return typeof msg.broadcast_id === "string" ? { type: "control.ack", broadcast_id: msg.broadcast_id } : null;
}

// ---- Joining, endings and reconnecting ----

/** What the page says for each refusal of a join, and whether a kept resume is dropped. */
export function joinRefusal(code, resuming) {
  switch (code) {
    case "invalid_code":
      return { text: "That is not a game code: it is 4 letters and digits, as shown on the big screen.", forget: true };
    case "session_not_found":
      return resuming
        ? { text: "That game is over.", forget: true }
        : { text: "No game has this code. Check the code on the big screen.", forget: true };
    case "player_not_found":
      return { text: "You were away too long and lost your place. Join again to play as a new player.", forget: true };
    case "session_full":
      return { text: "This game is full.", forget: true };
    case "rate_limited":
      return { text: "Too many wrong codes from this network. Wait a minute, then try again.", forget: false };
    case "protocol_version_mismatch":
      return { text: "This page does not match the server. Reload the page.", forget: false };
    default:
      return { text: `The server refused to join (${code}).`, forget: false };
  }
}

/** What the page says when the relay ends the phone's part (`session.ended {reason}`). */
export function endedText(reason, message) {
  const base =
    {
      host_closed: "The game has ended.",
      kicked: "You were removed from the game.",
      timeout: "The game session expired.",
      replaced: "This player is now playing from another tab or device.",
    }[reason] ?? "The game has ended.";
  return message ? `${base} “${message}”` : base;
}

/** Waits between reconnect attempts: quick at first (a Wi-Fi hand-over takes a moment),
 * then every 3 s for as long as the page is open (the relay answers `player_not_found`
 * once its grace window is over, and the page says so). */
export const RETRY_MS = [0, 250, 500, 1000, 2000, 3000];

/** The wait before reconnect attempt `attempt` (0-based). */
export function retryDelay(attempt) {
  return RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
}

/** While joined the phone checks its socket this often, with `system.ping`: a socket
 * that has received nothing, not even the pong, for `SILENT_MS` after a ping is taken as
 * dead (a half-open TCP connection after a network change can look open for minutes). */
export const PING_MS = 10000;
export const SILENT_MS = 15000;

/** Each liveness check: `"ping"` to send one, `"dead"` when the last ping has gone
 * unanswered (nothing at all heard since) for `SILENT_MS`, null to keep waiting. Measured
 * from the ping, not from the last message: a hidden tab's timers run late, and a quiet
 * game is not a dead socket. */
export function liveness({ now, lastHeardAt, pingSentAt }) {
  if (pingSentAt !== null && lastHeardAt < pingSentAt) return now - pingSentAt >= SILENT_MS ? "dead" : null;
  return "ping";
}

/** Where the page is in joining a party. */
export const Phase = Object.freeze({
  FORM: "form", // asking for a code and a name
  JOINING: "joining", // socket open or opening, session.join sent
  JOINED: "joined",
  RECONNECTING: "reconnecting", // the socket dropped; resuming
  ENDED: "ended", // the relay ended it, or the player left: no reconnect
});

/** The join state machine: pure decisions, each returning what to do next. */
export class Link {
  constructor(resume = null) {
    this.phase = Phase.FORM;
    this.resume = resume; // {code, player_id, resume_token}
    this.code = resume?.code ?? null;
    this.name = null;
    this.attempt = 0;
  }
  /** The player asked to join (or the page resumes a kept player on load). */
  start(code, name) {
    this.code = code;
    this.name = name;
    if (this.resume && this.resume.code !== code) this.resume = null;
    this.phase = Phase.JOINING;
    this.attempt = 0;
  }
  /** The socket opened: the message to send. */
  opened() {
    return joinMessage({ code: this.code, name: this.name, resume: this.resume });
  }
  /** `session.joined`: what to keep (in sessionStorage) for a resume. */
  joined(msg) {
    const resuming = this.phase === Phase.RECONNECTING || Boolean(this.resume);
    this.phase = Phase.JOINED;
    this.attempt = 0;
    this.resume = { code: this.code, player_id: msg.player_id, resume_token: msg.resume_token };
    return { keep: this.resume, resumed: resuming };
  }
  /** A `system.error` while joining: `{text, forget}` for the page (and the phase is the
   * form again), or null when the phone is not joining (an error about something else). */
  refused(code) {
    if (this.phase !== Phase.JOINING && this.phase !== Phase.RECONNECTING) return null;
    const why = joinRefusal(code, Boolean(this.resume));
    if (why.forget) this.resume = null;
    this.phase = Phase.FORM;
    return why;
  }
  /** `session.ended`, or the player left: nothing is resumed any more. */
  ended() {
    this.phase = Phase.ENDED;
    this.resume = null;
  }
  /** The socket closed: `{retryInMs}` to reconnect (a joined player, or one being
   * resumed), `{failed: true}` when a first join got no answer (back to the form), or
   * null when nothing was going on (the form, an ending). */
  closed() {
    if (this.phase === Phase.JOINED || this.phase === Phase.RECONNECTING || (this.phase === Phase.JOINING && this.resume)) {
      this.phase = Phase.RECONNECTING;
      return { retryInMs: retryDelay(this.attempt++) };
    }
    if (this.phase === Phase.JOINING) {
      this.phase = Phase.FORM;
      return { failed: true };
    }
    return null;
  }
  /** Whether the page should be connected now (joining, joined or resuming). */
  get wantsSocket() {
    return this.phase === Phase.JOINING || this.phase === Phase.JOINED || this.phase === Phase.RECONNECTING;
  }
}
