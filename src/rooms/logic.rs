//! Room logic: the trait a room type implements, and the built-in types. Logic never
//! sees sessions or frames: it reads an input and asks for actions through `RoomCtx`.

use crate::codec::{self, Value};

/// A message a member sent to the room.
pub struct Input<'a> {
    /// `p.type`.
    pub msg_type: &'a str,
    /// `p.data` of a `room.message` (absent for bytes).
    pub data: Option<&'a Value<'a>>,
    /// Base64 of a `room.message.bytes` payload.
    pub bytes_b64: Option<&'a str>,
    /// Sender's public id.
    pub client_id: &'a str,
}

/// What logic asks the room to do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Relay the current input to every member, sender included, with `from`.
    Relay,
    /// Send `room.message {type, data}` (no `from`) to every member.
    Broadcast {
        /// Message type.
        msg_type: String,
        /// Payload.
        data: serde_json::Value,
    },
    /// Send `room.message {type, data}` to one member.
    SendTo {
        /// Recipient.
        client_id: String,
        /// Message type.
        msg_type: String,
        /// Payload.
        data: serde_json::Value,
    },
    /// Set a JSON Pointer path of the state.
    Set {
        /// RFC 6901 path.
        path: String,
        /// New value.
        value: serde_json::Value,
    },
    /// Delete a JSON Pointer path of the state.
    Del {
        /// RFC 6901 path.
        path: String,
    },
}

/// The room as logic sees it: its state (read-only) and an action list.
pub struct RoomCtx<'a> {
    /// Current state.
    pub state: &'a serde_json::Value,
    /// Members in the room.
    pub member_count: usize,
    actions: &'a mut Vec<Action>,
}

impl<'a> RoomCtx<'a> {
    /// A context over a state and an action list.
    pub fn new(
        state: &'a serde_json::Value,
        member_count: usize,
        actions: &'a mut Vec<Action>,
    ) -> Self {
        RoomCtx {
            state,
            member_count,
            actions,
        }
    }
    /// Relay the input being handled.
    pub fn relay(&mut self) {
        self.actions.push(Action::Relay);
    }
    /// Broadcast a server message.
    pub fn broadcast(&mut self, msg_type: &str, data: serde_json::Value) {
        self.actions.push(Action::Broadcast {
            msg_type: msg_type.to_string(),
            data,
        });
    }
    /// Send a server message to one member.
    pub fn send_to(&mut self, client_id: &str, msg_type: &str, data: serde_json::Value) {
        self.actions.push(Action::SendTo {
            client_id: client_id.to_string(),
            msg_type: msg_type.to_string(),
            data,
        });
    }
    /// Set a state path (produces a patch at the end of the turn).
    pub fn set(&mut self, path: &str, value: serde_json::Value) {
        self.actions.push(Action::Set {
            path: path.to_string(),
            value,
        });
    }
    /// Delete a state path.
    pub fn del(&mut self, path: &str) {
        self.actions.push(Action::Del {
            path: path.to_string(),
        });
    }
}

