// Scenario 2 — join and relay: two SDK clients joinOrCreate one echo_room; a
// room.send from either reaches both members (sender included) through
// room.onMessage, with the data unchanged, `from` = the sender's client_id and
// the envelope `room` = the room id (rooms.md, "Room messaging": echo_room).
import { assert, collect, runScenario, show } from "./lib.mjs";

await runScenario("relay", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const aId = await ctx.clientId(a);
  const bId = await ctx.clientId(b);
  const roomId = ctx.uid("echo");

  const roomA = await a.joinOrCreate("echo_room", { roomId });
  assert.equal(roomA.id, roomId, `A joinOrCreate returned room ${show(roomA.id)}, expected ${show(roomId)}`);
  const roomB = await b.joinOrCreate("echo_room", { roomId });
  assert.equal(roomB.id, roomId, `B joinOrCreate returned room ${show(roomB.id)}, expected ${show(roomId)}`);

  const chat = (room) => collect((cb) => room.onMessage("chat", (data, message) => cb({ data, message })));
  const aChat = chat(roomA);
  const bChat = chat(roomB);

  const check = async (who, inbox, text, fromLabel, fromId) => {
    const got = await inbox.next(
      (m) => m.data && m.data.text === text,
      `${who} did not receive the "chat" ${show({ text })} sent by ${fromLabel} in room ${roomId} ` +
        `(received so far: ${show(inbox.items.map((m) => m.message))})`,
    );
    assert.deepEqual(got.data, { text }, `${who}: relayed data`);
    assert.equal(got.message.room, roomId, `${who}: envelope room of the relayed message: ${show(got.message)}`);
    assert.equal(got.message.t, "room.message", `${who}: relayed frame type: ${show(got.message)}`);
    assert.equal(got.message.p.type, "chat", `${who}: relayed p.type: ${show(got.message)}`);
    assert.equal(
      got.message.p.from,
      fromId,
      `${who}: relayed p.from must be the sender's client_id ${show(fromId)} (${fromLabel}): ${show(got.message)}`,
    );
  };

  roomA.send("chat", { text: "hi" });
  await check("A (the sender)", aChat, "hi", "A", aId);
  await check("B", bChat, "hi", "A", aId);

  roomB.send("chat", { text: "yo" });
  await check("B (the sender)", bChat, "yo", "B", bId);
  await check("A", aChat, "yo", "B", bId);

  assert.equal(aChat.items.length, 2, `A got ${aChat.items.length} chat messages, expected 2: ${show(aChat.items.map((m) => m.message))}`);
  assert.equal(bChat.items.length, 2, `B got ${bChat.items.length} chat messages, expected 2: ${show(bChat.items.map((m) => m.message))}`);
});
