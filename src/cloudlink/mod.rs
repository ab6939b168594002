//! The cloudlink dialect: CloudLink 5 lobby signaling for Scratch-family games
//! (TurboWarp, PenguinMod) and a server relay for lobbies created with `enable_relay`. It
//! owns its shard state ([`Cloudlink`]: the lobbies whose home is this shard, every shard's
//! lobby listings, this shard's clients in no lobby, token users' claims) and each
//! session's state ([`ClSession`]); the wire contract is `protocols/cloudlink.md`.
//! Lobbies live on their home shard (`hash(ugi, name)`): a client creating or joining one
//! moves there, as a rooms member does. Everything else is the engine's.
//!
//! - `upgrade`: the `ugi` rule, the Origin allow-list, the per-address bucket.
//! - `identity`: instance ids, guest usernames, HS512 tokens.
//! - `wire`: frames in and out.
//! - `signaling`: the opcodes.
//! - `lobby`: lobbies, membership, promotion, listings, announcements.
//! - `peerjs`: the PeerJS-compatible broker (ids live on their home shard).

pub mod identity;
pub mod lobby;
pub mod peerjs;
mod signaling;
pub mod upgrade;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crate::codec::Frame;
use crate::config::{CloudlinkAuth, CloudlinkConfig, Config};
use crate::core::iprate::IpRate;
use crate::core::{AfterClose, Dialect, Engine, HttpGet, HttpReply, Message, SessionKey, ShardId};
use crate::metrics::{DialectMetrics, ErrorCounts, Sample};
use lobby::{Announce, Listing, Lobby, LobbyId, PeerInfo};
use peerjs::{Broker, PeerRoute, PeerSession, PeerState};

/// A signaling connection's route: its game, the token of its query, and the instance
/// id it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signaling {
    /// The game id (`?ugi=`).
    pub ugi: Arc<str>,
    /// `?token=`, when given.
    pub token: Option<Box<str>>,
    /// `<ULID>_<ugi>`.
    pub instance_id: Arc<str>,
}

/// What the cloudlink dialect needs of the dialect set it runs in: its session state and
/// mesh messages, carried as the set's own.
pub trait Host: Dialect {
    /// The cloudlink state of a session (`None` for a session of another dialect).
    fn cloudlink(session: &Self::Session) -> Option<&ClSession>;
    /// The cloudlink state of a session, mutably.
    fn cloudlink_mut(session: &mut Self::Session) -> Option<&mut ClSession>;
    /// The broker state of a session (`None` unless it is a PeerJS connection).
    fn peerjs(session: &Self::Session) -> Option<&PeerSession>;
    /// The broker state of a session, mutably.
    fn peerjs_mut(session: &mut Self::Session) -> Option<&mut PeerSession>;
    /// A cloudlink message between shards, as the set's.
    fn mesh(msg: Mesh) -> Self::Mesh;
    /// A cloudlink timer, as the set's.
    fn timer(timer: Timer) -> Self::Timer;
}

/// The cloudlink dialect's timers.
#[derive(Debug)]
pub enum Timer {
    /// The broker's hold of messages for an absent id runs out (if it is still the hold
    /// that started at `since`).
    PeerExpire {
        /// The absent id.
        id: Arc<str>,
        /// When the hold started.
        since: u64,
    },
}

/// What the dialect keeps for a signaling session.
#[derive(Debug)]
pub struct ClSession {
    /// Its game.
    pub ugi: Arc<str>,
    /// `<ULID>_<ugi>`, given at connection.
    pub instance_id: Arc<str>,
    /// `?token=`, which token mode prefers to `INIT.token`.
    pub query_token: Option<Box<str>>,
    /// Who it is, once `INIT` succeeded.
    pub peer: Option<Arc<PeerInfo>>,
    /// Token mode: an `INIT` waits for the user's claim on its home shard.
    pub claiming: Option<Box<PeerInfo>>,
    /// The lobby it is in.
    pub lobby: Option<Arc<str>>,
    /// It hosts that lobby.
    pub hosting: bool,
    /// A create or join to carry out once it has moved to the lobby's home shard.
    pub pending: Option<Box<LobbyOp>>,
}

