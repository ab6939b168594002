// Scenario 5 — snapshot on join (rooms.md, "Rooms" + "State sync"): after a
// successful join the joiner gets `state.snapshot {state, seq}` with envelope
// `room`; a new room's snapshot has seq 0 and, without a negotiated CRC-32, no
// `checksum` key at all (never null). echo_room's state is `{}`, counter_room's
// `{counter: 0}`. The SDK acks it with `state.ack {seq, checksum:<SHA-256 hex>}`,
// which the server must accept silently (no error, no re-snapshot, connection
// kept).
import { QUIET_MS, assert, collect, framesOf, rpc, runScenario, show, sleep, waitFrame } from "./lib.mjs";

const DROP_HINT =
  "the SDK drops a snapshot that lacks an envelope `room`, has a non-number `seq`, a `checksum` " +
  "that is present but not a string (null included), or a `state` that is not an object";

await runScenario("snapshot", async (ctx) => {
  const a = await ctx.connect("A");
  const errors = collect((cb) => a.onEvent("error", cb));

  for (const [roomType, expected] of [
    ["echo_room", {}],
    ["counter_room", { counter: 0 }],
  ]) {
    const roomId = ctx.uid(roomType);
    const room = await a.joinOrCreate(roomType, { roomId });
    assert.equal(room.id, roomId, `joinOrCreate(${roomType}) returned room ${show(room.id)}`);
    const states = collect((cb) => room.onStateChange(cb));
    const state = await states.next(
      () => true,
      `room.onStateChange never fired after joinOrCreate(${show(roomType)}, {roomId: ${show(roomId)}}): ` +
        `no usable state.snapshot (${DROP_HINT})`,
    );
    assert.deepEqual(state, expected, `${roomType}: state delivered by the snapshot`);

    const snapshots = (await framesOf(a)).filter(
      (f) => f.value && f.value.t === "state.snapshot" && f.value.room === roomId,
    );
    assert.equal(snapshots.length, 1, `${roomType}: expected one state.snapshot, got ${show(snapshots.map((f) => f.value))}`);
    const snapshot = snapshots[0].value;
    assert.equal(snapshot.p.seq, 0, `${roomType}: a new room's snapshot has seq 0: ${show(snapshot)}`);
    assert.ok(
      !("checksum" in snapshot.p),
      `${roomType}: no checksum was negotiated, so the snapshot must not carry a checksum key: ${show(snapshot)}`,
    );

    // The SDK acks with the seq and a SHA-256 hex string.
    const ack = await waitFrame(
      a,
      "->",
      (v) => v.t === "state.ack" && v.room === roomId,
      `the SDK did not send state.ack for ${roomId}`,
    );
    assert.equal(ack.value.p.seq, 0, `state.ack sent by the SDK: ${show(ack.value)}`);

    await sleep(QUIET_MS);
    assert.deepEqual(
      errors.items,
      [],
      `the server answered the SDK's state.ack {seq:0, checksum:<sha256 hex>} with error(s): ${show(errors.items)}`,
    );
    const after = (await framesOf(a)).filter(
      (f) => f.value && f.value.t === "state.snapshot" && f.value.room === roomId,
    );
    assert.equal(
      after.length,
      1,
      `${roomType}: the ack (not negotiated CRC-32, SHA-256 checksum must be ignored) triggered another snapshot: ${show(after.map((f) => f.value))}`,
    );
    assert.equal(a.socket.huddleClose, null, `the connection closed after the ack: ${show(a.socket.huddleClose)}`);
  }

  const listed = await rpc(a, "room.list", {});
  assert.equal(listed && listed.ok, true, `room.list after the acks: ${show(listed)}`);
});
