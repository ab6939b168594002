//! A PairKit session's state, all of it in one record on its home shard (so that it can
//! be stored and moved whole): its code and hashed host id, the host's socket, the
//! flow, the players with their screens and open requests, and the tracked broadcasts.
//! Called a party here, to keep "session" for connections.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::code::Code;
use super::wire::Bad;
use crate::codec::{to_json, Value};
use crate::core::SessionKey;

/// A bearer secret (`host_id`, `resume_token`), kept as its SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// The stored form of a secret.
    pub fn of(secret: &str) -> Secret {
        Secret(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `given` is the secret (constant time in the digests).
    pub fn matches(&self, given: &str) -> bool {
        Secret::of(given).0.ct_eq(&self.0).into()
    }
}

/// A widget type whose events strict payloads check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WidgetKind {
    /// `button`: `press`, `release` with an object.
    Button,
    /// `joystick`: `move` with `{x, y}` in [-1, 1].
    Joystick,
    /// `choice_list`: `select` with the `id` of one of its choices.
    ChoiceList(Vec<Box<str>>),
    /// `drawing_canvas`: `stroke_progress`, `stroke_end`.
    Canvas,
    /// Any other type: not checked.
    Other,
}

/// A widget of a flow screen.
#[derive(Clone, Debug)]
pub struct Widget {
    /// Its id, unique on its screen.
    pub id: Box<str>,
    /// What its events look like.
    pub kind: WidgetKind,
}

/// A validated flow: as the host sent it (phones get it in `session.joined`), and its
/// screens' widgets.
#[derive(Debug)]
pub struct Flow {
    /// The flow as written.
    pub json: serde_json::Value,
    /// `initial_screen`.
    pub initial: Box<str>,
    /// Each screen's widgets.
    pub screens: Vec<(Box<str>, Vec<Widget>)>,
}

impl Flow {
    /// Checks a flow: `version` 1, a string `id`, `screens` a non-empty object of
    /// `{widgets: [{id, type, …}]}` with non-empty ids unique per screen, and
    /// `initial_screen` naming one of them.
    ///
    /// What is checked is the flow as it is kept and sent to phones (`to_json` of the
    /// value), not the decoded value: where a key repeats, `to_json` keeps its last
    /// occurrence (as a browser's `JSON.parse` does) while a field read on the decoded
    /// value sees the first, and a flow checked one way and kept the other could reach
    /// phones with an `initial_screen` that names no screen, or be refused when what would
    /// be kept is valid.
    pub fn parse(value: &Value<'_>) -> Result<Flow, Bad> {
        let json = to_json(value);
        let bad = |why: &str| Bad(format!("flow: {why}"));
        let version = json
            .get("version")
            .ok_or_else(|| bad("version is required"))?;
        if integer(version) != Some(1) {
            return Err(bad("version must be 1"));
        }
        json.get("id")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("id is required (a string)"))?;
        let initial = json
            .get("initial_screen")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| bad("initial_screen is required (a string)"))?;
        let Some(screens) = json.get("screens").and_then(serde_json::Value::as_object) else {
            return Err(bad("screens is required (an object)"));
        };
        if screens.is_empty() {
            return Err(bad("screens must not be empty"));
        }
        let mut parsed = Vec::with_capacity(screens.len());
        for (name, screen) in screens {
            let Some(widgets) = screen.get("widgets").and_then(serde_json::Value::as_array) else {
                return Err(bad(&format!("screen {name:?} needs a widgets array")));
            };
            let mut list: Vec<Widget> = Vec::with_capacity(widgets.len());
            for w in widgets {
                let text = |k| w.get(k).and_then(serde_json::Value::as_str);
                let id = text("id").filter(|id| !id.is_empty());
                let (Some(id), Some(kind)) = (id, text("type")) else {
                    return Err(bad(&format!(
                        "every widget of screen {name:?} is an object with a non-empty string id and a string type"
                    )));
                };
                if list.iter().any(|x| &*x.id == id) {
                    return Err(bad(&format!("widget id {id:?} repeats on screen {name:?}")));
                }
                list.push(Widget {
                    id: id.into(),
                    kind: widget_kind(kind, w),
                });
            }
            parsed.push((Box::<str>::from(name.as_str()), list));
        }
        if !parsed.iter().any(|(n, _)| &**n == initial) {
            return Err(bad(&format!("initial_screen {initial:?} names no screen")));
        }
        let initial = initial.into();
        Ok(Flow {
            json,
            initial,
            screens: parsed,
        })
    }

    /// A screen's widgets.
    pub fn screen(&self, name: &str) -> Option<&[Widget]> {
        self.screens
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, w)| w.as_slice())
    }
}

