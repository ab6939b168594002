// Scenario — the closing handshake (RFC 6455 §5.5.1, §7.1.5; rooms.md
// "Sessions and resume" relies on close codes): when the client closes, the
// server answers with a Close frame of its own (echoing the code), so the
// client's `close` event is clean (`wasClean: true`) and reports the code:
// - the SDK's `client.close()` calls `socket.close()` with no code: the event
//   reports 1005 (no status);
// - a raw `socket.close(4000)` (what a drop-like close looks like): 4000;
// - a raw `socket.close(1000)` ("left"): 1000.
// Without the server's Close frame, the browser/undici WebSocket reports 1006
// (abnormal closure) and `wasClean: false` whatever code the client sent.
import { EVENT_TIMEOUT_MS, assert, runScenario, show, within } from "./lib.mjs";

/** Resolves with {code, reason, wasClean} when the socket's close event fires. */
function closed(socket) {
  return within(
    new Promise((resolve) =>
      socket.addEventListener("close", (e) => resolve({ code: e.code, reason: e.reason, wasClean: e.wasClean })),
    ),
    EVENT_TIMEOUT_MS,
    `${socket.huddleLabel}: no close event after closing`,
  );
}

await runScenario("close_handshake", async (ctx) => {
  const cases = [
    { label: "client.close() (no code)", expect: 1005, close: (c) => c.close() },
    { label: "socket.close(4000)", expect: 4000, close: (c) => c.socket.close(4000) },
    { label: "socket.close(1000)", expect: 1000, close: (c) => c.socket.close(1000) },
  ];
  const results = [];
  for (const [i, kase] of cases.entries()) {
    const client = await ctx.connect(`K${i}`, { autoReconnect: false });
    const done = closed(client.socket);
    kase.close(client);
    results.push({ ...kase, got: await done });
  }
  const bad = results.filter((r) => r.got.code !== r.expect || r.got.wasClean !== true);
  assert.ok(
    bad.length === 0,
    "the server did not answer the client's Close frame with its own (RFC 6455 §5.5.1), so the client saw an " +
      "unclean close:\n" +
      results
        .map((r) => `  ${r.label}: expected {code: ${r.expect}, wasClean: true}, close event ${show(r.got)}`)
        .join("\n"),
  );
});
