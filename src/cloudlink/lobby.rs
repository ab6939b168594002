//! Lobbies on their home shard (`hash(ugi, name)`): members (every member lives on the
//! lobby's home — it moved there to join), the host first; creating, joining, leaving,
//! host promotion, deletion; the replicated listing every shard answers `LIST_LOBBIES` and
//! `FIND_LOBBY` from; `NEW_LOBBY` / `LOBBY_CLOSED` to the game's clients in no lobby.

use std::sync::Arc;

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::wire;
use super::{Cx, Host, Mesh};
use crate::codec::Writer;
use crate::core::outbound::Class;
use crate::core::{home_shard, Recipient, SessionAt, SessionKey, ShardId};

/// Who a client is, as other clients see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// `<ULID>_<ugi>`.
    pub instance_id: Arc<str>,
    /// `GUEST_<ULID>`, or the token's user.
    pub user_id: Arc<str>,
    /// Its username.
    pub username: Arc<str>,
    /// Its `INIT.pubkey`, when it sent one.
    pub pubkey: Option<Arc<str>>,
}

impl PeerInfo {
    /// `{instance_id, user_id, username, pubkey?}`.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.map(3 + u32::from(self.pubkey.is_some()));
        w.key("instance_id").str(&self.instance_id);
        w.key("user_id").str(&self.user_id);
        w.key("username").str(&self.username);
        if let Some(key) = &self.pubkey {
            w.key("pubkey").str(key);
        }
        w.end_map();
    }
}

/// A member of a lobby.
#[derive(Clone, Debug)]
pub struct Member {
    /// Its session (on the lobby's home shard).
    pub at: SessionAt,
    /// Who it is.
    pub peer: Arc<PeerInfo>,
}

impl Recipient for Member {
    fn at(&self) -> SessionAt {
        self.at
    }
    fn codec(&self) -> crate::codec::Codec {
        crate::codec::Codec::Json
    }
}

/// A lobby password, stored salted and hashed, compared in constant time.
pub struct Password {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl Password {
    /// Hashes `text` with a fresh salt.
    pub fn new(text: &str, rng: &mut impl RngCore) -> Self {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        Password {
            salt,
            digest: Self::hash(&salt, text),
        }
    }

    fn hash(salt: &[u8; 16], text: &str) -> [u8; 32] {
        Sha256::new()
            .chain_update(salt)
            .chain_update(text.as_bytes())
            .finalize()
            .into()
    }

    /// Is `text` this password?
    pub fn matches(&self, text: &str) -> bool {
        Self::hash(&self.salt, text).ct_eq(&self.digest).into()
    }
}

/// A lobby.
pub struct Lobby {
    /// Its game.
    pub ugi: Arc<str>,
    /// Its name (unique within the game).
    pub name: Arc<str>,
    /// Members: the host first, then the peers in the order they joined.
    pub members: Vec<Member>,
    /// Peers at most (the host not counted); -1: unlimited.
    pub max_players: i64,
    /// `None`: no password.
    pub password: Option<Password>,
    /// Locked: nobody may join.
    pub locked: bool,
    /// Created with `enable_relay`: the server relays `G_*` / `P_*`.
    pub relay: bool,
}

impl Lobby {
    /// The host.
    pub fn host(&self) -> &Member {
        &self.members[0]
    }

    /// Peers (every member but the host).
    pub fn peers(&self) -> &[Member] {
        &self.members[1..]
    }

    /// The member with this instance id.
    pub fn member(&self, instance_id: &str) -> Option<(usize, &Member)> {
        self.members
            .iter()
            .enumerate()
            .find(|(_, m)| &*m.peer.instance_id == instance_id)
    }

    /// Full for one more peer?
    pub fn is_full(&self) -> bool {
        self.max_players != -1 && self.peers().len() as i64 >= self.max_players
    }

    /// What `FIND_LOBBY` shows of it.
    pub fn listing(&self) -> Listing {
        Listing {
            host: self.host().peer.clone(),
            max_players: self.max_players,
            current_players: self.peers().len(),
            locked: self.locked,
            password_required: self.password.is_some(),
            relay_enabled: self.relay,
        }
    }
}

/// A lobby as every shard sees it (`FIND_LOBBY`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// Its host.
    pub host: Arc<PeerInfo>,
    /// Peers at most; -1: unlimited.
    pub max_players: i64,
    /// Peers now (the host not counted).
    pub current_players: usize,
    /// Locked.
    pub locked: bool,
    /// Has a password.
    pub password_required: bool,
    /// Relays `G_*` / `P_*`.
    pub relay_enabled: bool,
}

impl Listing {
    /// The `FIND_ACK` payload.
    pub fn write(&self, w: &mut Writer<'_>) {
        w.map(6).key("host");
        self.host.write(w);
        w.key("max_players").i64(self.max_players);
        w.key("current_players").u64(self.current_players as u64);
        w.key("currently_locked").bool(self.locked);
        w.key("password_required").bool(self.password_required);
        w.key("relay_enabled").bool(self.relay_enabled);
        w.end_map();
    }
}

