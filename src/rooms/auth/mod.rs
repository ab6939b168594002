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
mod tests;
