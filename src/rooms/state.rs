//! Room state operations: `set` and `del` at RFC 6901 JSON Pointer paths, to any depth.
//! Owns applying ops to a `serde_json::Value`; not patches on the wire (the dialect's).

use serde_json::{Map, Value};

/// One state op.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Set `path` to `value`, creating missing parent objects.
    Set(String, Value),
    /// Delete `path`; a missing path is a no-op.
    Del(String),
}

impl Op {
    /// The op's path.
    pub fn path(&self) -> &str {
        match self {
            Op::Set(p, _) | Op::Del(p) => p,
        }
    }
}

/// Why an op's path cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not `""` and not starting with `/`.
    NotAPointer,
    /// Goes through a value that is not an object or array, or a bad array index.
    NotAContainer,
    /// Deleting or replacing the root with a non-object.
    RootMustBeObject,
}

/// Splits a pointer into unescaped tokens (`~1` → `/`, `~0` → `~`).
pub fn tokens(path: &str) -> Result<Vec<String>, PathError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let rest = path.strip_prefix('/').ok_or(PathError::NotAPointer)?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Escapes one token for a pointer.
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Applies an op; returns whether the state changed.
pub fn apply(state: &mut Value, op: &Op) -> Result<bool, PathError> {
    let toks = tokens(op.path())?;
    let Some((last, parents)) = toks.split_last() else {
        return match op {
            Op::Set(_, v @ Value::Object(_)) => {
                let changed = state != v;
                *state = v.clone();
                Ok(changed)
            }
            _ => Err(PathError::RootMustBeObject),
        };
    };
    match op {
        Op::Set(_, value) => {
            let mut at = state;
            for t in parents {
                at = match at {
                    Value::Object(map) => map
                        .entry(t.clone())
                        .or_insert_with(|| Value::Object(Map::new())),
                    Value::Array(items) => {
                        let i = index(t, items.len())?;
                        &mut items[i]
                    }
                    _ => return Err(PathError::NotAContainer),
                };
                if at.is_null() {
                    *at = Value::Object(Map::new());
                }
            }
            match at {
                Value::Object(map) => {
                    let changed = map.get(last) != Some(value);
                    map.insert(last.clone(), value.clone());
                    Ok(changed)
                }
                Value::Array(items) => {
                    if last == "-" {
                        items.push(value.clone());
                        return Ok(true);
                    }
                    let i = index(last, items.len() + 1)?;
                    if i == items.len() {
                        items.push(value.clone());
                        Ok(true)
                    } else {
                        let changed = items[i] != *value;
                        items[i] = value.clone();
                        Ok(changed)
                    }
                }
                _ => Err(PathError::NotAContainer),
            }
        }
        Op::Del(_) => {
            let mut at = state;
            for t in parents {
                at = match at {
                    Value::Object(map) => match map.get_mut(t) {
                        Some(v) => v,
                        None => return Ok(false),
                    },
                    Value::Array(items) => match index(t, items.len()) {
                        Ok(i) => &mut items[i],
                        Err(_) => return Ok(false),
                    },
                    _ => return Ok(false),
                };
            }
            Ok(match at {
                Value::Object(map) => map.remove(last).is_some(),
                Value::Array(items) => match index(last, items.len()) {
                    Ok(i) => {
                        items.remove(i);
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            })
        }
    }
}

fn index(token: &str, len: usize) -> Result<usize, PathError> {
    if token.is_empty()
        || (token.len() > 1 && token.starts_with('0'))
        || !token.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(PathError::NotAContainer);
    }
    match token.parse::<usize>() {
        Ok(i) if i < len => Ok(i),
        _ => Err(PathError::NotAContainer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_creates_missing_parents_at_any_depth() {
        let mut s = json!({});
        assert_eq!(apply(&mut s, &Op::Set("/a/b/c".into(), json!(1))), Ok(true));
        assert_eq!(s, json!({"a": {"b": {"c": 1}}}));
        assert_eq!(
            apply(&mut s, &Op::Set("/a/b/c".into(), json!(1))),
            Ok(false),
            "same value: no change"
        );
    }

    #[test]
    fn del_of_a_missing_path_is_a_no_op() {
        let mut s = json!({"a": 1});
        assert_eq!(apply(&mut s, &Op::Del("/b/c".into())), Ok(false));
        assert_eq!(apply(&mut s, &Op::Del("/a".into())), Ok(true));
        assert_eq!(s, json!({}));
    }

    #[test]
    fn pointer_escapes_are_unescaped() {
        let mut s = json!({});
        apply(&mut s, &Op::Set("/a~1b/c~0d".into(), json!(true))).unwrap();
        assert_eq!(s, json!({"a/b": {"c~d": true}}));
        assert_eq!(escape("a/b~"), "a~1b~0");
    }

    #[test]
    fn the_root_can_be_replaced_only_by_an_object() {
        let mut s = json!({"a": 1});
        assert_eq!(
            apply(&mut s, &Op::Set(String::new(), json!({"b": 2}))),
            Ok(true)
        );
        assert_eq!(s, json!({"b": 2}));
        assert_eq!(
            apply(&mut s, &Op::Set(String::new(), json!(3))),
            Err(PathError::RootMustBeObject)
        );
        assert_eq!(
            apply(&mut s, &Op::Del(String::new())),
            Err(PathError::RootMustBeObject)
        );
        assert_eq!(
            apply(&mut s, &Op::Set("x".into(), json!(3))),
            Err(PathError::NotAPointer)
        );
    }

    #[test]
    fn arrays_are_indexed_and_appended() {
        let mut s = json!({"l": [1, 2]});
        apply(&mut s, &Op::Set("/l/0".into(), json!(9))).unwrap();
        apply(&mut s, &Op::Set("/l/-".into(), json!(3))).unwrap();
        apply(&mut s, &Op::Del("/l/1".into())).unwrap();
        assert_eq!(s, json!({"l": [9, 3]}));
        assert!(apply(&mut s, &Op::Set("/l/7".into(), json!(0))).is_err());
        assert!(apply(&mut s, &Op::Set("/l/01".into(), json!(0))).is_err());
    }
}
