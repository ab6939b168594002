// Scenario 8 — many rooms on two shards (ARCHITECTURE.md "home shard";
// rooms.md "Room messaging"): 6 clients join 3 echo rooms, 2 per room,
// concurrently; connections land on either shard and move to their room's home
// shard. Each message reaches exactly the members of its own room (sender
// included) and never a member of another room. Phase 2 moves one client from
// one room to another (leave, then join) and checks the relay follows it.
import { QUIET_MS, assert, collect, rpc, runScenario, show, sleep } from "./lib.mjs";

await runScenario("shards", async (ctx) => {
  const labels = ["C0", "C1", "C2", "C3", "C4", "C5"];
  const clients = await Promise.all(labels.map((l) => ctx.connect(l)));
  const ids = await Promise.all(clients.map((c) => ctx.clientId(c)));
  const rooms = [ctx.uid("shard-r0"), ctx.uid("shard-r1"), ctx.uid("shard-r2")];
  // membership[i] = index of the room client i is in
  const membership = [0, 0, 1, 1, 2, 2];

  const inbox = clients.map((c) => collect((cb) => c.onEvent("room.message", cb)));
  const handles = await Promise.all(
    clients.map((c, i) => c.joinOrCreate("echo_room", { roomId: rooms[membership[i]] })),
  );
  handles.forEach((h, i) => assert.equal(h.id, rooms[membership[i]], `${labels[i]} joined ${show(h.id)}`));

  const exchange = async (phase, senders) => {
    const marks = inbox.map((box) => box.mark());
    for (const i of senders) handles[i].send("chat", { text: `${phase}-${labels[i]}` });
    for (let i = 0; i < clients.length; i += 1) {
      const mine = membership[i];
      const expected = senders.filter((s) => membership[s] === mine);
      for (const s of expected) {
        const text = `${phase}-${labels[s]}`;
        const got = await inbox[i].next(
          (m) => m.p && m.p.data && m.p.data.text === text,
          `${phase}: ${labels[i]} (in ${rooms[mine]}) did not receive ${show(text)} sent by ${labels[s]} in the same room`,
          { from: marks[i] },
        );
        assert.equal(got.room, rooms[mine], `${phase}: envelope room of ${show(got)} at ${labels[i]}`);
        assert.equal(got.p.from, ids[s], `${phase}: p.from of ${show(got)} at ${labels[i]} must be ${labels[s]}'s client_id`);
      }
    }
    await sleep(QUIET_MS);
    for (let i = 0; i < clients.length; i += 1) {
      const mine = membership[i];
      const received = inbox[i].items.slice(marks[i]);
      const stray = received.filter(
        (m) => m.room !== rooms[mine] || !(m.p && m.p.data && typeof m.p.data.text === "string" &&
          senders.some((s) => membership[s] === mine && m.p.data.text === `${phase}-${labels[s]}`)),
      );
      assert.deepEqual(stray, [], `${phase}: ${labels[i]} (in ${rooms[mine]}) received messages from outside its room`);
      const expectedCount = senders.filter((s) => membership[s] === mine).length;
      assert.equal(received.length, expectedCount, `${phase}: ${labels[i]} got ${show(received)}, expected ${expectedCount} messages`);
    }
  };

  await exchange("p1", [0, 1, 2, 3, 4, 5]);

  // Phase 2: C0 leaves r0 and joins r1 (a session that moves from one room's
  // home shard to another's, when the two rooms' homes differ).
  const left = await rpc(clients[0], "room.leave", { room: rooms[0] });
  assert.equal(left && left.ok, true, `C0 room.leave ${rooms[0]} answered ${show(left)}`);
  handles[0] = await clients[0].joinOrCreate("echo_room", { roomId: rooms[1] });
  assert.equal(handles[0].id, rooms[1], `C0 joined ${show(handles[0].id)}`);
  membership[0] = 1;
  await exchange("p2", [0, 1, 2, 4]);
});
