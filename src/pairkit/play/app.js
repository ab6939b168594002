// The controller page: the DOM and the socket. Every decision that needs no DOM
// (message shapes, throttling, the screen state, the resend buffer, reconnecting) is in
// logic.mjs; this file draws, listens and sends. Served by huddle at /play.

import * as L from "./logic.mjs";

const $ = (id) => document.getElementById(id);
const RESUME_KEY = "pairkit.resume"; // sessionStorage: this tab's player, for resuming
const NAME_KEY = "pairkit.name"; // localStorage: the name typed last time

const store = {
  resume() {
    try {
      const r = JSON.parse(sessionStorage.getItem(RESUME_KEY));
      return r && typeof r.player_id === "string" && typeof r.resume_token === "string" ? r : null;
    } catch {
      return null;
    }
  },
  keep(resume) {
    try {
      sessionStorage.setItem(RESUME_KEY, JSON.stringify(resume));
    } catch {
      // Private mode without storage: resuming after a reload will not work; a drop still does.
    }
  },
  forget() {
    try {
      sessionStorage.removeItem(RESUME_KEY);
    } catch {}
  },
  name() {
    try {
      return localStorage.getItem(NAME_KEY) ?? "";
    } catch {
      return "";
    }
  },
  setName(name) {
    try {
      localStorage.setItem(NAME_KEY, name);
    } catch {}
  },
};

const app = {
  link: new L.Link(store.resume()),
  ws: null,
  flow: null,
  playerId: null,
  screen: new L.ScreenState(),
  widgets: [], // the current screen's widgets: {el, rebind(data), teardown()}
  buffer: new L.ResendBuffer(),
  nextStrokeId: L.strokeIds(),
  prompt: null, // the open request's prompt spec
  promptTimer: null,
  retryTimer: null,
  pingTimer: null,
  pingSentAt: null,
  lastHeardAt: 0,
};

// ---- The socket ----

function send(msg) {
  if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(msg));
}

function connect() {
  clearTimeout(app.retryTimer);
  app.retryTimer = null;
  if (app.ws) return;
  const ws = new WebSocket(L.socketUrl(location));
  app.ws = ws;
  ws.onopen = () => {
    app.lastHeardAt = Date.now();
    send(app.link.opened());
  };
  ws.onmessage = (e) => {
    if (app.ws !== ws) return;
    app.lastHeardAt = Date.now();
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      return;
    }
    if (msg && typeof msg.type === "string") handle(msg);
  };
  ws.onclose = () => {
    if (app.ws === ws) socketGone();
  };
}

/** Stops listening to the socket and closes it (the page moves on without it). */
function abandonSocket() {
  const ws = app.ws;
  app.ws = null;
  stopPing();
  if (ws) {
    ws.onopen = ws.onmessage = ws.onclose = null;
    try {
      ws.close();
    } catch {}
  }
}

/** The socket is gone without an ending: resume, or back to the form. */
function socketGone() {
  abandonSocket();
  closePrompt(); // the relay ended the open request (player_disconnected)
  for (const w of app.widgets) w.reset?.();
  const next = app.link.closed();
  render();
  if (!next) return;
  if (next.failed) {
    return showJoin("Could not reach the game server. Check the Wi-Fi and try again.");
  }
  setBanner("Connection lost. Reconnecting…");
  if (!document.hidden) app.retryTimer = setTimeout(connect, next.retryInMs);
}

function startPing() {
  stopPing();
  app.pingSentAt = null;
  app.pingTimer = setInterval(() => {
    const now = Date.now();
    const check = L.liveness({ now, lastHeardAt: app.lastHeardAt, pingSentAt: app.pingSentAt });
    if (check === "dead") return socketGone();
    if (check === "ping") {
      app.pingSentAt = now;
      send({ type: "system.ping", sent_at: now });
    }
  }, L.PING_MS);
}

function stopPing() {
  clearInterval(app.pingTimer);
  app.pingTimer = null;
}

// Back in view or back online: reconnect at once rather than at the next retry.
function reconnectNow() {
  if (app.link.wantsSocket && !app.ws && !document.hidden) connect();
}
document.addEventListener("visibilitychange", reconnectNow);
window.addEventListener("online", reconnectNow);

