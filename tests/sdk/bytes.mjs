// Scenario 3 — bytes: room.sendBytes is relayed by echo_room to every member as
// `room.message.bytes {type, data_b64, from}` with envelope `room` (rooms.md,
// "Room messaging": standard padded base64, in either codec, for a client that
// did not ask for `bin_bytes`); decodeRoomBytes gives back the bytes sent.
import { assert, collect, runScenario, sdk, show } from "./lib.mjs";

const SENT = [1, 2, 3, 250];

await runScenario("bytes", async (ctx) => {
  const a = await ctx.connect("A");
  const b = await ctx.connect("B");
  const aId = await ctx.clientId(a);
  const roomId = ctx.uid("bytes");

  const roomA = await a.joinOrCreate("echo_room", { roomId });
  await b.joinOrCreate("echo_room", { roomId });

  const aBytes = collect((cb) => a.onEvent("room.message.bytes", cb));
  const bBytes = collect((cb) => b.onEvent("room.message.bytes", cb));

  roomA.sendBytes("blob", new Uint8Array(SENT));

  for (const [who, inbox] of [["B (the receiver)", bBytes], ["A (the sender)", aBytes]]) {
    const message = await inbox.next(
      (m) => m && m.p && m.p.type === "blob",
      `${who} did not receive a room.message.bytes of type "blob" in room ${roomId}`,
    );
    assert.equal(message.room, roomId, `${who}: envelope room of room.message.bytes: ${show(message)}`);
    assert.equal(
      typeof message.p.data_b64,
      "string",
      `${who}: room.message.bytes must carry data_b64 (a base64 string) for a client without bin_bytes: ${show(message)}`,
    );
    assert.match(message.p.data_b64, /^[A-Za-z0-9+/]*={0,2}$/, `${who}: data_b64 is not standard base64: ${show(message)}`);
    assert.equal(message.p.data_b64.length % 4, 0, `${who}: data_b64 is not padded: ${show(message)}`);
    const decoded = sdk.decodeRoomBytes(message.p.data_b64);
    assert.ok(decoded instanceof Uint8Array, `${who}: decodeRoomBytes(${show(message.p.data_b64)}) failed`);
    assert.deepEqual(Array.from(decoded), SENT, `${who}: decoded bytes of ${show(message)}`);
    assert.equal(message.p.from, aId, `${who}: p.from must be the sender's client_id ${show(aId)}: ${show(message)}`);
  }
});
