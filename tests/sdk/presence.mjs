// Scenario 4 — presence (rooms.md, "Rooms"): on a join every member, the joiner
// included, gets `room.joined {client_id}` and `room.members {members, count}`
// with envelope `room`; on `room.leave` (payload `{room}` or envelope `room`) the
// remaining members get `room.left {client_id}` and `room.members`.
import { assert, collect, rpc, runScenario, show } from "./lib.mjs";

await runScenario("presence", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const aId = await ctx.clientId(a);
  const bId = await ctx.clientId(b);
  const roomId = ctx.uid("presence");

  const events = (client, type) => collect((cb) => client.onEvent(type, cb));
  const aJoined = events(a, "room.joined");
  const aMembers = events(a, "room.members");
  const aLeft = events(a, "room.left");
  const bJoined = events(b, "room.joined");
  const bMembers = events(b, "room.members");

  await a.joinOrCreate("echo_room", { roomId });
  await aMembers.next(
    (m) => m.room === roomId && m.p && m.p.count === 1,
    `A (the joiner) did not get room.members with count 1 for its own join (got ${show(aMembers.items)})`,
  );

  await b.joinOrCreate("echo_room", { roomId });

  const joined = await aJoined.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get room.joined {client_id: ${show(bId)}} when B joined (got ${show(aJoined.items)})`,
  );
  assert.equal(joined.room, roomId, `room.joined envelope room: ${show(joined)}`);

  const members2 = await aMembers.next(
    (m) => m.p && m.p.count === 2,
    `A did not get room.members with count 2 after B joined (got ${show(aMembers.items)})`,
  );
  assert.equal(members2.room, roomId, `room.members envelope room: ${show(members2)}`);
  assert.ok(Array.isArray(members2.p.members), `room.members p.members must be a list: ${show(members2)}`);
  assert.deepEqual(
    [...members2.p.members].sort(),
    [aId, bId].sort(),
    `room.members p.members must be the members' client_ids: ${show(members2)}`,
  );

  await bJoined.next(
    (m) => m.room === roomId && m.p && m.p.client_id === bId,
    `B (the joiner) did not get room.joined about itself (got ${show(bJoined.items)})`,
  );
  await bMembers.next(
    (m) => m.room === roomId && m.p && m.p.count === 2,
    `B (the joiner) did not get room.members with count 2 (got ${show(bMembers.items)})`,
  );

  // Leave with the room in the payload.
  let leftMark = aLeft.mark();
  const membersMark = aMembers.mark();
  const left1 = await rpc(b, "room.leave", { room: roomId });
  assert.equal(left1 && left1.ok, true, `room.leave {room} answered ${show(left1)}`);
  const leftEvent = await aLeft.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get room.left {client_id: ${show(bId)}} after B's room.leave {room} (got ${show(aLeft.items)})`,
    { from: leftMark },
  );
  assert.equal(leftEvent.room, roomId, `room.left envelope room: ${show(leftEvent)}`);
  const members1 = await aMembers.next(
    (m) => m.p && m.p.count === 1,
    `A did not get room.members with count 1 after B left (got ${show(aMembers.items)})`,
    { from: membersMark },
  );
  assert.equal(members1.room, roomId, `room.members envelope room: ${show(members1)}`);
  assert.deepEqual(members1.p.members, [aId], `room.members after B left: ${show(members1)}`);

  // Join again, then leave with the room only in the envelope.
  const joinedMark = aJoined.mark();
  await b.joinOrCreate("echo_room", { roomId });
  await aJoined.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get a second room.joined when B re-joined (got ${show(aJoined.items)})`,
    { from: joinedMark },
  );
  leftMark = aLeft.mark();
  const left2 = await rpc(b, "room.leave", {}, roomId);
  assert.equal(left2 && left2.ok, true, `room.leave {} with envelope room answered ${show(left2)}`);
  await aLeft.next(
    (m) => m.p && m.p.client_id === bId,
    `A did not get room.left after B's room.leave with the room in the envelope (got ${show(aLeft.items)})`,
    { from: leftMark },
  );
});
