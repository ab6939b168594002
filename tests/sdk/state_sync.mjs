// Scenario — state sync with the reference SDK (rooms.md, "State sync" and
// "Compatibility with the reference SDK"):
// 1. counter_room: A and B send `inc` several times, interleaved; both SDKs'
//    room states converge to the same counter; every member sees the same
//    patches, numbered 1, 2, 3… after snapshot 0 (+1 per patch, whatever the
//    number of ops per patch); the SDK acks each one and never asks for a
//    resync; no frame carries `checksum` (the SDK never negotiates CRC-32).
// 2. state_room: `state.set`/`state.del` on top-level paths go out as such;
//    on nested paths (`/a/b`) they go out flattened, as one `set /a` with the
//    key's whole new value (the SDK throws on a path deeper than `/key`);
//    setting under a missing parent creates it; deleting a missing path emits
//    no patch and leaves seq alone; setting the root `""` sends a snapshot
//    instead of the patch, with the seq that patch would have had, and patches
//    go on from it. The SDK's state equals the expected object after every
//    step, and it never throws (no unhandled rejection) nor resyncs.
import {
  QUIET_MS,
  assert,
  collect,
  framesOf,
  runScenario,
  show,
  sleep,
} from "./lib.mjs";

const rejections = [];
process.on("unhandledRejection", (reason) => rejections.push(reason));

const TOP_LEVEL = /^\/[^/]*$/;

/** The state frames (snapshot and patch values) one client received for a room. */
async function stateFrames(client, roomId) {
  return (await framesOf(client))
    .map((f) => f.value)
    .filter((v) => v && (v.t === "state.patch" || v.t === "state.snapshot") && v.room === roomId);
}

/** Every frame a client received whose payload has a `checksum` key (never null, never present unless negotiated). */
async function framesWithChecksum(client) {
  return (await framesOf(client))
    .map((f) => f.value)
    .filter((v) => v && v.p && typeof v.p === "object" && !Array.isArray(v.p) && "checksum" in v.p);
}

