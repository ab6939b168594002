// Scenario — sessions and resume (rooms.md, "Sessions and resume"):
// 1. A drop (B's socket closed with code 4000, i.e. not 1000) parks B's
//    session: A gets `room.dropped {client_id: B}` (not `room.left`). The SDK
//    reconnects by itself (~250 ms later) with the same session_id: its
//    `reconnect.ok` fires, the new `handshake.ok` has `resumed:true`, the same
//    session_id and client_id; A gets `room.reconnected {client_id: B}`; B gets
//    a fresh `state.snapshot` after the handshake (sent with a delay, so the
//    SDK, which attaches its frame handler only after the handshake settles,
//    applies it): B's state callback fires with the counter A changed while B
//    was away. B can then message the room again.
// 2. `client.close()`: the SDK calls `socket.close()` without a code, so the
//    server sees no status (1005), which is not 1000: the session is parked and
//    A gets `room.dropped`, not `room.left`.
// 3. A raw `socket.close(1000)` means "left": A gets `room.left` at once (and
//    `room.members` without it), never `room.dropped`. The SDK, not disposed,
//    then reconnects with the old session_id; that session is gone, so the new
//    handshake is not a resume and the room hears no `room.reconnected`.
import { QUIET_MS, assert, collect, framesOf, runScenario, show, sleep } from "./lib.mjs";

/** How long a close-1000 `room.left` may take to count as "at once". */
const AT_ONCE_MS = 1_000;

const rejections = [];
process.on("unhandledRejection", (reason) => rejections.push(reason));

