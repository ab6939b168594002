//! The server's configuration: `huddle.toml` read with serde, every key optional.
//! Owns parsing and validation of the file; not the CLI (main.rs) nor what the values do.
//! `listen`, `shards`, `pin_shards`, `seed` and `[limits]` are the engine's; the other
//! sections belong to the dialects (`[echo]`, `[cloudlink]`, `[pairkit]`; the rooms dialect's `[auth]`,
//! `[policy]`, `[rooms]`, `[state]`, `[session]`, `[matchmaking]`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

use crate::limits::Limits;
use crate::rooms::auth::AuthMode;

/// The built-in room types, registered unless `rooms.types` says otherwise.
pub const BUILTIN_ROOM_TYPES: [&str; 3] = ["echo_room", "counter_room", "state_room"];

/// The whole configuration. `Config::default()` is what `huddle` runs with no arguments.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address every shard listens on (`SO_REUSEPORT`). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Reactor threads, one pinned per core. 0 = the number of available cores.
    pub shards: usize,
    /// Pin each shard thread to a core (`core_affinity`).
    pub pin_shards: bool,
    /// Handshake token policy and per-project secrets.
    pub auth: AuthConfig,
    /// Runtime bounds.
    pub limits: Limits,
    /// Which messages may be dropped under backpressure.
    pub policy: Policy,
    /// Room types and their defaults.
    pub rooms: RoomsConfig,
    /// State sync.
    pub state: StateConfig,
    /// Parked sessions and resume.
    pub session: SessionConfig,
    /// The matchmaker.
    pub matchmaking: MatchmakingConfig,
    /// The echo dialect.
    pub echo: EchoConfig,
    /// The cloudlink dialect (CloudLink 5 signaling, the PeerJS broker, the relay).
    pub cloudlink: CloudlinkConfig,
    /// The pairkit dialect (phones as controllers for a host screen).
    pub pairkit: PairkitConfig,
    /// Seed for each shard's RNG (0 = from the OS). Ids and secrets come from a CSPRNG
    /// either way; a fixed seed is for reproducing a run.
    pub seed: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7777".parse().expect("literal address"),
            shards: 0,
            pin_shards: true,
            auth: AuthConfig::default(),
            limits: Limits::default(),
            policy: Policy::default(),
            rooms: RoomsConfig::default(),
            state: StateConfig::default(),
            session: SessionConfig::default(),
            matchmaking: MatchmakingConfig::default(),
            echo: EchoConfig::default(),
            cloudlink: CloudlinkConfig::default(),
            pairkit: PairkitConfig::default(),
            seed: 0,
        }
    }
}

/// `[auth]`: token mode and secrets.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `required`, `optional` (default) or `disabled`.
    pub mode: AuthMode,
    /// project id → HMAC secret.
    pub secrets: HashMap<String, String>,
}

/// `[policy]`: the reliable/unreliable split.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Envelope types that are unreliable.
    pub unreliable_types: Vec<String>,
    /// `room.message` payload types that are unreliable.
    pub unreliable_room_message_types: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            unreliable_types: ["position.update", "input.delta", "aim.update"]
                .map(String::from)
                .to_vec(),
            unreliable_room_message_types: ["player.move", "player.aim"].map(String::from).to_vec(),
        }
    }
}

/// `[rooms]`: registered room types.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Room types clients may create; each must be a built-in type.
    pub types: Vec<String>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            types: BUILTIN_ROOM_TYPES.map(String::from).to_vec(),
        }
    }
}

/// `[state]`: state sync.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// A CRC-32 checksum goes on every Nth patch (to clients that asked); 0 = never.
    pub checksum_every: u64,
    /// Every Nth patch is sent as a snapshot instead; 0 = never.
    pub snapshot_every: u64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            checksum_every: 1,
            snapshot_every: 0,
        }
    }
}

/// `[session]`: parking and resume.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// A dropped session waits this long for its client to resume it.
    pub resume_ttl_ms: u64,
    /// Resume frames (`room.reconnected`, snapshots) follow `handshake.ok` after this long.
    pub resume_frames_delay_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            resume_ttl_ms: 30_000,
            resume_frames_delay_ms: 50,
        }
    }
}

