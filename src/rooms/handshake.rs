//! The rooms handshake: the first frame, auth, and `handshake.ok` for a new or resumed
//! session. Resuming itself is `resume`'s.

use super::*;

pub(super) fn handshake<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, bytes: &mut [u8], now: u64) {
    if bytes.len() > cx.eng.cfg.limits.frame_bytes_max {
        return fail_handshake(
            cx,
            key,
            ErrorCode::BadHandshake,
            "handshake frame too large",
        );
    }
    let unix_now = cx.eng.unix_ms(now);
    let hello = read_hello(
        &mut cx.eng.decoder,
        &cx.eng.cfg,
        &cx.rooms.secrets,
        bytes,
        unix_now,
    );
    let hello = match hello {
        Ok(h) => h,
        Err((code, reason)) => return fail_handshake(cx, key, code, &reason),
    };
    let unknown_here = hello.resume.as_deref().is_some_and(|sid| {
        !cx.rooms.parked.contains_key(sid) && !cx.rooms.parked_here.contains_key(sid)
    });
    if unknown_here && cx.eng.shards > 1 {
        // The session may have been parked a moment ago on a shard whose news is still
        // on its way: wait for every shard to answer a probe (mesh queues are FIFO, so
        // news sent before the answer is read first), then decide.
        resume::probe(cx, key, hello);
    } else {
        resume::route_handshake(cx, key, hello, now);
    }
}

/// Decodes, validates and authenticates a handshake frame.
pub(super) fn read_hello(
    decoder: &mut codec::Decoder,
    cfg: &crate::config::Config,
    secrets: &auth::Secrets,
    bytes: &mut [u8],
    unix_now: u64,
) -> Result<Hello, (ErrorCode, String)> {
    let value = decoder
        .decode(Codec::Json, bytes)
        .map_err(|_| (ErrorCode::BadHandshake, "handshake is not JSON".to_string()))?;
    let hello = decode::handshake(&value).map_err(|r| (r.code, r.reason.to_string()))?;
    let authenticated = auth::authenticate(
        cfg.auth.mode,
        secrets,
        hello.project_id,
        hello.token,
        unix_now,
    )
    .map_err(|e| (ErrorCode::Unauthorized, e.reason().to_string()))?;
    Ok(Hello {
        codec: hello.codec,
        project_id: hello.project_id.into(),
        authenticated,
        features: hello.features,
        resume: hello.session_id.map(Box::from),
    })
}

/// Starts a new session on a validated handshake (`resumed:false`).
pub(crate) fn open_session<H: Host>(cx: &mut Cx<'_, H>, key: SessionKey, hello: Hello, now: u64) {
    let session_id = cx.eng.random_hex(16);
    let client_id: Arc<str> = Arc::from(format!("c{}", cx.eng.random_hex(6)));
    let limits = &cx.eng.cfg.limits;
    let client = Client {
        codec: hello.codec,
        session_id: session_id.into(),
        client_id,
        project_id: hello.project_id,
        authenticated: hello.authenticated,
        features: hello.features,
        memberships: Default::default(),
        inflight: Default::default(),
        ticket: false,
        pending_join: None,
        state_bucket: crate::core::bucket::TokenBucket::new(
            limits.msgs_per_s * crate::limits::STATE_CONTROL_FACTOR,
            limits.msgs_burst * crate::limits::STATE_CONTROL_FACTOR,
            now,
        ),
    };
    let frame = handshake_ok(&mut cx.eng.scratch, cx.eng.cfg.auth.mode, &client, false);
    let Some(session) = cx.session_mut(key) else {
        return;
    };
    *session = RoomsSession::Open(client);
    cx.eng.send(key, frame, Class::Reliable);
}

/// `handshake.ok` for a new or resumed session.
pub(crate) fn handshake_ok(
    buf: &mut Vec<u8>,
    mode: auth::AuthMode,
    client: &Client,
    resumed: bool,
) -> Frame {
    let f = client.features;
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
    let mode_text = mode.to_string();
    encode::frame(client.codec, buf, "handshake.ok", None, None, len, |w| {
        w.key("codec").str(client.codec.name());
        w.key("session_id").str(&client.session_id);
        w.key("resumed").bool(resumed);
        w.key("auth_mode").str(&mode_text);
        w.key("authenticated").bool(client.authenticated);
        w.key("project_id").str(&client.project_id);
        if f.crc32 {
            w.key("checksum").str("crc32");
        }
        w.key("client_id").str(&client.client_id);
        if !accepted.is_empty() {
            w.key("features").array(accepted.len() as u32);
            for a in &accepted {
                w.str(a);
            }
            w.end_array();
        }
    })
}
