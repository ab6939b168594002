#!/usr/bin/env python3
"""Writes the committed fuzz seeds into fuzz/seeds/<target>/ (run from anywhere).

The seeds are small valid and hostile inputs each target starts from: a handshake, a
join, room.message in JSON and MessagePack, 100x `[`, MessagePack with huge declared
lengths, map16 and fixext1 forms. sim_session seeds are whole client sessions in that
target's record format; cloudlink_frames and peerjs_frames seeds are scripts of client
operations in theirs (a lobby's life, a host leaving, token mode, holds running out, ids
taken and taken over, raw and malformed frames), pairkit_messages seeds too (a whole game
with a flow, resumes and takeovers, tracked broadcasts, requests, the join throttle, raw
frames, the TTL, a tight rate, repeated keys), upgrade_query seeds upgrades (ugi rule
edges, Origin wildcards, the per-address bucket, percent-encoding). Plain Python, no
packages: MessagePack is encoded below.
"""
import json
import os
import struct

SEEDS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")


def mp(v):
    """Minimal MessagePack encoder (the forms msgpackr writes)."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        return b"\xd3" + struct.pack(">q", v) if v < 0 else b"\xcf" + struct.pack(">Q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(mp(x) for x in v)
    if isinstance(v, dict):
        head = bytes([0x80 | len(v)]) if len(v) < 16 else b"\xde" + struct.pack(">H", len(v))
        return head + b"".join(mp(k) + mp(x) for k, x in v.items())
    raise TypeError(v)


def js(v):
    return json.dumps(v, separators=(",", ":")).encode()


DATA = {"x": 1.5, "y": -2, "name": "player-one", "tags": ["a", "b"], "alive": True}
HELLO = {"v": 1, "codecs": ["json"], "project_id": "demo", "token": ""}
HELLO_MP = {"v": 1, "t": "handshake", "p": {"codecs": ["msgpack", "json"], "project_id": "demo",
                                             "checksum": "crc32", "features": ["nested_ops", "bin_bytes"]}}
JOIN = {"v": 1, "t": "room.join_or_create", "rid": "1", "room": "r", "p": {"room_type": "echo_room"}}
JOIN_T = {"v": 1, "t": "room.join_or_create", "rid": "2", "room": "t", "p": {"roomType": "state_room"}}
MESSAGE = {"v": 1, "t": "room.message", "room": "r", "p": {"type": "chat", "data": DATA}}
BYTES = {"v": 1, "t": "room.message.bytes", "room": "r", "p": {"type": 7, "data_b64": "AQID"}}
SET = {"v": 1, "t": "room.message", "room": "t", "p": {"type": "state.set", "data": {"path": "/a/b/0", "value": [1, {"k": None}]}}}
DEL = {"v": 1, "t": "room.message", "room": "t", "p": {"type": "state.del", "data": {"path": "/a~1b"}}}
RELAY = {"v": 1, "t": "position.update", "room": "r", "p": {"x": 1, "y": 2}}
LEAVE = {"v": 1, "t": "room.leave", "rid": "3", "room": "r"}
LIST = {"v": 1, "t": "room.list", "rid": "4", "p": {}}
ACK = {"v": 1, "t": "state.ack", "room": "t", "p": {"seq": 1}}

# map16 {"v":1,"t":"room.message","u":undefined,"p":{"type":"chat","data":bin}}, as msgpackr writes it
MAP16_FIXEXT = (b"\xde\x00\x04" + mp("v") + b"\xcb" + struct.pack(">d", 1.0) + mp("t") + mp("room.message")
                + mp("u") + b"\xd4\x00\x00" + mp("p") + mp({"type": "chat", "data": b"\x01\x02\x03"}))
HUGE = [b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff\x01", b"\xdb\xff\xff\xff\xff", b"\xc6\xff\xff\xff\xff"]
DEEP_JSON = b"[" * 100 + b"]" * 100
DEEP_MP = b"\x91" * 100 + b"\xc0"

CODEC_SEEDS = {
    "handshake.json": js(HELLO),
    "join.json": js(JOIN),
    "message.json": js(MESSAGE),
    "deep.json": DEEP_JSON,
    "escapes.json": rb'{"s":"\u00e9\ud83d\ude00\n\"","n":[-0,1e308,-9223372036854775808,18446744073709551615,0.1]}',
}
MSGPACK_SEEDS = {
    "handshake.mp": mp(HELLO_MP),
    "join.mp": mp(JOIN),
    "message.mp": mp(MESSAGE),
    "map16_fixext.mp": MAP16_FIXEXT,
    "deep.mp": DEEP_MP,
    "floats.mp": b"\x93\xca" + struct.pack(">f", 0.5) + b"\xcb" + struct.pack(">d", 1e300) + b"\xd3" + struct.pack(">q", -2**63),
    **{f"huge_{i}.mp": h for i, h in enumerate(HUGE)},
}

# The differential edges (src/fuzzcheck/json_decode.rs, msgpack_decode.rs): where huddle's
# decoders and serde_json / rmpv could part ways.
JSON_DIFF_SEEDS = {
    "diff_numbers.json": b"[-0,-0.0,0.1,1e21,1e-7,5e-324,2.2250738585072011e-308,1.7976931348623157e308,"
                         b"9007199254740993,-9223372036854775809,18446744073709551616,100000000000000000000,"
                         b"1E+2,1e-400,0.30000000000000004,123456789012345678901234567890e-10]",
    "diff_too_big.json": b"[1e400]",
    "diff_repeated_keys.json": b'{"a":1,"b":2,"a":3,"c":{"x":1,"x":{"y":[1]}}}',
    "diff_repeated_wide.json": ("{" + ",".join(f'"k{i}":{i}' for i in range(40)) + ',"k0":"last"}').encode(),
    "diff_surrogates.json": rb'["\ud83d\ude00","\uD834\uDD1E","\u0000","\u001f\/"]',
    "diff_lone_surrogate.json": rb'["\ud800"]',
    "diff_lone_low.json": rb'"\udc00x"',
    "diff_scalar.json": b" \t\r\n 42 \n",
    "diff_trailing.json": b'{"a":1} {"b":2}',
    "diff_control.json": b'["a\x01b"]',
    "diff_depth_64.json": b"[" * 64 + b"]" * 64,
    "diff_depth_65.json": b"[" * 65 + b"]" * 65,
    "diff_depth_200.json": b'{"a":' * 200 + b"1" + b"}" * 200,
    "diff_literals.json": b"[true,false,null,tru]",
    "diff_unicode_keys.json": '{"\u00e9":1,"e\u0301":2,"\U0001F600":3,"\uffff":4,"\\u00e9":5}'.encode(),
    "diff_leading_zero.json": b"[01]",
    "diff_bom.json": b"\xef\xbb\xbf{}",
}
MSGPACK_DIFF_SEEDS = {
    "diff_reserved.mp": b"\x92\x01\xc1",
    "diff_ext8_undefined.mp": b"\x91\xc7\x01\x00\x00",
    "diff_fixext_other.mp": b"\x91\xd4\x05\x00",
    "diff_ext_timestamp.mp": b"\xd6\xff" + struct.pack(">I", 1),
    "diff_undefined_top.mp": b"\xd4\x00\x00",
    "diff_repeated_keys.mp": b"\x83" + mp("a") + mp(1) + mp("a") + mp(2) + mp("b") + b"\xd4\x00\x00",
    "diff_undefined_after.mp": b"\x82" + mp("a") + mp(1) + mp("a") + b"\xd4\x00\x00",
    "diff_int_key.mp": b"\x81\x01\x02",
    "diff_bad_utf8.mp": b"\xa2\xff\xfe",
    "diff_trailing.mp": b"\xc0\xc0",
    "diff_widths.mp": b"\x96\xcc\xff\xcd\xff\xff\xd0\x80\xd1\x80\x00\xcf" + b"\xff" * 8 + b"\xd3\x80" + b"\x00" * 7,
    "diff_float_edges.mp": b"\x94\xca\x7f\xc0\x00\x01\xcb" + struct.pack(">d", -0.0) + b"\xca" + struct.pack(">f", float("inf"))
                          + b"\xcb\x00\x00\x00\x00\x00\x00\x00\x01",
    "diff_str_widths.mp": b"\x93\xd9\x01a\xda\x00\x01b\xdb\x00\x00\x00\x01c",
    "diff_bin.mp": b"\x92\xc5\x00\x02\xff\x00\xc6\x00\x00\x00\x00",
    "diff_depth_64.mp": b"\x91" * 63 + b"\x80",
    "diff_depth_65.mp": b"\x91" * 64 + b"\x80",
    "diff_map32.mp": b"\xdf\x00\x00\x00\x01" + mp("k") + b"\xdc\x00\x01\xc3",
}


def record(ctl, payload=b"", length=None):
    """One sim_session record."""
    return bytes([ctl]) + struct.pack("<H", len(payload) if length is None else length) + payload


def session(setup, *records):
    return bytes([setup]) + b"".join(records)


A, B, CLOCK, RECONNECT, ECHO, D_SEQ, C_SEQ, RPC = range(8)
RPC_C = 8  # with RPC: C asks rather than D
RPC_KINDS = [0x00, 0x10, 0x20, 0x30]  # with RPC: room.list, join again, unknown type, leave elsewhere
SIM_SEEDS = {
    "echo_json": session(0, record(A, js(HELLO)), record(A, js(JOIN)), record(A, js(MESSAGE)), record(B, js(MESSAGE)),
                         record(A, js(RELAY)), record(A, js(LEAVE))),
    # A speaks msgpack on shard 1; rooms r (home 1) and t (home 0) make it a remote member of one.
    "two_homes_msgpack": session(0b011, record(A, js(HELLO_MP)), record(A, mp(JOIN)), record(A, mp(JOIN_T)),
                                 record(A, mp(MESSAGE)), record(A, mp(SET)), record(A, mp(DEL)), record(A, mp(ACK)),
                                 record(A, MAP16_FIXEXT), record(B, mp(MESSAGE)), record(A, mp(BYTES)),
                                 record(A, mp(LIST))),
    "state_room": session(0b100, record(A, js(HELLO)), record(A, js(JOIN_T)), record(A, js(SET)), record(CLOCK, length=150),
                          record(A, js(DEL)), record(A, js(ACK)), record(B, js(JOIN_T)), record(B, js(SET)),
                          record(CLOCK, length=20_000), record(A, js({"v": 1, "t": "state.resync", "room": "t"}))),
    "reconnect": session(0, record(A, js(HELLO)), record(A, js(JOIN)), record(RECONNECT | 8), record(A, js(HELLO)),
                         record(A, js(JOIN)), record(A, js(MESSAGE)), record(CLOCK, length=6_000)),
    "hostile": session(1, record(A, js(HELLO)), record(A, DEEP_JSON), record(A, b"\xdd\xff\xff\xff\xff"),
                       record(A, js({"v": 2, "t": "x", "rid": "9"})), record(B, HUGE[1]), record(B, DEEP_MP),
                       record(A, js({"v": 1, "t": "nope", "rid": "r"})), record(A, b"{\"v\":1,")),
    "no_handshake": session(0, record(A, js(MESSAGE)), record(CLOCK, length=6_000)),
    # C (room s) and D (room r) on either shard: sequenced messages, RPCs of each kind, and
    # A joining s so that C's messages have a receiver besides the room.
    "sequenced_rpcs": session(0b010000, record(A, js(HELLO)), record(A, js({**JOIN, "room": "s"})),
                              record(D_SEQ), record(C_SEQ), record(D_SEQ), record(B, js(MESSAGE)), record(C_SEQ),
                              *[record(RPC | k) for k in RPC_KINDS], *[record(RPC | RPC_C | k) for k in RPC_KINDS],
                              record(D_SEQ), record(CLOCK, length=500), record(D_SEQ), record(C_SEQ)),
    "sequenced_remote": session(0b101011, record(A, js(HELLO)), record(A, js(JOIN)), *[record(D_SEQ)] * 5,
                                record(RECONNECT | 8), record(A, js(HELLO)), record(A, js(JOIN)),
                                *[record(D_SEQ), record(C_SEQ), record(RPC | 0x10)] * 3, record(B, js(LEAVE)),
                                record(D_SEQ), record(RPC | RPC_C)),
}

HTTP_SEEDS = {
    "upgrade": b"GET /rooms?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nEXTRA",
    "healthz": b"GET /healthz HTTP/1.1\r\n\r\n",
    "metrics": b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": b"POST /rooms HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    "no_key": b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
    "partial": b"GET /rooms HTTP/1.1\r\nUpgrade: webs",
}

FRAME_SEEDS = {
    "text": b"\x81\x05hello",
    "len16": b"\x82\x7e\x00\x80" + b"\x00" * 128,
    "len64_huge": b"\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff",
    "masked_close": b"\x88\x82\x01\x02\x03\x04\x02\xea",
    "empty": b"\x89\x00",
}


def op(kind, path, tokens=False):
    """One state_ops record: kind is the op byte, path a str or token indices."""
    raw = bytes(path) if tokens else path.encode()
    return bytes([kind, len(raw) | (0x80 if tokens else 0)]) + raw


STATE_SEEDS = {
    "set_del": op(0x12, "/a/b") + op(0x08, "/l") + op(0x30, "/l/0", ) + op(0x01, "/a/b"),
    "tokens": op(0x08, [0], True) + op(0x22, [0, 4], True) + op(0x0a, [0, 2, 1], True) + op(0x01, [0, 2], True),
    "root": op(0x0c, "") + op(0x02, "") + op(0x01, "") + op(0x0a, "/"),
    "deep": op(0x02, "/a" * 60) + op(0x01, "/a" * 30),
    "escapes": op(0x02, "/a~1b/c~0d") + op(0x02, "/~2") + op(0x01, "/a~1b"),
}


# cloudlink_frames: [setup][setup2] then operations; op = kind << 2 | slot (see the target).
(CL_RAW, CL_BIN, CL_INIT, CL_KEEPALIVE, CL_LIST, CL_FIND, CL_CREATE, CL_JOIN, CL_MANAGE, CL_RELAY, CL_ADVANCE,
 CL_RECONNECT, CL_UNKNOWN, CL_WRONG, CL_NOT_OBJECT, CL_DISCONNECT) = range(16)
CL_NAMES = ["lobby", "lobby", "room", "room", "Lobby", "x" * 64, "x" * 65, "", "é" * 64, "é" * 65, "名前", " ", "a b", "L"]


def cl_op(kind, slot, *args):
    return bytes([kind << 2 | slot]) + b"".join(a if isinstance(a, bytes) else bytes([a]) for a in args)


def cl_name(name):
    """The byte that names a lobby from the target's table."""
    i = CL_NAMES.index(name)
    return next(b for b in range(256) if b % 18 >= 5 and (b // 18 + b % 18) % 14 == i)


NO, NULL = 0, 1
MAX = {-1: 2, 1: 3, 2: 4, 3: 5, 0: 6, 2.5: 7, "abc": 8}
PW = {None: 0, "": 2, "pw": 3, "PW": 4}
FLAG = {None: 0, True: 2, False: 3, "true": 4}
METHOD = {m: i for i, m in enumerate(["lock", "unlock", "kick", "change_password", "change_max_players",
                                      "close_lobby", "transfer_ownership", "explode"])}


def cl_create(slot, name, max_players=-1, pw=None, locked=None, relay=True):
    return cl_op(CL_CREATE, slot, 1, cl_name(name), MAX[max_players], PW[pw], FLAG[locked], FLAG[relay])


def cl_join(slot, name, pw=None):
    return cl_op(CL_JOIN, slot, cl_name(name), PW[pw])


def cl_manage(slot, method, who=None, max_players=None, pw=None):
    if who is not None:
        return cl_op(CL_MANAGE, slot, METHOD[method], 0, 2 + who)
    if max_players is not None:
        return cl_op(CL_MANAGE, slot, METHOD[method], 1, MAX[max_players])
    return cl_op(CL_MANAGE, slot, METHOD[method], 2, PW[pw])


def cl_relay(slot, opcode, to=None):
    """G_MSG = 0, G_VAR, G_LIST, P_MSG = 3, …; payload "hello", recipient slot `to`, id "hello"."""
    return cl_op(CL_RELAY, slot, opcode, 2, 6, 2, 2 + to if to is not None else 0, 2, 6, 2, 0, 3, 5, 1)


def cl_raw(slot, text, kind=CL_RAW):
    b = text.encode() if isinstance(text, str) else text
    return cl_op(kind, slot, len(b), b)


CL_SEEDS = {
    "lobby_life": bytes([0b0010, 0]) + cl_create(0, "lobby") + cl_join(1, "lobby") + cl_join(2, "lobby")
    + cl_relay(1, 0) + cl_relay(2, 3, to=0) + cl_op(CL_FIND, 3, cl_name("lobby")) + cl_op(CL_LIST, 3, 0)
    + cl_manage(0, "lock", pw="") + cl_join(3, "lobby") + cl_manage(0, "unlock", pw="")
    + cl_manage(0, "transfer_ownership", who=1) + cl_manage(1, "kick", who=2) + cl_manage(1, "close_lobby", pw=""),
    "host_leaves": bytes([0b0101, 0]) + cl_create(1, "room", pw="pw") + cl_join(0, "room", "PW") + cl_join(0, "room", "pw")
    + cl_join(2, "room", "pw") + cl_op(CL_DISCONNECT, 1, 0) + cl_create(0, "lobby") + cl_op(CL_RECONNECT, 1, 0b0101)
    + cl_join(1, "lobby") + cl_op(CL_DISCONNECT, 0, 1) + cl_op(CL_DISCONNECT, 1, 0),
    "token_mode": bytes([0b0100_1010, 0]) + cl_create(0, "lobby") + cl_join(1, "lobby")
    + cl_op(CL_RECONNECT, 3, 0b0001_0100) + cl_op(CL_RECONNECT, 2, 0b0011_0101) + cl_op(CL_INIT, 2, 2, 2, 4, 2),
    "raw": bytes([0b0110, 0]) + cl_create(0, "L", relay=True) + cl_join(1, "L") + cl_raw(0, '{"opcode":"KEEPALIVE"}')
    + cl_raw(1, '{"opcode":"G_MSG","payload":{"a":[1,2.5,"x"]},"id":"v","method":"set","origin":"me"}')
    + cl_raw(1, '{"opcode":"G_MSG","payload":1e400}') + cl_raw(0, '{"opcode":"INIT","opcode":"X"}')
    + cl_raw(0, b'{"opcode":"KEEPALIVE"}', CL_BIN) + cl_raw(2, "not json") + cl_raw(3, '["INIT"]'),
    "before_init": bytes([0b0011, 0x80]) + cl_op(CL_KEEPALIVE, 0, 0) + cl_op(CL_LIST, 0, 0) + cl_create(1, "lobby")
    + cl_relay(1, 0) + cl_op(CL_INIT, 0, 2, 3, 0, 2) + cl_op(CL_INIT, 1, 2, 8, 0, 0) + cl_op(CL_INIT, 0, 2, 2, 0, 0)
    + cl_op(CL_UNKNOWN, 0, 1, 0),
    "cap_and_full": bytes([0b0010_0110, 0]) + cl_create(0, "room", max_players=1) + cl_create(0, "room", max_players=2.5)
    + cl_create(0, "x" * 65) + cl_create(2, "room", max_players=1) + cl_join(1, "room") + cl_join(2, "room")
    + cl_manage(0, "change_max_players", max_players=3) + cl_join(2, "room") + cl_manage(0, "change_max_players", max_players=0)
    + cl_manage(0, "change_password", pw="pw") + cl_join(3, "room", "pw") + cl_manage(0, "explode", pw=""),
    "rate_idle": bytes([0b0001, 3]) + cl_create(0, "lobby") + cl_join(1, "lobby") + cl_op(CL_KEEPALIVE, 1, 0) * 20
    + cl_op(CL_ADVANCE, 0, struct.pack("<H", 50_000)) + cl_op(CL_ADVANCE, 0, struct.pack("<H", 50_000)),
}


# peerjs_frames: [setup][q0..q3] then operations; op = kind << 2 | slot (see the target). A query byte q is
# id | token << 3 | key << 5 over the target's tables.
PJ_CONNECT, PJ_SIGNAL, PJ_RAW, PJ_ADVANCE, PJ_DISCONNECT, PJ_RECONNECT, PJ_GET, PJ_TO_SLOT = range(8)
PJ_ALICE, PJ_BOB, PJ_CAROL, PJ_A_B, PJ_A_PLUS_B, PJ_ULID, PJ_ALICE_TWICE, PJ_NO_ID = range(8)
PJ_T, PJ_U, PJ_NO_TOKEN = 0, 1, 2
PJ_KEY, PJ_WRONG_KEY, PJ_NO_KEY = 0, 2, 3
PJ_TYPES = {t: i for i, t in enumerate(["OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE", "HEARTBEAT"])}
PJ_DST = {None: 0, "null": 1, "": 2, 5: 3, "zed": 6, "alice": 9, "bob": 10, "carol": 11, "a b": 12}


def pj_q(id_, token=PJ_T, key=PJ_KEY):
    return id_ | token << 3 | key << 5


def pj_op(kind, slot, *args):
    return bytes([kind << 2 | slot]) + b"".join(a if isinstance(a, bytes) else bytes([a]) for a in args)


def pj_payload(p):
    """None: absent; "null"; else a string from the target's table (index) or raw text."""
    if p is None:
        return bytes([0])
    if p == "null":
        return bytes([1])
    if isinstance(p, int):
        return bytes([2, 6, p])
    b = p.encode()
    return bytes([2, 8, len(b)]) + b


def pj_signal(slot, kind, dst, payload=None, src=0):
    return pj_op(PJ_SIGNAL, slot, PJ_TYPES[kind], PJ_DST[dst], pj_payload(payload), src)


def pj_to(slot, kind, to, payload=None):
    return pj_op(PJ_TO_SLOT, slot, PJ_TYPES[kind], to, pj_payload(payload))


def pj_connect(slot, q, shard=0, nested=False, drop_old=False):
    return pj_op(PJ_CONNECT, slot, q, shard | nested << 1 | drop_old << 2)


def pj_advance(ms):
    return pj_op(PJ_ADVANCE, 0, struct.pack("<H", ms))


PJ_SEEDS = {
    "offer_answer": bytes([0b0010, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_CAROL), pj_q(PJ_A_B)])
    + pj_to(0, "OFFER", 1, '{"sdp":"v=0"}') + pj_to(1, "ANSWER", 0, 2) + pj_to(0, "CANDIDATE", 1, "null")
    + pj_signal(2, "OFFER", "a b", 3, src=1) + pj_signal(3, "CANDIDATE", "carol", 2, src=2) + pj_signal(0, "HEARTBEAT", None)
    + pj_signal(1, "LEAVE", "alice") + pj_signal(0, "OFFER", 5, 2) + pj_signal(0, "OFFER", "", 2),
    "hold_expire": bytes([0b0100, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_CAROL, key=PJ_NO_KEY), pj_q(PJ_ULID)])
    + pj_signal(0, "OFFER", "zed", 2) + pj_signal(0, "CANDIDATE", "zed", 3) + pj_signal(1, "OFFER", "zed", 4)
    + pj_signal(1, "OFFER", "carol", 5) + pj_signal(0, "LEAVE", "carol") + pj_advance(4000) + pj_connect(2, pj_q(PJ_CAROL), 1)
    + pj_advance(1500) + pj_signal(3, "ANSWER", "zed") + pj_advance(6000),
    "collisions": bytes([0b1010, pj_q(PJ_ALICE), pj_q(PJ_ALICE, PJ_U), pj_q(PJ_A_B), pj_q(PJ_A_PLUS_B, PJ_U)])
    + pj_connect(1, pj_q(PJ_ALICE_TWICE), 1) + pj_to(0, "OFFER", 2, 2) + pj_to(1, "OFFER", 2, 3)
    + pj_op(PJ_RECONNECT, 2, 0b0100) + pj_op(PJ_RECONNECT, 3, 0b0011) + pj_op(PJ_DISCONNECT, 1, 0)
    + pj_op(PJ_RECONNECT, 0, 0b0001) + pj_to(2, "OFFER", 1, 2),
    "leave": bytes([0, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_CAROL), pj_q(PJ_ULID)]) + pj_signal(0, "LEAVE", None)
    + pj_signal(1, "OFFER", "alice", 2) + pj_signal(0, "OFFER", "bob", 2) + pj_connect(0, pj_q(PJ_ALICE, PJ_U), 1)
    + pj_signal(2, "LEAVE", "null") + pj_signal(2, "OFFER", "bob", 3) + pj_advance(5001),
    "errors": bytes([0b0101, pj_q(PJ_NO_ID), pj_q(PJ_BOB, PJ_NO_TOKEN), pj_q(PJ_CAROL, key=PJ_WRONG_KEY),
                     pj_q(PJ_ALICE, key=PJ_NO_KEY)]) + pj_signal(0, "OFFER", "bob", 2)
    + b"".join(pj_op(PJ_GET, 0, i) for i in range(9)) + pj_connect(0, pj_q(PJ_BOB), 0, nested=True),
    "discovery": bytes([0b10_0110, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_ULID), pj_q(PJ_A_B)]) + pj_op(PJ_GET, 0, 2)
    + pj_op(PJ_DISCONNECT, 1, 1) + pj_op(PJ_GET, 0, 3) + pj_signal(0, "LEAVE", None) + pj_op(PJ_GET, 0, 2),
    "raw": bytes([0, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_CAROL), pj_q(PJ_ULID)])
    + b"".join(pj_op(PJ_RAW, 0, len(t)) + t for t in [
        b'{"type":"OFFER","dst":"bob","payload":{"sdp":"v=0","n":[1,2.5e3,-0]}}',
        b'{"type":"OFFER","dst":"bob","dst":"carol","payload":1}', b'{"type":"CANDIDATE","dst":"zed"}', b"[1,2]",
        b'{"type":"OFFER","dst":"bob","payload":1e400}', b"not json", b'{"type":"LEAVE"}']),
    "idle": bytes([0b1_0000, pj_q(PJ_ALICE), pj_q(PJ_BOB), pj_q(PJ_CAROL), pj_q(PJ_ULID)])
    + pj_signal(0, "OFFER", "zed", 2) + pj_advance(20_000) + pj_signal(1, "HEARTBEAT", None) + pj_advance(30_000)
    + pj_to(1, "OFFER", 0, 2) + pj_advance(30_000),
}


