//! Handshake token auth for the "rooms" dialect: owns the token format (mint,
//! verify, claims), the auth modes and the per-project secret lookup; not the
//! transport (where the token comes from) nor config loading (where secrets and
//! the mode come from).
//!
//! Token format: `b64url(claims_json) "." b64url(HMAC-SHA256(secret, first_segment))`,
//! where the HMAC input is the ASCII text of the first segment. Tokens are minted
//! without `=` padding; padded input is accepted.

use std::collections::HashMap;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// Longest token (in bytes) that is even looked at; longer ones are `Malformed`.
const MAX_TOKEN_LEN: usize = 4096;

/// Latest instant RFC 3339 can express (9999-12-31T23:59:59.999Z), in unix ms.
/// Minted timestamps are clamped to it.
const MAX_RFC3339_UNIX_MS: u64 = 253_402_300_799_999;

/// URL-safe base64 decoder that accepts input with or without `=` padding
/// (padding, when present, must be canonical).
const B64_DECODE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How the server treats handshake tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every handshake must carry a valid token for its project.
    Required,
    /// A valid token marks the connection authenticated; anything else is let in
    /// unauthenticated.
    Optional,
    /// Tokens are ignored; no connection is authenticated.
    Disabled,
}

impl Default for AuthMode {
    /// `Optional`.
    fn default() -> Self {
        AuthMode::Optional
    }
}

impl fmt::Display for AuthMode {
    /// Writes the config spelling: `required`, `optional` or `disabled`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::Disabled => "disabled",
        })
    }
}

/// The verified contents of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// Project the token grants access to.
    pub project_id: String,
    /// `issued_at`, in milliseconds since the unix epoch (sub-ms digits dropped).
    pub issued_at_unix_ms: u64,
    /// `expires_at`, in milliseconds since the unix epoch (sub-ms digits dropped).
    pub expires_at_unix_ms: u64,
    /// Optional identifier of the signing key, as given in the token.
    pub key_id: Option<String>,
    /// Optional audience, as given in the token.
    pub aud: Option<String>,
}

/// Why a token was refused (each maps to the wire code `unauthorized`;
/// [`TokenError::reason`] gives a short human text like "token expired").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    /// Missing, oversized, or not `b64url(json) "." b64url(mac)` with valid claims.
    Malformed,
    /// The signature does not match the claims under the project's secret.
    BadSignature,
    /// `now >= expires_at`.
    Expired,
    /// The token's `project_id` is not the handshake's project.
    WrongProject,
    /// The server holds no secret for the handshake's project.
    UnknownProject,
}

impl TokenError {
    /// Short human-readable reason, suitable for the `unauthorized` error message.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed token",
            TokenError::BadSignature => "bad token signature",
            TokenError::Expired => "token expired",
            TokenError::WrongProject => "token is for a different project",
            TokenError::UnknownProject => "unknown project",
        }
    }
}

impl fmt::Display for TokenError {
    /// Writes [`TokenError::reason`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for TokenError {}

/// Per-project token secrets (`project_id` -> secret bytes).
///
/// `Debug` prints the project ids only, never the secrets.
#[derive(Clone, Default)]
pub struct Secrets {
    by_project: HashMap<String, Vec<u8>>,
}

impl Secrets {
    /// Builds the table from `project_id -> secret`; a secret's bytes are its
    /// UTF-8 text. Empty secrets are dropped (treated as "no secret"), so a
    /// blank config value cannot make tokens forgeable.
    pub fn new(map: HashMap<String, String>) -> Self {
        let by_project = map
            .into_iter()
            .filter(|(_, secret)| !secret.is_empty())
            .map(|(project, secret)| (project, secret.into_bytes()))
            .collect();
        Secrets { by_project }
    }

    /// The secret for `project_id`, if one is configured.
    pub fn get(&self, project_id: &str) -> Option<&[u8]> {
        self.by_project.get(project_id).map(Vec::as_slice)
    }

