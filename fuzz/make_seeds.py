#!/usr/bin/env python3
"""Writes the committed fuzz seeds into fuzz/seeds/<target>/ (run from anywhere).

The seeds are small valid and hostile inputs each target starts from: a handshake, a
join, room.message in JSON and MessagePack, 100x `[`, MessagePack with huge declared
lengths, map16 and fixext1 forms. sim_session seeds are whole client sessions in that
target's record format. Plain Python, no packages: MessagePack is encoded below.
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
}

for target, seeds in TARGETS.items():
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