# pairkit_messages: [setup][setup2] then operations; op = kind << 3 | slot (see the target). Slot 0 is host A,
# slot 5 host B, slots 1-4 phones. Field bytes pick from the target's tables (the comments say what they pick).
(PK_RAW, PK_BIN, PK_ADV, PK_ADV_S, PK_DROP, PK_RECONNECT, PK_CREATE, PK_JOIN, PK_LEAVE, PK_UPDATE, PK_KICK, PK_SEND,
 PK_BROADCAST, PK_REQUEST, PK_CANCEL, PK_RESEND, PK_SHOW, PK_DATA, PK_WIDGET, PK_RESPONSE, PK_ACK, PK_QUERY, PK_BC_ACK,
 PK_RESEND_ANSWER, PK_PING, PK_ANY, PK_NOT_OBJECT) = range(27)
PK_REPEATED = 31
PK_FLOW_A, PK_STRICT = 0x40, 0x80
PK_TIGHT, PK_MAX3, PK_FAIL2, PK_B, PK_4_JOINS_B, PK_SHORT_TTL, PK_AUTH = 3, 4, 8, 0x10, 0x20, 0x40, 0x80
PK_SCREENS = ["lobby", "vote", "draw", "nope", "", "Lobby"]
PK_WIDGETS = ["go", "stick", "pick", "canvas", "nope", ""]
PK_EVENTS = ["press", "release", "move", "select", "stroke_progress", "stroke_end", "tap"]
PK_RID = {None: 0, "": 2, "r1": 0x0A, "r2": 0x1A, "r3": 0x2A}  # by the high nibble (not the open request)
PK_BID = {None: 0, "b1": 0x09, "b2": 0x19, "b3": 0x29}  # by the high nibble (not a pending one)
PK_ACK_MS = [1, 100, 2_000, 60_000, 60_001, 0, -5, 30_000]
PK_REQ_MS = [1, 500, 5_000, 600_000, 600_001, 0, 20_000, 100]
PK_CUR, PK_CUR1, PK_NO_REV = 7, 5, 0  # revision: a player's current one, current + 1, absent


