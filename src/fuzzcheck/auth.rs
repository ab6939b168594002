//! Client tokens: the rooms handshake token (`rooms::auth`: `b64url(claims) "."
//! b64url(HMAC-SHA256)`) and cloudlink's HS512 JWT (`cloudlink::identity::verify_token`).
//!
//! Properties:
//! - Arbitrary token text (the input's bytes, as UTF-8 when they are, else with invalid
//!   sequences replaced: both verifiers take `&str`) never panics either verifier or
//!   `rooms::auth::authenticate`, and `authenticate` keeps its contract in each mode:
//!   `Disabled` is `Ok(false)`, `Optional` is `Ok(true)` exactly when `Required` is.
//! - Rooms: a token minted by `mint_token` from input claims (project, issue time, TTL)
//!   verifies with its secret until it expires and gives back those claims (times clamped
//!   to year 9999); from its expiry on it is `Expired`; for another project it is
//!   `WrongProject`. A token built here (claims JSON with `key_id` and `aud`, HMAC-SHA256
//!   computed with `hmac` directly, the first segment optionally `=`-padded, as the format
//!   allows) verifies the same way. Either token with any single byte changed, under
//!   another secret of the same length, or with its signature dropped is refused, and
//!   `authenticate` lets it in, in `Required` and `Optional` mode, exactly when it
//!   verifies.
//! - Cloudlink: an HS512 JWT built with `jsonwebtoken` from input claims (`ulid`,
//!   `user_id`, `sub`, `username`, `exp`, `nbf`, integers or not) verifies exactly when
//!   `exp` is later than now, `nbf` is absent or not later than now, and one of the user id
//!   claims is a non-empty string; it then gives the user id by the precedence `ulid`,
//!   `user_id`, `sub` and the non-empty `username`. The same token with any single byte
//!   changed, under another secret, signed HS256 or HS384, or re-headed `"alg":"none"`
//!   (unsigned, or keeping the HS512 signature) is refused.
//!
//! Input: a header of claim choices read by [`Input`], then (the rest) the arbitrary token
//! text; the mutation's position and byte come from the header.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::input::Input;
use crate::cloudlink::identity;
use crate::rooms::auth::{self, AuthMode, Claims, Secrets, TokenError};

/// The latest instant RFC 3339 writes (9999-12-31T23:59:59.999Z), in unix ms.
const RFC3339_UNIX_MS_MAX: u64 = 253_402_300_799_999;

/// Bytes of claim choices read before the arbitrary token text.
const HEADER_BYTES: usize = 64;

/// The `auth` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_auth(data: &[u8]) {
    let (header, token_bytes) = data.split_at(data.len().min(HEADER_BYTES));
    let mut input = Input::new(header);
    let secret = secret(&mut input);
    let project = text(&mut input);
    let now_ms = input.u64() % (RFC3339_UNIX_MS_MAX + 2_000);
    let mutation = (usize::from(input.u16()), input.byte() | 1);

    let token = String::from_utf8_lossy(token_bytes);
    arbitrary_rooms_token(&token, &secret, &project, now_ms);
    // Whatever the text, a cloudlink verifier is handed it too.
    let _ = identity::verify_token(&token, &secret, now_ms / 1000);

    let ttl_ms = input.u64() % (1 << 40);
    rooms_minted(&secret, &project, now_ms, ttl_ms, mutation);
    rooms_built(&mut input, &secret, &project, now_ms, mutation);
    cloudlink(&mut input, &secret, now_ms, mutation);
}

