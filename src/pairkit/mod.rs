//! The pairkit dialect: phones as controllers for a host screen. A host opens a session
//! (a *party* here, to keep "session" for connections) and shows its 4-character code;
//! phones join with it. The wire contract is `protocols/pairkit.md`.
//!
//! A party lives on its home shard, and its code is drawn so that the home is the shard
//! that created it: a phone joining moves there, and the host, the phones and the party
//! record meet on one shard (every message of a game is a local send). Every shard keeps
//! a directory of the live codes, replicated through the mesh, so a join with a code it
//! knows goes straight to the code's home. The directory may lag a party opened a moment
//! ago (its host can pass the code on faster than the mesh), so only the code's home may
//! call a code unknown: a miss elsewhere is asked of it (one round trip, reads paused).
//! Join failures are counted per address on the address's home shard (one more round
//! trip when that is another shard).
//!
//! - `code`: the code alphabet, allocation, the throttle's address key.
//! - `wire`: reading fields, writing messages.
//! - `party`: the party record (everything a durable store would keep is there).
//! - `handle`: the messages, in the page's order.
//! - `play`: the controller page phones open (`GET /play`).

pub mod code;
mod handle;
pub mod party;
pub mod play;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{Config, PairkitConfig};
use crate::core::{AfterClose, Dialect, Engine, HttpGet, HttpReply, Message, SessionKey, ShardId};
use crate::metrics::{DialectMetrics, ErrorCounts, Sample, ShardMetrics};
use code::Code;
use party::{Flow, Party};

/// Join failures are counted over this window.
pub const FAILURE_WINDOW_MS: u64 = 60_000;
/// A tracked broadcast's default `ack_timeout_ms`, and its largest.
pub const ACK_TIMEOUT_MS: (u64, u64) = (2_000, 60_000);
/// A request's largest `timeout_ms`.
pub const REQUEST_TIMEOUT_MAX_MS: u64 = 600_000;

/// What the pairkit dialect needs of the dialect set it runs in.
pub trait Host: Dialect {
    /// The pairkit state of a session (`None` for another dialect's).
    fn pairkit(session: &Self::Session) -> Option<&PkSocket>;
    /// The pairkit state of a session, mutably.
    fn pairkit_mut(session: &mut Self::Session) -> Option<&mut PkSocket>;
    /// A pairkit message between shards, as the set's.
    fn mesh(msg: Mesh) -> Self::Mesh;
    /// A pairkit timer, as the set's.
    fn timer(timer: Timer) -> Self::Timer;
}

/// A pairkit upgrade's route: the client's address (for the join throttle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PkRoute {
    /// The client's address.
    pub peer: Option<IpAddr>,
}

/// What a socket is in a party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Neither yet (or no longer).
    None,
    /// The host of the party with this code.
    Host(Code),
    /// The player joined `n`th in the party with this code.
    Phone(Code, u32),
}

/// What the dialect keeps for a socket.
#[derive(Debug)]
pub struct PkSocket {
    /// The client's address.
    pub peer: Option<IpAddr>,
    /// Its role.
    pub role: Role,
    /// A join or a host reattach waiting for the throttle's answer or for the move to the
    /// party's home.
    pub pending: Option<Box<Pending>>,
}

impl PkSocket {
    /// A socket with no role.
    pub fn new(route: PkRoute) -> Self {
        PkSocket {
            peer: route.peer,
            role: Role::None,
            pending: None,
        }
    }
}

/// A `session.join` that passed its local checks.
#[derive(Debug)]
pub struct JoinReq {
    /// The code, upper case.
    pub code: Code,
    /// `name`.
    pub name: Option<Box<str>>,
    /// `color`.
    pub color: Option<Box<str>>,
    /// `resume_player_id`, with `resume_token` when given.
    pub resume: Option<(Box<str>, Option<Box<str>>)>,
}

/// What a socket waits to do.
#[derive(Debug)]
pub enum Pending {
    /// A join (waiting for the throttle, or moving to the party's home).
    Join(JoinReq),
    /// A host reattach (moving to the party's home); a rejected one opens a fresh party
    /// with `flow`.
    Reattach {
        /// `resume_code`.
        code: Code,
        /// `resume_host_id`.
        host_id: Option<Box<str>>,
        /// The create's flow.
        flow: Option<Arc<Flow>>,
    },
}

/// What the throttle says of a join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The address is throttled: `rate_limited`, no lookup.
    Throttled,
    /// The code is unknown (counted): `session_not_found`.
    NotFound,
    /// The code is live: go on.
    Found,
}