def pk(kind, slot, *args):
    return bytes([kind << 3 | slot]) + b"".join(a if isinstance(a, bytes) else bytes([a]) for a in args)


def pk_pid(n):
    """`p<n>` by name."""
    return (n - 1) << 4 | 6


def pk_pick(table, item):
    """An `opt` byte that keeps the good value, then the table index."""
    return bytes([3, table.index(item)])


def pk_ms(table, ms):
    return 0 if ms is None else table.index(ms) << 4 | 5


def pk_raw(slot, text):
    b = text.encode()
    return pk(PK_RAW, slot, len(b), b)


def pk_reconnect(slot, shard=0, ip=0, auto=0, close_frame=False, root=False):
    """auto: 0 nothing, 1 resume as it was, 2 resume with a wrong secret, 3 a fresh create/join."""
    return pk(PK_RECONNECT, slot, shard | ip << 1 | auto << 4 | close_frame << 6 | root << 7)


def pk_show(targets=None, screen="vote", data=3, rev=PK_NO_REV, slot=0):
    ids = 0 if targets is None else 7 | sum(1 << (3 + n) for n in targets)
    return pk(PK_SHOW, slot, ids, pk_pick(PK_SCREENS, screen), data, rev)


def pk_data(targets=None, data=4, rev=PK_NO_REV, slot=0):
    ids = 0 if targets is None else 7 | sum(1 << (3 + n) for n in targets)
    return pk(PK_DATA, slot, ids, data, rev)


