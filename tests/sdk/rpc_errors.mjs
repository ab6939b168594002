// Scenario 7 — RPC errors (rooms.md, "Envelope", "Rooms", "Errors"): every RPC
// gets exactly one rpc.response, and a failing one resolves (never hangs) with
// `{ok:false, error:<text>, code}`: an unknown room type → unknown_room_type
// (never a silent fallback), joining a room one is already in → already_joined,
// an unknown `t` with a rid → unknown_type.
import { assert, assertRpcError, rpc, runScenario, show } from "./lib.mjs";

await runScenario("rpc_errors", async (ctx) => {
  const a = await ctx.connect("A");

  assertRpcError(
    await rpc(a, "room.join_or_create", { roomType: "no_such_type" }),
    "unknown_room_type",
    'room.join_or_create {roomType:"no_such_type"}',
  );
  // What joinOrCreate("no_such_type") sends: roomId and options undefined
  // (msgpack: fixext1 type 0, to be read as absent).
  assertRpcError(
    await rpc(a, "room.join_or_create", { roomType: "no_such_type", roomId: undefined, options: undefined }),
    "unknown_room_type",
    'room.join_or_create {roomType:"no_such_type", roomId: undefined, options: undefined}',
  );
  // The catalog's spelling.
  assertRpcError(
    await rpc(a, "room.join_or_create", { room_type: "no_such_type", room: ctx.uid("nope") }),
    "unknown_room_type",
    'room.join_or_create {room_type:"no_such_type", room}',
  );

  const roomId = ctx.uid("twice");
  const room = await a.joinOrCreate("echo_room", { roomId });
  assert.equal(room.id, roomId, `joinOrCreate returned room ${show(room.id)}`);
  // The same request joinOrCreate sends, a second time.
  assertRpcError(
    await rpc(a, "room.join_or_create", { roomType: "echo_room", roomId, options: { roomId } }, roomId),
    "already_joined",
    `a second room.join_or_create of ${roomId}`,
  );

  assertRpcError(await rpc(a, "no.such.type", {}), "unknown_type", 'an RPC of unknown type "no.such.type"');

  // The session is still usable.
  const listed = await a.listRooms("echo_room");
  assert.equal(listed && listed.ok, true, `listRooms after the errors: ${show(listed)}`);
  assert.equal(a.rpc.pending.size, 0, `RPCs left unanswered: ${show([...a.rpc.pending.keys()])}`);
});
