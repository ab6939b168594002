//! Just enough JSON reading for `--pairkit`: the raw value of one key of an object, found
//! by walking the object's members (any order, any whitespace, nested values skipped
//! whole), in place and without allocating. Not a validator: it trusts the server to send
//! JSON and answers `None` where the walk does not find what it expects.

#[inline]
fn ws(p: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = p.get(i) {
        i += 1;
    }
    i
}

/// The string starting at `p[i]` (a `"`): its raw content (escapes left as they are) and
/// the index after its closing quote.
#[inline]
fn string(p: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if p.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match memchr::memchr2(b'"', b'\\', p.get(j..)?)? {
            n if p[j + n] == b'"' => return Some((&p[i + 1..j + n], j + n + 1)),
            n => j += n + 2,
        }
    }
}

/// The index after the value starting at `p[i]`.
fn skip_value(p: &[u8], i: usize) -> Option<usize> {
    match *p.get(i)? {
        b'"' => string(p, i).map(|(_, end)| end),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < p.len() {
                match p[j] {
                    b'"' => {
                        j = string(p, j)?.1;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        // A number, true, false or null: up to the next delimiter.
        _ => {
            let n = p[i..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(p.len() - i);
            (n > 0).then_some(i + n)
        }
    }
}

/// The raw bytes of the value of `key` in the object `obj` (a top-level member only).
pub fn field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let mut i = ws(obj, 0);
    if obj.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(obj, i + 1);
    if obj.get(i) == Some(&b'}') {
        return None;
    }
    loop {
        let (k, after) = string(obj, i)?;
        i = ws(obj, after);
        if obj.get(i) != Some(&b':') {
            return None;
        }
        i = ws(obj, i + 1);
        let end = skip_value(obj, i)?;
        if k == key {
            return Some(&obj[i..end]);
        }
        i = ws(obj, end);
        match obj.get(i)? {
            b',' => i = ws(obj, i + 1),
            _ => return None,
        }
    }
}

/// The raw content of the string value of `key` in `obj` (escapes left as they are);
/// `None` when absent or not a string.
pub fn str_field<'a>(obj: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let v = field(obj, key)?;
    string(v, 0).map(|(s, _)| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_members_in_any_order_and_spacing() {
        let m = br#"{"payload":{"x":0.1,"y":[1,{"type":"no"}],"t":"~Tab"},"type":"input.widget_event","player_id":"p\"1","n":-1.5e3,"b":true}"#;
        assert_eq!(str_field(m, b"type"), Some(&b"input.widget_event"[..]));
        assert_eq!(str_field(m, b"player_id"), Some(&br#"p\"1"#[..]));
        assert_eq!(field(m, b"n"), Some(&b"-1.5e3"[..]));
        assert_eq!(field(m, b"b"), Some(&b"true"[..]));
        let payload = field(m, b"payload").unwrap();
        assert_eq!(str_field(payload, b"t"), Some(&b"~Tab"[..]));
        assert_eq!(
            field(payload, b"type"),
            None,
            "nested members are not the object's"
        );
        assert_eq!(field(m, b"x"), None);
        let spaced = b" { \"code\" : \"ABCD\" ,\n\t\"players\" : [ ] } ";
        assert_eq!(str_field(spaced, b"code"), Some(&b"ABCD"[..]));
        assert_eq!(field(spaced, b"players"), Some(&b"[ ]"[..]));
    }

    #[test]
    fn answers_none_on_what_it_cannot_walk() {
        assert_eq!(field(b"{}", b"a"), None);
        assert_eq!(field(b"[1]", b"a"), None);
        assert_eq!(field(b"{\"a\":1", b"b"), None);
        assert_eq!(field(b"{\"a\":\"x", b"a"), None);
        assert_eq!(field(b"{\"a\" 1}", b"a"), None);
        assert_eq!(str_field(b"{\"a\":1}", b"a"), None);
        assert_eq!(field(b"{\"a\":{\"b\":[}", b"a"), None);
        assert_eq!(field(b"", b"a"), None);
        assert_eq!(str_field(b"{\"a\":\"\\", b"a"), None);
    }
}