/// The pairkit dialect's messages between shards.
#[derive(Debug)]
pub enum Mesh {
    /// A party opened (or ended) on the sender: the directory of live codes.
    Live {
        /// Its code.
        code: Code,
        /// Opened (else ended).
        present: bool,
    },
    /// A join from an address whose home is the receiver: is it throttled (and if the
    /// code is unknown, count a failure)?
    JoinCheck {
        /// The address key.
        ip: IpAddr,
        /// The code is live in the sender's directory.
        found: bool,
        /// The joining socket, on the sender.
        from: SessionKey,
    },
    /// A join on the sender named a code its directory does not have, homed on the
    /// receiver: is its party open?
    CodeCheck {
        /// The code.
        code: Code,
        /// The joining socket, on the sender.
        from: SessionKey,
    },
    /// The answer to a `CodeCheck`.
    CodeChecked {
        /// The joining socket, on the receiver.
        session: SessionKey,
        /// The party is open.
        found: bool,
    },
    /// The answer to a `JoinCheck`.
    JoinChecked {
        /// The joining socket, on the receiver.
        session: SessionKey,
        /// What to answer.
        verdict: Verdict,
    },
}

/// The pairkit dialect's timers. Each names its party by code and serial (a later party
/// may reuse the code).
#[derive(Debug)]
pub enum Timer {
    /// The party's TTL ran out.
    Ttl {
        /// The party.
        code: Code,
        /// Its serial.
        serial: u64,
    },
    /// A dropped player's grace window is over (if it has not come back since).
    Grace {
        /// The party.
        code: Code,
        /// Its serial.
        serial: u64,
        /// The player.
        n: u32,
        /// The player's epoch at the drop.
        epoch: u64,
    },
    /// A tracked broadcast's ack deadline.
    Broadcast {
        /// The party.
        code: Code,
        /// Its serial.
        serial: u64,
        /// The broadcast's serial.
        broadcast: u64,
    },
    /// A request's timeout.
    Request {
        /// The party.
        code: Code,
        /// Its serial.
        serial: u64,
        /// The player.
        n: u32,
        /// The request's epoch.
        epoch: u64,
    },
}

/// The `system.error` codes (public surface: never rename one), counted per code in
/// `huddle_errors_total{dialect="pairkit"}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkError {
    /// `session_not_found`.
    SessionNotFound,
    /// `session_full`.
    SessionFull,
    /// `invalid_code`.
    InvalidCode,
    /// `rate_limited`.
    RateLimited,
    /// `protocol_version_mismatch`.
    ProtocolVersionMismatch,
    /// `malformed_message`.
    MalformedMessage,
    /// `payload_too_large`.
    PayloadTooLarge,
    /// `player_not_found`.
    PlayerNotFound,
    /// `host_resume_rejected`.
    HostResumeRejected,
    /// `stale_input`.
    StaleInput,
    /// `screen_not_found`.
    ScreenNotFound,
    /// `revision_conflict`.
    RevisionConflict,
    /// `player_offline`.
    PlayerOffline,
    /// `request_cancelled`.
    RequestCancelled,
    /// `internal_error`.
    InternalError,
    /// `unauthorized`.
    Unauthorized,
}

impl crate::metrics::ErrorCode for PkError {
    const ALL: &'static [PkError] = &[
        PkError::SessionNotFound,
        PkError::SessionFull,
        PkError::InvalidCode,
        PkError::RateLimited,
        PkError::ProtocolVersionMismatch,
        PkError::MalformedMessage,
        PkError::PayloadTooLarge,
        PkError::PlayerNotFound,
        PkError::HostResumeRejected,
        PkError::StaleInput,
        PkError::ScreenNotFound,
        PkError::RevisionConflict,
        PkError::PlayerOffline,
        PkError::RequestCancelled,
        PkError::InternalError,
        PkError::Unauthorized,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            PkError::SessionNotFound => "session_not_found",
            PkError::SessionFull => "session_full",
            PkError::InvalidCode => "invalid_code",
            PkError::RateLimited => "rate_limited",
            PkError::ProtocolVersionMismatch => "protocol_version_mismatch",
            PkError::MalformedMessage => "malformed_message",
            PkError::PayloadTooLarge => "payload_too_large",
            PkError::PlayerNotFound => "player_not_found",
            PkError::HostResumeRejected => "host_resume_rejected",
            PkError::StaleInput => "stale_input",
            PkError::ScreenNotFound => "screen_not_found",
            PkError::RevisionConflict => "revision_conflict",
            PkError::PlayerOffline => "player_offline",
            PkError::RequestCancelled => "request_cancelled",
            PkError::InternalError => "internal_error",
            PkError::Unauthorized => "unauthorized",
        }
    }
}