    /// True when no project has a secret.
    pub fn is_empty(&self) -> bool {
        self.by_project.is_empty()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut projects: Vec<&str> = self.by_project.keys().map(String::as_str).collect();
        projects.sort_unstable();
        f.debug_struct("Secrets")
            .field("projects", &projects)
            .finish_non_exhaustive()
    }
}

/// Mints a token for `project_id`, valid from `now_unix_ms` for `ttl_ms`.
///
/// Timestamps are written as RFC 3339 UTC with millisecond precision (no
/// fraction when whole seconds) and clamped to year 9999.
pub fn mint_token(secret: &[u8], project_id: &str, now_unix_ms: u64, ttl_ms: u64) -> String {
    let claims = serde_json::json!({
        "project_id": project_id,
        "issued_at": rfc3339_from_unix_ms(now_unix_ms),
        "expires_at": rfc3339_from_unix_ms(now_unix_ms.saturating_add(ttl_ms)),
    });
    let first = URL_SAFE_NO_PAD.encode(claims.to_string());
    // HMAC is defined for keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(first.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{first}.{sig}")
}

/// Verifies signature (constant time), expiry against `now_unix_ms`, and that
/// claims.project_id == expected_project.
///
/// Checks run in this order: shape and claims syntax (`Malformed`), signature
/// (`BadSignature`), expiry (`Expired`), project (`WrongProject`). The MAC is
/// checked over the first segment exactly as received; if that segment carries
/// `=` padding, a MAC over its unpadded text is accepted too.
pub fn verify_token(
    token: &str,
    secret: &[u8],
    expected_project: &str,
    now_unix_ms: u64,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let (first, sig_text) = token.split_once('.').ok_or(TokenError::Malformed)?;
    if first.is_empty() || sig_text.is_empty() || sig_text.contains('.') {
        return Err(TokenError::Malformed);
    }
    let claims_json = B64_DECODE
        .decode(first)
        .map_err(|_| TokenError::Malformed)?;
    let sig = B64_DECODE
        .decode(sig_text)
        .map_err(|_| TokenError::Malformed)?;
    let claims = parse_claims(&claims_json)?;

    if !signature_matches(secret, first, &sig) {
        return Err(TokenError::BadSignature);
    }
    if now_unix_ms >= claims.expires_at_unix_ms {
        return Err(TokenError::Expired);
    }
    if claims.project_id != expected_project {
        return Err(TokenError::WrongProject);
    }
    Ok(claims)
}

/// The whole handshake decision. Returns Ok(authenticated: bool) or Err(TokenError):
/// - Disabled: Ok(false) whatever the token.
/// - Optional: a valid token -> Ok(true); a missing/empty, malformed, badly
///   signed, expired token, wrong project, or unknown project -> Ok(false).
/// - Required: missing/empty token -> Err(Malformed); no secret for the project
///   -> Err(UnknownProject); otherwise verify_token's result mapped to Ok(true)/Err.
pub fn authenticate(
    mode: AuthMode,
    secrets: &Secrets,
    project_id: &str,
    token: Option<&str>,
    now_unix_ms: u64,
) -> Result<bool, TokenError> {
    let outcome = check(secrets, project_id, token, now_unix_ms);
    match mode {
        AuthMode::Disabled => Ok(false),
        AuthMode::Optional => Ok(outcome.is_ok()),
        AuthMode::Required => outcome.map(|()| true),
    }
}

/// Token present, project known, token valid for it.
fn check(
    secrets: &Secrets,
    project_id: &str,
    token: Option<&str>,
    now_unix_ms: u64,
) -> Result<(), TokenError> {
    let token = match token {
        Some(t) if !t.is_empty() => t,
        _ => return Err(TokenError::Malformed),
    };
    let secret = secrets.get(project_id).ok_or(TokenError::UnknownProject)?;
    verify_token(token, secret, project_id, now_unix_ms).map(|_| ())
}

/// Parses a human duration for the CLI: "90s", "15m", "1h", "2d", "500ms", or a
/// bare number of seconds. Error: a String explaining the accepted forms.
///
/// Surrounding whitespace is ignored; zero and overflowing values are refused.
pub fn parse_ttl_ms(text: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid TTL {text:?}: expected a positive whole number followed by \
             ms, s, m, h or d (e.g. \"500ms\", \"90s\", \"15m\", \"1h\", \"2d\"); \
             a bare number means seconds"
        )
    };
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(err());
    }
    let value: u64 = digits.parse().map_err(|_| err())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(err()),
    };
    match value.checked_mul(unit_ms) {
        Some(ms) if ms > 0 => Ok(ms),
        _ => Err(err()),
    }
}