/// `[matchmaking]`: tickets and reserved seats.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchmakingConfig {
    /// A ticket not matched within this long expires (`matchmaking.expired`).
    pub ticket_ttl_ms: u64,
    /// A matched room keeps its seats for the participants this long.
    pub seat_reservation_ms: u64,
}

impl Default for MatchmakingConfig {
    fn default() -> Self {
        MatchmakingConfig {
            ticket_ttl_ms: 30_000,
            seat_reservation_ms: 15_000,
        }
    }
}

/// `[echo]`: the echo dialect at `/echo`, which sends every message back unchanged (the
/// endpoint for WebSocket conformance testing).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EchoConfig {
    /// Serve `/echo` (off by default; `huddle --echo` turns it on).
    pub enabled: bool,
    /// Largest message `/echo` reads; a larger one (or a frame declaring more) closes the
    /// connection with 1009.
    pub message_bytes_max: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            enabled: false,
            message_bytes_max: 64 * 1024,
        }
    }
}

/// How cloudlink's `INIT` authenticates.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CloudlinkAuth {
    /// Any username; `user_id` is `GUEST_<ULID>`; a token is ignored.
    #[default]
    Guest,
    /// An HS512 JWT (`INIT.token` or `?token=`) signed with `jwt_secret`, with `exp`.
    Token,
}

/// `[cloudlink]`: CloudLink 5 signaling, the PeerJS-compatible broker and the relay.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CloudlinkConfig {
    /// `guest` (default) or `token`.
    pub auth: CloudlinkAuth,
    /// The HS512 secret of token mode.
    pub jwt_secret: String,
    /// Origins allowed to open signaling connections, `*` a wildcard
    /// (`https://*.turbowarp.org`); empty = every origin. Another origin: HTTP 403.
    pub allowed_origins: Vec<String>,
    /// Refuse (403) signaling upgrades without an `Origin` header.
    pub require_origin: bool,
    /// New signaling connections per address per minute (a token bucket of that size
    /// refilled per minute, server-wide); past it: HTTP 429. 0 = no limit.
    pub conns_per_ip_per_min: u32,
    /// Largest `max_players` a lobby may have (-1, unlimited, is always allowed).
    pub max_players_cap: u32,
    /// Where the PeerJS broker lives: `<prefix>peerjs` (and `<prefix>peerjs/peerjs`) for
    /// its WebSocket, `<prefix><key>/id` and `/peers` over HTTP. Starts and ends with `/`.
    pub peerjs_prefix: String,
    /// The key PeerJS clients give (`?key=`); another key gets `Invalid key provided`.
    pub peerjs_key: String,
    /// Serve `GET <prefix><key>/peers` (every connected id); off: 401.
    pub peerjs_discovery: bool,
}

impl Default for CloudlinkConfig {
    fn default() -> Self {
        CloudlinkConfig {
            auth: CloudlinkAuth::Guest,
            jwt_secret: String::new(),
            allowed_origins: Vec::new(),
            require_origin: false,
            conns_per_ip_per_min: 120,
            max_players_cap: 256,
            peerjs_prefix: "/".into(),
            peerjs_key: "peerjs".into(),
            peerjs_discovery: false,
        }
    }
}

/// How pairkit's `session.create` treats `api_key`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PairkitAuth {
    /// A missing or unknown key is accepted.
    #[default]
    Open,
    /// A key of `api_keys` is required; else `unauthorized`.
    Strict,
}

/// `[pairkit]`: phones as controllers for a host screen (`protocols/pairkit.md`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PairkitConfig {
    /// `open` (default) or `strict`.
    pub auth: PairkitAuth,
    /// The API keys `strict` accepts.
    pub api_keys: Vec<String>,
    /// Messages per second a phone socket may send (a host socket: 10×).
    pub msgs_per_s: u32,
    /// The burst a phone socket may send (a host socket: 10×).
    pub msgs_burst: u32,
    /// A session ends (`timeout`) this long after its creation.
    pub session_ttl_ms: u64,
    /// Players a session holds, those in their grace window included.
    pub players_max: u32,
    /// `session.join`s answered `session_not_found` per address (IPv6: its /64) within
    /// 60 s before every join from it is answered `rate_limited`. 0 = no limit.
    pub join_failures_per_min: u32,
    /// How long a dropped player keeps its place for a resume.
    pub grace_ms: u64,
    /// Check widget events against the session's flow (reported to hosts as
    /// `relay_capabilities.strict_payloads`).
    pub strict_payloads: bool,
    /// Durable sessions: not built yet (a later issue); only the default, empty (sessions
    /// live in memory and a restart ends them), is accepted.
    pub store: String,
}

