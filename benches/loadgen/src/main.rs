//! `loadgen`: the load generator for huddle and its peers. Opens many WebSocket connections
//! (paced), puts them in rooms, has each sender send timestamped messages at an even pace,
//! and measures delivery ratio and one-way latency (one box, one clock) over a measured
//! window after a warm-up. Prints a progress line per second on stderr and one final
//! `key=value` summary line on stdout.
//!
//! Five kinds of load: the rooms dialect (`--codec json|msgpack`, `echo_room`,
//! `ws://HOST/rooms`); `--peer-relay` (plain WebSocket, room = URL path `/room/<id>`, every
//! message is published to the whole room, sender included); `--cl5` (CloudLink 5 relay
//! lobbies, `ws://HOST/cl5?ugi=GAME`: the `lobby` scenario); `--peerjs` (a PeerJS broker,
//! `ws://HOST/` = its prefix: pairs of peers signaling each other, the `peerjs` scenario);
//! `--pairkit` (PairKit sessions, `ws://HOST/pairkit`: each `--room` connections are one
//! host and its phones; phones send `input.widget_event` at `--rate` to the host, the host
//! `control.broadcast` at `--host-rate` to its phones: the `pairkit` scenario). With
//! `--pairkit` the summary adds the latency of inputs at hosts (`input_p50_us`...) and of
//! broadcasts at phones (`event_p50_us`...), both counts, and the `system.error`s received
//! by code (`pairkit_errors`).
//!
//! With `--server-pid` it also reads the server's CPU time (utime/stime from `/proc`) over
//! the measured window, its RSS, and the CPUs its threads ran on.
//!
//! Its own crate in huddle's cargo workspace (`benches/loadgen`), sharing nothing with the
//! huddle library: `cargo build --release --workspace --bins` (or `-p loadgen`) puts it at
//! `target/release/loadgen`, beside `huddle`, where the scripts in `benches/` look for it.

mod json;
mod procstat;
mod worker;
mod ws;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

use worker::{Counts, Errors, PkErrors, Published, Worker, PK_CODES};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CodecArg {
    Json,
    Msgpack,
}

/// What a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Json,
    Msgpack,
    /// Plain WebSocket room relay (`--peer-relay`).
    Peer,
    /// CloudLink 5 relay lobbies (`--cl5`).
    Cl5,
    /// A PeerJS broker (`--peerjs`).
    Peerjs,
    /// PairKit sessions: a host and its phones (`--pairkit`).
    Pairkit,
}

