//! The rooms handshake: the first frame, auth, and `handshake.ok` for a new or resumed
//! session. Resuming itself is `resume`'s.

use super::*;

pub(super) fn handshake(core: &mut ShardCore, key: SessionKey, bytes: &mut [u8], now: u64) {
    if bytes.len() > core.cfg.limits.frame_bytes_max {
        return fail_handshake(core, key, "bad_handshake", "handshake frame too large");
    }
    let unix_now = core.unix_ms(now);
    let hello = read_hello(&mut core.decoder, &core.cfg, &core.secrets, bytes, unix_now);
    let hello = match hello {
        Ok(h) => h,
        Err((code, reason)) => return fail_handshake(core, key, code, &reason),
    };
    let unknown_here = hello
        .resume
        .as_deref()
        .is_some_and(|sid| !core.parked.contains_key(sid) && !core.parked_here.contains_key(sid));
    if unknown_here && core.shards > 1 {
        // The session may have been parked a moment ago on a shard whose news is still
        // on its way: wait for every shard to answer a probe (mesh queues are FIFO, so
        // news sent before the answer is read first), then decide.
        resume::probe(core, key, hello);
    } else {
        resume::route_handshake(core, key, hello, now);
    }
}

/// Decodes, validates and authenticates a handshake frame.
pub(super) fn read_hello(
    decoder: &mut codec::Decoder,
    cfg: &crate::config::Config,
    secrets: &auth::Secrets,
    bytes: &mut [u8],
    unix_now: u64,
) -> Result<Hello, (&'static str, String)> {
    let value = decoder
        .decode(Codec::Json, bytes)
        .map_err(|_| ("bad_handshake", "handshake is not JSON".to_string()))?;
    let hello = decode::handshake(&value).map_err(|r| (r.code.as_str(), r.reason.to_string()))?;
    let authenticated = auth::authenticate(
        cfg.auth.mode,
        secrets,
        hello.project_id,
        hello.token,
        unix_now,
    )
    .map_err(|e| ("unauthorized", e.reason().to_string()))?;
    Ok(Hello {
        codec: hello.codec,
        project_id: hello.project_id.into(),
        authenticated,
        features: hello.features,
        resume: hello.session_id.map(Box::from),
    })
}

/// Starts a new session on a validated handshake (`resumed:false`).
pub(crate) fn open_session(core: &mut ShardCore, key: SessionKey, hello: Hello) {
    let session_id = core.random_hex(16);
    let client_id: Arc<str> = Arc::from(format!("c{}", core.random_hex(6)));
    let rooms = RoomsSession {
        codec: hello.codec,
        session_id: session_id.into(),
        client_id,
        project_id: hello.project_id,
        authenticated: hello.authenticated,
        features: hello.features,
        memberships: Default::default(),
        inflight: Default::default(),
        ticket: false,
    };
    let frame = handshake_ok(core, &rooms, false);
    let Some(session) = core.sessions.get_mut(key) else {
        return;
    };
    session.rooms = Some(rooms);
    session.phase = Phase::Open;
    core.send(key, frame, Class::Reliable);
}

/// `handshake.ok` for a new or resumed session.
pub(crate) fn handshake_ok(core: &mut ShardCore, rs: &RoomsSession, resumed: bool) -> codec::Frame {
    let f = rs.features;
    let accepted: Vec<&str> = [
        ("crc32", f.crc32),
        ("nested_ops", f.nested_ops),
        ("bin_bytes", f.bin_bytes),
    ]
    .iter()
    .filter(|(_, on)| *on)
    .map(|(name, _)| *name)
    .collect();
    let len = 7 + u32::from(f.crc32) + u32::from(!accepted.is_empty());
    let mode_text = core.cfg.auth.mode.to_string();
    encode::frame(
        rs.codec,
        &mut core.scratch,
        "handshake.ok",
        None,
        None,
        len,
        |w| {
            w.key("codec").str(rs.codec.name());
            w.key("session_id").str(&rs.session_id);
            w.key("resumed").bool(resumed);
            w.key("auth_mode").str(&mode_text);
            w.key("authenticated").bool(rs.authenticated);
            w.key("project_id").str(&rs.project_id);
            if f.crc32 {
                w.key("checksum").str("crc32");
            }
            w.key("client_id").str(&rs.client_id);
            if !accepted.is_empty() {
                w.key("features").array(accepted.len() as u32);
                for a in &accepted {
                    w.str(a);
                }
                w.end_array();
            }
        },
    )
}
