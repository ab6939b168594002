// Scenario 1 — connect: the SDK's handshake succeeds and the negotiated codec is used.
// Rules (protocols/rooms.md, Transport + Handshake): msgpack wins when offered; the
// handshake.ok is sent in the negotiated codec (JSON as a text frame, msgpack as a
// binary frame) and carries `codec`, `session_id` and the public `client_id`
// (distinct from the secret session id); every later frame uses that codec.
import { assert, framesOf, runScenario, rpc, show } from "./lib.mjs";

await runScenario("connect", async (ctx) => {
  const client = await ctx.connect("A");

  assert.equal(
    client.codec.name,
    ctx.mode.expect,
    `codecs ${show(ctx.mode.codecs)}: the SDK settled on codec ${show(client.codec.name)}, expected ${show(ctx.mode.expect)}`,
  );

  const ok = await ctx.handshakeOk(client);
  const p = ok.value.p;
  assert.ok(p && typeof p === "object", `handshake.ok has no payload object: ${show(ok.value)}`);
  assert.equal(p.codec, ctx.mode.expect, `handshake.ok p.codec: ${show(ok.value)}`);
  const expectedOpcode = ctx.mode.expect === "msgpack" ? "binary" : "text";
  assert.equal(
    ok.opcode,
    expectedOpcode,
    `handshake.ok must go out in the negotiated codec (${ctx.mode.expect} → ${expectedOpcode} frame), ` +
      `it came as a ${ok.opcode} frame decoded as ${ok.codec}: ${show(ok.value)}`,
  );
  assert.equal(ok.codec, ctx.mode.expect, `handshake.ok decoded as ${ok.codec}, expected ${ctx.mode.expect}`);

  const sessionId = client.getSessionId();
  assert.equal(typeof sessionId, "string", `getSessionId() is ${show(sessionId)}, expected a string`);
  assert.ok(sessionId.length > 0, "getSessionId() is empty");
  assert.equal(sessionId, p.session_id, "getSessionId() differs from handshake.ok p.session_id");
  assert.equal(typeof p.client_id, "string", `handshake.ok has no string client_id: ${show(ok.value)}`);
  assert.notEqual(p.client_id, sessionId, "client_id (public) must not be the session id (secret)");

  // The session works both ways in that codec: a plain RPC round trip.
  const listed = await rpc(client, "room.list", {});
  assert.equal(listed && listed.ok, true, `room.list after connect: ${show(listed)}`);

  // Every frame after the handshake uses the negotiated codec.
  const frame = (await framesOf(client)).find((f) => f.value && f.value.t === "rpc.response");
  assert.ok(frame, "no rpc.response frame recorded");
  assert.equal(
    `${frame.opcode}/${frame.codec}`,
    `${expectedOpcode}/${ctx.mode.expect}`,
    `rpc.response frame must use the negotiated codec: ${show(frame.value)}`,
  );
});