/// A `CREATE_LOBBY` that passed its local checks.
#[derive(Clone, Debug)]
pub struct Create {
    /// Lobby name.
    pub name: Arc<str>,
    /// -1 or 1..=cap.
    pub max_players: i64,
    /// The password in the clear (hashed when the lobby is made).
    pub password: Option<String>,
    /// Created locked.
    pub locked: bool,
    /// Relay `G_*` / `P_*`.
    pub relay: bool,
}

/// A `JOIN_LOBBY`.
#[derive(Clone, Debug)]
pub struct Join {
    /// Lobby name.
    pub name: Arc<str>,
    /// The password given.
    pub password: Option<String>,
}

/// What a session moves to a lobby's home to do.
#[derive(Clone, Debug)]
pub enum LobbyOp {
    /// Create it.
    Create(Create),
    /// Join it.
    Join(Join),
}

/// The cloudlink dialect's messages between shards.
pub enum Mesh {
    /// A lobby's listing changed (`None`: deleted), and what the game's clients in no
    /// lobby hear.
    Listing {
        /// Its game.
        ugi: Arc<str>,
        /// Its name.
        name: Arc<str>,
        /// What `FIND_LOBBY` shows now.
        listing: Option<Listing>,
        /// `NEW_LOBBY` / `LOBBY_CLOSED`.
        announce: Option<Announce>,
    },
    /// Token mode: a user's session on the sender asks to be the game's only one.
    Claim {
        /// What it claims.
        claim: Claim,
        /// The claiming session, on the sender.
        from: SessionKey,
    },
    /// The answer to a `Claim`.
    ClaimResult {
        /// What was claimed.
        claim: Claim,
        /// The claiming session, on the receiver.
        session: SessionKey,
        /// It is the user's only session in the game.
        ok: bool,
    },
    /// A user's session ended: its claim goes (if it still holds it).
    Release(Claim),
    /// A broker message for an id whose home is the receiver.
    Peer {
        /// The id it is for.
        dst: Arc<str>,
        /// The id it is from.
        src: Arc<str>,
        /// `{type, src, dst, payload?}`, encoded.
        frame: Frame,
        /// Held when `dst` is absent (`LEAVE` and `EXPIRE` are dropped instead).
        held_if_absent: bool,
    },
    /// Discovery: a broker id connected (or left) on the sender.
    PeerId {
        /// The id.
        id: Arc<str>,
        /// Connected (else gone).
        present: bool,
    },
}

/// Token mode: a user's one session in a game.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The game.
    pub ugi: Arc<str>,
    /// The user.
    pub user_id: Arc<str>,
    /// The session's instance id.
    pub instance_id: Arc<str>,
}

/// What the dialect sends as `WARNING` or `VIOLATION`, as a closed, typed list (counted
/// per code in `huddle_errors_total{dialect="cloudlink"}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `WARNING "unauthorized"`: a lobby opcode before `INIT`, or not the host.
    Unauthorized,
    /// `WARNING "already authorized"`: a second `INIT`.
    AlreadyAuthorized,
    /// `WARNING "unknown or unimplemented opcode"`.
    UnknownOpcode,
    /// `WARNING "peer not found"`: a private relay message to nobody in the lobby.
    PeerNotFound,
    /// `WARNING "rate limited"`.
    RateLimited,
    /// `WARNING "You have been kicked from the lobby."`.
    Kicked,
    /// `VIOLATION`: a frame or payload of the wrong shape.
    BadPayload,
    /// `VIOLATION`: `INIT` failed (username, token).
    AuthFailed,
    /// `VIOLATION "session already in use for this game"`.
    SessionInUse,
}

impl crate::metrics::ErrorCode for Refusal {
    const ALL: &'static [Refusal] = &[
        Refusal::Unauthorized,
        Refusal::AlreadyAuthorized,
        Refusal::UnknownOpcode,
        Refusal::PeerNotFound,
        Refusal::RateLimited,
        Refusal::Kicked,
        Refusal::BadPayload,
        Refusal::AuthFailed,
        Refusal::SessionInUse,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Refusal::Unauthorized => "unauthorized",
            Refusal::AlreadyAuthorized => "already_authorized",
            Refusal::UnknownOpcode => "unknown_opcode",
            Refusal::PeerNotFound => "peer_not_found",
            Refusal::RateLimited => "rate_limited",
            Refusal::Kicked => "kicked",
            Refusal::BadPayload => "bad_payload",
            Refusal::AuthFailed => "auth_failed",
            Refusal::SessionInUse => "session_in_use",
        }
    }
}