await runScenario("resume", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const aId = await ctx.clientId(a);
  const bId = await ctx.clientId(b);
  const roomId = ctx.uid("resume");

  const aEvents = (type) => collect((cb) => a.onEvent(type, cb));
  const aDropped = aEvents("room.dropped");
  const aReconnected = aEvents("room.reconnected");
  const aLeft = aEvents("room.left");
  const aMembers = aEvents("room.members");
  const aJoined = aEvents("room.joined");
  const errors = [a, b].map((cl) => collect((cb) => cl.onEvent("error", cb)));

  const roomA = await a.joinOrCreate("counter_room", { roomId });
  const roomB = await b.joinOrCreate("counter_room", { roomId });
  const statesA = collect((cb) => roomA.onStateChange(cb));
  const statesB = collect((cb) => roomB.onStateChange(cb));
  await statesA.next((s) => s.counter === 0, `A: no snapshot {counter: 0} (got ${show(statesA.items)})`);
  await statesB.next((s) => s.counter === 0, `B: no snapshot {counter: 0} (got ${show(statesB.items)})`);
  await aMembers.next((m) => m.room === roomId && m.p && m.p.count === 2, `A: no room.members count 2 (got ${show(aMembers.items)})`);

  // ------------------------------------------------------------ 1. drop and resume
  const bReconnectOk = collect((cb) => b.onEvent("reconnect.ok", cb));
  const firstHs = (await ctx.handshakeOk(b)).value.p;
  const sessionId = b.getSessionId();
  assert.equal(sessionId, firstHs.session_id, "getSessionId() is handshake.ok's session_id");
  const oldSocket = b.socket;
  const statesBMark = statesB.mark();

  oldSocket.close(4000, "test drop");

  const dropped = await aDropped.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get room.dropped {client_id: ${show(bId)}} after B's socket closed with code 4000 ` +
      `(not 1000: the session must be parked) (got dropped ${show(aDropped.items)}, left ${show(aLeft.items)})`,
  );
  assert.equal(dropped.room, roomId, `room.dropped envelope room: ${show(dropped)}`);
  assert.deepEqual(
    aLeft.items.filter((m) => m.p && m.p.client_id === bId),
    [],
    `a close with code 4000 is a drop, not a leave: A got room.left for B: ${show(aLeft.items)}`,
  );

  // While B is away, A changes the state; B misses that patch.
  roomA.send("inc", { by: 5 });
  await statesA.next((s) => s.counter === 5, `A: counter never reached 5 after inc {by: 5} (got ${show(statesA.items)})`);

  await bReconnectOk.next(
    () => true,
    `B's SDK did not reconnect (no reconnect.ok event; its old socket closed with ${show(oldSocket.huddleClose)})`,
  );
  assert.notEqual(b.socket, oldSocket, "after reconnect.ok the SDK must be on a new socket");
  const hs = (await ctx.handshakeOk(b)).value.p;
  assert.equal(hs.resumed, true, `the reconnect handshake.ok must say resumed:true: ${show(hs)}`);
  assert.equal(hs.session_id, sessionId, `the resumed handshake.ok must carry the same session_id: ${show(hs)}`);
  assert.equal(hs.client_id, bId, `the resumed session keeps its client_id ${show(bId)}: ${show(hs)}`);
  assert.equal(b.getSessionId(), sessionId, "getSessionId() after the resume");
  const sentHs = (await framesOf(b, "->"))[0];
  assert.equal(
    sentHs && sentHs.value && sentHs.value.session_id,
    sessionId,
    `the SDK's reconnect handshake must carry the old session_id: ${show(sentHs && sentHs.value)}`,
  );

  const reconnected = await aReconnected.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get room.reconnected {client_id: ${show(bId)}} after B resumed (got ${show(aReconnected.items)})`,
  );
  assert.equal(reconnected.room, roomId, `room.reconnected envelope room: ${show(reconnected)}`);

  const resumedState = await statesB.next(
    (s) => s.counter === 5,
    `B's state callback never fired with {counter: 5} after the resume: the fresh state.snapshot was missing or ` +
      `dropped by the SDK (it only handles frames once its handshake promise settled) ` +
      `(states since the drop: ${show(statesB.items.slice(statesBMark))})`,
    { from: statesBMark },
  );
  assert.deepEqual(resumedState, { counter: 5 }, "B's state after the resume");
  const newFrames = (await framesOf(b)).map((f) => f.value);
  const hsAt = newFrames.findIndex((v) => v && v.t === "handshake.ok");
  const snapAt = newFrames.findIndex((v) => v && v.t === "state.snapshot" && v.room === roomId);
  assert.ok(
    hsAt >= 0 && snapAt > hsAt,
    `B's new socket must get the state.snapshot after handshake.ok: ${show(newFrames)}`,
  );
  assert.equal(newFrames[snapAt].p.seq, 1, `the post-resume snapshot carries the seq of the last patch (1): ${show(newFrames[snapAt])}`);

  // B is a member again: its message changes the state for both.
  roomB.send("inc", { by: 2 });
  for (const [who, states] of [["A", statesA], ["B", statesB]]) {
    await states.next(
      (s) => s.counter === 7,
      `${who}: counter never reached 7 after the resumed B sent inc {by: 2} (got ${show(states.items)})`,
    );
  }
  const seqs = (await framesOf(b))
    .filter((f) => f.value && f.value.t === "state.patch" && f.value.room === roomId)
    .map((f) => f.value.p.seq);
  assert.deepEqual(seqs, [2], `B's patches after the resume snapshot (seq 1): ${show(seqs)}`);

  // ------------------------------------------------- 2. client.close() (no close code)
  const c = await ctx.connect("C");
  const cId = await ctx.clientId(c);
  await c.joinOrCreate("counter_room", { roomId });
  await aJoined.next((m) => m.p && m.p.client_id === cId, `A did not get room.joined for C (got ${show(aJoined.items)})`);
  const cSocket = c.socket;
  c.close();
  const cDropped = await aDropped.next(
    (m) => m.p && m.p.client_id === cId,
    `A did not get room.dropped {client_id: ${show(cId)}} after C's client.close() (a close without a code, ` +
      `1005 for the server: not 1000, so the session is parked) ` +
      `(got dropped ${show(aDropped.items)}, left ${show(aLeft.items)})`,
  );
  assert.equal(cDropped.room, roomId, `room.dropped envelope room: ${show(cDropped)}`);
  await sleep(QUIET_MS);
  assert.deepEqual(
    aLeft.items.filter((m) => m.p && m.p.client_id === cId),
    [],
    `client.close() closes without a code (not 1000), yet A got room.left for C: ${show(aLeft.items)}`,
  );

  // ----------------------------------------------------- 3. raw socket.close(1000)
  const d = await ctx.connect("D");
  const dId = await ctx.clientId(d);
  const dSessionId = d.getSessionId();
  const dReconnectOk = collect((cb) => d.onEvent("reconnect.ok", cb));
  await d.joinOrCreate("counter_room", { roomId });
  await aJoined.next((m) => m.p && m.p.client_id === dId, `A did not get room.joined for D (got ${show(aJoined.items)})`);
  const membersMark = aMembers.mark();
  const dSocket = d.socket;
  const closedAt = Date.now();
  dSocket.close(1000);
  const dLeft = await aLeft.next(
    (m) => m.p && m.p.client_id === dId,
    `A did not get room.left {client_id: ${show(dId)}} within ${AT_ONCE_MS} ms of D closing with code 1000 ` +
      `("has left: its rooms get room.left at once") (got left ${show(aLeft.items)}, dropped ${show(aDropped.items)})`,
    { ms: AT_ONCE_MS },
  );
  assert.equal(dLeft.room, roomId, `room.left envelope room: ${show(dLeft)}`);
  const leftAfter = Date.now() - closedAt;
  const m3 = await aMembers.next(
    (m) => m.room === roomId && m.p && Array.isArray(m.p.members) && !m.p.members.includes(dId),
    `A did not get room.members without D after D left (got ${show(aMembers.items.slice(membersMark))})`,
    { from: membersMark },
  );
  assert.ok(m3.p.members.includes(aId) && m3.p.members.includes(bId), `room.members after D left: ${show(m3)}`);
  assert.deepEqual(
    aDropped.items.filter((m) => m.p && m.p.client_id === dId),
    [],
    `a close with code 1000 is a leave, not a drop: A got room.dropped for D: ${show(aDropped.items)}`,
  );

  // The SDK (not disposed) reconnects with D's old session_id: nothing to resume.
  await dReconnectOk.next(() => true, `D's SDK did not reconnect after its socket closed (${show(dSocket.huddleClose)})`);
  const dSent = (await framesOf(d, "->"))[0];
  assert.equal(dSent && dSent.value && dSent.value.session_id, dSessionId, `D's reconnect handshake: ${show(dSent && dSent.value)}`);
  const dHs = (await ctx.handshakeOk(d)).value.p;
  assert.equal(
    dHs.resumed,
    false,
    `D left with close 1000, so a later handshake with its old session_id must not resume: ${show(dHs)}`,
  );
  await sleep(QUIET_MS);
  assert.deepEqual(
    aReconnected.items.filter((m) => m.p && m.p.client_id === dId),
    [],
    `D left with close 1000, yet the room got room.reconnected for it: ${show(aReconnected.items)}`,
  );

  errors.forEach((errs, i) =>
    assert.deepEqual(errs.items, [], `${["A", "B"][i]}: error frames: ${show(errs.items)}`),
  );
  assert.deepEqual(rejections.map(String), [], "unhandled rejections (the SDK throwing while handling a frame)");
  if (process.env.HUDDLE_SDK_VERBOSE === "1" || process.argv.includes("--verbose")) {
    console.error(
      `[resume/${ctx.mode.name}] observed: client.close() -> close event ${show(cSocket.huddleClose)}; ` +
        `close(1000) -> room.left after ${leftAfter} ms; D's new handshake.ok ${show(dHs)}`,
    );
  }
});
