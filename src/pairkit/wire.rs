//! PairKit on the wire: one JSON object per text frame with a string `type`. Reading a
//! message's fields ([`Fields`]): an optional field sent as `null` is absent, unknown
//! fields are ignored, and a required field missing, of the wrong type or out of range is
//! a [`Bad`] (answered `malformed_message`). Writing: `{"type": …, …}` straight into frame
//! bytes; absent optional fields are omitted, never `null`.

use crate::codec::{as_i64, as_str, is_null, Codec, Frame, Value, Writer};

/// Why a message is malformed (its `system.error` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bad(pub String);

impl Bad {
    fn field(name: &str, what: &str) -> Bad {
        Bad(format!("{name} must be {what}"))
    }
}

/// A message's fields.
#[derive(Clone, Copy)]
pub struct Fields<'v, 'a> {
    obj: &'v Value<'a>,
}

impl<'v, 'a> Fields<'v, 'a> {
    /// The fields of an object message.
    pub fn of(obj: &'v Value<'a>) -> Self {
        Fields { obj }
    }

    /// The raw value of a field (`None` when absent or `null`).
    pub fn get(&self, name: &str) -> Option<&'v Value<'a>> {
        crate::codec::field(self.obj, name).filter(|v| !is_null(v))
    }

    /// An optional string.
    pub fn opt_str(&self, name: &str) -> Result<Option<&'v str>, Bad> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => as_str(v)
                .map(Some)
                .ok_or_else(|| Bad::field(name, "a string")),
        }
    }

    /// A required string.
    pub fn str(&self, name: &str) -> Result<&'v str, Bad> {
        self.opt_str(name)?
            .ok_or_else(|| Bad(format!("{name} is required (a string)")))
    }

    /// A required id chosen by the host: 1 to 64 characters.
    pub fn id(&self, name: &str) -> Result<&'v str, Bad> {
        let id = self.str(name)?;
        check_id(name, id)?;
        Ok(id)
    }

    /// An optional id of 1 to 64 characters.
    pub fn opt_id(&self, name: &str) -> Result<Option<&'v str>, Bad> {
        let id = self.opt_str(name)?;
        if let Some(id) = id {
            check_id(name, id)?;
        }
        Ok(id)
    }

    /// An optional integer in `min..=max`.
    pub fn opt_int(&self, name: &str, min: i64, max: i64) -> Result<Option<i64>, Bad> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match as_i64(v) {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(Bad::field(name, &format!("an integer in {min}..={max}"))),
            },
        }
    }

    /// A required integer in `min..=max`.
    pub fn int(&self, name: &str, min: i64, max: i64) -> Result<i64, Bad> {
        self.opt_int(name, min, max)?
            .ok_or_else(|| Bad(format!("{name} is required (an integer)")))
    }

    /// A required number (any JSON number).
    pub fn number(&self, name: &str) -> Result<&'v Value<'a>, Bad> {
        match self.get(name) {
            Some(v @ Value::Static(s)) if !matches!(s, simd_json::StaticNode::Bool(_)) => Ok(v),
            Some(_) => Err(Bad::field(name, "a number")),
            None => Err(Bad(format!("{name} is required (a number)"))),
        }
    }

    /// An optional object.
    pub fn opt_object(&self, name: &str) -> Result<Option<&'v Value<'a>>, Bad> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(Bad::field(name, "an object")),
        }
    }

    /// A required object.
    pub fn object(&self, name: &str) -> Result<&'v Value<'a>, Bad> {
        self.opt_object(name)?
            .ok_or_else(|| Bad(format!("{name} is required (an object)")))
    }

    /// A required value of any type but `null`.
    pub fn any(&self, name: &str) -> Result<&'v Value<'a>, Bad> {
        self.get(name)
            .ok_or_else(|| Bad(format!("{name} is required")))
    }

    /// An optional array of strings.
    pub fn opt_strings(&self, name: &str) -> Result<Option<Vec<&'v str>>, Bad> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| as_str(v).ok_or_else(|| Bad::field(name, "an array of strings")))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Bad::field(name, "an array of strings")),
        }
    }
}