/// Wire shape of the claims; unknown fields are ignored.
#[derive(serde::Deserialize)]
struct RawClaims {
    project_id: String,
    issued_at: String,
    expires_at: String,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    aud: Option<String>,
}

/// Decodes claims JSON; anything but an object with the required fields and
/// valid RFC 3339 times at or after the epoch is `Malformed`.
fn parse_claims(bytes: &[u8]) -> Result<Claims, TokenError> {
    // Going through a Map refuses non-object JSON (serde would accept arrays).
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)?;
    let raw: RawClaims = serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|_| TokenError::Malformed)?;
    Ok(Claims {
        issued_at_unix_ms: unix_ms_from_rfc3339(&raw.issued_at)?,
        expires_at_unix_ms: unix_ms_from_rfc3339(&raw.expires_at)?,
        project_id: raw.project_id,
        key_id: raw.key_id,
        aud: raw.aud,
    })
}

fn unix_ms_from_rfc3339(text: &str) -> Result<u64, TokenError> {
    let at = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TokenError::Malformed)?;
    let ms = at.unix_timestamp_nanos().div_euclid(1_000_000);
    u64::try_from(ms).map_err(|_| TokenError::Malformed)
}

fn rfc3339_from_unix_ms(ms: u64) -> String {
    let ms = ms.min(MAX_RFC3339_UNIX_MS);
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        // Unreachable after the clamp above; kept so this path cannot panic.
        .unwrap_or_else(|| String::from("9999-12-31T23:59:59.999Z"))
}