/// Load generator for huddle (rooms dialect) and peer relays.
#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for huddle (rooms dialect, JSON or MessagePack; CloudLink 5 relay \
             lobbies; the PeerJS broker; PairKit sessions), WebSocket room relays \
             (--peer-relay) and PeerJS servers: paced timestamped messages, delivery ratio, \
             one-way latency, loadgen and server CPU; one key=value summary line on stdout"
)]
struct Args {
    /// Target URL: ws://HOST:PORT/rooms (rooms dialect), ws://HOST:PORT (--peer-relay),
    /// ws://HOST:PORT/pairkit (--pairkit)...
    #[arg(long, default_value = "ws://127.0.0.1:7777/rooms")]
    url: String,
    /// Plain WebSocket room relay: room = URL path /room/<id>, raw payloads.
    #[arg(long, conflicts_with_all = ["cl5", "peerjs", "pairkit"])]
    peer_relay: bool,
    /// CloudLink 5 relay lobbies (URL ws://HOST:PORT/cl5?ugi=GAME): each --room consecutive
    /// connections INIT and share a lobby the first creates with enable_relay; senders send
    /// G_MSG, which the relay delivers to every other member.
    #[arg(long, conflicts_with_all = ["peerjs", "pairkit"])]
    cl5: bool,
    /// A PeerJS broker (URL ws://HOST:PORT/ = its prefix, key `peerjs`): connections pair
    /// up (0-1, 2-3, ...); each sends its partner an OFFER (even) or an ANSWER (odd) then
    /// --candidates CANDIDATEs, in turn, at --rate. --room is ignored.
    #[arg(long, conflicts_with = "pairkit")]
    peerjs: bool,
    /// --peerjs: CANDIDATEs per OFFER / ANSWER.
    #[arg(long, default_value_t = 4)]
    candidates: usize,
    /// PairKit sessions (URL ws://HOST:PORT/pairkit): each --room consecutive connections
    /// are one session, the first its host (session.create), the others phones that
    /// session.join with the code the host got. Phones send input.widget_event at --rate
    /// (delivered to the host), the host control.broadcast at --host-rate (delivered to
    /// every phone as control.event); the send time is the payload's `t`.
    #[arg(long)]
    pairkit: bool,
    /// --pairkit: control.broadcasts per second per host (0 = none).
    #[arg(long, default_value_t = 10.0)]
    host_rate: f64,
    /// Rooms-dialect codec.
    #[arg(long, value_enum, default_value = "json")]
    codec: CodecArg,
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Connections per room (consecutive connections share a room; the last may be smaller).
    #[arg(long, default_value_t = 10)]
    room: usize,
    /// Messages per second per sending connection, paced evenly (0 = idle); with --pairkit,
    /// per phone.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Connections that send (spread evenly over all); default: all.
    #[arg(long)]
    senders: Option<usize>,
    /// Payload bytes per message (the `data` string in the rooms dialect, the whole message
    /// with --peer-relay, the `t` and `pad` strings of the payload with --pairkit),
    /// timestamp included; at least 18.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Measured window, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up before the measured window, seconds (sending, not counted).
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// After the window: wait up to this long for the window's messages to arrive, seconds.
    #[arg(long, default_value_t = 2.0)]
    drain: f64,
    /// New connections per second (all threads together).
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Connections in setup (connecting, upgrading, joining) at once, per thread.
    #[arg(long, default_value_t = 256)]
    max_pending: usize,
    /// Give up when not every connection is ready this long after the paced connect time.
    #[arg(long, default_value_t = 30.0)]
    setup_timeout: f64,
    /// Threads (each owns conns/threads connections in one mio poll).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Poll tick, µs: a thread polls (and sends what is due) at most once per tick, so
    /// arrivals pile up between polls: far fewer wakeups and reads per delivery, for the
    /// loadgen and for the server (which then rarely has a sleeping reader to wake over
    /// loopback). Adds up to this much to the measured latency. 0 = poll as soon as the
    /// last events are handled (one wakeup per arrival; the loadgen then costs ~4.4 µs per
    /// delivery on this box and passes 70% of its core near 160k deliveries/s).
    #[arg(long, default_value_t = 100)]
    batch_us: u64,
    /// Room names are PREFIX-<n>.
    #[arg(long, default_value = "bench")]
    room_prefix: String,
    /// Server process to measure: CPU over the window, RSS, CPUs its threads ran on.
    #[arg(long)]
    server_pid: Option<u32>,
    /// No progress lines.
    #[arg(long, short)]
    quiet: bool,
}

/// The run's fixed parameters, shared by every worker.
pub struct Plan {
    pub addr: SocketAddr,
    pub host: String,
    /// URL path: the rooms endpoint, or the prefix of `/room/<id>` for peers (ends in '/').
    pub base_path: String,
    pub codec: Codec,
    pub conns: usize,
    pub room: usize,
    pub rate: f64,
    pub senders: usize,
    pub size: usize,
    pub connect_rate: f64,
    pub max_pending: usize,
    pub threads: usize,
    pub room_prefix: String,
    /// --peerjs: CANDIDATEs per OFFER / ANSWER.
    pub candidates: usize,
    /// --pairkit: broadcasts per second per host.
    pub host_rate: f64,
    /// Minimum time between two polls (0 = poll as soon as the last events are handled).
    pub batch_ns: u64,
}

impl Plan {
    /// `senders` connections spread evenly over all.
    pub fn is_sender(&self, id: usize) -> bool {
        let (s, c) = (self.senders as u128, self.conns as u128);
        let id = id as u128;
        ((id + 1) * s) / c != (id * s) / c
    }
}

/// Coordinator ↔ workers: the clock origin, the phase times (ns since `start`) and counters.
pub struct Shared {
    pub start: Instant,
    /// Sending starts (0 = not yet).
    pub t0: AtomicU64,
    /// Measured window [m0, m1), by send time.
    pub m0: AtomicU64,
    pub m1: AtomicU64,
    pub stop: AtomicBool,
    pub workers: Vec<Published>,
    /// `--pairkit`: each session's code (4 ASCII bytes, little-endian; 0 = not yet),
    /// published by its host for its phones, which may be on other workers.
    pub codes: Vec<AtomicU32>,
}

impl Shared {
    fn sum(&self, f: impl Fn(&Published) -> &AtomicU64) -> u64 {
        self.workers.iter().map(|w| f(w).load(Relaxed)).sum()
    }
}

fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("ws://")
        .context("only ws:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((host.to_string(), path.to_string()))
}