fn check_id(name: &str, id: &str) -> Result<(), Bad> {
    if (1..=64).contains(&id.chars().count()) {
        Ok(())
    } else {
        Err(Bad::field(name, "a string of 1 to 64 characters"))
    }
}

/// Cuts a string to `max` characters.
pub fn cut(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Writes `{"type": kind, …}` with the fields `body` writes.
pub fn write(w: &mut Writer<'_>, kind: &str, body: impl FnOnce(&mut Writer<'_>)) {
    w.map(0).key("type").str(kind);
    body(w);
    w.end_map();
}

/// `{"type": kind, …}` as a frame of its own in `buf` (a new allocation; the dialect's
/// frames come from the engine's pool instead, see `Engine::encode`).
pub fn message(buf: &mut Vec<u8>, kind: &str, body: impl FnOnce(&mut Writer<'_>)) -> Frame {
    let mut w = Writer::new(Codec::Json, buf);
    write(&mut w, kind, body);
    w.finish()
}

/// The fields of `system.error {code, message}`.
pub fn error<'t>(code: &'t str, text: &'t str) -> impl FnOnce(&mut Writer<'_>) + 't {
    move |w| {
        w.key("code").str(code).key("message").str(text);
    }
}

/// The fields of `session.ended {reason, message?}`.
pub fn ended<'t>(reason: &'t str, text: Option<&'t str>) -> impl FnOnce(&mut Writer<'_>) + 't {
    move |w| {
        w.key("reason").str(reason);
        if let Some(text) = text {
            w.key("message").str(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{frame as wsframe, Decoder};

    fn with(json: &str, check: impl FnOnce(Fields<'_, '_>)) {
        let mut bytes = json.as_bytes().to_vec();
        let mut d = Decoder::default();
        let value = d.decode(Codec::Json, &mut bytes).unwrap();
        check(Fields::of(&value));
    }

    #[test]
    fn null_is_absent_and_types_and_ranges_are_checked() {
        with(
            r#"{"a":null,"s":"x","n":5,"f":2.5,"o":{},"l":["p1","p2"],"id":""}"#,
            |f| {
                assert_eq!(f.opt_str("a"), Ok(None));
                assert!(f.str("a").is_err(), "null is absent");
                assert_eq!(f.str("s"), Ok("x"));
                assert!(f.str("n").is_err());
                assert_eq!(f.opt_int("n", 0, 10), Ok(Some(5)));
                assert!(f.opt_int("n", 6, 10).is_err(), "out of range");
                assert!(f.opt_int("f", 0, 10).is_err(), "not an integer");
                assert!(f.number("f").is_ok() && f.number("s").is_err());
                assert!(f.object("o").is_ok() && f.object("s").is_err());
                assert_eq!(f.opt_strings("l"), Ok(Some(vec!["p1", "p2"])));
                assert!(f.opt_strings("o").is_err());
                assert!(f.id("id").is_err(), "ids are 1 to 64 characters");
                assert!(f.opt_id("s").is_ok());
            },
        );
        let long = format!(r#"{{"id":"{}"}}"#, "é".repeat(65));
        with(&long, |f| assert!(f.id("id").is_err()));
        let ok = format!(r#"{{"id":"{}"}}"#, "é".repeat(64));
        with(&ok, |f| {
            assert!(f.id("id").is_ok(), "characters, not bytes")
        });
    }

    #[test]
    fn cut_counts_characters() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 32), "hi");
    }

    #[test]
    fn messages_have_a_type_and_omit_absent_fields() {
        let mut buf = Vec::new();
        let body = |f: Frame| String::from_utf8(wsframe::parse(&f).unwrap().1.to_vec()).unwrap();
        assert_eq!(
            body(message(
                &mut buf,
                "system.error",
                error("invalid_code", "no")
            )),
            r#"{"type":"system.error","code":"invalid_code","message":"no"}"#
        );
        assert_eq!(
            body(message(&mut buf, "session.ended", ended("timeout", None))),
            r#"{"type":"session.ended","reason":"timeout"}"#
        );
    }
}
