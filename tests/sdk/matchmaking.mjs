// Scenario — matchmaking with auto-join (rooms.md, "Matchmaking" and
// "Compatibility with the reference SDK"):
// - `dequeueMatchmaking()` answers `{ok:true, removed:false}` when the session
//   holds no ticket and `{ok:true, removed:true}` when it does;
// - two SDK clients with `autoJoinMatchedRoom: true` call
//   `enqueueMatchmaking("echo_room", 2)`: the first gets
//   `{ok, queued:true, position:1, room_type, size}`, the second (whose ticket
//   completes the match) `{ok, matched:true, room}`;
// - `match.found {room, room_type, size, participants}` with envelope `room`
//   goes to BOTH participants (the SDK's auto-join listens only to it), so
//   `onMatchFound` fires for both with participants = both client_ids;
// - both SDKs auto-join the room (`room.join_or_create` answered ok, then
//   `room.joined`/`room.members` with count 2 and a `state.snapshot`);
// - the room has `max_players = size` and reserved seats: an outsider's
//   join_or_create of its id gets `{ok:false, code:"room_full"}`, also before
//   any participant joined (checked on a second match without auto-join).
import {
  EVENT_TIMEOUT_MS,
  QUIET_MS,
  assert,
  assertRpcError,
  collect,
  rpc,
  runScenario,
  show,
  sleep,
  waitFrame,
  within,
} from "./lib.mjs";

/** Awaits an SDK call that resolves with an rpc.response payload. */
function answer(promise, what) {
  return within(promise, EVENT_TIMEOUT_MS, `no rpc.response to ${what} (the SDK has no RPC timeout)`);
}

function assertQueued(resp, roomType, size, position, what) {
  assert.ok(resp && typeof resp === "object", `${what}: answer is not an object: ${show(resp)}`);
  assert.equal(resp.ok, true, `${what}: expected ok:true, got ${show(resp)}`);
  assert.equal(resp.queued, true, `${what}: expected queued:true, got ${show(resp)}`);
  assert.equal(resp.position, position, `${what}: expected position ${position} (1-based), got ${show(resp)}`);
  assert.equal(resp.room_type, roomType, `${what}: expected room_type ${show(roomType)}, got ${show(resp)}`);
  assert.equal(resp.size, size, `${what}: expected size ${size}, got ${show(resp)}`);
  assert.ok(!("matched" in resp), `${what}: a queued ticket must not say matched: ${show(resp)}`);
}

function assertMatched(resp, what) {
  assert.ok(resp && typeof resp === "object", `${what}: answer is not an object: ${show(resp)}`);
  assert.equal(resp.ok, true, `${what}: expected ok:true, got ${show(resp)}`);
  assert.equal(resp.matched, true, `${what}: expected matched:true (this ticket completed the match), got ${show(resp)}`);
  assert.equal(typeof resp.room, "string", `${what}: expected the matched room id as a string, got ${show(resp)}`);
  return resp.room;
}

/** Checks a collected onMatchFound item `{m, msg}`. */
function assertFound(item, room, roomType, size, ids, who) {
  const { m, msg } = item;
  assert.equal(m.room, room, `${who}: match.found room (the rpc said ${show(room)}): ${show(msg)}`);
  assert.equal(m.roomType, roomType, `${who}: match.found room_type: ${show(msg)}`);
  assert.equal(m.size, size, `${who}: match.found size: ${show(msg)}`);
  assert.deepEqual(
    [...m.participants].sort(),
    [...ids].sort(),
    `${who}: match.found participants must be the participants' client_ids ${show(ids)}: ${show(msg)}`,
  );
  assert.equal(msg.room, room, `${who}: match.found must carry the envelope room: ${show(msg)}`);
}

/** The payload `joinOrCreate(roomType, {roomId})` sends, as a raw RPC (the SDK's joinOrCreate ignores failures). */
function joinRpc(client, roomType, roomId) {
  return rpc(client, "room.join_or_create", { roomType, roomId, options: { roomId } }, roomId);
}