def pk_widget(slot, widget, event, payload, rev=PK_NO_REV):
    return pk(PK_WIDGET, slot, pk_pick(PK_WIDGETS, widget), pk_pick(PK_EVENTS, event), payload, rev, 1)


def pk_request(rid, player, timeout=None, slot=0):
    return pk(PK_REQUEST, slot, PK_RID[rid], pk_pid(player), 3, 0, 2, pk_ms(PK_REQ_MS, timeout))


def pk_broadcast(bid, ack=None, slot=0):
    return pk(PK_BROADCAST, slot, 3, 0, 2, PK_BID[bid], pk_ms(PK_ACK_MS, ack))


def pk_join(slot, code=7, resume=None, token=2):
    """code 7: session 0's, 0x17: session 1's, 6: session 0's in lower case, 5: ZZZZ, 2: AB0D.
    resume: a player number (its token when token >= 2, a wrong one when 1)."""
    tail = bytes([0]) if resume is None else bytes([1 | token << 1, pk_pid(resume)])
    return pk(PK_JOIN, slot, code, 8, 4, 7) + tail


PK_SEEDS = {
    # A flow game on both shards: screens, input (one stale), ack, data, query, update, kick, the host leaves.
    "game": bytes([PK_FLOW_A | 1 << 2 | 1 << 4, 0]) + pk_show() + pk_widget(1, "pick", "select", 0x87)
    + pk(PK_ACK, 1, pk_pick(PK_SCREENS, "vote"), PK_CUR) + pk_data(rev=PK_CUR1) + pk(PK_QUERY, 2)
    + pk(PK_UPDATE, 3, 8, 4) + pk_widget(2, "stick", "move", 3, rev=8) + pk_show([1, 2], "draw", 4, rev=PK_CUR1)
    + pk_widget(1, "canvas", "stroke_progress", 6, rev=PK_CUR) + pk(PK_RESEND, 0, pk_pid(1), pk_pick(PK_WIDGETS, "canvas"),
                                                                    3, 0, 5) + pk(PK_RESEND_ANSWER, 1, 0, 5, 0)
    + pk(PK_KICK, 0, pk_pid(4), 3) + pk(PK_PING, 2, 3, 1) + pk(PK_LEAVE, 0, 3),
    # Drops and resumes: a phone back in its grace window, one after it, a phone and a host taken over.
    "resume": bytes([1 << 3 | 1 << 5, 0]) + pk(PK_DROP, 1, 0) + pk(PK_ADV, 0, struct.pack("<H", 5000))
    + pk_reconnect(1, 1, 1, auto=1) + pk_data(rev=PK_CUR1) + pk(PK_DROP, 2, 1) + pk(PK_ADV_S, 0, 11)
    + pk_reconnect(2, 0, 2, auto=1) + pk_join(2) + pk_reconnect(4, 1, 4) + pk_join(4, resume=1)
    + pk_reconnect(0, 1, 0, auto=1) + pk_reconnect(5, 0, 5) + pk(PK_CREATE, 5, 0, 0, 0xC3, 3) + pk(PK_QUERY, 1)
    + pk_reconnect(0, 0, 0, auto=2),
    # Tracked broadcasts: every ack, a reused id while pending, a deadline with a phone gone, none online.
    "broadcast": bytes([0b0011_0100, 0]) + pk_broadcast("b1", 30_000) + pk(PK_BC_ACK, 1, PK_BID["b1"]) + pk(PK_BC_ACK, 2, PK_BID["b1"])
    + pk_broadcast("b1") + pk(PK_BC_ACK, 3, PK_BID["b1"]) + pk(PK_BC_ACK, 4, PK_BID["b1"]) * 2 + pk_broadcast("b2")
    + pk(PK_DROP, 3, 0) + pk(PK_BC_ACK, 1, PK_BID["b2"]) + pk(PK_ADV_S, 0, 3) + pk_broadcast("b1", 100) + pk(PK_DROP, 0, 0)
    + pk(PK_ADV, 0, struct.pack("<H", 200)) + pk_reconnect(0, 0, 0, auto=1) + pk_broadcast("b3", 2_000),
    # Requests: answered, answered twice, superseded, cancelled by the host and by the phone, timed out, the
    # player dropping, an id open for another player, a resend.
    "request": bytes([0b1100, 0]) + pk_request("r1", 1, 5_000) + pk(PK_RESPONSE, 1, PK_RID["r1"], 2) * 2
    + pk_request("r2", 2) + pk_request("r3", 2) + pk(PK_CANCEL, 0, PK_RID["r3"]) + pk_request("r1", 3, 500)
    + pk_request("r1", 3, 500) + pk(PK_ADV, 0, struct.pack("<H", 600)) + pk_request("r2", 4) + pk(PK_CANCEL, 4, PK_RID["r2"])
    + pk_request("r1", 1) + pk_request("r1", 2) + pk(PK_DROP, 1, 1) + pk_request("r3", 1),
    # The join throttle (2 failures a minute): unknown codes, a valid one refused, a shared /64, a minute later.
    "throttle": bytes([0, PK_FAIL2]) + b"".join(pk_reconnect(i, 0, i) for i in range(1, 5)) + pk_join(1, 5) + pk_join(1, 2) + pk_join(2, 5) + pk_join(1, 7)
    + pk_join(3, 5) + pk_join(4, 5) + pk_join(4, 6) + pk(PK_ADV_S, 0, 60) + pk_join(1, 7) + pk_join(1, 7),
    # Raw frames: a ping, junk, type errors, role errors, null fields, duplicate keys, binary, `/` both ways.
    "raw": bytes([0, 0]) + pk_raw(1, '{"type":"system.ping","sent_at":1.5e3}') + pk_raw(1, "not json")
    + pk_raw(2, "[1]") + pk_raw(2, '{"type":5}') + pk_raw(0, '{"type":"input.response","request_id":"r"}')
    + pk_raw(1, '{"type":"screen.show","screen":"x"}') + pk_raw(3, '{"type":"screen.query","player_id":null}')
    + pk_raw(0, '{"type":"control.broadcast","event":"e","payload":{"a":[1,2.5,null]},"broadcast_id":null}')
    + pk_raw(0, '{"type":"control.broadcast","event":"e","event":"f","broadcast_id":"b1","ack_timeout_ms":1.0}')
    + pk(PK_BIN, 4, 2, b"{}") + pk_reconnect(3, 1, 3, root=True) + pk_raw(3, '{"type":"session.join","code":"abcd"}')
    + pk_reconnect(4, 0, 4, root=True) + pk_raw(4, '{"v":1,"codecs":["json"]}') + pk(PK_NOT_OBJECT, 1, 4),
    # Two sessions with a 120 s TTL (phone 4 in B): B's host drops, then both end.
    "ttl": bytes([0b10, PK_SHORT_TTL | PK_B | PK_4_JOINS_B]) + pk_broadcast("b1", 60_000, slot=5)
    + pk(PK_DROP, 5, 0) + pk(PK_ADV_S, 0, 100) + pk_show(slot=0) + pk(PK_ADV_S, 0, 25),
    # Repeated keys (a key's first occurrence is the one read): a create with a flow whose api_key repeats,
    # a screen.show whose screen repeats (the first one wins).
    "repeated": bytes([0, 0]) + pk_reconnect(5, 1, 5) + pk(PK_REPEATED, 5, 0x84, 0, 0, 3, 2, 1, bytes(12))
    + pk(PK_REPEATED, 0, 5, 0, pk_pick(PK_SCREENS, "vote"), 4, 0, 5, 0, 1) + pk(PK_QUERY, 1),
    # Repeated keys in a flow (found by this target): "screens" null, then the screens (refused, though the flow
    # as kept is valid); a flow whose "initial_screen" repeats with a screen it does not have, then a phone joins
    # it (it was sent that flow, on the first one's screen).
    "repeated_flow": bytes([0, 0]) + pk_reconnect(5, 0, 5) + pk(PK_REPEATED, 5, 0x84, 0, 0, 0, 0, 0x29, 0, 0, bytes(11))
    + pk_reconnect(4, 1, 4) + pk(PK_REPEATED, 4, 0x84, 0, 0, 3, 0, 6, 1, bytes(11)) + pk_reconnect(1, 0, 1)
    + pk_join(1, 0x17),
    # A tight message rate: refused, then closed 1008; a full session (3 players) and strict auth.
    "tight": bytes([0, PK_TIGHT | PK_MAX3 | PK_AUTH]) + pk(PK_QUERY, 1) * 30 + pk(PK_ADV_S, 0, 2)
    + pk_reconnect(1, 0, 1, auto=3) + pk_reconnect(5, 1, 5) + pk(PK_CREATE, 5, 0, 0, 1),
}


