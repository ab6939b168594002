//! Counters each shard updates (relaxed atomics, one writer per shard) and their
//! Prometheus text rendering for `GET /metrics`. Owns no decisions.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a message was dropped, as a metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Unreliable frame dropped under backpressure.
    Congested,
    /// Unreliable frame replaced by a newer one with the same key.
    Replaced,
    /// Client message over its rate.
    RateLimited,
    /// Client message over `frame_bytes_max`.
    TooLarge,
    /// Mesh message for a session that no longer exists.
    StaleSession,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 5] = [
        DropReason::Congested,
        DropReason::Replaced,
        DropReason::RateLimited,
        DropReason::TooLarge,
        DropReason::StaleSession,
    ];
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Congested => "congested",
            DropReason::Replaced => "replaced",
            DropReason::RateLimited => "rate_limited",
            DropReason::TooLarge => "payload_too_large",
            DropReason::StaleSession => "stale_session",
        }
    }
}

/// Error codes on the wire (rooms dialect's closed set), as metrics labels.
pub const ERROR_CODES: [&str; 14] = [
    "bad_request",
    "bad_handshake",
    "unauthorized",
    "unsupported_version",
    "payload_too_large",
    "unknown_type",
    "unknown_room_type",
    "room_not_found",
    "room_full",
    "already_joined",
    "not_in_room",
    "rate_limited",
    "slow_consumer",
    "internal",
];

/// One shard's counters.
#[derive(Default)]
pub struct ShardMetrics {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
    /// Rooms whose home is this shard (gauge).
    pub rooms: AtomicU64,
    /// Data frames received.
    pub frames_in: AtomicU64,
    /// Payload bytes received.
    pub bytes_in: AtomicU64,
    /// Frames queued to clients.
    pub frames_out: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Write syscalls on client sockets (frames per write = frames_out / writes).
    pub writes: AtomicU64,
    /// Sessions handed to another shard.
    pub moves_out: AtomicU64,
    /// Connections refused at the caps.
    pub refused: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
    errors: [AtomicU64; ERROR_CODES.len()],
}

// Each shard's counters have one writer, the shard's own thread (`/metrics` only reads
// them), so updates are a plain load and store: no locked read-modify-write on the
// per-frame path.
impl ShardMetrics {
    /// Adds to a counter (from the owning shard's thread only).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
    /// Subtracts from a gauge (from the owning shard's thread only).
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) - n, Ordering::Relaxed);
    }
    /// Counts a drop.
    pub fn dropped(&self, reason: DropReason) {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        Self::add(&self.drops[i], 1);
    }
    /// Counts an error sent to a client.
    pub fn error(&self, code: &str) {
        if let Some(i) = ERROR_CODES.iter().position(|c| *c == code) {
            Self::add(&self.errors[i], 1);
        }
    }
    /// A drop counter's value.
    pub fn drops(&self, reason: DropReason) -> u64 {
        let i = DropReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.drops[i].load(Ordering::Relaxed)
    }
    /// An error counter's value.
    pub fn errors(&self, code: &str) -> u64 {
        ERROR_CODES
            .iter()
            .position(|c| *c == code)
            .map_or(0, |i| self.errors[i].load(Ordering::Relaxed))
    }
}

/// A scalar series: name, type, help, field.
type Gauge = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardMetrics) -> &AtomicU64,
);

/// Renders every shard's counters, per shard and in total, in Prometheus text format.
pub fn render(shards: &[std::sync::Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    let scalar: [Gauge; 9] = [
        (
            "huddle_connections",
            "gauge",
            "Open WebSocket connections.",
            |m| &m.connections,
        ),
        (
            "huddle_rooms",
            "gauge",
            "Rooms whose home is the shard.",
            |m| &m.rooms,
        ),
        (
            "huddle_frames_in_total",
            "counter",
            "Data frames received.",
            |m| &m.frames_in,
        ),
        (
            "huddle_bytes_in_total",
            "counter",
            "Payload bytes received.",
            |m| &m.bytes_in,
        ),
        (
            "huddle_frames_out_total",
            "counter",
            "Frames queued to clients.",
            |m| &m.frames_out,
        ),
        (
            "huddle_bytes_out_total",
            "counter",
            "Bytes written to sockets.",
            |m| &m.bytes_out,
        ),
        (
            "huddle_writes_total",
            "counter",
            "Write syscalls on client sockets.",
            |m| &m.writes,
        ),
        (
            "huddle_session_moves_total",
            "counter",
            "Sessions handed to another shard.",
            |m| &m.moves_out,
        ),
        (
            "huddle_connections_refused_total",
            "counter",
            "Connections refused at the caps.",
            |m| &m.refused,
        ),
    ];
    for (name, kind, help, get) in scalar {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let mut total = 0;
        for (i, m) in shards.iter().enumerate() {
            let v = get(m).load(Ordering::Relaxed);
            total += v;
            let _ = writeln!(out, "{name}{{shard=\"{i}\"}} {v}");
        }
        let _ = writeln!(out, "{name}{{shard=\"all\"}} {total}");
    }
    let _ = writeln!(
        out,
        "# HELP huddle_drops_total Messages dropped, by reason.\n# TYPE huddle_drops_total counter"
    );
    for reason in DropReason::ALL {
        let mut total = 0;
        for (i, m) in shards.iter().enumerate() {
            let v = m.drops(reason);
            total += v;
            let _ = writeln!(
                out,
                "huddle_drops_total{{shard=\"{i}\",reason=\"{}\"}} {v}",
                reason.label()
            );
        }
        let _ = writeln!(
            out,
            "huddle_drops_total{{shard=\"all\",reason=\"{}\"}} {total}",
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP huddle_errors_total Error codes sent to clients.\n# TYPE huddle_errors_total counter"
    );
    for code in ERROR_CODES {
        let mut total = 0;
        for (i, m) in shards.iter().enumerate() {
            let v = m.errors(code);
            total += v;
            let _ = writeln!(
                out,
                "huddle_errors_total{{shard=\"{i}\",code=\"{code}\"}} {v}"
            );
        }
        let _ = writeln!(
            out,
            "huddle_errors_total{{shard=\"all\",code=\"{code}\"}} {total}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn render_has_per_shard_and_total_lines() {
        let a = Arc::new(ShardMetrics::default());
        let b = Arc::new(ShardMetrics::default());
        ShardMetrics::add(&a.frames_in, 3);
        ShardMetrics::add(&b.frames_in, 4);
        b.dropped(DropReason::Congested);
        a.error("rate_limited");
        let text = render(&[a, b]);
        assert!(text.contains("huddle_frames_in_total{shard=\"0\"} 3"));
        assert!(text.contains("huddle_frames_in_total{shard=\"all\"} 7"));
        assert!(text.contains("huddle_drops_total{shard=\"all\",reason=\"congested\"} 1"));
        assert!(text.contains("huddle_errors_total{shard=\"0\",code=\"rate_limited\"} 1"));
    }
}