// ---- Messages from the relay ----

function handle(msg) {
  switch (msg.type) {
    case "session.joined":
      return joined(msg);
    case "system.error":
      return refused(msg);
    case "session.ended":
      return ended(msg);
    case "screen.show":
    case "screen.update_data":
    case "screen.state":
      return applyScreen(msg);
    case "control.event":
      return controlEvent(msg);
    case "control.request":
      return openPrompt(msg);
    case "control.request_cancel":
      if (app.prompt && app.prompt.requestId === msg.request_id) closePrompt();
      return;
    case "control.resend_request":
      return resend(msg);
    default:
      return; // system.pong, and anything newer than this page
  }
}

function joined(msg) {
  const { keep, resumed } = app.link.joined(msg);
  store.keep(keep);
  if (!resumed || msg.player_id !== app.playerId) {
    app.screen = new L.ScreenState();
    app.widgets = [];
    $("screen").replaceChildren();
  }
  app.playerId = msg.player_id;
  if (msg.flow) app.flow = msg.flow;
  setBanner(null);
  render();
  const { redraw, ack } = msg.screen ? app.screen.apply({ type: "screen.state", ...msg.screen }) : {};
  if (redraw === "screen" || $("screen").childElementCount === 0) drawScreen();
  else if (redraw === "data") rebind();
  // Acknowledged on every join, a resume included: the host learns the phone shows it.
  if (app.screen.name !== null) send(ack ?? { type: "screen.acknowledge", screen: app.screen.name, revision: app.screen.revision });
  if (resumed) send({ type: "screen.query" });
  startPing();
}

function refused(msg) {
  const why = app.link.refused(msg.code);
  if (why) {
    if (why.forget) store.forget();
    abandonSocket();
    return showJoin(why.text);
  }
  if (msg.code === "request_cancelled") closePrompt();
  // Input sent just as a new screen came is stale, and dropped: as it should be.
  else if (msg.code !== "stale_input") console.warn("pairkit:", msg.code, msg.message);
}

function ended(msg) {
  app.link.ended();
  store.forget();
  abandonSocket();
  closePrompt();
  showNotice("Game over", L.endedText(msg.reason, msg.message));
}

// ---- Screens ----

function applyScreen(msg) {
  const { redraw, ack } = app.screen.apply(msg);
  if (redraw === "screen") drawScreen();
  else if (redraw === "data") rebind();
  if (ack) send(ack);
}

function drawScreen() {
  for (const w of app.widgets) w.teardown?.();
  app.widgets = [];
  const root = $("screen");
  root.replaceChildren();
  const name = app.screen.name;
  const title = app.flow?.screens?.[name]?.title;
  if (typeof title === "string") {
    const h = el("h2", "w-title");
    app.widgets.push({ el: h, rebind: (data) => (h.textContent = L.bind(title, data)) });
    root.append(h);
  }
  for (const spec of L.widgetsOf(app.flow, name)) {
    const widget = makeWidget(spec);
    app.widgets.push(widget);
    root.append(widget.el);
  }
  if (app.widgets.length === 0) {
    const p = el("p", "w-text waiting");
    p.textContent = "You’re in! Watch the big screen.";
    root.append(p);
  }
  rebind();
}

function rebind() {
  const root = $("screen");
  root.dataset.screen = app.screen.name ?? "";
  root.dataset.revision = String(app.screen.revision);
  for (const w of app.widgets) w.rebind?.(app.screen.data);
}

function el(tag, className) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  return e;
}

/** The revision widget events carry while their screen shows. An event sent as a widget
 * is taken down (a release, the stick back to the centre, the end of a stroke) carries
 * none: it must reach the host although the new screen made the old revision stale. */
const rev = () => app.screen.eventRevision;

function makeWidget(spec) {
  const make = {
    text: textWidget,
    image: imageWidget,
    button: buttonWidget,
    joystick: joystickWidget,
    choice_list: choiceWidget,
    drawing_canvas: canvasWidget,
  }[spec.type];
  const widget = make ? make(spec) : unknownWidget(spec);
  widget.el.dataset.widget = spec.id;
  return widget;
}