/// The cloudlink dialect's counters on one shard.
pub struct ClMetrics {
    /// Lobbies whose home is the shard (gauge).
    pub lobbies: AtomicU64,
    /// Warnings and violations sent.
    pub refusals: ErrorCounts<Refusal>,
}

impl DialectMetrics for ClMetrics {
    fn samples(&self, sample: &mut dyn FnMut(Sample<'_>)) {
        sample(Sample {
            name: "huddle_lobbies",
            kind: "gauge",
            help: "CloudLink lobbies whose home is the shard.",
            labels: &[],
            value: self.lobbies.load(std::sync::atomic::Ordering::Relaxed),
        });
        self.refusals.samples(sample);
    }
}

/// What every shard's cloudlink shares: the per-address connection buckets.
pub struct ClShared {
    /// `None` when `cloudlink.conns_per_ip_per_min` is 0.
    pub ip_rate: Option<IpRate>,
}

impl ClShared {
    /// The shared part for `cfg`.
    pub fn new(cfg: &Config) -> Self {
        let per_min = cfg.cloudlink.conns_per_ip_per_min;
        ClShared {
            ip_rate: (per_min > 0).then(|| IpRate::new(per_min)),
        }
    }
}

/// The cloudlink dialect's state on one shard.
pub struct Cloudlink {
    /// `[cloudlink]`.
    cfg: CloudlinkConfig,
    shared: Arc<ClShared>,
    /// Lobbies whose home is this shard.
    pub lobbies: HashMap<LobbyId, Lobby>,
    /// Every lobby of every shard, by game, for `LIST_LOBBIES` and `FIND_LOBBY`.
    pub directory: HashMap<Arc<str>, BTreeMap<Arc<str>, Listing>>,
    /// This shard's clients in no lobby, by game (`NEW_LOBBY`, `LOBBY_CLOSED`).
    pub idle: HashMap<Arc<str>, Vec<SessionKey>>,
    /// Token mode: the session (instance id) of each (game, user) whose home is here.
    users: HashMap<(Arc<str>, Arc<str>), Arc<str>>,
    /// The PeerJS broker's ids whose home is this shard.
    pub broker: Broker,
    /// Counters.
    pub metrics: Arc<ClMetrics>,
}

impl Cloudlink {
    /// The cloudlink state of one shard.
    pub fn new(cfg: &Config, shared: Arc<ClShared>) -> Self {
        Cloudlink {
            cfg: cfg.cloudlink.clone(),
            shared,
            lobbies: HashMap::new(),
            directory: HashMap::new(),
            idle: HashMap::new(),
            users: HashMap::new(),
            broker: Broker::default(),
            metrics: Arc::new(ClMetrics {
                lobbies: AtomicU64::new(0),
                refusals: ErrorCounts::new("cloudlink"),
            }),
        }
    }

    /// A lobby whose home is this shard.
    pub fn lobby(&self, ugi: &str, name: &str) -> Option<&Lobby> {
        self.lobbies.get(&(Arc::from(ugi), Arc::from(name)))
    }

    fn cx<'a, H: Host>(&'a mut self, eng: &'a mut Engine<H>) -> Cx<'a, H> {
        Cx { cl: self, eng }
    }

    /// Checks a signaling upgrade (400 / 403 / 429) and makes its route, with the
    /// connection's instance id (`<ULID>_<ugi>`).
    pub fn route<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        upgrade: &crate::core::Upgrade<'_>,
        now: u64,
    ) -> Result<Signaling, crate::core::HttpRefusal> {
        let rate = self.shared.ip_rate.as_ref();
        let unix_ms = eng.unix_ms(now);
        let (ugi, token) = upgrade::check(&self.cfg, rate, upgrade, unix_ms)?;
        let ulid = identity::ulid(&mut eng.rng, unix_ms);
        Ok(Signaling {
            instance_id: Arc::from(format!("{ulid}_{ugi}")),
            ugi,
            token,
        })
    }

