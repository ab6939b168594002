//! Room state ops: any sequence of `set`/`del` at any pointer path never panics, the root
//! stays an object, a refused op changes nothing, and `apply` reports exactly whether the
//! state changed.
//!
//! Input: ops of `[op][path_len][path]`. `op` bit 0: del; bits 1-3: the kind of value set;
//! bits 4-7: a small number inside it. `path_len` bit 7 set: each path byte picks a token
//! from `TOKENS` (paths that reach existing members); clear: the path is the raw bytes.

use crate::rooms::state::{apply, Op};
use serde_json::{json, Value};

const TOKENS: [&str; 10] = ["a", "b", "0", "1", "-", "", "~0", "~1", "01", "a~1b"];

fn value(op: u8) -> Value {
    let n = op >> 4;
    match (op >> 1) & 7 {
        0 => Value::Null,
        1 => json!(n),
        2 => json!(-f64::from(n) / 4.0),
        3 => json!(format!("s{n}")),
        4 => json!([n, null]),
        5 => json!({ "a": n, "b": {} }),
        6 => json!({}),
        _ => json!(n % 2 == 0),
    }
}

fn path(spec: u8, raw: &[u8]) -> String {
    if spec & 0x80 == 0 {
        return String::from_utf8_lossy(raw).into_owned();
    }
    raw.iter()
        .map(|&b| format!("/{}", TOKENS[usize::from(b) % TOKENS.len()]))
        .collect()
}

/// The `state_ops` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_state_ops(data: &[u8]) {
    state_after_ops(data);
}

/// Applies an input's ops to an empty state, checking each as [`check_state_ops`] does, and
/// returns the state they leave (the state checksum vectors start from these).
pub fn state_after_ops(data: &[u8]) -> Value {
    let mut state = json!({});
    let mut rest = data;
    while let [op, spec, tail @ ..] = rest {
        let len = usize::from(spec & 0x7f).min(tail.len());
        let (raw, tail) = tail.split_at(len);
        rest = tail;
        let path = path(*spec, raw);
        let op = if op & 1 == 1 {
            Op::Del(path)
        } else {
            Op::Set(path, value(*op))
        };
        let before = state.clone();
        match apply(&mut state, &op) {
            Ok(changed) => assert_eq!(changed, state != before, "{op:?} on {before}"),
            Err(e) => assert_eq!(
                state, before,
                "{op:?} was refused ({e:?}) but changed state"
            ),
        }
        assert!(state.is_object(), "the root stays an object after {op:?}");
    }
    state
}