/// What the game's clients in no lobby hear about a lobby.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announce {
    /// `NEW_LOBBY`.
    Created,
    /// `LOBBY_CLOSED`.
    Closed,
}

impl Announce {
    fn opcode(self) -> &'static str {
        match self {
            Announce::Created => "NEW_LOBBY",
            Announce::Closed => "LOBBY_CLOSED",
        }
    }
}

/// The home shard of a lobby.
pub fn home(ugi: &str, name: &str, shards: usize) -> ShardId {
    home_shard(&format!("{ugi}/{name}"), shards)
}

/// The lobby key.
pub type LobbyId = (Arc<str>, Arc<str>);

impl<H: Host> Cx<'_, H> {
    /// Sends one text frame to a local session.
    pub(super) fn send_text(&mut self, key: SessionKey, opcode: &str, text: &str) {
        let frame = wire::text(&mut self.eng.scratch, opcode, text);
        self.eng.send(key, frame, Class::Reliable);
    }

    /// Sends a frame with a peer's info as payload (`NEW_HOST`, `NEW_PEER`, `PEER_JOIN`).
    pub(super) fn send_peer(&mut self, key: SessionKey, opcode: &str, peer: &PeerInfo) {
        let frame = wire::frame(&mut self.eng.scratch, opcode, |w| peer.write(w));
        self.eng.send(key, frame, Class::Reliable);
    }

    /// Tells every shard (this one included) that a lobby's listing changed, and the
    /// game's clients in no lobby what `announce` says.
    pub(super) fn publish(
        &mut self,
        ugi: &Arc<str>,
        name: &Arc<str>,
        listing: Option<Listing>,
        announce: Option<Announce>,
    ) {
        self.list(ugi, name, listing.clone(), announce);
        self.post_to_others(|| Mesh::Listing {
            ugi: ugi.clone(),
            name: name.clone(),
            listing: listing.clone(),
            announce,
        });
    }

    /// A lobby's listing and announcement, on this shard.
    pub(super) fn list(
        &mut self,
        ugi: &Arc<str>,
        name: &Arc<str>,
        listing: Option<Listing>,
        announce: Option<Announce>,
    ) {
        match listing {
            Some(l) => {
                let game = self.cl.directory.entry(ugi.clone()).or_default();
                game.insert(name.clone(), l);
            }
            None => {
                if let Some(game) = self.cl.directory.get_mut(ugi) {
                    game.remove(name);
                    if game.is_empty() {
                        self.cl.directory.remove(ugi);
                    }
                }
            }
        }
        let Some(announce) = announce else {
            return;
        };
        let idle = self.cl.idle.get(ugi).cloned().unwrap_or_default();
        if idle.is_empty() {
            return;
        }
        let frame = wire::text(&mut self.eng.scratch, announce.opcode(), name);
        for key in idle {
            self.eng.send(key, frame.clone(), Class::Reliable);
        }
    }

    /// Creates a lobby hosted by `key` (its home is this shard): `TRANSITION "host"`,
    /// `CREATE_ACK "ok"`, `NEW_HOST {self}`, then `NEW_LOBBY` to the game's clients in no
    /// lobby — or `CREATE_ACK "exists"`.
    pub(super) fn create(&mut self, key: SessionKey, op: super::Create) {
        let Some((ugi, peer)) = self.identity(key) else {
            return;
        };
        let id: LobbyId = (ugi.clone(), op.name.clone());
        if self.cl.lobbies.contains_key(&id) {
            return self.send_text(key, "CREATE_ACK", "exists");
        }
        let password = op
            .password
            .filter(|p| !p.is_empty())
            .map(|p| Password::new(&p, &mut self.eng.rng));
        let lobby = Lobby {
            ugi: ugi.clone(),
            name: op.name.clone(),
            members: vec![Member {
                at: self.eng.here(key),
                peer: peer.clone(),
            }],
            max_players: op.max_players,
            password,
            locked: op.locked,
            relay: op.relay,
        };
        let listing = lobby.listing();
        self.cl.lobbies.insert(id, lobby);
        crate::metrics::ShardMetrics::add(&self.cl.metrics.lobbies, 1);
        self.enter(key, &op.name, true);
        self.send_text(key, "TRANSITION", "host");
        self.send_text(key, "CREATE_ACK", "ok");
        self.send_peer(key, "NEW_HOST", &peer);
        self.publish(&ugi, &op.name, Some(listing), Some(Announce::Created));
    }

    /// Joins `key` to a lobby whose home is this shard, in the page's order of checks:
    /// `not found`, `locked`, `full` (the host not counted), `password`.
    pub(super) fn join(&mut self, key: SessionKey, op: super::Join) {
        let Some((ugi, peer)) = self.identity(key) else {
            return;
        };
        let id: LobbyId = (ugi.clone(), op.name.clone());
        let Some(lobby) = self.cl.lobbies.get(&id) else {
            return self.send_text(key, "JOIN_ACK", "not found");
        };
        let refusal = if lobby.locked {
            Some("locked")
        } else if lobby.is_full() {
            Some("full")
        } else if lobby
            .password
            .as_ref()
            .is_some_and(|p| !p.matches(op.password.as_deref().unwrap_or("")))
        {
            Some("password")
        } else {
            None
        };
        if let Some(refusal) = refusal {
            return self.send_text(key, "JOIN_ACK", refusal);
        }
        let at = self.eng.here(key);
        let lobby = self.cl.lobbies.get_mut(&id).expect("checked above");
        lobby.members.push(Member {
            at,
            peer: peer.clone(),
        });
        let host = lobby.host().clone();
        let others: Vec<SessionKey> = lobby.peers()[..lobby.peers().len() - 1]
            .iter()
            .map(|m| m.at.key)
            .collect();
        let listing = lobby.listing();
        self.enter(key, &op.name, false);
        self.send_text(key, "TRANSITION", "peer");
        self.send_text(key, "JOIN_ACK", "ok");
        self.send_peer(key, "NEW_HOST", &host.peer);
        self.send_peer(host.at.key, "NEW_PEER", &peer);
        let frame = wire::frame(&mut self.eng.scratch, "PEER_JOIN", |w| peer.write(w));
        for other in others {
            self.eng.send(other, frame.clone(), Class::Reliable);
        }
        self.publish(&ugi, &op.name, Some(listing), None);
    }

    /// The session leaves its lobby (if it is in one): the others hear `PEER_LEFT`; a
    /// host leaving promotes the oldest peer; the last member leaving deletes the lobby.
    pub(super) fn leave(&mut self, key: SessionKey) {
        let Some(client) = self.client_mut(key) else {
            return;
        };
        let Some(name) = client.lobby.take() else {
            return;
        };
        client.hosting = false;
        let ugi = client.ugi.clone();
        let id: LobbyId = (ugi.clone(), name.clone());
        let Some(lobby) = self.cl.lobbies.get_mut(&id) else {
            return;
        };
        let Some((index, left)) = lobby
            .members
            .iter()
            .enumerate()
            .find(|(_, m)| m.at.key == key)
            .map(|(i, m)| (i, m.clone()))
        else {
            return;
        };
        lobby.members.remove(index);
        if lobby.members.is_empty() {
            self.cl.lobbies.remove(&id);
            crate::metrics::ShardMetrics::sub(&self.cl.metrics.lobbies, 1);
            return self.publish(&ugi, &name, None, Some(Announce::Closed));
        }
        let rest: Vec<SessionKey> = lobby.members.iter().map(|m| m.at.key).collect();
        let frame = wire::text(&mut self.eng.scratch, "PEER_LEFT", &left.peer.instance_id);
        for &other in &rest {
            self.eng.send(other, frame.clone(), Class::Reliable);
        }
        if index == 0 {
            self.promote(&id);
        }
        if let Some(lobby) = self.cl.lobbies.get(&id) {
            let listing = lobby.listing();
            self.publish(&ugi, &name, Some(listing), None);
        }
    }

    /// The lobby's first member is its new host: `TRANSITION "host"` and `NEW_HOST {self}`
    /// to it, `NEW_HOST {new host}` to the others.
    fn promote(&mut self, id: &LobbyId) {
        let Some(lobby) = self.cl.lobbies.get(id) else {
            return;
        };
        let host = lobby.host().clone();
        let others: Vec<SessionKey> = lobby.peers().iter().map(|m| m.at.key).collect();
        if let Some(client) = self.client_mut(host.at.key) {
            client.hosting = true;
        }
        self.send_text(host.at.key, "TRANSITION", "host");
        self.send_peer(host.at.key, "NEW_HOST", &host.peer);
        let frame = wire::frame(&mut self.eng.scratch, "NEW_HOST", |w| host.peer.write(w));
        for other in others {
            self.eng.send(other, frame.clone(), Class::Reliable);
        }
    }

    /// Records that the session is in a lobby (and no longer idle).
    fn enter(&mut self, key: SessionKey, name: &Arc<str>, hosting: bool) {
        self.set_idle(key, false);
        if let Some(client) = self.client_mut(key) {
            client.lobby = Some(name.clone());
            client.hosting = hosting;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn passwords_are_salted_and_only_their_text_matches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let a = Password::new("hunter2", &mut rng);
        let b = Password::new("hunter2", &mut rng);
        assert!(a.matches("hunter2") && !a.matches("hunter3") && !a.matches(""));
        assert_ne!(a.digest, b.digest, "a fresh salt per lobby");
    }
}
