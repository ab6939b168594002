//! Every runtime bound of the engine, with its unit last and what happens at the bound.
//! Owns no behaviour: the code that enforces a bound cites the field it enforces.

use serde::Deserialize;

/// Runtime bounds. Every field is optional in `huddle.toml` (`[limits]`); the defaults
/// are the values listed in the README.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame payload a client may send. Above it (and up to 16× it) the message is
    /// dropped with `payload_too_large` and the connection stays open; above 16× it is not
    /// read at all and the connection is closed with 1009.
    pub frame_bytes_max: usize,
    /// Time from the WebSocket upgrade to the handshake frame. Past it: `bad_handshake`
    /// ("handshake timeout") and close 1008.
    pub handshake_ms: u64,
    /// A connection that sent nothing for this long gets a WebSocket ping.
    pub ping_ms: u64,
    /// A connection that sent nothing (data, ping or pong) for this long is closed with 1001.
    pub idle_ms: u64,
    /// Connections one shard holds. Past it new connections are refused with HTTP 503.
    pub conns_per_shard_max: usize,
    /// Connections the whole server holds. Past it new connections are refused with HTTP 503.
    pub conns_max: usize,
    /// Sustained messages per second per connection (token bucket refill). Over it the
    /// message is dropped and answered `rate_limited`.
    pub msgs_per_s: u32,
    /// Token bucket size: the burst a connection may send at once.
    pub msgs_burst: u32,
    /// Rooms one session may be in at once. Past it a join is refused with `bad_request`.
    pub rooms_per_session_max: usize,
    /// Bytes queued for one connection that the kernel has not taken yet. A reliable frame
    /// that would pass it closes the connection with `slow_consumer` (error, then 1008).
    pub outbound_bytes_max: usize,
    /// Above this many queued bytes a connection is congested: unreliable frames replace a
    /// queued frame of the same (sender, type) or are dropped.
    pub outbound_congested_bytes: usize,
    /// 0 = flush every reactor turn; otherwise a connection's frames are held this many
    /// microseconds from the first one queued, then written together (a game tick
    /// batching its sends): at most one write per interval.
    pub flush_interval_us: u64,
    /// Members one room holds when its creator sets no `max_players`.
    pub room_members_max: usize,
    /// Above this many members a room is a crowd: joins and leaves are no longer announced
    /// to every member (that costs O(members²) frames and, with the member list, O(members³)
    /// bytes over a room's filling); the joiner still gets its `room.joined` and a
    /// `room.members` listing the first this-many members with the full `count`.
    pub presence_members_max: usize,
    /// How long a connection the server is closing may take to read what is still queued
    /// for it, the reason it is closed and the close frame (a slow consumer stalled for a
    /// few seconds still learns `slow_consumer` and 1008: its queue was already cut to the
    /// frame it is in, so the wait costs little). Past it the socket is dropped.
    pub close_drain_ms: u64,
    /// Size of each cross-shard queue (messages). A full queue keeps the message in the
    /// sender's local backlog and retries on the next turn.
    pub mesh_queue_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: 64 * 1024,
            handshake_ms: 5_000,
            ping_ms: 15_000,
            idle_ms: 45_000,
            conns_per_shard_max: 50_000,
            conns_max: 100_000,
            msgs_per_s: 60,
            msgs_burst: 120,
            rooms_per_session_max: 16,
            outbound_bytes_max: 256 * 1024,
            outbound_congested_bytes: 64 * 1024,
            flush_interval_us: 0,
            room_members_max: 10_000,
            presence_members_max: 128,
            close_drain_ms: 10_000,
            mesh_queue_len: 8_192,
        }
    }
}

/// What a client may declare before we stop reading: 16 frames' worth.
pub const DECLARED_FRAME_FACTOR: usize = 16;

/// Bytes of one HTTP request head (upgrade or `/metrics`); larger is answered 431.
pub const HTTP_HEAD_BYTES_MAX: usize = 8 * 1024;

/// A client that sends this many times `msgs_per_s` within one second is closed.
pub const ABUSE_FACTOR: u32 = 10;

/// `state.ack` and `state.resync` have their own bucket, this many times the normal one
/// (the reference SDK acks every patch).
pub const STATE_CONTROL_FACTOR: u32 = 10;

const _: () = assert!(DECLARED_FRAME_FACTOR >= 1);
const _: () = assert!(ABUSE_FACTOR > 1);

/// Why a `Limits` read from a config file cannot run.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitsError(pub String);

impl std::fmt::Display for LimitsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Limits {
    /// Checks the relationships between limits that a config file could break.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let fail = |s: &str| Err(LimitsError(s.to_string()));
        if self.frame_bytes_max < 1024 {
            return fail("limits.frame_bytes_max must be at least 1024");
        }
        if self.outbound_congested_bytes >= self.outbound_bytes_max {
            return fail("limits.outbound_congested_bytes must be below limits.outbound_bytes_max");
        }
        if self.outbound_bytes_max < self.frame_bytes_max + 16 {
            return fail("limits.outbound_bytes_max must hold at least one full frame");
        }
        // Outbound queues count their bytes in 32 bits (the record stays small).
        if self.outbound_bytes_max > u32::MAX as usize {
            return fail("limits.outbound_bytes_max must be at most 4294967295");
        }
        if self.ping_ms == 0 || self.idle_ms <= self.ping_ms {
            return fail("limits.idle_ms must be above limits.ping_ms (> 0)");
        }
        if self.msgs_per_s == 0 || self.msgs_burst == 0 {
            return fail("limits.msgs_per_s and limits.msgs_burst must be above 0");
        }
        if self.conns_per_shard_max == 0 || self.conns_max == 0 {
            return fail("limits.conns_per_shard_max and limits.conns_max must be above 0");
        }
        if self.presence_members_max == 0 {
            return fail("limits.presence_members_max must be above 0");
        }
        if self.rooms_per_session_max == 0 || self.room_members_max == 0 {
            return fail(
                "limits.rooms_per_session_max and limits.room_members_max must be above 0",
            );
        }
        if self.mesh_queue_len < 16 {
            return fail("limits.mesh_queue_len must be at least 16");
        }
        Ok(())
    }

    /// The largest message tungstenite will buffer before closing with 1009.
    pub fn declared_bytes_max(&self) -> usize {
        self.frame_bytes_max * DECLARED_FRAME_FACTOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Limits::default().validate(), Ok(()));
    }

    #[test]
    fn congested_threshold_must_be_below_the_outbound_bound() {
        let limits = Limits {
            outbound_congested_bytes: 256 * 1024,
            ..Limits::default()
        };
        assert!(limits.validate().is_err());
    }

    #[test]
    fn the_outbound_bound_fits_the_queues_32_bit_count() {
        let limits = Limits {
            outbound_bytes_max: u32::MAX as usize + 1,
            ..Limits::default()
        };
        let err = limits.validate().unwrap_err();
        assert!(err.0.contains("outbound_bytes_max"), "{err:?}");
        let limits = Limits {
            outbound_bytes_max: u32::MAX as usize,
            ..Limits::default()
        };
        assert_eq!(limits.validate(), Ok(()));
    }

    #[test]
    fn idle_must_exceed_ping() {
        let limits = Limits {
            idle_ms: 10,
            ping_ms: 10,
            ..Limits::default()
        };
        assert!(limits.validate().is_err());
    }
}