function textWidget(spec) {
  const p = el("p", `w-text ${spec.size === "large" ? "large" : spec.size === "small" ? "small" : ""}`);
  return { el: p, rebind: (data) => (p.textContent = L.bind(spec.text ?? spec.label ?? "", data)) };
}

function imageWidget(spec) {
  const img = el("img", "w-image");
  img.decoding = "async";
  return {
    el: img,
    rebind(data) {
      const src = L.bind(spec.src ?? "", data);
      if (img.getAttribute("src") !== src) img.src = src;
      img.alt = L.bind(spec.alt ?? "", data);
    },
  };
}

function unknownWidget(spec) {
  const p = el("p", "w-text small muted");
  p.textContent = `(this controller has no “${spec.type}” widget)`;
  return { el: p };
}

/** Pointer events (touch, pen, mouse alike) with each pointer captured by the widget it
 * went down on, so a finger sliding off still releases it; several fingers work at once,
 * each widget tracking its own. */
function onPointers(target, { down, move, up }) {
  target.addEventListener("pointerdown", (e) => {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    e.preventDefault();
    try {
      target.setPointerCapture(e.pointerId);
    } catch {}
    down(e);
  });
  if (move) target.addEventListener("pointermove", move);
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) target.addEventListener(type, up);
  target.addEventListener("contextmenu", (e) => e.preventDefault());
}