/// Constant-time MAC check of `sig` over `signed_text` (or, if that text is
/// `=`-padded, over its unpadded form).
fn signature_matches(secret: &[u8], signed_text: &str, sig: &[u8]) -> bool {
    let verify = |data: &[u8]| match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(data);
            mac.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    };
    if verify(signed_text.as_bytes()) {
        return true;
    }
    let unpadded = signed_text.trim_end_matches('=');
    unpadded.len() != signed_text.len() && verify(unpadded.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret-for-tests";
    const PROJECT: &str = "proj-1";
    const TTL: u64 = 15 * 60_000;

    /// 2026-11-25T21:00:00Z
    fn now() -> u64 {
        let at = OffsetDateTime::parse("2026-11-25T21:00:00Z", &Rfc3339).unwrap();
        u64::try_from(at.unix_timestamp()).unwrap() * 1_000
    }

    /// HMAC-SHA256 computed independently of the module's helpers.
    fn hmac_b64(secret: &[u8], data: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
        mac.update(data);
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// A correctly signed token over arbitrary claim bytes.
    fn sign_raw(secret: &[u8], claims: &[u8]) -> String {
        let first = URL_SAFE_NO_PAD.encode(claims);
        let sig = hmac_b64(secret, first.as_bytes());
        format!("{first}.{sig}")
    }

    fn secrets() -> Secrets {
        Secrets::new(HashMap::from([
            (
                PROJECT.to_string(),
                String::from_utf8(SECRET.to_vec()).unwrap(),
            ),
            ("other".to_string(), "other-secret".to_string()),
        ]))
    }

    #[test]
    fn mint_verify_round_trip() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        let claims = verify_token(&token, SECRET, PROJECT, now()).unwrap();
        assert_eq!(
            claims,
            Claims {
                project_id: PROJECT.to_string(),
                issued_at_unix_ms: now(),
                expires_at_unix_ms: now() + TTL,
                key_id: None,
                aud: None,
            }
        );
        // Still valid one ms before expiry.
        assert!(verify_token(&token, SECRET, PROJECT, now() + TTL - 1).is_ok());
    }

    #[test]
    fn minted_token_shape_and_claims_text() {
        let token = mint_token(SECRET, PROJECT, now() + 250, 60_000);
        assert!(!token.contains('='));
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'));
        assert_eq!(token.matches('.').count(), 1);
        let (first, _) = token.split_once('.').unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap();
        assert_eq!(json["project_id"], PROJECT);
        assert_eq!(json["issued_at"], "2026-11-25T21:00:00.25Z");
        assert_eq!(json["expires_at"], "2026-11-25T21:01:00.25Z");

        let whole = mint_token(SECRET, PROJECT, now(), 3_600_000);
        let (first, _) = whole.split_once('.').unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap();
        assert_eq!(json["issued_at"], "2026-11-25T21:00:00Z");
        assert_eq!(json["expires_at"], "2026-11-25T22:00:00Z");
    }

    #[test]
    fn signature_is_hmac_over_first_segment_text() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        let (first, sig) = token.split_once('.').unwrap();
        assert_eq!(sig, hmac_b64(SECRET, first.as_bytes()));
        // Not over the decoded JSON bytes.
        let decoded = URL_SAFE_NO_PAD.decode(first).unwrap();
        assert_ne!(sig, hmac_b64(SECRET, &decoded));
    }

    #[test]
    fn externally_built_token_with_extras_verifies() {
        let claims = br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z",
            "expires_at":"2026-11-25T23:00:00+02:00","key_id":"k1","aud":"rooms",
            "unknown":{"nested":[1,2,3]}}"#;
        let token = sign_raw(SECRET, claims);
        let got = verify_token(&token, SECRET, PROJECT, now() - 1).unwrap();
        assert_eq!(got.key_id.as_deref(), Some("k1"));
        assert_eq!(got.aud.as_deref(), Some("rooms"));
        assert_eq!(got.issued_at_unix_ms, now());
        // 23:00+02:00 is 21:00Z: the offset is honoured, so it expires at now().
        assert_eq!(got.expires_at_unix_ms, now());
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now()),
            Err(TokenError::Expired)
        );

        let nulls = br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z",
            "expires_at":"2026-11-25T22:00:00.9999Z","key_id":null,"aud":null}"#;
        let got = verify_token(&sign_raw(SECRET, nulls), SECRET, PROJECT, now()).unwrap();
        assert_eq!(got.key_id, None);
        assert_eq!(got.aud, None);
        // Sub-millisecond digits are dropped.
        assert_eq!(got.expires_at_unix_ms, now() + 3_600_000 + 999);
    }

    #[test]
    fn tampered_payload_rejected() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        let (_, sig) = token.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2099-01-01T00:00:00Z"}"#,
        );
        assert_eq!(
            verify_token(&format!("{forged}.{sig}"), SECRET, PROJECT, now()),
            Err(TokenError::BadSignature)
        );
        // Flipping one character of the payload text also breaks it.
        let mut bytes = token.into_bytes();
        bytes[5] = if bytes[5] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_ne!(
            verify_token(&flipped, SECRET, PROJECT, now()).map(|_| ()),
            Ok(())
        );
    }

    #[test]
    fn tampered_signature_rejected() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        let (first, sig) = token.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 1;
        let bad = format!("{first}.{}", URL_SAFE_NO_PAD.encode(&raw));
        assert_eq!(
            verify_token(&bad, SECRET, PROJECT, now()),
            Err(TokenError::BadSignature)
        );
        // Truncated MAC (valid base64, wrong length).
        let short = format!("{first}.{}", URL_SAFE_NO_PAD.encode(&raw[..16]));
        assert_eq!(
            verify_token(&short, SECRET, PROJECT, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_secret_rejected() {
        let token = mint_token(b"another secret", PROJECT, now(), TTL);
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now()),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_at_and_after_expiry() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now() + TTL),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now() + TTL + 1),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, u64::MAX),
            Err(TokenError::Expired)
        );
        // A zero TTL is expired immediately.
        let zero = mint_token(SECRET, PROJECT, now(), 0);
        assert_eq!(
            verify_token(&zero, SECRET, PROJECT, now()),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn expiry_checked_only_after_signature() {
        let token = mint_token(b"another secret", PROJECT, now(), TTL);
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now() + TTL),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn wrong_project_rejected() {
        let token = mint_token(SECRET, "other-project", now(), TTL);
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now()),
            Err(TokenError::WrongProject)
        );
    }

    #[test]
    fn padded_input_accepted() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        let (first, sig) = token.split_once('.').unwrap();
        let pad = |s: &str| format!("{s}{}", "=".repeat((4 - s.len() % 4) % 4));
        assert_ne!(first.len() % 4, 0, "minted claims must need padding here");
        assert_eq!(sig.len() % 4, 3, "32-byte MAC needs one pad char");
        let expected = verify_token(&token, SECRET, PROJECT, now()).unwrap();

        let sig_padded = format!("{first}.{}", pad(sig));
        assert_eq!(
            verify_token(&sig_padded, SECRET, PROJECT, now()),
            Ok(expected.clone())
        );
        let both_padded = format!("{}.{}", pad(first), pad(sig));
        assert_eq!(
            verify_token(&both_padded, SECRET, PROJECT, now()),
            Ok(expected.clone())
        );

        // A token whose issuer padded and signed the padded text also verifies.
        let claims = br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z"}"#;
        let first_padded = base64::engine::general_purpose::URL_SAFE.encode(claims);
        assert!(first_padded.ends_with('='), "test claims must need padding");
        let sig = base64::engine::general_purpose::URL_SAFE.encode(
            URL_SAFE_NO_PAD
                .decode(hmac_b64(SECRET, first_padded.as_bytes()))
                .unwrap(),
        );
        let foreign = format!("{first_padded}.{sig}");
        assert!(verify_token(&foreign, SECRET, PROJECT, now()).is_ok());

        // Non-canonical padding is not accepted.
        let over_padded = format!("{first}.{sig}===", sig = token.split_once('.').unwrap().1);
        assert_eq!(
            verify_token(&over_padded, SECRET, PROJECT, now()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let valid = mint_token(SECRET, PROJECT, now(), TTL);
        let (first, sig) = valid.split_once('.').unwrap();
        let cases: Vec<String> = vec![
            String::new(),
            ".".to_string(),
            "nodot".to_string(),
            first.to_string(),
            format!("{first}."),
            format!(".{sig}"),
            format!("{first}.{sig}.extra"),
            format!("{first}..{sig}"),
            "a.b.c".to_string(),
            format!("{first}!.{sig}"),
            format!("{first}.{sig}*"),
            format!("{}.{sig}", first.replace('-', "+").replace('_', "/") + "+/"),
            "%%%%.%%%%".to_string(),
            "é.é".to_string(),
            format!("{first} .{sig}"),
            // Extra base64 text after the JSON object.
            format!("{first}AAAA.{sig}"),
        ];
        for case in &cases {
            assert_eq!(
                verify_token(case, SECRET, PROJECT, now()),
                Err(TokenError::Malformed),
                "case {case:?}"
            );
        }
    }

    #[test]
    fn bad_claims_are_malformed_even_when_signed() {
        let payloads: &[&[u8]] = &[
            b"not json",
            b"",
            b"\xff\xfe",
            b"[\"proj-1\",\"2026-11-25T21:00:00Z\",\"2026-11-25T22:00:00Z\"]",
            b"\"a string\"",
            b"42",
            b"null",
            b"{}",
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z"}"#,
            br#"{"project_id":"proj-1","expires_at":"2026-11-25T22:00:00Z"}"#,
            br#"{"issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z"}"#,
            br#"{"project_id":7,"issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z"}"#,
            br#"{"project_id":"proj-1","issued_at":"yesterday","expires_at":"2026-11-25T22:00:00Z"}"#,
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25 22:00:00"}"#,
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-13-25T22:00:00Z"}"#,
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":1795640400}"#,
            br#"{"project_id":"proj-1","issued_at":"1969-12-31T23:59:59Z","expires_at":"2026-11-25T22:00:00Z"}"#,
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z","aud":5}"#,
            br#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z"} trailing"#,
        ];
        for payload in payloads {
            let token = sign_raw(SECRET, payload);
            assert_eq!(
                verify_token(&token, SECRET, PROJECT, now()),
                Err(TokenError::Malformed),
                "payload {:?}",
                String::from_utf8_lossy(payload)
            );
            // Same result unsigned.
            let unsigned = format!("{}.AAAA", URL_SAFE_NO_PAD.encode(payload));
            assert_eq!(
                verify_token(&unsigned, SECRET, PROJECT, now()),
                Err(TokenError::Malformed)
            );
        }
    }

    #[test]
    fn deeply_nested_json_does_not_panic() {
        let mut payload = String::from(r#"{"x":"#);
        payload.push_str(&"[".repeat(3000));
        let token = format!("{}.AAAA", URL_SAFE_NO_PAD.encode(&payload[..2000]));
        assert!(token.len() <= MAX_TOKEN_LEN);
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, now()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn oversized_token_is_malformed() {
        let valid = mint_token(SECRET, PROJECT, now(), TTL);
        let (first, sig) = valid.split_once('.').unwrap();
        let huge = format!("{first}{}.{sig}", "A".repeat(100 * 1024));
        assert_eq!(
            verify_token(&huge, SECRET, PROJECT, now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            verify_token(&"x".repeat(100 * 1024), SECRET, PROJECT, now()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn size_limit_boundary() {
        // 3039 claim bytes -> 4052 base64 chars; + '.' + 43 MAC chars = 4096.
        let head = r#"{"project_id":"proj-1","issued_at":"2026-11-25T21:00:00Z","expires_at":"2026-11-25T22:00:00Z","filler":""#;
        let fill = 3039 - head.len() - 2;
        let claims = format!("{head}{}\"}}", "z".repeat(fill));
        assert_eq!(claims.len(), 3039);
        let token = sign_raw(SECRET, claims.as_bytes());
        assert_eq!(token.len(), MAX_TOKEN_LEN);
        assert!(verify_token(&token, SECRET, PROJECT, now()).is_ok());
        // The same token with its MAC padded is one byte over the limit.
        let padded = format!("{token}=");
        assert_eq!(padded.len(), MAX_TOKEN_LEN + 1);
        assert_eq!(
            verify_token(&padded, SECRET, PROJECT, now()),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn every_truncation_and_byte_flip_fails_without_panic() {
        let token = mint_token(SECRET, PROJECT, now(), TTL);
        for end in 0..token.len() {
            let cut = token.get(..end).unwrap();
            assert!(
                verify_token(cut, SECRET, PROJECT, now()).is_err(),
                "cut {end}"
            );
        }
        let alphabet = b"AZaz09-_.=+/ ";
        for i in 0..token.len() {
            for &c in alphabet {
                let mut bytes = token.clone().into_bytes();
                if bytes[i] == c {
                    continue;
                }
                bytes[i] = c;
                let mutated = String::from_utf8(bytes).unwrap();
                // A flip in the final MAC char's unused low bits is rejected as
                // non-canonical base64, never accepted.
                assert!(
                    verify_token(&mutated, SECRET, PROJECT, now()).is_err(),
                    "flip {i} -> {}",
                    c as char
                );
            }
        }
    }

    #[test]
    fn extreme_mint_inputs_do_not_panic() {
        let token = mint_token(SECRET, PROJECT, u64::MAX, u64::MAX);
        let (first, _) = token.split_once('.').unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap();
        assert_eq!(json["issued_at"], "9999-12-31T23:59:59.999Z");
        assert_eq!(json["expires_at"], "9999-12-31T23:59:59.999Z");
        assert_eq!(
            verify_token(&token, SECRET, PROJECT, u64::MAX),
            Err(TokenError::Expired)
        );
        let far = verify_token(&token, SECRET, PROJECT, 0).unwrap();
        assert_eq!(far.expires_at_unix_ms, MAX_RFC3339_UNIX_MS);

        // Odd project ids and an empty secret still round-trip.
        let odd = "quo\"te\\ \u{1F600} \n";
        let token = mint_token(b"", odd, 0, 1_000);
        assert_eq!(verify_token(&token, b"", odd, 0).unwrap().project_id, odd);
    }

    #[test]
    fn authenticate_disabled_is_always_false() {
        let s = secrets();
        let valid = mint_token(SECRET, PROJECT, now(), TTL);
        for token in [None, Some(""), Some("garbage"), Some(valid.as_str())] {
            assert_eq!(
                authenticate(AuthMode::Disabled, &s, PROJECT, token, now()),
                Ok(false)
            );
            assert_eq!(
                authenticate(AuthMode::Disabled, &s, "nobody", token, now()),
                Ok(false)
            );
        }
    }

    #[test]
    fn authenticate_optional() {
        let s = secrets();
        let valid = mint_token(SECRET, PROJECT, now(), TTL);
        let bad_sig = mint_token(b"wrong", PROJECT, now(), TTL);
        let for_other = mint_token(b"other-secret", "other", now(), TTL);
        let unknown = mint_token(SECRET, "nobody", now(), TTL);
        let m = AuthMode::Optional;
        assert_eq!(authenticate(m, &s, PROJECT, Some(&valid), now()), Ok(true));
        assert_eq!(authenticate(m, &s, PROJECT, None, now()), Ok(false));
        assert_eq!(authenticate(m, &s, PROJECT, Some(""), now()), Ok(false));
        assert_eq!(authenticate(m, &s, PROJECT, Some("a.b"), now()), Ok(false));
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&bad_sig), now()),
            Ok(false)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&valid), now() + TTL),
            Ok(false)
        );
        // Signed with proj-1's secret, but names another project.
        let wrong_project = mint_token(SECRET, "other", now(), TTL);
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&wrong_project), now()),
            Ok(false)
        );
        assert_eq!(
            authenticate(m, &s, "other", Some(&for_other), now()),
            Ok(true)
        );
        assert_eq!(
            authenticate(m, &s, "nobody", Some(&unknown), now()),
            Ok(false)
        );
    }

    #[test]
    fn authenticate_required() {
        let s = secrets();
        let valid = mint_token(SECRET, PROJECT, now(), TTL);
        let bad_sig = mint_token(b"wrong", PROJECT, now(), TTL);
        let unknown = mint_token(SECRET, "nobody", now(), TTL);
        let wrong_project = mint_token(SECRET, "other", now(), TTL);
        let m = AuthMode::Required;
        assert_eq!(authenticate(m, &s, PROJECT, Some(&valid), now()), Ok(true));
        assert_eq!(
            authenticate(m, &s, PROJECT, None, now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(""), now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some("a.b.c"), now()),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&bad_sig), now()),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&valid), now() + TTL),
            Err(TokenError::Expired)
        );
        assert_eq!(
            authenticate(m, &s, PROJECT, Some(&wrong_project), now()),
            Err(TokenError::WrongProject)
        );
        assert_eq!(
            authenticate(m, &s, "nobody", Some(&unknown), now()),
            Err(TokenError::UnknownProject)
        );
        // Missing token wins over unknown project.
        assert_eq!(
            authenticate(m, &s, "nobody", None, now()),
            Err(TokenError::Malformed)
        );
        // With no secrets at all, nothing authenticates.
        assert_eq!(
            authenticate(m, &Secrets::default(), PROJECT, Some(&valid), now()),
            Err(TokenError::UnknownProject)
        );
    }

    #[test]
    fn secrets_lookup_and_redacted_debug() {
        let s = secrets();
        assert!(!s.is_empty());
        assert_eq!(s.get(PROJECT), Some(SECRET));
        assert_eq!(s.get("nobody"), None);
        assert!(Secrets::default().is_empty());
        let dbg = format!("{s:?}");
        assert!(dbg.contains(PROJECT), "{dbg}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        assert!(!dbg.contains("other-secret"), "{dbg}");
        // Empty secrets count as absent.
        let blank = Secrets::new(HashMap::from([("p".to_string(), String::new())]));
        assert!(blank.is_empty());
        assert_eq!(blank.get("p"), None);
    }

    #[test]
    fn auth_mode_default_display_and_deserialize() {
        assert_eq!(AuthMode::default(), AuthMode::Optional);
        assert_eq!(AuthMode::Required.to_string(), "required");
        assert_eq!(AuthMode::Optional.to_string(), "optional");
        assert_eq!(AuthMode::Disabled.to_string(), "disabled");
        for mode in [AuthMode::Required, AuthMode::Optional, AuthMode::Disabled] {
            let parsed: AuthMode = serde_json::from_str(&format!("\"{mode}\"")).unwrap();
            assert_eq!(parsed, mode);
        }
        assert!(serde_json::from_str::<AuthMode>("\"Required\"").is_err());
        assert!(serde_json::from_str::<AuthMode>("\"on\"").is_err());
    }

    #[test]
    fn token_error_reasons() {
        assert_eq!(TokenError::Expired.reason(), "token expired");
        assert_eq!(TokenError::Expired.to_string(), "token expired");
        let all = [
            TokenError::Malformed,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::WrongProject,
            TokenError::UnknownProject,
        ];
        let mut reasons: Vec<&str> = all.iter().map(|e| e.reason()).collect();
        assert!(reasons.iter().all(|r| !r.is_empty()));
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len(), "reasons must be distinct");
        let boxed: Box<dyn std::error::Error> = Box::new(TokenError::WrongProject);
        assert_eq!(boxed.to_string(), TokenError::WrongProject.reason());
    }

    #[test]
    fn parse_ttl_accepts_documented_forms() {
        assert_eq!(parse_ttl_ms("90s"), Ok(90_000));
        assert_eq!(parse_ttl_ms("15m"), Ok(900_000));
        assert_eq!(parse_ttl_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ttl_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_ttl_ms("500ms"), Ok(500));
        assert_eq!(parse_ttl_ms("45"), Ok(45_000));
        assert_eq!(parse_ttl_ms(" 10m "), Ok(600_000));
        assert_eq!(parse_ttl_ms("007s"), Ok(7_000));
    }

    #[test]
    fn parse_ttl_rejects_everything_else() {
        for bad in [
            "", " ", "s", "ms", "-5s", "+5s", "1.5h", "10 m", "10M", "10sec", "1h30m", "abc", "0",
            "0s", "0ms", "5w", "１s",
        ] {
            let err = parse_ttl_ms(bad).expect_err(bad);
            assert!(err.contains("ms, s, m, h or d"), "{err}");
        }
        // Overflow is an error, not a wrap or panic.
        assert!(parse_ttl_ms("18446744073709551615d").is_err());
        assert!(parse_ttl_ms("99999999999999999999999").is_err());
        assert_eq!(parse_ttl_ms("18446744073709551615ms"), Ok(u64::MAX));
    }
}
