//! Counters each shard updates (relaxed atomics, one writer per shard) and their
//! Prometheus text rendering for `GET /metrics`: the engine's, and those each dialect keeps
//! for itself ([`DialectMetrics`], with its typed [`ErrorCode`]s). Owns no decisions.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Why a message was dropped, as a metrics label (the discriminant indexes the counters).
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

/// The error codes one dialect sends, as a closed, typed list: each dialect has one enum,
/// and its counters are indexed by it (no lookup by name).
pub trait ErrorCode: Copy + 'static {
    /// Every code, in label order: `ALL[code.index()] == code`.
    const ALL: &'static [Self];
    /// The code's position in `ALL`.
    fn index(self) -> usize;
    /// The code's wire name (also its metrics label).
    fn as_str(self) -> &'static str;
}

/// How many errors of each code a dialect sent on one shard (one writer: the shard).
pub struct ErrorCounts<E: ErrorCode> {
    dialect: &'static str,
    counts: Box<[AtomicU64]>,
    _codes: std::marker::PhantomData<E>,
}

impl<E: ErrorCode> ErrorCounts<E> {
    /// Zeroed counters for the codes of `dialect`.
    pub fn new(dialect: &'static str) -> Self {
        ErrorCounts {
            dialect,
            counts: E::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _codes: std::marker::PhantomData,
        }
    }

    /// Counts one error sent (from the owning shard's thread only).
    pub fn count(&self, code: E) {
        ShardMetrics::add(&self.counts[code.index()], 1);
    }

    /// A code's count.
    pub fn get(&self, code: E) -> u64 {
        self.counts[code.index()].load(Ordering::Relaxed)
    }

    /// The `huddle_errors_total` series of these codes.
    pub fn samples(&self, sample: &mut dyn FnMut(Sample<'_>)) {
        for &code in E::ALL {
            sample(Sample {
                name: "huddle_errors_total",
                kind: "counter",
                help: "Error codes sent to clients, by dialect and code.",
                labels: &[("dialect", self.dialect), ("code", code.as_str())],
                value: self.get(code),
            });
        }
    }
}

/// One value of a dialect's series on one shard.
pub struct Sample<'a> {
    /// Series name.
    pub name: &'static str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Its help line.
    pub help: &'static str,
    /// Labels besides `shard`.
    pub labels: &'a [(&'static str, &'static str)],
    /// This shard's value.
    pub value: u64,
}