function buttonWidget(spec) {
  const b = el("button", "w-button");
  b.type = "button";
  const held = new L.PressTracker();
  const apply = (event, revision) => {
    if (!event) return;
    b.classList.toggle("down", held.pressed);
    b.setAttribute("aria-pressed", String(held.pressed));
    send(L.buttonEvent(spec.id, event === "press", revision));
  };
  onPointers(b, {
    down: (e) => apply(held.down(e.pointerId), rev()),
    up: (e) => apply(held.up(e.pointerId), rev()),
  });
  b.addEventListener("keydown", (e) => {
    if ((e.key === "Enter" || e.key === " ") && !e.repeat) {
      e.preventDefault();
      apply(held.down("key"), rev());
    }
  });
  b.addEventListener("keyup", (e) => {
    if (e.key === "Enter" || e.key === " ") apply(held.up("key"), rev());
  });
  b.addEventListener("blur", () => apply(held.up("key"), rev()));
  return {
    el: b,
    rebind(data) {
      b.textContent = L.bind(spec.label ?? spec.id, data);
      if (typeof spec.color === "string" && /^#[0-9a-fA-F]{6}$/.test(spec.color)) b.style.backgroundColor = spec.color;
    },
    reset: () => {
      held.reset();
      b.classList.remove("down");
    },
    teardown: () => apply(held.reset(), undefined),
  };
}

function joystickWidget(spec) {
  const wrap = el("div", "w-joystick-wrap");
  const caption = el("p", "w-caption");
  const pad = el("div", "w-joystick");
  const knob = el("div", "knob");
  pad.append(knob);
  pad.tabIndex = 0;
  pad.setAttribute("role", "application");
  wrap.append(caption, pad);
  const throttle = new L.Throttle(1000 / L.JOYSTICK_EVENTS_PER_S);
  let finger = null;
  let timer = null;
  let keys = { x: 0, y: 0 };
  const out = (v, revision) => v && send(L.joystickEvent(spec.id, v, revision));
  const schedule = () => {
    clearTimeout(timer);
    const due = throttle.dueAt();
    if (due === null) return;
    timer = setTimeout(() => {
      out(throttle.poll(performance.now()), rev());
      schedule();
    }, Math.max(0, due - performance.now()));
  };
  const offer = (v) => {
    const r = travel();
    knob.style.transform = `translate(${v.x * r}px, ${-v.y * r}px)`;
    out(throttle.offer(v, performance.now()), rev());
    schedule();
  };
  // The knob's centre travels 0.6 of the pad's radius (the knob is 0.4 of its width):
  // that far from the centre is full deflection.
  const travel = () => (pad.clientWidth / 2) * 0.6;
  const at = (e) => {
    const box = pad.getBoundingClientRect();
    return L.joystickVector(e.clientX - (box.left + box.width / 2), e.clientY - (box.top + box.height / 2), travel());
  };
  onPointers(pad, {
    down: (e) => {
      if (finger !== null) return;
      finger = e.pointerId;
      pad.classList.add("down");
      offer(at(e));
    },
    move: (e) => {
      if (e.pointerId === finger) offer(at(e));
    },
    up: (e) => {
      if (e.pointerId !== finger) return;
      finger = null;
      pad.classList.remove("down");
      offer({ x: 0, y: 0 });
    },
  });
  const arrows = { ArrowLeft: ["x", -1], ArrowRight: ["x", 1], ArrowUp: ["y", 1], ArrowDown: ["y", -1] };
  pad.addEventListener("keydown", (e) => {
    const a = arrows[e.key];
    if (!a) return;
    e.preventDefault();
    keys = { ...keys, [a[0]]: a[1] };
    offer(keys);
  });
  pad.addEventListener("keyup", (e) => {
    const a = arrows[e.key];
    if (!a) return;
    keys = { ...keys, [a[0]]: 0 };
    offer(keys);
  });
  const centre = () => {
    finger = null;
    keys = { x: 0, y: 0 };
    clearTimeout(timer);
    knob.style.transform = "";
    pad.classList.remove("down");
  };
  return {
    el: wrap,
    rebind(data) {
      caption.textContent = L.bind(spec.label ?? "", data);
      pad.setAttribute("aria-label", caption.textContent || "Joystick: drag, or use the arrow keys");
    },
    reset: () => {
      centre();
      throttle.reset();
    },
    teardown: () => {
      const moved = throttle.lastSent && (throttle.lastSent.x !== 0 || throttle.lastSent.y !== 0);
      centre();
      if (moved) out({ x: 0, y: 0 }, undefined);
    },
  };
}

function choiceWidget(spec) {
  const group = el("div", "w-choices");
  group.setAttribute("role", "group");
  const caption = el("p", "w-caption");
  group.append(caption);
  const buttons = [];
  const choices = (Array.isArray(spec.choices) ? spec.choices : []).filter((c) => c && typeof c.id === "string");
  for (const c of choices) {
    const b = el("button", "w-choice");
    b.type = "button";
    b.dataset.choice = c.id;
    b.setAttribute("aria-pressed", "false");
    b.addEventListener("click", () => {
      for (const other of buttons) other.setAttribute("aria-pressed", String(other === b));
      send(L.choiceEvent(spec.id, c.id, rev()));
    });
    buttons.push(b);
    group.append(b);
  }
  return {
    el: group,
    rebind(data) {
      caption.textContent = L.bind(spec.label ?? spec.prompt ?? "", data);
      group.setAttribute("aria-label", caption.textContent || "Choices");
      buttons.forEach((b, i) => (b.textContent = L.bind(String(choices[i].label ?? choices[i].id), data)));
    },
  };
}

function canvasWidget(spec) {
  const wrap = el("div", "w-canvas-wrap");
  const caption = el("p", "w-caption");
  const canvas = el("canvas", "w-canvas");
  canvas.setAttribute("role", "img");
  wrap.append(caption, canvas);
  const drawn = []; // this screen's strokes, as fractions, to redraw after a resize
  let stroke = null;
  let finger = null;
  let flushTimer = null;
  let points = null;
  const ctx = canvas.getContext("2d");
  const emit = (type, payload, revision) => {
    if (!payload) return;
    app.buffer.record(spec.id, type, payload);
    send(L.widgetEvent(spec.id, type, payload, revision));
  };
  const paint = () => {
    const ratio = window.devicePixelRatio || 1;
    const w = Math.round(canvas.clientWidth * ratio);
    const h = Math.round(canvas.clientHeight * ratio);
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    ctx.clearRect(0, 0, w, h);
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = 4 * ratio;
    ctx.strokeStyle = "#111827";
    for (const line of drawn) {
      ctx.beginPath();
      line.forEach(([x, y], i) => (i ? ctx.lineTo(x * w, y * h) : ctx.moveTo(x * w, y * h)));
      if (line.length === 1) ctx.lineTo(line[0][0] * w + 0.5, line[0][1] * h);
      ctx.stroke();
    }
  };
  const add = (e) => {
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    const box = canvas.getBoundingClientRect();
    for (const one of events.length ? events : [e]) {
      const p = L.canvasPoint(one.clientX, one.clientY, box);
      points.push(p);
      emit("stroke_progress", stroke.add(p), rev());
    }
    paint();
  };
  const finish = (revision) => {
    if (!stroke) return;
    clearInterval(flushTimer);
    const { last, end } = stroke.end();
    emit("stroke_progress", last, revision);
    emit("stroke_end", end, revision);
    stroke = null;
    finger = null;
  };
  onPointers(canvas, {
    down: (e) => {
      if (finger !== null) return;
      finger = e.pointerId;
      stroke = new L.Stroke(app.nextStrokeId());
      points = [];
      drawn.push(points);
      add(e);
      flushTimer = setInterval(() => emit("stroke_progress", stroke?.flush(), rev()), L.STROKE_FLUSH_MS);
    },
    move: (e) => {
      if (e.pointerId === finger && stroke) add(e);
    },
    up: (e) => {
      if (e.pointerId !== finger || !stroke) return;
      if (e.type === "pointerup") add(e);
      finish(rev());
    },
  });
  const resized = new ResizeObserver(paint);
  resized.observe(canvas);
  return {
    el: wrap,
    rebind(data) {
      caption.textContent = L.bind(spec.label ?? "", data);
      canvas.setAttribute("aria-label", caption.textContent || "Drawing area: draw with a finger");
    },
    reset: () => finish(undefined),
    teardown: () => {
      finish(undefined);
      resized.disconnect();
    },
  };
}

// ---- Requests ----

function openPrompt(msg) {
  closePrompt();
  const spec = L.promptSpec(msg);
  app.prompt = spec;
  $("prompt-question").textContent = spec.question;
  const body = $("prompt-body");
  body.replaceChildren();
  const sendButton = $("prompt-send");
  sendButton.hidden = spec.input === "confirm" || spec.input === "choice";
  let field = null;
  if (spec.input === "text" || spec.input === "number") {
    field = el("input", "prompt-field");
    field.id = "prompt-field";
    field.setAttribute("aria-labelledby", "prompt-question");
    if (spec.input === "number") {
      field.type = "number";
      field.inputMode = "decimal";
    } else {
      field.type = "text";
      field.maxLength = spec.maxLength;
      field.autocomplete = "off";
    }
    field.placeholder = spec.placeholder;
    body.append(field);
  } else {
    const options = spec.input === "confirm" ? [{ id: true, label: "Yes" }, { id: false, label: "No" }] : spec.choices;
    for (const o of options) {
      const b = el("button", "w-choice");
      b.type = "button";
      b.textContent = o.label;
      b.dataset.answer = String(o.id);
      b.addEventListener("click", () => answer(o.id));
      body.append(b);
    }
  }
  $("prompt-form").onsubmit = (e) => {
    e.preventDefault();
    if (field && (spec.input !== "number" || field.value !== "")) answer(field.value);
  };
  const deadline = spec.timeoutMs === null ? null : Date.now() + spec.timeoutMs;
  const tick = () => {
    $("prompt-timer").textContent =
      deadline === null ? "" : `${Math.max(0, Math.ceil((deadline - Date.now()) / 1000))} s left`;
  };
  tick();
  if (deadline !== null) app.promptTimer = setInterval(tick, 250);
  const dialog = $("prompt");
  if (!dialog.open) dialog.showModal();
  (field ?? body.querySelector("button"))?.focus();
}

function answer(value) {
  if (!app.prompt) return;
  send(L.responseMessage(app.prompt, value));
  closePrompt();
}

function closePrompt() {
  clearInterval(app.promptTimer);
  app.promptTimer = null;
  app.prompt = null;
  const dialog = $("prompt");
  if (dialog.open) dialog.close();
}

$("prompt-skip").addEventListener("click", () => {
  if (app.prompt) send({ type: "control.request_cancel", request_id: app.prompt.requestId });
  closePrompt();
});
$("prompt").addEventListener("cancel", (e) => {
  e.preventDefault();
  $("prompt-skip").click();
});

// ---- Control ----

function controlEvent(msg) {
  const effect = L.controlEffect(msg.event, msg.payload);
  if (effect?.vibrate !== undefined && typeof navigator.vibrate === "function") navigator.vibrate(effect.vibrate);
  if (effect?.flash) flash(effect.flash);
  const ack = L.ackFor(msg);
  if (ack) send(ack);
}

let flashTimer = null;
function flash({ color, ms }) {
  const f = $("flash");
  f.style.backgroundColor = color;
  f.classList.add("on");
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => f.classList.remove("on"), ms);
}