impl Default for PairkitConfig {
    fn default() -> Self {
        PairkitConfig {
            auth: PairkitAuth::Open,
            api_keys: Vec::new(),
            msgs_per_s: 100,
            msgs_burst: 200,
            session_ttl_ms: 4 * 3600 * 1000,
            players_max: 100,
            join_failures_per_min: 10,
            grace_ms: 60_000,
            strict_payloads: false,
            store: String::new(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read(String, std::io::Error),
    /// The file is not valid TOML or has unknown keys / wrong types.
    Parse(String, toml::de::Error),
    /// Values that parse but cannot run together.
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Read(path, e) => write!(f, "cannot read config file {path}: {e}"),
            ConfigError::Parse(path, e) => write!(f, "config file {path} is invalid: {e}"),
            ConfigError::Invalid(why) => write!(f, "invalid configuration: {why}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(name.clone(), e))?;
        let config = Config::parse(&text).map_err(|e| ConfigError::Parse(name, e))?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values that parse but cannot run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits
            .validate()
            .map_err(|e| ConfigError::Invalid(e.0))?;
        if self.shards > 1024 {
            return Err(ConfigError::Invalid("shards must be at most 1024".into()));
        }
        for t in &self.rooms.types {
            if !BUILTIN_ROOM_TYPES.contains(&t.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "rooms.types: unknown room type {t:?} (built-in: {})",
                    BUILTIN_ROOM_TYPES.join(", ")
                )));
            }
        }
        let echoed_max = self.echo.message_bytes_max + crate::codec::frame::HEADER_BYTES_MAX;
        if self.echo.message_bytes_max == 0 || echoed_max > self.limits.outbound_bytes_max {
            return Err(ConfigError::Invalid(
                "echo.message_bytes_max must be above 0 and its echo (plus a 10-byte frame \
                 header) must fit limits.outbound_bytes_max"
                    .into(),
            ));
        }
        let cl = &self.cloudlink;
        if cl.auth == CloudlinkAuth::Token && cl.jwt_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "cloudlink.auth = \"token\" needs cloudlink.jwt_secret".into(),
            ));
        }
        if cl.max_players_cap == 0 || cl.max_players_cap > i32::MAX as u32 {
            return Err(ConfigError::Invalid(
                "cloudlink.max_players_cap must be in 1..=2147483647".into(),
            ));
        }
        let prefix = &cl.peerjs_prefix;
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.contains(['?', '#']) {
            return Err(ConfigError::Invalid(format!(
                "cloudlink.peerjs_prefix {prefix:?} must start and end with '/' (\"/\", \"/signal/\")"
            )));
        }
        if cl.peerjs_key.is_empty() || cl.peerjs_key.contains(['/', '?', '#', '&']) {
            return Err(ConfigError::Invalid(
                "cloudlink.peerjs_key must be non-empty, without '/', '?', '#' or '&'".into(),
            ));
        }
        let pk = &self.pairkit;
        if pk.auth == PairkitAuth::Strict && pk.api_keys.iter().all(String::is_empty) {
            return Err(ConfigError::Invalid(
                "pairkit.auth = \"strict\" needs at least one key in pairkit.api_keys".into(),
            ));
        }
        if pk.msgs_per_s == 0 || pk.msgs_burst == 0 || pk.msgs_per_s > 100_000 {
            return Err(ConfigError::Invalid(
                "pairkit.msgs_per_s must be in 1..=100000 and pairkit.msgs_burst above 0".into(),
            ));
        }
        if pk.players_max == 0 || pk.session_ttl_ms == 0 {
            return Err(ConfigError::Invalid(
                "pairkit.players_max and pairkit.session_ttl_ms must be above 0".into(),
            ));
        }
        if !pk.store.is_empty() {
            return Err(ConfigError::Invalid(format!(
                "pairkit.store = {:?}: durable sessions are not built yet; leave it unset \
                 (sessions live in memory, and a restart ends them)",
                pk.store
            )));
        }
        if self.auth.mode == AuthMode::Required && self.auth.secrets.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.mode = \"required\" needs at least one entry in [auth.secrets]".into(),
            ));
        }
        Ok(())
    }

    /// The shard count to run with: `shards`, or the available cores when 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn defaults_listen_on_loopback_7777_with_optional_auth() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7777");
        assert_eq!(c.auth.mode, AuthMode::Optional);
        assert_eq!(c.rooms.types.len(), 3);
        c.validate().unwrap();
    }

    #[test]
    fn every_section_parses() {
        let c = Config::parse(
            r#"
listen = "0.0.0.0:9000"
shards = 2
[auth]
mode = "required"
[auth.secrets]
demo = "s3cret"
[limits]
frame_bytes_max = 4096
msgs_per_s = 10
[policy]
unreliable_types = ["position.update"]
[rooms]
types = ["echo_room"]
"#,
        )
        .unwrap();
        assert_eq!(c.shards, 2);
        assert_eq!(c.limits.frame_bytes_max, 4096);
        assert_eq!(c.limits.msgs_burst, Limits::default().msgs_burst);
        assert_eq!(c.auth.secrets["demo"], "s3cret");
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(Config::parse("listne = \"1.2.3.4:5\"").is_err());
        assert!(Config::parse("[limits]\nframe_bytes = 5").is_err());
    }

    #[test]
    fn unknown_room_type_is_invalid() {
        let c = Config::parse("[rooms]\ntypes = [\"poker_room\"]").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn echo_is_off_by_default_and_its_messages_must_fit_the_outbound_bound() {
        let c = Config::parse("[echo]\nenabled = true").unwrap();
        assert!(c.echo.enabled && !Config::default().echo.enabled);
        c.validate().unwrap();
        let c = Config::parse("[echo]\nmessage_bytes_max = 262144").unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("echo.message_bytes_max"), "{err}");
        let c = Config::parse(
            "[echo]\nmessage_bytes_max = 16777216\n[limits]\noutbound_bytes_max = 16777226",
        )
        .unwrap();
        c.validate().unwrap();
    }

    #[test]
    fn cloudlink_defaults_and_token_mode_needs_a_secret() {
        let c = Config::default().cloudlink;
        assert_eq!(c.auth, CloudlinkAuth::Guest);
        assert_eq!((c.conns_per_ip_per_min, c.max_players_cap), (120, 256));
        assert!(c.allowed_origins.is_empty() && !c.require_origin);
        let c = Config::parse("[cloudlink]\nauth = \"token\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("jwt_secret"));
        let c = Config::parse("[cloudlink]\nauth = \"token\"\njwt_secret = \"s\"").unwrap();
        c.validate().unwrap();
        assert!(Config::parse("[cloudlink]\nauth = \"cookie\"").is_err());
        let c = Config::parse("[cloudlink]\nmax_players_cap = 0").unwrap();
        assert!(c.validate().is_err());
        let c = Config::default().cloudlink;
        assert_eq!(
            (c.peerjs_prefix.as_str(), c.peerjs_key.as_str()),
            ("/", "peerjs")
        );
        assert!(!c.peerjs_discovery);
        for bad in ["signal/", "/signal", "", "/a?b/"] {
            let text = format!("[cloudlink]\npeerjs_prefix = {bad:?}");
            let err = Config::parse(&text).unwrap().validate().unwrap_err();
            assert!(err.to_string().contains("peerjs_prefix"), "{bad}: {err}");
        }
        let c = Config::parse("[cloudlink]\npeerjs_prefix = \"/signal/\"").unwrap();
        c.validate().unwrap();
        let c = Config::parse("[cloudlink]\npeerjs_key = \"a/b\"").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("peerjs_key"));
    }

    #[test]
    fn required_auth_needs_a_secret() {
        let c = Config::parse("[auth]\nmode = \"required\"").unwrap();
        assert!(c.validate().is_err());
    }
}