/// An integer as `codec::as_i64` reads one: a float with an integral value counts.
fn integer(v: &serde_json::Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    n.as_f64()
        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
        .map(|f| f as i64)
}

fn widget_kind(kind: &str, w: &serde_json::Value) -> WidgetKind {
    match kind {
        "button" => WidgetKind::Button,
        "joystick" => WidgetKind::Joystick,
        "drawing_canvas" => WidgetKind::Canvas,
        "choice_list" => {
            let choices = match w.get("choices").and_then(serde_json::Value::as_array) {
                Some(items) => items
                    .iter()
                    .filter_map(|c| c.get("id").and_then(serde_json::Value::as_str))
                    .map(Box::from)
                    .collect(),
                None => Vec::new(),
            };
            WidgetKind::ChoiceList(choices)
        }
        _ => WidgetKind::Other,
    }
}

/// A player's screen: what `screen.state` and `session.joined.screen` show.
#[derive(Clone, Debug, Default)]
pub struct Screen {
    /// The screen's name (`None` until the player has one).
    pub name: Option<Box<str>>,
    /// Its data, shallow-merged by `screen.update_data`.
    pub data: serde_json::Map<String, serde_json::Value>,
    /// The per-player revision: raised by every show and update, never lowered.
    pub revision: u64,
    /// The revision the current screen was shown with (input below it is stale).
    pub shown_rev: u64,
    /// When it was shown (unix ms).
    pub shown_at: Option<u64>,
}

/// A player's open request.
#[derive(Clone, Debug)]
pub struct Request {
    /// The host's `request_id`.
    pub id: Box<str>,
    /// Which timeout may end it (a resend restarts it).
    pub epoch: u64,
}

/// A player of a party.
#[derive(Debug)]
pub struct Player {
    /// Join order, 1-based (never reused in the party).
    pub n: u32,
    /// `p<n>`.
    pub id: Box<str>,
    /// Its name.
    pub name: Box<str>,
    /// `#rrggbb`.
    pub color: Box<str>,
    /// Its `resume_token`, hashed.
    pub token: Secret,
    /// Its socket while online.
    pub socket: Option<SessionKey>,
    /// Raised at each drop and resume: the grace timer of an older drop does nothing.
    pub epoch: u64,
    /// Its screen.
    pub screen: Screen,
    /// Its open request.
    pub request: Option<Request>,
}

/// What a tracked broadcast's counted player did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Acked.
    Delivered,
    /// Offline when it was sent.
    Missed,
    /// Online then; no ack yet.
    Waiting,
}

/// A broadcast sent with a `broadcast_id`, waiting for acks.
#[derive(Debug)]
pub struct Tracked {
    /// The host's `broadcast_id`.
    pub id: Box<str>,
    /// Tells its deadline timer apart from a later broadcast's with the same id.
    pub serial: u64,
    /// Every player the party had when it was sent.
    pub results: Vec<(u32, Box<str>, Outcome)>,
}

impl Tracked {
    /// No counted player is still waiting.
    pub fn done(&self) -> bool {
        !self.results.iter().any(|r| r.2 == Outcome::Waiting)
    }
}

/// A PairKit session.
#[derive(Debug)]
pub struct Party {
    /// Its code.
    pub code: Code,
    /// Tells its timers apart from those of an earlier party with the same code.
    pub serial: u64,
    /// The host id, hashed.
    pub host_id: Secret,
    /// The host's socket while attached.
    pub host: Option<SessionKey>,
    /// Its flow.
    pub flow: Option<Arc<Flow>>,
    /// Its players, online or in their grace window, in join order.
    pub players: Vec<Player>,
    /// Players that ever joined (the next one is `p<joined + 1>`).
    pub joined: u32,
    /// Tracked broadcasts waiting for acks.
    pub broadcasts: Vec<Tracked>,
}

impl Party {
    /// The player with this id.
    pub fn player(&self, id: &str) -> Option<&Player> {
        self.players.iter().find(|p| &*p.id == id)
    }

    /// The player with this id, mutably.
    pub fn player_mut(&mut self, id: &str) -> Option<&mut Player> {
        self.players.iter_mut().find(|p| &*p.id == id)
    }

    /// The player joined `n`th, mutably.
    pub fn nth_mut(&mut self, n: u32) -> Option<&mut Player> {
        self.players.iter_mut().find(|p| p.n == n)
    }

    /// The player joined `n`th.
    pub fn nth(&self, n: u32) -> Option<&Player> {
        self.players.iter().find(|p| p.n == n)
    }
}

/// The colours the relay gives players without a valid one of their own, in turn.
pub const PALETTE: [&str; 12] = [
    "#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6",
    "#bfef45", "#fabed4", "#469990", "#dcbeff",
];