def upgrade(cfg, path, query, origin=None, ms=1_700_000_000_000):
    """One upgrade_query input: [cfg][unix ms] path NUL query [NUL origin]."""
    out = bytes([cfg]) + struct.pack("<Q", ms) + path.encode() + b"\0" + query.encode()
    return out + (b"\0" + origin.encode() if origin is not None else b"")


PEER, BUCKET2 = 0x10, 2 << 5
UPGRADE_SEEDS = {
    "cl5": upgrade(0, "/cl5", "ugi=game-1&token=t", "https://x.org"),
    "turbowarp_bucket": upgrade(1 | PEER | BUCKET2, "/cl5", "ugi=my_game", "https://studio.turbowarp.org"),
    "bad_ugi": upgrade(0, "/cl5", "ugi=a__b&token=x"),
    "origin_required": upgrade(2, "/", "ugi=g"),
    "percent": upgrade(1, "/", "ugi=a%2Db&ugi=second&token=%E2%9C%93+x", "http://localhost:8000"),
    "long_ugi": upgrade(0, "/cl5", "ugi=" + "x" * 128),
    "too_long_ugi": upgrade(0, "/cl5", "ugi=" + "x" * 129),
    "peerjs": upgrade(0, "/peerjs", "key=peerjs&id=a%20b&token=t&version=1.5.4"),
    "wildcards": upgrade(4 | PEER | (1 << 5), "/cl5", "ugi=g", "axbyc", ms=2**32 - 30_000),
    "bad_percent": upgrade(3, "/", "ugi=%zz&token=%&=x&&ugi", "null"),
}


