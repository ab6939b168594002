#!/usr/bin/env python3
"""Writes the committed fuzz seeds into fuzz/seeds/<target>/ (run from anywhere).

The seeds are small valid and hostile inputs each target starts from: a handshake, a
join, room.message in JSON and MessagePack, 100x `[`, MessagePack with huge declared
lengths, map16 and fixext1 forms. sim_session seeds are whole client sessions in that
target's record format; cloudlink_frames and peerjs_frames seeds are scripts of client
operations in theirs (a lobby's life, a host leaving, token mode, holds running out, ids
taken and taken over, raw and malformed frames), upgrade_query seeds upgrades (ugi rule
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


def record(ctl, payload=b"", length=None):
    """One sim_session record."""
    return bytes([ctl]) + struct.pack("<H", len(payload) if length is None else length) + payload


def session(setup, *records):
    return bytes([setup]) + b"".join(records)


A, B, CLOCK, RECONNECT = 0, 1, 2, 3
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
    "reconnect": session(0, record(A, js(HELLO)), record(A, js(JOIN)), record(RECONNECT | 4), record(A, js(HELLO)),
                         record(A, js(JOIN)), record(A, js(MESSAGE)), record(CLOCK, length=6_000)),
    "hostile": session(1, record(A, js(HELLO)), record(A, DEEP_JSON), record(A, b"\xdd\xff\xff\xff\xff"),
                       record(A, js({"v": 2, "t": "x", "rid": "9"})), record(B, HUGE[1]), record(B, DEEP_MP),
                       record(A, js({"v": 1, "t": "nope", "rid": "r"})), record(A, b"{\"v\":1,")),
    "no_handshake": session(0, record(A, js(MESSAGE)), record(CLOCK, length=6_000)),
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

TARGETS = {
    "msgpack_decode": MSGPACK_SEEDS,
    "json_decode": CODEC_SEEDS,
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
    "upgrade_query": UPGRADE_SEEDS,
}

for target, seeds in TARGETS.items():
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