    /// The state a signaling session starts with: its instance id, in no lobby.
    pub fn session(route: &Signaling) -> ClSession {
        ClSession {
            instance_id: route.instance_id.clone(),
            ugi: route.ugi.clone(),
            query_token: route.token.clone(),
            peer: None,
            claiming: None,
            lobby: None,
            hosting: false,
            pending: None,
        }
    }

    /// The state a broker session starts with: not registered yet.
    pub fn peer_session(route: &PeerRoute) -> PeerSession {
        PeerSession {
            route: route.clone(),
            state: PeerState::Connecting,
        }
    }

    /// Whether `path` is the broker's WebSocket (`<prefix>peerjs`, `<prefix>peerjs/peerjs`).
    pub fn is_broker_path(&self, path: &str) -> bool {
        peerjs::is_socket_path(&self.cfg, path)
    }

    /// A plain `GET`: the broker's `/id` and `/peers`, else `None`.
    pub fn http_get<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        get: &HttpGet<'_>,
    ) -> Option<HttpReply> {
        peerjs::http_get(&mut self.cx(eng), get.path)
    }

    /// A signaling connection opened: it is one of its game's clients in no lobby. A
    /// broker connection: its query is checked and its id registered.
    pub fn handle_open<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey) {
        let mut cx = self.cx(eng);
        if cx.peer(key).is_some() {
            return peerjs::open(&mut cx, key);
        }
        cx.set_idle(key, true);
    }

    /// One frame.
    pub fn handle_message<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        key: SessionKey,
        message: Message<'_>,
        now: u64,
    ) {
        let mut cx = self.cx(eng);
        if cx.peer(key).is_some() {
            return peerjs::handle(&mut cx, key, message.bytes, now);
        }
        signaling::handle(&mut cx, key, message.bytes, now);
    }

    /// The connection is ending: the session leaves its lobby, its game's idle list, and
    /// its claim. Nothing is parked.
    pub fn handle_close<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey) -> AfterClose {
        self.handle_end(eng, key);
        AfterClose::Gone
    }

    /// The session ends (already forgotten at its close; a no-op then).
    pub fn handle_end<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey) {
        let mut cx = self.cx(eng);
        if cx.peer(key).is_some() {
            return peerjs::close(&mut cx, key);
        }
        cx.forget(key);
    }

    /// A session moved here to create or join a lobby whose home this is.
    pub fn handle_arrival<H: Host>(&mut self, eng: &mut Engine<H>, key: SessionKey) {
        let mut cx = self.cx(eng);
        if cx.peer(key).is_some() {
            return peerjs::register(&mut cx, key);
        }
        cx.set_idle(key, true);
        let pending = cx.client_mut(key).and_then(|c| c.pending.take());
        match pending.map(|op| *op) {
            Some(LobbyOp::Create(op)) => cx.create(key, op),
            Some(LobbyOp::Join(op)) => cx.join(key, op),
            None => {}
        }
    }

    /// A cloudlink message from another shard.
    pub fn handle_mesh<H: Host>(
        &mut self,
        eng: &mut Engine<H>,
        from: ShardId,
        msg: Mesh,
        now: u64,
    ) {
        let mut cx = self.cx(eng);
        match msg {
            Mesh::Listing {
                ugi,
                name,
                listing,
                announce,
            } => cx.list(&ugi, &name, listing, announce),
            Mesh::Claim {
                claim,
                from: session,
            } => {
                let ok = cx.claim(
                    claim.ugi.clone(),
                    claim.user_id.clone(),
                    claim.instance_id.clone(),
                );
                cx.post(from, Mesh::ClaimResult { claim, session, ok });
            }
            Mesh::ClaimResult { claim, session, ok } => {
                signaling::claimed(&mut cx, session, ok, claim)
            }
            Mesh::Release(claim) => cx.release_here(claim.ugi, claim.user_id, &claim.instance_id),
            Mesh::Peer {
                dst,
                src,
                frame,
                held_if_absent,
            } => peerjs::deliver(&mut cx, &dst, src, frame, held_if_absent, now),
            Mesh::PeerId { id, present } => peerjs::present_here(&mut cx, id, present),
        }
    }

    /// A cloudlink timer fired.
    pub fn handle_timer<H: Host>(&mut self, eng: &mut Engine<H>, timer: Timer, now: u64) {
        match timer {
            Timer::PeerExpire { id, since } => peerjs::expire(&mut self.cx(eng), id, since, now),
        }
    }
}