await runScenario("state_sync", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const clients = [["A", a], ["B", b]];
  const errors = clients.map(([, c]) => collect((cb) => c.onEvent("error", cb)));

  // ------------------------------------------------------------- 1. counter_room
  const counterId = ctx.uid("counter");
  const counterA = await a.joinOrCreate("counter_room", { roomId: counterId });
  const counterB = await b.joinOrCreate("counter_room", { roomId: counterId });
  const cStates = [counterA, counterB].map((r) => collect((cb) => r.onStateChange(cb)));
  for (const [i, [who]] of clients.entries()) {
    await cStates[i].next((s) => s.counter === 0, `${who}: no snapshot {counter: 0} (got ${show(cStates[i].items)})`);
  }

  // 3 × inc {by:1} from A and 3 × inc {by:2} from B, interleaved, not waiting: 9.
  for (let k = 0; k < 3; k += 1) {
    counterA.send("inc", { by: 1 });
    counterB.send("inc", { by: 2 });
  }
  for (const [i, [who]] of clients.entries()) {
    await cStates[i].next(
      (s) => s.counter === 9,
      `${who}: the SDK's room state never reached {counter: 9} after 3 × inc {by:1} from A and 3 × inc {by:2} from B ` +
        `(states seen: ${show(cStates[i].items)})`,
    );
  }
  await sleep(QUIET_MS); // let any stray patch arrive
  const seen = [];
  for (const [who, client] of clients) {
    const frames = await stateFrames(client, counterId);
    assert.equal(frames[0] && frames[0].t, "state.snapshot", `${who}: the first state frame is the join snapshot: ${show(frames)}`);
    assert.equal(frames[0].p.seq, 0, `${who}: the new room's snapshot has seq 0: ${show(frames[0])}`);
    const patches = frames.slice(1);
    assert.ok(patches.length >= 1 && patches.length <= 6, `${who}: expected 1..6 patches for 6 incs: ${show(frames)}`);
    patches.forEach((p, k) => {
      assert.equal(p.t, "state.patch", `${who}: after the snapshot only patches are expected: ${show(frames)}`);
      assert.equal(p.p.seq, k + 1, `${who}: patch #${k + 1} must have seq ${k + 1} (+1 per patch): ${show(patches.map((x) => x.p))}`);
      for (const op of p.p.ops) {
        assert.ok(op.op === "set" || op.op === "del", `${who}: only set/del ops go out: ${show(p)}`);
        assert.ok(TOP_LEVEL.test(op.path), `${who}: the SDK only understands top-level paths: ${show(p)}`);
      }
    });
    assert.deepEqual(
      patches.at(-1).p.ops.at(-1),
      { op: "set", path: "/counter", value: 9 },
      `${who}: the last op sets the final counter: ${show(patches.at(-1))}`,
    );
    seen.push(patches.map((p) => p.p));
    assert.deepEqual(client.getRoomState(counterId), { counter: 9 }, `${who}: getRoomState after all patches`);
    const acks = (await framesOf(client, "->"))
      .map((f) => f.value)
      .filter((v) => v && v.t === "state.ack" && v.room === counterId)
      .map((v) => v.p.seq);
    assert.deepEqual(acks, [0, ...patches.map((p) => p.p.seq)], `${who}: the SDK acks the snapshot and each patch in order`);
  }
  assert.deepEqual(seen[1], seen[0], "A and B must receive the same patches (same seqs and ops)");

  // ------------------------------------------------------------- 2. state_room
  const stateId = ctx.uid("state");
  const stateA = await a.joinOrCreate("state_room", { roomId: stateId });
  const stateB = await b.joinOrCreate("state_room", { roomId: stateId });
  const rooms = { A: stateA, B: stateB };
  const sStates = [stateA, stateB].map((r) => collect((cb) => r.onStateChange(cb)));
  for (const [i, [who]] of clients.entries()) {
    const s = await sStates[i].next(() => true, `${who}: no state_room snapshot`);
    assert.deepEqual(s, {}, `${who}: a new state_room's state`);
  }
  let seq = 0;

  /**
   * `sender` sends `type` `data`; every client's SDK state must become `state`,
   * through one new frame: a patch with seq+1 and `ops`, or (ops === "snapshot")
   * a snapshot with seq+1.
   */
  const step = async (sender, type, data, state, ops) => {
    const what = `${sender} room.send(${show(type)}, ${show(data)})`;
    const before = [];
    for (const [, client] of clients) before.push((await stateFrames(client, stateId)).length);
    const marks = sStates.map((s) => s.mark());
    rooms[sender].send(type, data);
    seq += 1;
    for (const [i, [who, client]] of clients.entries()) {
      const got = await sStates[i].next(
        (s) => JSON.stringify(s) === JSON.stringify(state),
        `${who}: after ${what} the SDK's state never became ${show(state)} ` +
          `(states since: ${show(sStates[i].items.slice(marks[i]))}; unhandled rejections: ${show(rejections.map(String))}; ` +
          `state frames: ${show((await stateFrames(client, stateId)).slice(before[i]))})`,
        { from: marks[i] },
      );
      assert.deepEqual(got, state, `${who}: state after ${what}`);
      const fresh = (await stateFrames(client, stateId)).slice(before[i]);
      assert.equal(fresh.length, 1, `${who}: ${what} must produce exactly one state frame: ${show(fresh)}`);
      const frame = fresh[0];
      if (ops === "snapshot") {
        assert.equal(frame.t, "state.snapshot", `${who}: ${what} sets the root: a snapshot goes out instead of the patch: ${show(frame)}`);
        assert.deepEqual(frame.p.state, state, `${who}: snapshot state after ${what}`);
      } else {
        assert.equal(frame.t, "state.patch", `${who}: ${what} must produce a state.patch: ${show(frame)}`);
        assert.deepEqual(
          frame.p.ops,
          ops,
          `${who}: ${what}: ops sent to a client without nested_ops (flattened to top-level keys): ${show(frame)}`,
        );
      }
      assert.equal(frame.p.seq, seq, `${who}: ${what}: seq must be ${seq} (one more than the last): ${show(frame)}`);
    }
  };

  await step("A", "state.set", { path: "/score", value: 10 }, { score: 10 }, [{ op: "set", path: "/score", value: 10 }]);
  await step("B", "state.set", { path: "/a/b", value: 1 }, { score: 10, a: { b: 1 } }, [
    { op: "set", path: "/a", value: { b: 1 } },
  ]);
  await step("A", "state.set", { path: "/a/c", value: "x" }, { score: 10, a: { b: 1, c: "x" } }, [
    { op: "set", path: "/a", value: { b: 1, c: "x" } },
  ]);
  await step("B", "state.del", { path: "/a/b" }, { score: 10, a: { c: "x" } }, [
    { op: "set", path: "/a", value: { c: "x" } },
  ]);
  await step("A", "state.set", { path: "/deep/x/y", value: true }, { score: 10, a: { c: "x" }, deep: { x: { y: true } } }, [
    { op: "set", path: "/deep", value: { x: { y: true } } },
  ]);
  await step("B", "state.del", { path: "/score" }, { a: { c: "x" }, deep: { x: { y: true } } }, [
    { op: "del", path: "/score" },
  ]);

  // Deleting a missing path changes nothing: no patch, seq unchanged.
  const counts = [];
  for (const [, client] of clients) counts.push((await stateFrames(client, stateId)).length);
  stateA.send("state.del", { path: "/missing" });
  stateB.send("state.del", { path: "/a/missing" });
  await sleep(QUIET_MS);
  for (const [i, [who, client]] of clients.entries()) {
    const extra = (await stateFrames(client, stateId)).slice(counts[i]);
    assert.deepEqual(extra, [], `${who}: deleting missing paths (/missing, /a/missing) must emit no state frame`);
  }

  await step("A", "state.set", { path: "", value: { reset: 1 } }, { reset: 1 }, "snapshot");
  await step("B", "state.set", { path: "/score", value: 1 }, { reset: 1, score: 1 }, [{ op: "set", path: "/score", value: 1 }]);
  await step("A", "state.set", { path: "/n/m", value: [1, 2] }, { reset: 1, score: 1, n: { m: [1, 2] } }, [
    { op: "set", path: "/n", value: { m: [1, 2] } },
  ]);

  await sleep(QUIET_MS);
  for (const [i, [who, client]] of clients.entries()) {
    assert.deepEqual(
      client.getRoomState(stateId),
      { reset: 1, score: 1, n: { m: [1, 2] } },
      `${who}: getRoomState of the state_room at the end`,
    );
    const resyncs = (await framesOf(client, "->")).map((f) => f.value).filter((v) => v && v.t === "state.resync");
    assert.deepEqual(resyncs, [], `${who}: the SDK asked for resyncs (it saw a seq gap or a checksum mismatch)`);
    assert.deepEqual(
      await framesWithChecksum(client),
      [],
      `${who}: no checksum was negotiated, yet these received frames carry a checksum key`,
    );
    const hs = await ctx.handshakeOk(client);
    assert.ok(!("checksum" in hs.value.p), `${who}: handshake.ok must not carry checksum: ${show(hs.value)}`);
    assert.deepEqual(errors[i].items, [], `${who}: error frames: ${show(errors[i].items)}`);
  }
  assert.deepEqual(
    rejections.map(String),
    [],
    "the SDK threw while handling a frame (e.g. `Invalid patch path` for a nested path)",
  );
});