/// Why a message was dropped (`huddle_pairkit_dropped_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// `stale_input`.
    StaleInput,
    /// `revision_conflict`.
    RevisionConflict,
    /// `request_cancelled`.
    RequestCancelled,
    /// `malformed_message`.
    MalformedMessage,
    /// `payload_too_large`.
    PayloadTooLarge,
    /// `rate_limited`.
    RateLimited,
    /// A message for the host while none is attached.
    HostAbsent,
}

impl Dropped {
    const ALL: [Dropped; 7] = [
        Dropped::StaleInput,
        Dropped::RevisionConflict,
        Dropped::RequestCancelled,
        Dropped::MalformedMessage,
        Dropped::PayloadTooLarge,
        Dropped::RateLimited,
        Dropped::HostAbsent,
    ];

    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::StaleInput => "stale_input",
            Dropped::RevisionConflict => "revision_conflict",
            Dropped::RequestCancelled => "request_cancelled",
            Dropped::MalformedMessage => "malformed_message",
            Dropped::PayloadTooLarge => "payload_too_large",
            Dropped::RateLimited => "rate_limited",
            Dropped::HostAbsent => "host_absent",
        }
    }

    /// The drop an error answer means, if it is one.
    fn of(error: PkError) -> Option<Dropped> {
        Some(match error {
            PkError::StaleInput => Dropped::StaleInput,
            PkError::RevisionConflict => Dropped::RevisionConflict,
            PkError::RequestCancelled => Dropped::RequestCancelled,
            PkError::MalformedMessage => Dropped::MalformedMessage,
            PkError::PayloadTooLarge => Dropped::PayloadTooLarge,
            PkError::RateLimited => Dropped::RateLimited,
            _ => return None,
        })
    }
}

/// The pairkit dialect's counters on one shard.
pub struct PkMetrics {
    /// Parties whose home is the shard (gauge).
    pub parties: AtomicU64,
    /// `system.error`s sent.
    pub errors: ErrorCounts<PkError>,
    dropped: [AtomicU64; 7],
}

impl PkMetrics {
    fn new() -> Self {
        PkMetrics {
            parties: AtomicU64::new(0),
            errors: ErrorCounts::new("pairkit"),
            dropped: Default::default(),
        }
    }

    /// Counts a dropped message.
    pub fn drop_one(&self, why: Dropped) {
        ShardMetrics::add(&self.dropped[why as usize], 1);
    }

    /// A drop counter.
    pub fn dropped(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }
}

impl DialectMetrics for PkMetrics {
    fn samples(&self, sample: &mut dyn FnMut(Sample<'_>)) {
        sample(Sample {
            name: "huddle_pairkit_sessions",
            kind: "gauge",
            help: "PairKit sessions whose home is the shard.",
            labels: &[],
            value: self.parties.load(Ordering::Relaxed),
        });
        for why in Dropped::ALL {
            sample(Sample {
                name: "huddle_pairkit_dropped_total",
                kind: "counter",
                help: "PairKit messages dropped, by reason.",
                labels: &[("reason", why.as_str())],
                value: self.dropped(why),
            });
        }
        self.errors.samples(sample);
    }
}

/// The pairkit dialect's state on one shard.
pub struct Pairkit {
    cfg: PairkitConfig,
    /// Parties whose home is this shard.
    pub parties: HashMap<Code, Party>,
    /// Every shard's live codes.
    pub live: HashSet<Code>,
    /// Join failures (their times) of the addresses whose home is this shard.
    failures: HashMap<IpAddr, VecDeque<u64>>,
    /// Codes are drawn among the first this many (all of them but in tests of exhaustion).
    pub code_space: u32,
    serial: u64,
    last_sweep_ms: u64,
    /// A phone's message as it arrived (see `handle::read`).
    raw: Vec<u8>,
    /// Counters.
    pub metrics: Arc<PkMetrics>,
}

impl Pairkit {
    /// The pairkit state of one shard.
    pub fn new(cfg: &Config) -> Self {
        Pairkit {
            cfg: cfg.pairkit.clone(),
            parties: HashMap::new(),
            live: HashSet::new(),
            failures: HashMap::new(),
            code_space: code::CODE_SPACE,
            serial: 0,
            last_sweep_ms: 0,
            raw: Vec::new(),
            metrics: Arc::new(PkMetrics::new()),
        }
    }

    /// A party whose home is this shard, by its code (either case).
    pub fn party(&self, code: &str) -> Option<&Party> {
        self.parties.get(&Code::parse(code)?)
    }

    /// Join failures counted for an address (its key) on this shard, within the window.
    pub fn failures_of(&self, ip: Option<IpAddr>) -> usize {
        self.failures
            .get(&code::ip_key(ip))
            .map_or(0, VecDeque::len)
    }

    /// A plain `GET`: the controller page (`/play`) and its assets, else `None`.
    pub fn http_get(&self, get: &HttpGet<'_>) -> Option<HttpReply> {
        play::http_get(get)
    }