/// A client's colour if it is `#rrggbb` (lower-cased), else the palette's for player `n`.
pub fn color(given: Option<&str>, n: u32) -> Box<str> {
    match given {
        Some(c)
            if c.len() == 7
                && c.starts_with('#')
                && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            c.to_ascii_lowercase().into()
        }
        _ => PALETTE[(n.max(1) as usize - 1) % PALETTE.len()].into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Codec, Decoder};
    use serde_json::json;

    fn flow(json: &str) -> Result<Flow, Bad> {
        let mut bytes = json.as_bytes().to_vec();
        let mut d = Decoder::default();
        let value = d.decode(Codec::Json, &mut bytes).unwrap();
        Flow::parse(&value)
    }

    #[test]
    fn a_flow_is_validated_as_the_page_says() {
        let ok = r#"{"version":1,"id":"f","initial_screen":"lobby","screens":{
            "lobby":{"widgets":[{"id":"go","type":"button","label":"Go"}]},
            "vote":{"widgets":[{"id":"pick","type":"choice_list","choices":[{"id":"a","label":"A"}]}]}}}"#;
        let f = flow(ok).unwrap();
        assert_eq!(&*f.initial, "lobby");
        assert_eq!(
            f.screen("vote").unwrap()[0].kind,
            WidgetKind::ChoiceList(vec!["a".into()])
        );
        assert_eq!(f.json["screens"]["lobby"]["widgets"][0]["label"], "Go");
        for bad in [
            r#"{"version":2,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[]}}}"#,
            r#"{"id":"f","initial_screen":"a","screens":{"a":{"widgets":[]}}}"#,
            r#"{"version":1,"initial_screen":"a","screens":{"a":{"widgets":[]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{}}"#,
            r#"{"version":1,"id":"f","initial_screen":"b","screens":{"a":{"widgets":[]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[{"id":"","type":"button"}]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[{"id":"x"}]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[{"id":"x","type":"button"},{"id":"x","type":"joystick"}]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[7]}}}"#,
        ] {
            assert!(flow(bad).is_err(), "{bad}");
        }
        // The same widget id on two screens is fine.
        assert!(flow(r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[{"id":"x","type":"button"}]},"b":{"widgets":[{"id":"x","type":"button"}]}}}"#).is_ok());
    }

    #[test]
    fn a_flow_is_checked_as_it_is_kept_and_sent() {
        // A repeated key: the flow kept (and sent to phones in session.joined) has its last
        // occurrence, and that is the one checked (found by fuzz/pairkit_messages: the
        // first was checked, the last kept).
        let kept_invalid = r#"{"version":1,"id":"f","initial_screen":"a","initial_screen":"nope",
            "screens":{"a":{"widgets":[]}}}"#;
        assert!(
            flow(kept_invalid).is_err(),
            "initial_screen as kept names no screen"
        );
        for kept_invalid in [
            r#"{"version":1,"version":2,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[]}}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[]}},"screens":{}}"#,
            r#"{"version":1,"id":"f","initial_screen":"a","screens":{"a":{"widgets":[{"id":"x","type":"button"},{"id":"y","id":"x","type":"button"}]}}}"#,
        ] {
            assert!(flow(kept_invalid).is_err(), "{kept_invalid}");
        }
        let kept_valid = r#"{"version":1,"id":"f","initial_screen":"a","screens":null,
            "screens":{"a":{"widgets":[{"id":"go","type":"button"},{"id":"x","id":"y","type":"joystick"}]}}}"#;
        let f = flow(kept_valid).expect("valid as kept");
        assert_eq!((&*f.initial, &f.json["initial_screen"]), ("a", &json!("a")));
        let widgets = f.screen("a").unwrap();
        assert_eq!(
            widgets
                .iter()
                .map(|w| (&*w.id, w.kind.clone()))
                .collect::<Vec<_>>(),
            [("go", WidgetKind::Button), ("y", WidgetKind::Joystick)]
        );
        assert_eq!(f.json["screens"]["a"]["widgets"][1]["id"], "y");
    }

    #[test]
    fn secrets_are_stored_hashed_and_compared_whole() {
        let s = Secret::of("abc");
        assert!(s.matches("abc"));
        assert!(!s.matches("abd") && !s.matches("ab") && !s.matches(""));
    }

    #[test]
    fn colors_are_rrggbb_or_picked() {
        assert_eq!(&*color(Some("#A0b1C2"), 1), "#a0b1c2");
        assert_eq!(&*color(Some("red"), 1), PALETTE[0]);
        assert_eq!(&*color(Some("#12345"), 2), PALETTE[1]);
        assert_eq!(&*color(None, 13), PALETTE[0]);
    }
}