/// Counters a dialect keeps for itself, rendered by `/metrics` after the engine's. Every
/// shard's instance lists the same series in the same order.
pub trait DialectMetrics: Send + Sync {
    /// Every series value of this shard, in order.
    fn samples(&self, sample: &mut dyn FnMut(Sample<'_>));
}

/// One shard's counters: the engine's, and the dialects' (see [`DialectMetrics`]).
#[derive(Default)]
pub struct ShardMetrics {
    /// Open WebSocket connections (gauge).
    pub connections: AtomicU64,
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
    /// The dialects' own counters.
    dialects: Vec<Arc<dyn DialectMetrics>>,
}

// Each shard's counters have one writer, the shard's own thread (`/metrics` only reads
// them), so updates are a plain load and store: no locked read-modify-write on the
// per-frame path.
impl ShardMetrics {
    /// Zeroed counters, with the dialects' own.
    pub fn new(dialects: Vec<Arc<dyn DialectMetrics>>) -> Self {
        ShardMetrics {
            dialects,
            ..ShardMetrics::default()
        }
    }
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
        Self::add(&self.drops[reason as usize], 1);
    }
    /// A drop counter's value.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Ordering::Relaxed)
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
pub fn render(shards: &[Arc<ShardMetrics>]) -> String {
    let mut out = String::new();
    let scalar: [Gauge; 8] = [
        (
            "huddle_connections",
            "gauge",
            "Open WebSocket connections.",
            |m| &m.connections,
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
    render_dialects(shards, &mut out);
    out
}

/// One dialect series position: its description and every shard's value.
struct Series {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    labels: String,
    values: Vec<u64>,
}

/// The dialects' series, per shard and in total, grouped by name.
fn render_dialects(shards: &[Arc<ShardMetrics>], out: &mut String) {
    let Some(first) = shards.first() else {
        return;
    };
    for d in 0..first.dialects.len() {
        let mut series: Vec<Series> = Vec::new();
        for (s, m) in shards.iter().enumerate() {
            let mut i = 0;
            m.dialects[d].samples(&mut |sample| {
                if s == 0 {
                    let labels = sample
                        .labels
                        .iter()
                        .map(|(k, v)| format!(",{k}=\"{v}\""))
                        .collect();
                    series.push(Series {
                        name: sample.name,
                        kind: sample.kind,
                        help: sample.help,
                        labels,
                        values: Vec::with_capacity(shards.len()),
                    });
                }
                if let Some(entry) = series.get_mut(i) {
                    entry.values.push(sample.value);
                }
                i += 1;
            });
        }
        let mut last_name = "";
        for entry in &series {
            let Series {
                name,
                kind,
                help,
                labels,
                values,
            } = entry;
            if *name != last_name {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                last_name = name;
            }
            for (i, v) in values.iter().enumerate() {
                let _ = writeln!(out, "{name}{{shard=\"{i}\"{labels}}} {v}");
            }
            let total: u64 = values.iter().sum();
            let _ = writeln!(out, "{name}{{shard=\"all\"{labels}}} {total}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Code {
        Slow,
        Bad,
    }

    impl ErrorCode for Code {
        const ALL: &'static [Code] = &[Code::Slow, Code::Bad];
        fn index(self) -> usize {
            self as usize
        }
        fn as_str(self) -> &'static str {
            match self {
                Code::Slow => "slow",
                Code::Bad => "bad",
            }
        }
    }

    struct Toy {
        errors: ErrorCounts<Code>,
        widgets: AtomicU64,
    }

    impl DialectMetrics for Toy {
        fn samples(&self, sample: &mut dyn FnMut(Sample<'_>)) {
            sample(Sample {
                name: "huddle_widgets",
                kind: "gauge",
                help: "Widgets.",
                labels: &[],
                value: self.widgets.load(Ordering::Relaxed),
            });
            self.errors.samples(sample);
        }
    }

    fn toy() -> Arc<Toy> {
        Arc::new(Toy {
            errors: ErrorCounts::new("toy"),
            widgets: AtomicU64::new(0),
        })
    }

    #[test]
    fn render_has_per_shard_and_total_lines_for_the_engine_and_the_dialects() {
        let (ta, tb) = (toy(), toy());
        let a = Arc::new(ShardMetrics::new(vec![ta.clone()]));
        let b = Arc::new(ShardMetrics::new(vec![tb.clone()]));
        ShardMetrics::add(&a.frames_in, 3);
        ShardMetrics::add(&b.frames_in, 4);
        b.dropped(DropReason::Congested);
        ta.errors.count(Code::Bad);
        tb.errors.count(Code::Bad);
        ShardMetrics::add(&tb.widgets, 5);
        let text = render(&[a, b]);
        assert!(text.contains("huddle_frames_in_total{shard=\"0\"} 3"));
        assert!(text.contains("huddle_frames_in_total{shard=\"all\"} 7"));
        assert!(text.contains("huddle_drops_total{shard=\"all\",reason=\"congested\"} 1"));
        assert!(text.contains("huddle_widgets{shard=\"1\"} 5"), "{text}");
        assert!(text.contains("huddle_errors_total{shard=\"0\",dialect=\"toy\",code=\"bad\"} 1"));
        assert!(text.contains("huddle_errors_total{shard=\"all\",dialect=\"toy\",code=\"bad\"} 2"));
        assert!(text.contains("huddle_errors_total{shard=\"all\",dialect=\"toy\",code=\"slow\"} 0"));
        assert_eq!(
            text.matches("# TYPE huddle_errors_total counter").count(),
            1,
            "one header per series name"
        );
    }

    #[test]
    fn drop_reasons_index_their_own_counter() {
        let m = ShardMetrics::default();
        for (i, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, i, "ALL is in discriminant order");
            m.dropped(reason);
            assert_eq!(m.drops(reason), 1);
        }
    }
}