    /// A socket opened on `/pairkit` (or became pairkit on `/`): a phone's message rate.
    pub fn handle_open<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey, now: u64) {
        let (per_s, burst) = (self.cfg.msgs_per_s, self.cfg.msgs_burst);
        if let Some(s) = eng.session_mut(key) {
            s.bucket = crate::core::bucket::TokenBucket::new(per_s, burst, now);
        }
    }

    /// One message.
    pub fn handle_message<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        message: Message<'_>,
        now: u64,
    ) {
        handle::message(&mut Cx { pk: self, eng }, key, message, now);
    }

    /// The socket is going: a phone's player starts its grace window, a host's party
    /// waits for a reattach. Nothing is parked in the engine (the party keeps the state).
    pub fn handle_close<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        now: u64,
    ) -> AfterClose {
        handle::closed(&mut Cx { pk: self, eng }, key, now);
        AfterClose::Gone
    }

    /// A socket moved here to join (or reattach to) a party whose home this is.
    pub fn handle_arrival<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey, now: u64) {
        handle::arrived(&mut Cx { pk: self, eng }, key, now);
    }

    /// A pairkit message from another shard.
    pub fn handle_mesh<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        from: ShardId,
        msg: Mesh,
        now: u64,
    ) {
        let mut cx = Cx { pk: self, eng };
        match msg {
            Mesh::Live { code, present } => {
                if present {
                    cx.pk.live.insert(code);
                } else {
                    cx.pk.live.remove(&code);
                }
            }
            Mesh::JoinCheck {
                ip,
                found,
                from: session,
            } => {
                let verdict = cx.check_join(ip, found, now);
                cx.eng
                    .post(from, H::mesh(Mesh::JoinChecked { session, verdict }));
            }
            Mesh::CodeCheck {
                code,
                from: session,
            } => {
                let found = cx.pk.parties.contains_key(&code);
                cx.eng
                    .post(from, H::mesh(Mesh::CodeChecked { session, found }));
            }
            Mesh::CodeChecked { session, found } => {
                handle::code_checked(&mut cx, session, found, now)
            }
            Mesh::JoinChecked { session, verdict } => {
                handle::join_checked(&mut cx, session, verdict, now)
            }
        }
    }

    /// A pairkit timer fired.
    pub fn handle_timer<H: Host>(&mut self, eng: &mut Engine<H>, timer: Timer, now: u64) {
        handle::timer(&mut Cx { pk: self, eng }, timer, now);
    }

    /// Forgets join failures older than the window (every 10 s).
    pub fn handle_tick<H: Host>(&mut self, _eng: &mut Engine<H>, now: u64) {
        if now < self.last_sweep_ms + 10_000 {
            return;
        }
        self.last_sweep_ms = now;
        self.failures.retain(|_, log| {
            forget_old_failures(log, now);
            !log.is_empty()
        });
    }
}

/// Drops the failures of an address's log that are a whole window old.
fn forget_old_failures(log: &mut VecDeque<u64>, now: u64) {
    while log
        .front()
        .is_some_and(|t| now.saturating_sub(*t) >= FAILURE_WINDOW_MS)
    {
        log.pop_front();
    }
}

/// What every pairkit handler works with: the dialect's shard state and the engine.
pub(crate) struct Cx<'a, H: Host> {
    /// The pairkit state of this shard.
    pub pk: &'a mut Pairkit,
    /// The engine.
    pub eng: &'a mut Engine<H>,
}

impl<H: Host> Cx<'_, H> {
    /// A socket's pairkit state.
    fn sock(&self, key: SessionKey) -> Option<&PkSocket> {
        H::pairkit(&self.eng.session(key)?.dialect)
    }

    /// A socket's pairkit state, mutably.
    fn sock_mut(&mut self, key: SessionKey) -> Option<&mut PkSocket> {
        H::pairkit_mut(&mut self.eng.session_mut(key)?.dialect)
    }

    /// The throttle, on the address's home shard: a throttled address is refused without
    /// a lookup; an unknown code is a failure.
    fn check_join(&mut self, ip: IpAddr, found: bool, now: u64) -> Verdict {
        let limit = self.pk.cfg.join_failures_per_min as usize;
        if limit == 0 {
            return if found {
                Verdict::Found
            } else {
                Verdict::NotFound
            };
        }
        let log = self.pk.failures.entry(ip).or_default();
        forget_old_failures(log, now);
        let verdict = if log.len() >= limit {
            Verdict::Throttled
        } else if found {
            Verdict::Found
        } else {
            log.push_back(now);
            Verdict::NotFound
        };
        if log.is_empty() {
            self.pk.failures.remove(&ip);
        }
        verdict
    }
}