# auth: a 64-byte header of claim choices (read by the target's `Input`), then the token
# text. The secret is derived from the header as the target does, so the tokens below
# verify under it.
import base64
import hashlib
import hmac as hmac_mod


def auth_secret(shape, seed):
    out = []
    for i in range(1 + shape % 80):
        r = i % 64
        b = (((seed << r) | (seed >> (64 - r))) & 0xFFFFFFFFFFFFFFFF if r else seed) & 0xFF
        b ^= i & 0xFF
        out.append(b if shape & 0x80 else 0x20 + b % 95)
    return bytes(out)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def rooms_token(secret, claims):
    first = b64u(js(claims))
    return first + b"." + b64u(hmac_mod.new(secret, first, hashlib.sha256).digest())


def jwt(secret, claims, alg="HS512"):
    head = b64u(js({"alg": alg, "typ": "JWT"})) + b"." + b64u(js(claims))
    digest = {"HS512": hashlib.sha512, "HS256": hashlib.sha256}[alg]
    return head + b"." + b64u(hmac_mod.new(secret, head, digest).digest())


AUTH_SEED = 0x0123456789ABCDEF
AUTH_NOW_MS = 1_700_000_000_000


def auth_header(shape=20, flags=3, exp_kind=1, user=4):
    h = bytes([shape]) + struct.pack("<Q", AUTH_SEED) + bytes([1, 0])  # project "demo"
    h += struct.pack("<Q", AUTH_NOW_MS) + struct.pack("<H", 7) + bytes([0x21])  # mutation
    h += struct.pack("<Q", 3_600_000)  # ttl
    h += bytes([flags]) + struct.pack("<H", 10) + struct.pack("<H", 1000)  # built token
    h += bytes([1, 0, 1, 2])  # key_id "demo", aud "é"
    h += bytes([user, 1, 0, 2, user, 1, 3, 4, 0, 4, 1, 3]) + bytes([exp_kind, 2, 0, 0])
    return h.ljust(64, b"\0")[:64]


