// Independent check of huddle's state checksums: RFC 8785 canonical JSON built in
// JavaScript (keys sorted by UTF-16 code units, strings and numbers by JSON.stringify) and
// CRC-32 by a small table implementation.
// Usage: node tests/vectors/check.mjs   (exit 1 on any mismatch)
//
// Two files are checked: state_vectors.json against state_vectors.expected.json (by name),
// and state_vectors.generated.json, whose entries carry their state with Rust's canonical
// form and CRC (the states state_ops fuzz seeds leave, edge states, seeded random states;
// tests/sim/vectors.rs writes it and checks Rust still reproduces it).
//
// Why not JSON.stringify of a key-sorted copy: JavaScript objects always iterate
// integer-like keys ("9", "10") first, in numeric order, whatever order they were inserted
// in, so {"10":…,"9":…} cannot be written in JCS order that way. Clients that compute the
// checksum in JavaScript must serialize objects themselves, as canonical() does below.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const states = JSON.parse(readFileSync(join(here, "state_vectors.json"), "utf8"));
const expected = JSON.parse(readFileSync(join(here, "state_vectors.expected.json"), "utf8"));

function canonical(v) {
  if (Array.isArray(v)) return "[" + v.map(canonical).join(",") + "]";
  if (v && typeof v === "object") {
    // sort() compares UTF-16 code units, as RFC 8785 orders keys
    const members = Object.keys(v).sort().map((k) => JSON.stringify(k) + ":" + canonical(v[k]));
    return "{" + members.join(",") + "}";
  }
  return JSON.stringify(v); // ECMAScript number and string forms, which JCS adopts
}

const TABLE = new Uint32Array(256).map((_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

let failures = 0;
let checked = 0;
function check(name, state, want) {
  const text = canonical(state);
  const crc = crc32(new TextEncoder().encode(text));
  checked++;
  if (!want) {
    console.log(`FAIL ${name}: no expected entry`);
    failures++;
  } else if (want.canonical !== text || want.crc32 !== crc) {
    console.log(`FAIL ${name}\n  node: ${text} ${crc}\n  rust: ${want.canonical} ${want.crc32}`);
    failures++;
  } else {
    console.log(`ok ${name} ${crc}`);
  }
}

for (const { name, state } of states) {
  check(name, state, expected.find((e) => e.name === name));
}
if (expected.length !== states.length) {
  console.log(`FAIL: ${states.length} states but ${expected.length} expected entries`);
  failures++;
}
const generated = JSON.parse(readFileSync(join(here, "state_vectors.generated.json"), "utf8"));
if (generated.length === 0) {
  console.log("FAIL: state_vectors.generated.json has no entries");
  failures++;
}
for (const entry of generated) check(entry.name, entry.state, entry);
console.log(`${checked - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