/// A secret of 1 to 80 bytes (empty secrets are never configured; over 64 bytes HMAC
/// hashes the key first): printable ASCII, as a config file gives, or any bytes.
fn secret(input: &mut Input<'_>) -> Vec<u8> {
    let shape = input.byte();
    let len = 1 + usize::from(shape % 80);
    let seed = input.u64();
    (0..len as u64)
        .map(|i| (seed.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .map(|b| if shape & 0x80 == 0 { b' ' + b % 95 } else { b })
        .collect()
}

/// Short text from a table or a few input bytes.
fn text(input: &mut Input<'_>) -> String {
    const TEXTS: &[&str] = &["demo", "", "é", "a\"b\\c", "\u{0}", "💥", "x.y"];
    match input.byte() % 4 {
        0 => {
            let n = usize::from(input.byte() % 6);
            String::from_utf8_lossy(input.bytes(n)).into_owned()
        }
        _ => input.pick(TEXTS).to_string(),
    }
}

/// The same secret with one byte changed (same length: a zero byte appended to a short
/// HMAC key is the same key, so that is not "another secret").
fn other_secret(secret: &[u8]) -> Vec<u8> {
    let mut other = secret.to_vec();
    other[secret.len() / 2] ^= 0x5a;
    other
}

/// `token` with the byte at `at` (modulo its length) XORed with the odd `flip`, as text.
fn mutated(token: &str, (at, flip): (usize, u8)) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = at % bytes.len();
    bytes[at] ^= flip;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The authentication decision for one token in every mode, checked against the mode
/// rules; returns what `Required` said.
fn authenticate_all(
    secrets: &Secrets,
    project: &str,
    token: &str,
    now_ms: u64,
) -> Result<bool, TokenError> {
    let token = Some(token);
    let required = auth::authenticate(AuthMode::Required, secrets, project, token, now_ms);
    let optional = auth::authenticate(AuthMode::Optional, secrets, project, token, now_ms);
    let disabled = auth::authenticate(AuthMode::Disabled, secrets, project, token, now_ms);
    assert_eq!(
        disabled,
        Ok(false),
        "disabled auth lets everyone in unauthenticated"
    );
    assert_eq!(
        optional,
        Ok(required.is_ok()),
        "optional auth authenticates exactly what required auth accepts"
    );
    if let Ok(authenticated) = required {
        assert!(
            authenticated,
            "required auth only lets in authenticated clients"
        );
    }
    required
}

/// The secrets table holding `secret` for `project`.
fn secrets_for(project: &str, secret: &[u8]) -> Secrets {
    let secret = String::from_utf8_lossy(secret).into_owned();
    Secrets::new(HashMap::from([(project.to_string(), secret)]))
}

/// Arbitrary text through the rooms verifier and the handshake decision.
fn arbitrary_rooms_token(token: &str, secret: &[u8], project: &str, now_ms: u64) {
    let verified = auth::verify_token(token, secret, project, now_ms);
    if let Ok(claims) = &verified {
        assert_eq!(
            claims.project_id, project,
            "a verified token is for its project"
        );
        assert!(
            now_ms < claims.expires_at_unix_ms,
            "a verified token is unexpired"
        );
    }
    let secrets = secrets_for(project, secret);
    let required = authenticate_all(&secrets, project, token, now_ms);
    if token.is_empty() {
        assert_eq!(required, Err(TokenError::Malformed), "no token, no entry");
    }
}

/// What a rooms token for `project` issued at `at_ms` for `ttl_ms` must verify to.
fn rooms_claims(project: &str, at_ms: u64, ttl_ms: u64) -> Claims {
    Claims {
        project_id: project.to_string(),
        issued_at_unix_ms: at_ms.min(RFC3339_UNIX_MS_MAX),
        expires_at_unix_ms: at_ms.saturating_add(ttl_ms).min(RFC3339_UNIX_MS_MAX),
        key_id: None,
        aud: None,
    }
}

/// The checks every well-formed rooms token gets: its verdict before and at expiry, for
/// another project and under another secret, mutated, unsigned, and through
/// `authenticate` (with the secrets table the lossy text of `secret` gives, when that is
/// the same secret).
fn rooms_token_checks(
    token: &str,
    want: &Claims,
    secret: &[u8],
    now_ms: u64,
    mutation: (usize, u8),
) {
    let project = want.project_id.as_str();
    let expires = want.expires_at_unix_ms;
    let verdict = auth::verify_token(token, secret, project, now_ms);
    if now_ms < expires {
        assert_eq!(verdict.as_ref(), Ok(want), "a good token verifies: {token}");
        assert_eq!(
            auth::verify_token(token, secret, &format!("{project}!"), now_ms),
            Err(TokenError::WrongProject),
            "a token is for its project only"
        );
    } else {
        assert_eq!(verdict, Err(TokenError::Expired), "at expiry: {token}");
    }
    if expires > 0 {
        assert_eq!(
            auth::verify_token(token, secret, project, expires - 1).as_ref(),
            Ok(want),
            "valid until the last millisecond"
        );
    }
    assert_eq!(
        auth::verify_token(token, secret, project, expires),
        Err(TokenError::Expired),
        "expired from expires_at on"
    );
    assert_eq!(
        auth::verify_token(token, &other_secret(secret), project, now_ms.min(expires)),
        Err(TokenError::BadSignature),
        "another secret refuses it"
    );
    let changed = mutated(token, mutation);
    let refusal = auth::verify_token(&changed, secret, project, now_ms.min(expires));
    assert!(
        refusal.is_err(),
        "a token with one byte changed is refused: {changed:?} gave {refusal:?}"
    );
    let unsigned = format!("{}.", token.split('.').next().unwrap_or_default());
    assert_eq!(
        auth::verify_token(&unsigned, secret, project, now_ms),
        Err(TokenError::Malformed),
        "no signature, no token"
    );
    // A config secret is text: check authenticate when the bytes are that text.
    if std::str::from_utf8(secret).is_ok() {
        let secrets = secrets_for(project, secret);
        let required = authenticate_all(&secrets, project, token, now_ms);
        assert_eq!(
            required,
            verdict.map(|_| true),
            "authenticate is verify_token"
        );
        let changed = authenticate_all(&secrets, project, &changed, now_ms.min(expires));
        assert!(changed.is_err(), "a changed token does not get in");
    }
}

/// A token from `mint_token`.
fn rooms_minted(secret: &[u8], project: &str, now_ms: u64, ttl_ms: u64, mutation: (usize, u8)) {
    let token = auth::mint_token(secret, project, now_ms, ttl_ms);
    let want = rooms_claims(project, now_ms, ttl_ms);
    rooms_token_checks(&token, &want, secret, now_ms, mutation);
}

/// A rooms token built here from the format's definition, with `key_id` and `aud`, issued
/// a little before or after now, its first segment padded or not.
fn rooms_built(
    input: &mut Input<'_>,
    secret: &[u8],
    project: &str,
    now_ms: u64,
    mutation: (usize, u8),
) {
    let flags = input.byte();
    let issued_ms = (now_ms + 1_000_000).saturating_sub(u64::from(input.u16()) * 100);
    let ttl_ms = u64::from(input.u16()) * 50;
    let mut want = rooms_claims(project, issued_ms, ttl_ms);
    want.key_id = (flags & 1 != 0).then(|| text(input));
    want.aud = (flags & 2 != 0).then(|| text(input));
    let time = |ms: u64| {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .expect("a clamped time is representable")
            .format(&Rfc3339)
            .expect("RFC 3339 writes years up to 9999")
    };
    let mut claims = Map::new();
    claims.insert("project_id".into(), json!(want.project_id));
    claims.insert("issued_at".into(), json!(time(want.issued_at_unix_ms)));
    claims.insert("expires_at".into(), json!(time(want.expires_at_unix_ms)));
    if let Some(key_id) = &want.key_id {
        claims.insert("key_id".into(), json!(key_id));
    }
    if let Some(aud) = &want.aud {
        claims.insert("aud".into(), json!(aud));
    }
    claims.insert("extra".into(), json!([flags, "ignored"]));
    let mut first = URL_SAFE_NO_PAD.encode(Value::Object(claims).to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(first.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    if flags & 4 != 0 {
        // Padded after signing: the format accepts the padded text of the signed segment.
        while first.len() % 4 != 0 {
            first.push('=');
        }
    }
    let token = format!("{first}.{sig}");
    rooms_token_checks(&token, &want, secret, now_ms, mutation);
}

/// A JWT claim value: absent, a string (maybe empty), or not a string.
fn user_claim(input: &mut Input<'_>) -> Option<Value> {
    match input.byte() % 5 {
        0 | 1 => None,
        2 => Some(json!("")),
        3 => Some(json!(7)),
        _ => Some(json!(text(input))),
    }
}

/// A time claim near `now_s`: absent, or now plus a small signed offset, whole or not.
fn time_claim(input: &mut Input<'_>, now_s: u64) -> Option<f64> {
    let kind = input.byte();
    let offset = f64::from(input.byte() as i8 % 4);
    match kind % 3 {
        0 => None,
        1 => Some(now_s as f64 + offset),
        _ => Some(now_s as f64 + offset + 0.5),
    }
}

/// Cloudlink's HS512 JWTs.
fn cloudlink(input: &mut Input<'_>, secret: &[u8], now_ms: u64, mutation: (usize, u8)) {
    // A clock within f64's exact integers (the verifier compares times as f64).
    let now_s = (now_ms / 1000) % (1 << 40);
    let mut claims = Map::new();
    for name in ["ulid", "user_id", "sub", "username"] {
        if let Some(v) = user_claim(input) {
            claims.insert(name.into(), v);
        }
    }
    let exp = time_claim(input, now_s);
    let nbf = time_claim(input, now_s);
    let number = |t: f64| {
        if t.fract() == 0.0 && t >= 0.0 {
            json!(t as u64)
        } else {
            json!(t)
        }
    };
    if let Some(exp) = exp {
        claims.insert("exp".into(), number(exp));
    }
    if let Some(nbf) = nbf {
        claims.insert("nbf".into(), number(nbf));
    }
    let claims = Value::Object(claims);
    let text_of = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let user_id = text_of("ulid")
        .or_else(|| text_of("user_id"))
        .or_else(|| text_of("sub"));
    let timely = exp.is_some_and(|e| e > now_s as f64) && nbf.is_none_or(|n| n <= now_s as f64);
    let want = match user_id {
        Some(user_id) if timely => Some(identity::TokenClaims {
            user_id,
            username: text_of("username"),
        }),
        _ => None,
    };

    let sign = |alg: Algorithm, key: &[u8]| {
        encode(&Header::new(alg), &claims, &EncodingKey::from_secret(key))
            .expect("JSON claims encode")
    };
    let token = sign(Algorithm::HS512, secret);
    let verdict = identity::verify_token(&token, secret, now_s);
    assert_eq!(
        verdict.as_ref().ok(),
        want.as_ref(),
        "{claims} -> {verdict:?}"
    );

    let refused = |token: &str, why: &str| {
        let verdict = identity::verify_token(token, secret, now_s);
        assert!(verdict.is_err(), "{why}: {token} gave {verdict:?}");
    };
    let changed = mutated(&token, mutation);
    refused(&changed, "one byte changed");
    let other = sign(Algorithm::HS512, &other_secret(secret));
    refused(&other, "another secret");
    refused(&sign(Algorithm::HS256, secret), "HS256");
    refused(&sign(Algorithm::HS384, secret), "HS384");
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let mut parts = token.splitn(3, '.').skip(1);
    let (payload, signature) = (parts.next().unwrap(), parts.next().unwrap());
    refused(&format!("{none}.{payload}."), "alg none, unsigned");
    refused(
        &format!("{none}.{payload}.{signature}"),
        "alg none, HS512 signature",
    );
}