/// Behaviour of a room type. Every hook has a default that does nothing.
pub trait RoomLogic: Send {
    /// The room was created (before its first member joins).
    fn on_create(&mut self, _ctx: &mut RoomCtx<'_>) {}
    /// A member joined.
    fn on_join(&mut self, _ctx: &mut RoomCtx<'_>, _client_id: &str) {}
    /// A member left.
    fn on_leave(&mut self, _ctx: &mut RoomCtx<'_>, _client_id: &str) {}
    /// A member sent `room.message` or `room.message.bytes`.
    fn on_message(&mut self, _ctx: &mut RoomCtx<'_>, _input: &Input<'_>) {}
    /// Called once per shard tick.
    fn on_tick(&mut self, _ctx: &mut RoomCtx<'_>, _now_ms: u64) {}
}

/// Relays every message to all members, sender included.
pub struct EchoRoom;

impl RoomLogic for EchoRoom {
    fn on_message(&mut self, ctx: &mut RoomCtx<'_>, _input: &Input<'_>) {
        ctx.relay();
    }
}

/// State `{counter: 0}`; `inc` adds `data.by` (default 1); relays like `echo_room`.
pub struct CounterRoom;

impl RoomLogic for CounterRoom {
    fn on_create(&mut self, ctx: &mut RoomCtx<'_>) {
        ctx.set("/counter", 0.into());
    }

    fn on_message(&mut self, ctx: &mut RoomCtx<'_>, input: &Input<'_>) {
        if input.msg_type == "inc" {
            let by = input
                .data
                .and_then(|d| codec::field(d, "by"))
                .and_then(codec::as_i64)
                .unwrap_or(1);
            let current = ctx
                .state
                .get("counter")
                .and_then(|c| c.as_i64())
                .unwrap_or(0);
            ctx.set("/counter", current.saturating_add(by).into());
        }
        ctx.relay();
    }
}

/// Clients edit shared state: `state.set {path, value}` and `state.del {path}`; other
/// messages are relayed.
pub struct StateRoom;

impl RoomLogic for StateRoom {
    fn on_message(&mut self, ctx: &mut RoomCtx<'_>, input: &Input<'_>) {
        let data = input.data;
        let path = data
            .and_then(|d| codec::field(d, "path"))
            .and_then(codec::as_str);
        match (input.msg_type, path) {
            ("state.set", Some(path)) => {
                let value = data
                    .and_then(|d| codec::field(d, "value"))
                    .map_or(serde_json::Value::Null, codec::to_json);
                ctx.set(path, value);
            }
            ("state.del", Some(path)) => ctx.del(path),
            ("state.set" | "state.del", None) => {}
            _ => ctx.relay(),
        }
    }
}

/// The logic of a registered type name.
pub fn builtin(room_type: &str) -> Option<(&'static str, Box<dyn RoomLogic>)> {
    match room_type {
        "echo_room" => Some(("echo_room", Box::new(EchoRoom))),
        "counter_room" => Some(("counter_room", Box::new(CounterRoom))),
        "state_room" => Some(("state_room", Box::new(StateRoom))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        logic: &mut dyn RoomLogic,
        state: &serde_json::Value,
        msg_type: &str,
        data: &str,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut bytes = data.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut bytes).unwrap();
        let input = Input {
            msg_type,
            data: Some(&value),
            bytes_b64: None,
            client_id: "c1",
        };
        logic.on_message(&mut RoomCtx::new(state, 1, &mut actions), &input);
        actions
    }

    #[test]
    fn echo_room_relays_everything() {
        assert_eq!(
            run(&mut EchoRoom, &serde_json::json!({}), "chat", "{}"),
            vec![Action::Relay]
        );
    }

    #[test]
    fn counter_room_starts_at_zero_and_increments_by_data_by() {
        let mut actions = Vec::new();
        CounterRoom.on_create(&mut RoomCtx::new(&serde_json::json!({}), 0, &mut actions));
        assert_eq!(
            actions,
            vec![Action::Set {
                path: "/counter".into(),
                value: 0.into()
            }]
        );
        let state = serde_json::json!({"counter": 4});
        assert_eq!(
            run(&mut CounterRoom, &state, "inc", r#"{"by":3}"#),
            vec![
                Action::Set {
                    path: "/counter".into(),
                    value: 7.into()
                },
                Action::Relay
            ]
        );
        assert_eq!(
            run(&mut CounterRoom, &state, "inc", "{}")[0],
            Action::Set {
                path: "/counter".into(),
                value: 5.into()
            }
        );
        assert_eq!(
            run(&mut CounterRoom, &state, "chat", "{}"),
            vec![Action::Relay]
        );
    }

    #[test]
    fn state_room_turns_messages_into_ops() {
        let state = serde_json::json!({});
        assert_eq!(
            run(
                &mut StateRoom,
                &state,
                "state.set",
                r#"{"path":"/a/b","value":[1]}"#
            ),
            vec![Action::Set {
                path: "/a/b".into(),
                value: serde_json::json!([1])
            }]
        );
        assert_eq!(
            run(&mut StateRoom, &state, "state.del", r#"{"path":"/a"}"#),
            vec![Action::Del { path: "/a".into() }]
        );
        assert_eq!(
            run(&mut StateRoom, &state, "state.set", r#"{"value":1}"#),
            vec![]
        );
        assert_eq!(
            run(&mut StateRoom, &state, "hello", "{}"),
            vec![Action::Relay]
        );
    }

    #[test]
    fn unknown_types_have_no_logic() {
        assert!(builtin("poker_room").is_none());
        assert_eq!(builtin("state_room").unwrap().0, "state_room");
    }
}
