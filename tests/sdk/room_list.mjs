// Scenario 6 — room list (rooms.md, "Rooms"): `client.listRooms(type)` resolves
// to `{ok:true, rooms:[{id, room_type, members, ...}]}` where `members` is a
// count; the type filter holds; without a type every room is listed; the list
// covers every shard (several rooms, so that with 2 shards some almost surely
// live on each). Directory updates cross shards asynchronously, so the list is
// polled for up to LIST_SETTLE_MS before asserting.
import { assert, runScenario, rpc, show, sleep } from "./lib.mjs";

const LIST_SETTLE_MS = 2_000;

await runScenario("room_list", async (ctx) => {
  const clients = {};
  for (const label of ["A", "B", "C", "D", "E", "F"]) clients[label] = await ctx.connect(label);

  const echo = [ctx.uid("list-echo"), ctx.uid("list-echo"), ctx.uid("list-echo"), ctx.uid("list-echo")];
  const counter = ctx.uid("list-counter");
  await clients.A.joinOrCreate("echo_room", { roomId: echo[0] });
  await clients.B.joinOrCreate("echo_room", { roomId: echo[0] });
  await clients.C.joinOrCreate("echo_room", { roomId: echo[1] });
  await clients.D.joinOrCreate("echo_room", { roomId: echo[2] });
  await clients.E.joinOrCreate("echo_room", { roomId: echo[3] });
  await clients.F.joinOrCreate("counter_room", { roomId: counter });
  const expectedEcho = new Map([
    [echo[0], 2],
    [echo[1], 1],
    [echo[2], 1],
    [echo[3], 1],
  ]);

  const problems = (response, roomType) => {
    const out = [];
    if (!response || response.ok !== true) return [`not ok: ${show(response)}`];
    if (!Array.isArray(response.rooms)) return [`rooms is not a list: ${show(response)}`];
    const byId = new Map(response.rooms.map((r) => [r && r.id, r]));
    const expected = roomType === "echo_room" ? expectedEcho : new Map([...expectedEcho, [counter, 1]]);
    for (const [id, members] of expected) {
      const entry = byId.get(id);
      const type = id === counter ? "counter_room" : "echo_room";
      if (!entry) out.push(`room ${id} is missing`);
      else {
        if (entry.members !== members) out.push(`room ${id}: members ${show(entry.members)}, expected the count ${members}`);
        if (entry.room_type !== type) out.push(`room ${id}: room_type ${show(entry.room_type)}, expected ${show(type)}`);
      }
    }
    if (roomType === "echo_room") {
      for (const r of response.rooms) {
        if (!r || r.room_type !== "echo_room") out.push(`listRooms("echo_room") returned a room that is not an echo_room: ${show(r)}`);
      }
    }
    return out;
  };

  for (const roomType of ["echo_room", undefined]) {
    const call = roomType ? `listRooms(${show(roomType)})` : "listRooms()";
    const deadline = Date.now() + LIST_SETTLE_MS;
    let response;
    let found;
    for (;;) {
      response = await rpc(clients.A, "room.list", roomType ? { roomType } : {});
      found = problems(response, roomType);
      if (found.length === 0 || Date.now() >= deadline) break;
      await sleep(100);
    }
    assert.deepEqual(found, [], `${call} (polled for ${LIST_SETTLE_MS} ms) answered ${show(response)}`);
  }

  // And through the SDK's own helper, which sends {roomType}.
  const viaSdk = await clients.B.listRooms("echo_room");
  assert.deepEqual(problems(viaSdk, "echo_room"), [], `client.listRooms("echo_room") answered ${show(viaSdk)}`);
});