await runScenario("matchmaking", async (ctx) => {
  const a = await ctx.connect("A", { autoJoinMatchedRoom: true });
  const b = await ctx.connect("B", { autoJoinMatchedRoom: true });
  const c = await ctx.connect("C");
  const aId = await ctx.clientId(a);
  const bId = await ctx.clientId(b);
  const errors = [a, b].map((cl) => collect((cb) => cl.onEvent("error", cb)));

  const found = [a, b].map((cl) => collect((cb) => cl.onMatchFound((m, msg) => cb({ m, msg }))));
  const joined = [a, b].map((cl) => collect((cb) => cl.onEvent("room.joined", cb)));
  const members = [a, b].map((cl) => collect((cb) => cl.onEvent("room.members", cb)));

  // ---- dequeue with no ticket
  const none = await answer(a.dequeueMatchmaking(), "dequeueMatchmaking() with no ticket");
  assert.deepEqual(none, { ok: true, removed: false }, `dequeueMatchmaking() with no ticket answered ${show(none)}`);

  // ---- the match
  const queued = await answer(a.enqueueMatchmaking("echo_room", 2), 'A enqueueMatchmaking("echo_room", 2)');
  assertQueued(queued, "echo_room", 2, 1, 'A enqueueMatchmaking("echo_room", 2) (first in an empty queue)');
  assert.deepEqual(found[0].items, [], `A got match.found while alone in the queue: ${show(found[0].items.map((f) => f.msg))}`);

  const matched = await answer(b.enqueueMatchmaking("echo_room", 2), 'B enqueueMatchmaking("echo_room", 2)');
  const roomId = assertMatched(matched, 'B enqueueMatchmaking("echo_room", 2) (completes the match)');

  const ids = [aId, bId];
  for (const [i, who] of [[0, "A (queued first)"], [1, "B (completed the match)"]]) {
    const item = await found[i].next(
      () => true,
      `${who} did not get match.found (onMatchFound never fired; match.found must go to every participant, ` +
        `with room, room_type, size and participants all present)`,
    );
    assertFound(item, roomId, "echo_room", 2, ids, who);
  }

  // ---- auto-join
  for (const [i, who, client] of [[0, "A", a], [1, "B", b]]) {
    const sent = await waitFrame(
      client,
      "->",
      (v) => v.t === "room.join_or_create" && v.room === roomId,
      `${who}: the SDK (autoJoinMatchedRoom) did not send room.join_or_create for ${roomId}`,
    );
    const reply = await waitFrame(
      client,
      "<-",
      (v) => v.t === "rpc.response" && v.rid === sent.value.rid,
      `${who}: no rpc.response to the auto-join ${show(sent.value)}`,
    );
    assert.equal(reply.value.p && reply.value.p.ok, true, `${who}: the auto-join was refused: ${show(reply.value)}`);
    await joined[i].next(
      (m) => m.room === roomId && m.p && m.p.client_id === ids[i],
      `${who} did not get room.joined about its own auto-join (got ${show(joined[i].items)})`,
    );
    const m2 = await members[i].next(
      (m) => m.room === roomId && m.p && m.p.count === 2,
      `${who} did not get room.members with count 2 after both auto-joined (got ${show(members[i].items)})`,
    );
    assert.deepEqual([...m2.p.members].sort(), [...ids].sort(), `${who}: room.members of the matched room: ${show(m2)}`);
    const states = collect((cb) => client.room(roomId).onStateChange(cb));
    const state = await states.next(() => true, `${who}: no state.snapshot applied for the matched room ${roomId}`);
    assert.deepEqual(state, {}, `${who}: echo_room state from the snapshot`);
  }

  // ---- an outsider cannot take a seat
  assertRpcError(await joinRpc(c, "echo_room", roomId), "room_full", `outsider C join_or_create of the full matched room ${roomId}`);

  // The ticket was consumed by the match.
  const afterMatch = await answer(a.dequeueMatchmaking(), "dequeueMatchmaking() after the match");
  assert.deepEqual(afterMatch, { ok: true, removed: false }, `dequeueMatchmaking() after the match answered ${show(afterMatch)}`);

  // ---- reserved seats: a second match whose participants do not auto-join yet
  const e = await ctx.connect("E");
  const f = await ctx.connect("F");
  const eId = await ctx.clientId(e);
  const fId = await ctx.clientId(f);
  const foundEF = [e, f].map((cl) => collect((cb) => cl.onMatchFound((m, msg) => cb({ m, msg }))));
  assertQueued(
    await answer(e.enqueueMatchmaking("echo_room", 2), 'E enqueueMatchmaking("echo_room", 2)'),
    "echo_room",
    2,
    1,
    'E enqueueMatchmaking("echo_room", 2)',
  );
  const room2 = assertMatched(
    await answer(f.enqueueMatchmaking("echo_room", 2), 'F enqueueMatchmaking("echo_room", 2)'),
    'F enqueueMatchmaking("echo_room", 2)',
  );
  assert.notEqual(room2, roomId, "a second match must get a new room");
  for (const [i, who] of [[0, "E"], [1, "F"]]) {
    const item = await foundEF[i].next(() => true, `${who} (autoJoinMatchedRoom false) did not get match.found`);
    assertFound(item, room2, "echo_room", 2, [eId, fId], who);
  }
  assertRpcError(
    await joinRpc(c, "echo_room", room2),
    "room_full",
    `outsider C join_or_create of matched room ${room2} while its 2 seats are reserved and nobody joined yet`,
  );
  const eJoin = await joinRpc(e, "echo_room", room2);
  assert.equal(eJoin && eJoin.ok, true, `participant E joining its reserved seat in ${room2}: ${show(eJoin)}`);
  assertRpcError(
    await joinRpc(c, "echo_room", room2),
    "room_full",
    `outsider C join_or_create of matched room ${room2} with 1 member and 1 seat reserved for F`,
  );
  const fJoin = await joinRpc(f, "echo_room", room2);
  assert.equal(fJoin && fJoin.ok, true, `participant F joining its reserved seat in ${room2}: ${show(fJoin)}`);

  // ---- dequeue with a ticket (a queue nobody else uses)
  assertQueued(
    await answer(c.enqueueMatchmaking("counter_room", 3), 'C enqueueMatchmaking("counter_room", 3)'),
    "counter_room",
    3,
    1,
    'C enqueueMatchmaking("counter_room", 3)',
  );
  const removed = await answer(c.dequeueMatchmaking(), "dequeueMatchmaking() with a ticket");
  assert.deepEqual(removed, { ok: true, removed: true }, `dequeueMatchmaking() while queued answered ${show(removed)}`);
  const again = await answer(c.dequeueMatchmaking(), "a second dequeueMatchmaking()");
  assert.deepEqual(again, { ok: true, removed: false }, `a second dequeueMatchmaking() answered ${show(again)}`);

  await sleep(QUIET_MS);
  errors.forEach((errs, i) =>
    assert.deepEqual(errs.items, [], `${["A", "B"][i]}: error frames during matchmaking: ${show(errs.items)}`),
  );
  // Exactly one match.found each.
  found.forEach((fd, i) =>
    assert.equal(fd.items.length, 1, `${["A", "B"][i]}: expected one match.found, got ${show(fd.items.map((x) => x.msg))}`),
  );
});