function resend(msg) {
  const { events, answer } = app.buffer.replay(msg.widget_id, msg.stroke_id, msg.from_seq);
  for (const e of events) send(e);
  send(answer);
}

// ---- Views ----

function render() {
  document.body.dataset.phase = app.link.phase;
  const joined = app.link.phase === L.Phase.JOINED || app.link.phase === L.Phase.RECONNECTING;
  $("bar").hidden = !joined;
  $("play").hidden = !joined;
  if (joined) {
    $("join").hidden = $("notice").hidden = true;
    $("me-name").textContent = app.link.name || "Player";
    $("me-code").textContent = `Game ${app.link.code}`;
    $("status").textContent = app.link.phase === L.Phase.JOINED ? "Online" : "Offline";
    $("status").dataset.state = app.link.phase;
  }
}

function setBanner(text) {
  $("banner").hidden = !text;
  $("banner").textContent = text ?? "";
}

function showJoin(error) {
  render();
  $("bar").hidden = $("play").hidden = $("notice").hidden = true;
  $("join").hidden = false;
  $("join-error").textContent = error ?? "";
  if (app.link.code && !$("code").value) $("code").value = app.link.code;
  $("join-button").disabled = false;
  ($("code").value ? $("name") : $("code")).focus();
}

function showNotice(title, text) {
  render();
  $("bar").hidden = $("play").hidden = $("join").hidden = true;
  $("notice").hidden = false;
  $("notice-title").textContent = title;
  $("notice-text").textContent = text;
  $("notice-action").focus();
}

