// Extra scenario — state patches (rooms.md, "State sync" and "Compatibility"):
// counter_room's `inc` (data.by, default 1) produces `state.patch {ops, seq}` with
// envelope `room`, seq numbered on from the snapshot (snapshot 0, patches 1, 2…),
// only top-level `set`/`del` ops and no checksum unless negotiated; every member's
// SDK applies it (room.onStateChange) and acks it without an error. The second
// `inc` is sent as `room.send("inc")`, so in msgpack its `data` is `undefined`
// (fixext1 type 0), which the server must read as absent.
import { QUIET_MS, assert, collect, framesOf, runScenario, show, sleep } from "./lib.mjs";

await runScenario("state_patch", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const errors = [a, b].map((c) => collect((cb) => c.onEvent("error", cb)));
  const roomId = ctx.uid("counter");

  const roomA = await a.joinOrCreate("counter_room", { roomId });
  const roomB = await b.joinOrCreate("counter_room", { roomId });
  const statesA = collect((cb) => roomA.onStateChange(cb));
  const statesB = collect((cb) => roomB.onStateChange(cb));
  for (const [who, states] of [["A", statesA], ["B", statesB]]) {
    await states.next((s) => s.counter === 0, `${who}: no snapshot {counter: 0} (got ${show(states.items)})`);
  }

  const patchesOf = async (client) =>
    (await framesOf(client))
      .filter((f) => f.value && f.value.t === "state.patch" && f.value.room === roomId)
      .map((f) => f.value);

  roomA.send("inc", { by: 2 });
  for (const [who, states] of [["A", statesA], ["B", statesB]]) {
    const s = await states.next(
      (st) => st.counter === 2,
      `${who}: room.onStateChange never showed {counter: 2} after inc {by: 2} (got ${show(states.items)})`,
    );
    assert.deepEqual(s, { counter: 2 }, `${who}: state after the first patch`);
  }
  for (const [who, client] of [["A", a], ["B", b]]) {
    const patches = await patchesOf(client);
    assert.equal(patches.length, 1, `${who}: expected one state.patch, got ${show(patches)}`);
    assert.equal(patches[0].p.seq, 1, `${who}: the first patch after snapshot seq 0 has seq 1: ${show(patches[0])}`);
    assert.deepEqual(
      patches[0].p.ops,
      [{ op: "set", path: "/counter", value: 2 }],
      `${who}: ops of the first patch: ${show(patches[0])}`,
    );
    assert.ok(!("checksum" in patches[0].p), `${who}: no checksum negotiated, yet the patch has a checksum key: ${show(patches[0])}`);
  }

  roomB.send("inc");
  for (const [who, states] of [["A", statesA], ["B", statesB]]) {
    await states.next(
      (st) => st.counter === 3,
      `${who}: room.onStateChange never showed {counter: 3} after inc with no data (default by 1) (got ${show(states.items)})`,
    );
  }
  for (const [who, client] of [["A", a], ["B", b]]) {
    const patches = await patchesOf(client);
    assert.equal(patches.length, 2, `${who}: expected two state.patch frames, got ${show(patches)}`);
    assert.equal(patches[1].p.seq, 2, `${who}: second patch seq: ${show(patches[1])}`);
  }

  await sleep(QUIET_MS);
  errors.forEach((e, i) =>
    assert.deepEqual(e.items, [], `${["A", "B"][i]}: error frames after the patches and acks: ${show(e.items)}`),
  );
});