AUTH_SECRET = auth_secret(20, AUTH_SEED)
AUTH_CLAIMS = {"project_id": "demo", "issued_at": "2023-11-14T22:13:20Z",
               "expires_at": "2023-11-14T23:13:20Z"}
AUTH_SEEDS = {
    "rooms_token": auth_header() + rooms_token(AUTH_SECRET, AUTH_CLAIMS),
    "rooms_token_expired": auth_header() + rooms_token(
        AUTH_SECRET, {**AUTH_CLAIMS, "expires_at": "2023-11-14T22:13:20.000Z"}),
    "rooms_token_key_id_aud": auth_header(flags=7) + rooms_token(
        AUTH_SECRET, {**AUTH_CLAIMS, "key_id": "k1", "aud": "rooms"}),
    "binary_secret": auth_header(shape=0x80 | 70) + rooms_token(
        auth_secret(0x80 | 70, AUTH_SEED), AUTH_CLAIMS),
    "jwt_hs512": auth_header(exp_kind=2) + jwt(
        AUTH_SECRET, {"ulid": "01HXYZ", "username": "Ann", "exp": AUTH_NOW_MS // 1000 + 60}),
    "jwt_hs256": auth_header(user=2) + jwt(
        AUTH_SECRET, {"sub": "s", "exp": AUTH_NOW_MS // 1000 + 60}, "HS256"),
    "jwt_none": auth_header() + b64u(b'{"alg":"none"}') + b"." + b64u(b'{"sub":"s"}') + b".",
    "not_utf8": auth_header(shape=0x80) + b"\xff\xfe." + b"\xc3(",
    "empty": b"",
}

# http_handoff: byte 0 the mode (bit 0 a built upgrade, bit 1 bare LF, bit 2 `?` with an
# empty query, bit 3 padding), bytes 1-8 the piece sizes, then the bytes or the parts.
def ws_frame(opcode, payload, mask=b"\x11\x22\x33\x44"):
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_upgrade(path="/rooms?x=1", eol=b"\r\n"):
    lines = [b"GET " + path.encode() + b" HTTP/1.1", b"Host: a", b"Upgrade: websocket",
             b"Connection: Upgrade", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             b"Sec-WebSocket-Version: 13"]
    return eol.join(lines) + eol + eol


def handoff_built(mode, parts):
    return bytes([mode | 1]) + bytes([0, 3, 17, 255, 1, 64, 9, 128]) + parts


HANDOFF_SEEDS = {
    "upgrade_pipelined": b"\x00" + bytes([0, 3, 17, 255, 1, 64, 9, 128])
    + ws_upgrade() + ws_frame(1, js(JOIN)) + ws_frame(2, b"\x00\x01\x02"),
    "upgrade_one_byte_pieces": b"\x00" + bytes(8) + ws_upgrade() + ws_frame(1, b"hi"),
    "upgrade_big_pipelined": b"\x00" + bytes([255] * 8) + ws_upgrade()
    + ws_frame(2, b"z" * 9000),
    "healthz": b"\x00" + bytes([5] * 8) + b"GET /healthz HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
    "head_too_long": b"\x00" + bytes([200] * 8) + b"GET / HTTP/1.1\r\nX-Big: "
    + b"a" * 9000 + b"\r\n\r\n",
    # path "/ab", query "q=1", key bytes, case 5, two extra headers, no turn, two frames.
    "built_upgrade": handoff_built(0, b"\x02ab\x03q=1" + bytes(range(16)) + b"\x05\x02"
                                   + b"\x03abc\x02xy\x01Z\x01\x01" + b"\x02"
                                   + b"\x00\x02\x03abc\x01\x02\x03\x04"
                                   + b"\x01\x1f\x02hi\x05\x06\x07\x08"),
    "built_upgrade_lf": handoff_built(2, b"\x00\x00" + bytes(16) + b"\x00\x00\x00"
                                      + b"\x01\x00\x05\x01Z\x01\x02\x03\x04"),
    "built_upgrade_padded": handoff_built(8, b"\x00\x00" + bytes(16) + b"\x00\x00\x00"
                                          + struct.pack("<H", 8300) + b"\x00"),
}

# recover: byte 0 picks the codec (bit 0) and key (bits 1-2: rid, id, "", text), then the
# document's members (as the target's `Input` reads them), or any bytes.
RECOVER_SEEDS = {
    "json_broken_rid": b"\x00" + br'{"v":1,"p":{"rid":"inner"},"rid":"outer","t":"room.list","x":[1,2,}',
    "json_escaped_before": b"\x00" + br'{"a":"x\",\"rid\":\"evil","rid":"good",!',
    "json_doc": b"\x00" + js(JOIN),
    "mp_doc": b"\x01" + mp(JOIN),
    "mp_fixext_then_rid": b"\x01" + bytes([0x84, 0xa1, 0x76, 0x01, 0xa1, 0x70, 0xd4, 0x05, 0x00,
                                           0xa3, 0x72, 0x69, 0x64, 0xa2, 0x72, 0x32, 0xa1, 0x74,
                                           0xdb, 0xff]),
    "mp_huge_map": b"\x01\xdf\xff\xff\xff\xff",
    "deep": b"\x00" + b"{" + b"[" * 200,
    # built: three members, the first the key with a string (tag 6: a table string).
    "built_members": b"\x02\x03\x00\x06\x01\x01\x08\x03abc\x02\x05zz\x0a\x02\x00\x06\x01",
}
def ib_rec(kind, payload=b""):
    """One inbound script record."""
    return bytes([kind, len(payload)]) + payload


def inbound(setup, sizes, *records):
    """An inbound input: setup, chunk sizes, then the body."""
    return bytes([setup, len(sizes)]) + bytes(sizes) + b"".join(records)


IB_TEXT, IB_BIN, IB_FRAG_BIN, IB_PING, IB_PONG, IB_BREACH, IB_CLOSE, IB_FRAG_TEXT = range(8)
IB_MESSAGES = [ib_rec(IB_TEXT, b"hello"), ib_rec(IB_BIN, bytes(range(40))),
               ib_rec(IB_FRAG_BIN | (2 << 3) | 0x80, bytes(range(100))), ib_rec(IB_PING, b"p"),
               ib_rec(IB_PONG, b"q"), ib_rec(IB_FRAG_TEXT | (1 << 3), "h\u00e9llo w\u00f6rld \u540d\u524d".encode()),
               ib_rec(IB_TEXT, b""), ib_rec(IB_BIN, b"\xff" * 200)]
INBOUND_SEEDS = {
    "echo_one_chunk": inbound(0, [], *IB_MESSAGES),
    "echo_byte_by_byte": inbound(0, [0], *IB_MESSAGES),
    "echo_mixed_chunks": inbound(0, [2, 0, 191, 7, 192], *IB_MESSAGES),
    "echo_with_head": inbound(8, [20, 1], *IB_MESSAGES),
    "echo_client_close": inbound(0, [5], *IB_MESSAGES[:2], ib_rec(IB_CLOSE, b"bye"), *IB_MESSAGES[2:]),
    "rooms": inbound(1, [3, 60], ib_rec(IB_TEXT, js(HELLO)), ib_rec(IB_TEXT, js(JOIN)),
                     ib_rec(IB_FRAG_TEXT | (3 << 3), js(MESSAGE)), ib_rec(IB_BREACH | (9 << 3), b"x")),
    "cloudlink": inbound(2, [], ib_rec(IB_TEXT, b'{"cmd":"handshake","val":{"language":"Scratch"}}'),
                         ib_rec(IB_BREACH, b"{}")),
    "pairkit": inbound(3, [9], ib_rec(IB_TEXT, b'{"t":"hello"}'), ib_rec(IB_PING, b""),
                       ib_rec(IB_BREACH | (7 << 3), b"")),
    "raw_garbage": inbound(4, [3], b"\x81\x05hello\x89\x80\x00\x00\x00\x00\xff\xff\xff"),
    "raw_rooms_masked": inbound(5, [], bytes([0x81, 0x82, 1, 2, 3, 4, ord("{") ^ 1, ord("}") ^ 2])),
}
for which in range(10):
    for setup in (0, 1):
        INBOUND_SEEDS["breach_%d_%s" % (which, ("echo", "rooms")[setup])] = inbound(
            setup, [which * 17 % 192], *IB_MESSAGES[:3], ib_rec(IB_BREACH | (which << 3), b"after"),
            *IB_MESSAGES[3:])

TARGETS = {
    "msgpack_decode": {**MSGPACK_SEEDS, **MSGPACK_DIFF_SEEDS},
    "json_decode": {**CODEC_SEEDS, **JSON_DIFF_SEEDS},
    "rooms_envelope": {**{"json_" + k: b"\x00" + v for k, v in CODEC_SEEDS.items()},
                       **{"mp_" + k: b"\x01" + v for k, v in MSGPACK_SEEDS.items()},
                       "json_bytes": b"\x00" + js(BYTES), "json_list": b"\x00" + js(LIST),
                       "mp_set": b"\x01" + mp(SET), "mp_handshake_envelope": b"\x01" + mp(HELLO_MP)},
    "http_parse": HTTP_SEEDS,
    "ws_frame_parse": FRAME_SEEDS,
    "sim_session": SIM_SEEDS,
    "state_ops": STATE_SEEDS,
    "cloudlink_frames": CL_SEEDS,
    "peerjs_frames": PJ_SEEDS,
    "pairkit_messages": PK_SEEDS,
    "upgrade_query": UPGRADE_SEEDS,
    "auth": AUTH_SEEDS,
    "http_handoff": HANDOFF_SEEDS,
    "recover": RECOVER_SEEDS,
    "inbound": INBOUND_SEEDS,
}

for target, seeds in TARGETS.items():
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