$("notice-action").addEventListener("click", () => {
  app.link = new L.Link(null);
  showJoin();
});

$("leave").addEventListener("click", () => {
  send({ type: "session.leave" });
  app.link.ended();
  store.forget();
  abandonSocket();
  closePrompt();
  showNotice("You left the game", "Join again with the code on the big screen.");
});

$("code").addEventListener("input", () => {
  const code = L.normalizeCode($("code").value);
  if (code !== $("code").value) $("code").value = code;
});

$("join-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = L.normalizeCode($("code").value);
  const name = $("name").value.trim().slice(0, 32);
  if (!L.isCode(code)) {
    $("join-error").textContent = L.joinRefusal("invalid_code").text;
    return $("code").focus();
  }
  store.setName(name);
  $("join-error").textContent = "";
  $("join-button").disabled = true;
  app.link.start(code, name);
  render();
  abandonSocket();
  connect();
});

// ---- Start ----

{
  const code = L.codeFromQuery(location.search);
  $("code").value = code;
  $("name").value = store.name();
  const kept = app.link.resume;
  if (kept && (!code || kept.code === code)) {
    // A reload (or a return to this tab): resume the player this tab had.
    app.link.start(kept.code, store.name());
    render();
    connect();
  } else {
    showJoin();
  }
}

// For tests and debugging: what the page is doing, and a way to lose the socket as a
// phone does (the relay sees the connection close; the page reconnects).
window.pairkit = {
  state: () => ({
    phase: app.link.phase,
    player_id: app.playerId,
    screen: app.screen.name,
    revision: app.screen.revision,
    prompt: app.prompt?.requestId ?? null,
  }),
  dropSocket: () => app.ws?.close(4000, "dropped"),
};