/// What every cloudlink handler works with: the dialect's shard state and the engine.
pub(crate) struct Cx<'a, H: Host> {
    /// The cloudlink state of this shard.
    pub cl: &'a mut Cloudlink,
    /// The engine.
    pub eng: &'a mut Engine<H>,
}

impl<H: Host> Cx<'_, H> {
    /// A session's cloudlink state.
    fn client(&self, key: SessionKey) -> Option<&ClSession> {
        H::cloudlink(&self.eng.session(key)?.dialect)
    }

    /// A session's cloudlink state, mutably.
    fn client_mut(&mut self, key: SessionKey) -> Option<&mut ClSession> {
        H::cloudlink_mut(&mut self.eng.session_mut(key)?.dialect)
    }

    /// A broker session's state.
    fn peer(&self, key: SessionKey) -> Option<&PeerSession> {
        H::peerjs(&self.eng.session(key)?.dialect)
    }

    /// A broker session's state, mutably.
    fn peer_mut(&mut self, key: SessionKey) -> Option<&mut PeerSession> {
        H::peerjs_mut(&mut self.eng.session_mut(key)?.dialect)
    }

    /// The session's game and identity, once `INIT` succeeded.
    fn identity(&self, key: SessionKey) -> Option<(Arc<str>, Arc<PeerInfo>)> {
        let client = self.client(key)?;
        Some((client.ugi.clone(), client.peer.clone()?))
    }

    /// Sends a cloudlink message to another shard.
    fn post(&mut self, to: ShardId, msg: Mesh) {
        self.eng.post(to, H::mesh(msg));
    }

    /// Sends a cloudlink message to every other shard.
    fn post_to_others(&mut self, msg: impl Fn() -> Mesh) {
        self.eng.post_to_others(|| H::mesh(msg()));
    }

    /// Lists (or unlists) the session among its game's clients in no lobby here.
    fn set_idle(&mut self, key: SessionKey, idle: bool) {
        let Some(ugi) = self.client(key).map(|c| c.ugi.clone()) else {
            return;
        };
        let list = self.cl.idle.entry(ugi.clone()).or_default();
        list.retain(|k| *k != key);
        if idle {
            list.push(key);
        }
        if list.is_empty() {
            self.cl.idle.remove(&ugi);
        }
    }

    /// The session is going: out of its lobby, the idle list and its user claim.
    fn forget(&mut self, key: SessionKey) {
        self.leave(key);
        self.set_idle(key, false);
        let token_mode = self.cl.cfg.auth == CloudlinkAuth::Token;
        let Some(client) = self.client_mut(key) else {
            return;
        };
        client.pending = None;
        client.claiming = None;
        let Some(peer) = client.peer.take() else {
            return;
        };
        if token_mode {
            let ugi = client.ugi.clone();
            self.release(ugi, peer.user_id.clone(), peer.instance_id.clone());
        }
    }

    /// The home shard of a (game, user) claim.
    fn user_home(&self, ugi: &str, user_id: &str) -> ShardId {
        crate::core::home_shard(&format!("{ugi}/user/{user_id}"), self.eng.shards)
    }

    /// Claims a user's one session in a game, on this (the claim's home) shard.
    fn claim(&mut self, ugi: Arc<str>, user_id: Arc<str>, instance_id: Arc<str>) -> bool {
        match self.cl.users.entry((ugi, user_id)) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(instance_id);
                true
            }
        }
    }

    /// Gives a user's claim back, wherever its home is.
    fn release(&mut self, ugi: Arc<str>, user_id: Arc<str>, instance_id: Arc<str>) {
        let home = self.user_home(&ugi, &user_id);
        if home == self.eng.id {
            self.release_here(ugi, user_id, &instance_id);
        } else {
            let claim = Claim {
                ugi,
                user_id,
                instance_id,
            };
            self.post(home, Mesh::Release(claim));
        }
    }

    fn release_here(&mut self, ugi: Arc<str>, user_id: Arc<str>, instance_id: &str) {
        let id = (ugi, user_id);
        if self
            .cl
            .users
            .get(&id)
            .is_some_and(|held| &**held == instance_id)
        {
            self.cl.users.remove(&id);
        }
    }
}