/// Server readings at one instant.
#[derive(Clone, Copy, Default)]
struct ServerSample {
    user_us: u64,
    sys_us: u64,
}

fn server_sample(pid: Option<u32>) -> Option<ServerSample> {
    let (user_us, sys_us) = procstat::proc_cpu_us(pid?)?;
    Some(ServerSample { user_us, sys_us })
}

/// Tracks what the coordinator prints once per second.
struct Progress {
    quiet: bool,
    last_at: Instant,
    last_sent: u64,
    last_delivered: u64,
    last_cpu: Duration,
    last_server: Option<ServerSample>,
    server_cpus: u64,
    server_threads: usize,
    client_cpus: u64,
}

impl Progress {
    fn tick(&mut self, shared: &Shared, plan: &Plan, phase: &str, pid: Option<u32>) {
        if let Some((mask, n)) = pid.and_then(procstat::proc_task_cpus) {
            self.server_cpus |= mask;
            self.server_threads = self.server_threads.max(n);
        }
        if let Some((mask, _)) = procstat::proc_task_cpus(std::process::id()) {
            self.client_cpus |= mask;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(1e-6);
        let sent = shared.sum(|w| &w.sent);
        let delivered = shared.sum(|w| &w.delivered);
        let (u, s) = procstat::self_cpu();
        let cpu = u + s;
        let server = server_sample(pid);
        if !self.quiet {
            let srv = match (server, self.last_server) {
                (Some(a), Some(b)) => format!(
                    " server_cpu={:.0}%",
                    (a.user_us + a.sys_us).saturating_sub(b.user_us + b.sys_us) as f64 / (dt * 1e4)
                ),
                _ => String::new(),
            };
            eprintln!(
                "[loadgen] {:6.1}s {phase:8} ready={}/{} sent/s={:.0} delivered/s={:.0} errors={} cpu={:.0}%{srv}",
                shared.start.elapsed().as_secs_f64(),
                shared.sum(|w| &w.ready),
                plan.conns,
                (sent - self.last_sent) as f64 / dt,
                (delivered - self.last_delivered) as f64 / dt,
                shared.sum(|w| &w.errors),
                (cpu.saturating_sub(self.last_cpu)).as_secs_f64() * 100.0 / dt,
            );
        }
        self.last_at = now;
        self.last_sent = sent;
        self.last_delivered = delivered;
        self.last_cpu = cpu;
        self.last_server = server;
    }
}

/// `--pairkit`: the `system.error`s received, `code:count,...` (`none` when none).
fn pk_errors_list(pk: &PkErrors) -> String {
    let names = PK_CODES.iter().copied().chain(["other"]);
    let l: Vec<String> = names
        .zip(pk)
        .filter(|(_, &n)| n > 0)
        .map(|(c, n)| format!("{c}:{n}"))
        .collect();
    if l.is_empty() {
        "none".into()
    } else {
        l.join(",")
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.conns == 0 || a.room == 0 || a.threads == 0 {
        bail!("--conns, --room and --threads must be above 0");
    }
    if a.size < ws::TS_LEN {
        bail!(
            "--size must be at least {} (the timestamp takes that much)",
            ws::TS_LEN
        );
    }
    if a.rate < 0.0 || a.host_rate < 0.0 || a.duration <= 0.0 || a.warmup < 0.0 {
        bail!("--rate, --host-rate, --warmup must be >= 0 and --duration > 0");
    }
    let (host, path) = parse_url(&a.url)?;
    let addr = host
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .context("no address")?;
    let codec = match (a.peer_relay, a.cl5, a.peerjs, a.pairkit, a.codec) {
        (true, ..) => Codec::Peer,
        (_, true, ..) => Codec::Cl5,
        (_, _, true, ..) => Codec::Peerjs,
        (_, _, _, true, _) => Codec::Pairkit,
        (.., CodecArg::Json) => Codec::Json,
        (.., CodecArg::Msgpack) => Codec::Msgpack,
    };
    if codec == Codec::Cl5 && !path.contains("ugi=") {
        bail!("--cl5 needs a URL with ?ugi=GAME (ws://HOST:PORT/cl5?ugi=bench)");
    }
    if codec == Codec::Pairkit && !(path == "/" || path.starts_with("/pairkit")) {
        bail!("--pairkit needs a URL ws://HOST:PORT/pairkit (or ws://HOST:PORT/)");
    }
    let slash = matches!(codec, Codec::Peer | Codec::Peerjs);
    let base_path = if slash && !path.ends_with('/') {
        format!("{path}/")
    } else {
        path
    };
    let senders = a.senders.unwrap_or(a.conns).min(a.conns);
    let threads = a.threads.min(a.conns);
    let plan = Arc::new(Plan {
        addr,
        host,
        base_path,
        codec,
        conns: a.conns,
        room: a.room,
        rate: a.rate,
        senders,
        size: a.size,
        connect_rate: a.connect_rate,
        max_pending: a.max_pending.max(1),
        threads,
        room_prefix: a.room_prefix.clone(),
        candidates: a.candidates,
        host_rate: a.host_rate,
        batch_ns: a.batch_us * 1000,
    });
    let sessions = if codec == Codec::Pairkit {
        a.conns.div_ceil(a.room)
    } else {
        0
    };
    let shared = Arc::new(Shared {
        start: Instant::now(),
        t0: AtomicU64::new(0),
        m0: AtomicU64::new(u64::MAX),
        m1: AtomicU64::new(u64::MAX),
        stop: AtomicBool::new(false),
        workers: (0..threads).map(|_| Published::default()).collect(),
        codes: (0..sessions).map(|_| AtomicU32::new(0)).collect(),
    });
    let pid = a.server_pid;
    let rss_start = pid.and_then(procstat::proc_rss_kb);
    if pid.is_some() && rss_start.is_none() {
        bail!("cannot read /proc/{} (--server-pid)", pid.unwrap_or(0));
    }

    let mut handles = Vec::new();
    for i in 0..threads {
        let w = Worker::new(i, plan.clone(), shared.clone())?;
        handles.push(
            std::thread::Builder::new()
                .name(format!("loadgen-{i}"))
                .spawn(move || w.run())?,
        );
    }

    let mut prog = Progress {
        quiet: a.quiet,
        last_at: Instant::now(),
        last_sent: 0,
        last_delivered: 0,
        last_cpu: Duration::ZERO,
        last_server: server_sample(pid),
        server_cpus: 0,
        server_threads: 0,
        client_cpus: 0,
    };
    let (u, s) = procstat::self_cpu();
    prog.last_cpu = u + s;

    // Setup: every connection connected, upgraded, handshaken and joined (or failed).
    let setup_deadline = shared.start
        + Duration::from_secs_f64(a.conns as f64 / a.connect_rate.max(1.0) + a.setup_timeout);
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    let setup_ok = loop {
        std::thread::sleep(Duration::from_millis(20));
        let ready = shared.sum(|w| &w.ready);
        let failed = shared.sum(|w| &w.failed);
        if ready + failed >= a.conns as u64 {
            break ready > 0;
        }
        if Instant::now() >= setup_deadline {
            eprintln!(
                "[loadgen] setup timed out: {ready}/{} ready, {failed} failed",
                a.conns
            );
            break false;
        }
        if Instant::now() >= next_tick {
            prog.tick(&shared, &plan, "setup", pid);
            next_tick += Duration::from_secs(1);
        }
    };
    let setup_s = shared.start.elapsed().as_secs_f64();

    let mut window = None;
    if setup_ok {
        let t0 = shared.start.elapsed() + Duration::from_millis(100);
        let m0 = t0 + Duration::from_secs_f64(a.warmup);
        let m1 = m0 + Duration::from_secs_f64(a.duration);
        shared.m0.store(m0.as_nanos() as u64, Relaxed);
        shared.m1.store(m1.as_nanos() as u64, Relaxed);
        shared.t0.store(t0.as_nanos() as u64, Release);
        let (m0_at, m1_at) = (shared.start + m0, shared.start + m1);
        next_tick = shared.start + t0 + Duration::from_secs(1);
        while next_tick < m0_at {
            sleep_until(next_tick);
            prog.tick(&shared, &plan, "warmup", pid);
            next_tick += Duration::from_secs(1);
        }
        sleep_until(m0_at);
        let c0 = procstat::self_cpu();
        let s0 = server_sample(pid);
        let b0 = procstat::box_idle_us();
        let w0 = Instant::now();
        next_tick = m0_at + Duration::from_secs(1);
        while next_tick < m1_at {
            sleep_until(next_tick);
            prog.tick(&shared, &plan, "measure", pid);
            next_tick += Duration::from_secs(1);
        }
        sleep_until(m1_at);
        let c1 = procstat::self_cpu();
        let s1 = server_sample(pid);
        let b1 = procstat::box_idle_us();
        let w1 = Instant::now();
        let rss = pid.and_then(procstat::proc_rss_kb);
        prog.tick(&shared, &plan, "measure", pid);
        // Drain: wait for the window's messages.
        let drain_deadline = Instant::now() + Duration::from_secs_f64(a.drain);
        loop {
            let done = shared.sum(|w| &w.done_sending) == threads as u64;
            let expected = shared.sum(|w| &w.expected_win);
            let delivered = shared.sum(|w| &w.delivered_win);
            if (done && delivered >= expected) || Instant::now() >= drain_deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let wall = w1.duration_since(w0);
        let box_us = b0.zip(b1).map(|((i0, cpus), (i1, _))| {
            (wall.as_micros() as u64 * cpus as u64).saturating_sub(i1.saturating_sub(i0))
        });
        window = Some((c0, c1, s0, s1, wall, rss, box_us));
    }
    shared.stop.store(true, Release);

    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let mut input_hist = hist.clone();
    let mut event_hist = hist.clone();
    let mut counts = Counts::default();
    let mut errors = Errors::default();
    let mut pk_errors = PkErrors::default();
    for h in handles {
        let r = h.join().map_err(|_| anyhow::anyhow!("worker panicked"))?;
        hist.add(&r.hist)?;
        input_hist.add(&r.input_hist)?;
        event_hist.add(&r.event_hist)?;
        for (t, n) in pk_errors.iter_mut().zip(r.pk_errors) {
            *t += n;
        }
        let c = r.counts;
        counts.sent += c.sent;
        counts.delivered += c.delivered;
        counts.sent_win += c.sent_win;
        counts.delivered_win += c.delivered_win;
        counts.expected_win += c.expected_win;
        counts.delivered_warm += c.delivered_warm;
        counts.other_frames += c.other_frames;
        counts.skipped += c.skipped;
        counts.backlogged += c.backlogged;
        counts.reads += c.reads;
        counts.polls += c.polls;
        counts.ready += c.ready;
        counts.failed += c.failed;
        counts.lost += c.lost;
        counts.input_win += c.input_win;
        counts.event_win += c.event_win;
        errors.add(&r.errors);
    }

    // The summary line.
    let mut out: Vec<(&str, String)> = Vec::new();
    let us = |ns: u64| format!("{:.1}", ns as f64 / 1000.0);
    let ratio = if counts.expected_win > 0 {
        counts.delivered_win as f64 / counts.expected_win as f64
    } else {
        1.0
    };
    let mode = match codec {
        Codec::Peer => "peer",
        Codec::Json => "json",
        Codec::Msgpack => "msgpack",
        Codec::Cl5 => "cl5",
        Codec::Peerjs => "peerjs",
        Codec::Pairkit => "pairkit",
    };
    out.push(("conns", a.conns.to_string()));
    out.push(("room", a.room.to_string()));
    out.push(("rate", format!("{}", a.rate)));
    out.push(("size", a.size.to_string()));
    out.push(("sent", counts.sent_win.to_string()));
    out.push(("delivered", counts.delivered_win.to_string()));
    out.push(("expected", counts.expected_win.to_string()));
    out.push(("ratio", format!("{ratio:.4}")));
    let lat = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            "0".to_string()
        } else {
            us(h.value_at_quantile(q))
        }
    };
    out.push(("p50_us", lat(&hist, 0.5)));
    out.push(("p99_us", lat(&hist, 0.99)));
    out.push(("p999_us", lat(&hist, 0.999)));
    out.push((
        "max_us",
        if hist.is_empty() {
            "0".into()
        } else {
            us(hist.max())
        },
    ));
    if codec == Codec::Pairkit {
        // Phones' inputs at their hosts, and hosts' broadcasts at their phones.
        out.push(("host_rate", format!("{}", a.host_rate)));
        out.push(("inputs", counts.input_win.to_string()));
        out.push(("input_p50_us", lat(&input_hist, 0.5)));
        out.push(("input_p99_us", lat(&input_hist, 0.99)));
        out.push(("input_p999_us", lat(&input_hist, 0.999)));
        out.push(("events", counts.event_win.to_string()));
        out.push(("event_p50_us", lat(&event_hist, 0.5)));
        out.push(("event_p99_us", lat(&event_hist, 0.99)));
        out.push(("event_p999_us", lat(&event_hist, 0.999)));
    }
    let mut client_cpu_pct = 0.0;
    let mut tail: Vec<(&str, String)> = Vec::new();
    if let Some((c0, c1, s0, s1, wall, rss, box_us)) = window {
        let secs = wall.as_secs_f64();
        let cpu = (c1.0 + c1.1).saturating_sub(c0.0 + c0.1);
        let user = c1.0.saturating_sub(c0.0);
        client_cpu_pct = cpu.as_secs_f64() * 100.0 / secs;
        let per_msg = |cpu_us: f64| {
            if counts.delivered_win > 0 {
                format!("{:.3}", cpu_us / counts.delivered_win as f64)
            } else {
                "0".into()
            }
        };
        tail.push((
            "delivered_per_s",
            format!("{:.0}", counts.delivered_win as f64 / a.duration),
        ));
        tail.push((
            "client_user_pct",
            format!("{:.1}", user.as_secs_f64() * 100.0 / secs),
        ));
        tail.push(("client_us_per_msg", per_msg(cpu.as_secs_f64() * 1e6)));
        if let Some(b) = box_us {
            // Busy CPU of the whole box in % of one core (2 cores fully busy = 200): what is
            // left after the server and the loadgen is other load (noise).
            tail.push(("box_cpu_pct", format!("{:.1}", b as f64 / (secs * 1e4))));
        }
        if let (Some(s0), Some(s1)) = (s0, s1) {
            let user_us = s1.user_us.saturating_sub(s0.user_us);
            let sys_us = s1.sys_us.saturating_sub(s0.sys_us);
            tail.push(("server_cpu_us", (user_us + sys_us).to_string()));
            tail.push(("server_user_us", user_us.to_string()));
            tail.push((
                "server_cpu_pct",
                format!("{:.1}", (user_us + sys_us) as f64 / (secs * 1e4)),
            ));
            tail.push(("server_us_per_msg", per_msg((user_us + sys_us) as f64)));
            tail.push(("server_user_us_per_msg", per_msg(user_us as f64)));
        }
        if let (Some((rss0, _)), Some((rss1, hwm))) = (rss_start, rss) {
            tail.push(("server_rss_start_kb", rss0.to_string()));
            tail.push(("server_rss_kb", rss1.to_string()));
            tail.push(("server_peak_rss_kb", hwm.to_string()));
            tail.push((
                "server_rss_per_conn_b",
                format!(
                    "{:.0}",
                    rss1.saturating_sub(rss0) as f64 * 1024.0 / counts.ready.max(1) as f64
                ),
            ));
        }
    }
    out.push(("client_cpu_pct", format!("{client_cpu_pct:.1}")));
    out.push(("errors", errors.total().to_string()));
    out.extend(tail);
    out.push(("mode", mode.into()));
    out.push(("senders", senders.to_string()));
    out.push(("threads", threads.to_string()));
    out.push(("duration_s", format!("{}", a.duration)));
    out.push(("warmup_s", format!("{}", a.warmup)));
    out.push(("setup_s", format!("{setup_s:.1}")));
    out.push(("ready", counts.ready.to_string()));
    out.push(("failed", counts.failed.to_string()));
    out.push(("lost", counts.lost.to_string()));
    out.push(("sent_total", counts.sent.to_string()));
    out.push(("delivered_total", counts.delivered.to_string()));
    out.push(("delivered_warmup", counts.delivered_warm.to_string()));
    out.push(("other_frames", counts.other_frames.to_string()));
    out.push(("skipped", counts.skipped.to_string()));
    out.push(("client_backlogged", counts.backlogged.to_string()));
    out.push(("client_reads", counts.reads.to_string()));
    out.push(("client_polls", counts.polls.to_string()));
    out.push(("batch_us", a.batch_us.to_string()));
    for (k, v) in [
        ("err_connect", errors.connect),
        ("err_upgrade", errors.upgrade),
        ("err_closed", errors.closed),
        ("err_eof", errors.eof),
        ("err_io", errors.io),
        ("err_proto", errors.proto),
        ("err_server", errors.server),
        ("err_join", errors.join),
    ] {
        out.push((k, v.to_string()));
    }
    if pid.is_some() {
        out.push(("server_cpus", procstat::mask_list(prog.server_cpus)));
        out.push(("server_threads", prog.server_threads.to_string()));
    }
    if codec == Codec::Pairkit {
        out.push(("pairkit_errors", pk_errors_list(&pk_errors)));
    }
    out.push(("client_cpus", procstat::mask_list(prog.client_cpus)));
    out.push(("setup_ok", u8::from(setup_ok).to_string()));
    let line: Vec<String> = out.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("{}", line.join(" "));
    if !setup_ok {
        std::process::exit(2);
    }
    Ok(())
}
