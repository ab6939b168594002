//! Who a cloudlink client is: its `instance_id` (`<ULID>_<ugi>`, a valid PeerJS id), and
//! what `INIT` proves — a guest's username, or an HS512 JWT's claims (checked against the
//! core's clock, not the system's).

use jsonwebtoken::{decode, Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde_json::Value;

/// Longest `ugi` in bytes (`<ULID>_<ugi>` must stay a usable PeerJS id).
pub const UGI_BYTES_MAX: usize = 128;
/// A username is 1 to this many characters (after trimming).
pub const USERNAME_CHARS_MAX: usize = 32;

/// The page's `ugi` rule: ≤ 128 bytes of `^[A-Za-z0-9]+([_-][A-Za-z0-9]+)*$`, so that
/// `<ULID>_<ugi>` matches PeerJS's id rule.
pub fn valid_ugi(ugi: &str) -> bool {
    let bytes = ugi.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= UGI_BYTES_MAX
        && bytes
            .split(|&b| b == b'_' || b == b'-')
            .all(|part| !part.is_empty() && part.iter().all(u8::is_ascii_alphanumeric))
}

/// A fresh ULID (Crockford base32, 26 characters) at `unix_ms`, its randomness from `rng`.
pub fn ulid(rng: &mut impl RngCore, unix_ms: u64) -> String {
    let mut random = [0u8; 16];
    rng.fill_bytes(&mut random);
    ulid::Ulid::from_parts(unix_ms, u128::from_le_bytes(random)).to_string()
}

/// A guest's username: 1 to 32 printable characters once trimmed.
pub fn guest_username(raw: Option<&str>) -> Result<String, &'static str> {
    let name = raw.map(str::trim).unwrap_or("");
    let chars = name.chars().count();
    if chars == 0 || chars > USERNAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err("username must be 1 to 32 printable characters");
    }
    Ok(name.to_string())
}

/// What a valid token says about its holder.
#[derive(Debug, PartialEq, Eq)]
pub struct TokenClaims {
    /// From the claim `ulid` (as the reference issues it), else `user_id`, else `sub`.
    pub user_id: String,
    /// From the claim `username`, when it has one.
    pub username: Option<String>,
}

/// Checks an HS512 JWT signed with `secret`, carrying `exp` (in the future at `now_s`) and
/// a user id; `nbf`, when present, must have passed.
pub fn verify_token(token: &str, secret: &[u8], now_s: u64) -> Result<TokenClaims, String> {
    let mut validation = Validation::new(Algorithm::HS512);
    // Time is the core's, not the system clock jsonwebtoken would read.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    let data = decode::<Value>(token, &DecodingKey::from_secret(secret), &validation)
        .map_err(|e| format!("invalid token ({e})"))?;
    let claims = data.claims;
    let time = |key: &str| claims.get(key).and_then(Value::as_f64);
    match time("exp") {
        None => return Err("invalid token (no exp claim)".into()),
        Some(exp) if exp <= now_s as f64 => return Err("token expired".into()),
        Some(_) => {}
    }
    if time("nbf").is_some_and(|nbf| nbf > now_s as f64) {
        return Err("token not yet valid".into());
    }
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let user_id = text("ulid")
        .or_else(|| text("user_id"))
        .or_else(|| text("sub"))
        .ok_or("invalid token (no ulid, user_id or sub claim)")?;
    Ok(TokenClaims {
        user_id,
        username: text("username"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use rand::SeedableRng;
    use serde_json::json;

    fn mint(claims: Value, alg: Algorithm, secret: &[u8]) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn the_ugi_rule() {
        for ok in [
            "a",
            "Game1",
            "a_b-c",
            "x".repeat(128).as_str(),
            "01HXYZ_abc-9",
        ] {
            assert!(valid_ugi(ok), "{ok}");
        }
        for bad in [
            "",
            "_a",
            "a_",
            "a__b",
            "a-_b",
            "a b",
            "a/b",
            "ä",
            "x".repeat(129).as_str(),
        ] {
            assert!(!valid_ugi(bad), "{bad}");
        }
    }

    #[test]
    fn ulids_are_26_crockford_characters_in_time_order() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = ulid(&mut rng, 1_700_000_000_000);
        let b = ulid(&mut rng, 1_700_000_000_001);
        assert_eq!(a.len(), 26);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        assert!(a < b, "lexicographic order follows time");
    }

    #[test]
    fn guest_usernames_are_trimmed_printable_and_short() {
        assert_eq!(guest_username(Some("  Ann  ")).unwrap(), "Ann");
        assert_eq!(
            guest_username(Some(&"é".repeat(32)))
                .unwrap()
                .chars()
                .count(),
            32
        );
        for bad in [
            None,
            Some(""),
            Some("   "),
            Some("a\nb"),
            Some(&*"x".repeat(33)),
        ] {
            assert!(guest_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_hs512_with_exp_and_a_user_id_by_the_pages_precedence() {
        let s = b"secret";
        let now = 1_700_000_000;
        let ok = |claims| verify_token(&mint(claims, Algorithm::HS512, s), s, now);
        let c = ok(json!({"ulid":"U1","user_id":"u","sub":"s","username":"Ann","exp":now+60}));
        assert_eq!(
            c.unwrap(),
            TokenClaims {
                user_id: "U1".into(),
                username: Some("Ann".into())
            }
        );
        assert_eq!(
            ok(json!({"user_id":"u","sub":"s","exp":now+60}))
                .unwrap()
                .user_id,
            "u"
        );
        assert_eq!(ok(json!({"sub":"s","exp":now+60})).unwrap().user_id, "s");
        assert!(ok(json!({"exp":now+60})).is_err(), "no user id");
        assert!(ok(json!({"sub":"s"})).is_err(), "no exp");
        assert!(ok(json!({"sub":"s","exp":now}))
            .unwrap_err()
            .contains("expired"));
        assert!(ok(json!({"sub":"s","exp":now+60,"nbf":now+30})).is_err());
        let other_key = mint(json!({"sub":"s","exp":now+60}), Algorithm::HS512, b"other");
        assert!(verify_token(&other_key, s, now).is_err(), "another secret");
        let hs256 = mint(json!({"sub":"s","exp":now+60}), Algorithm::HS256, s);
        assert!(verify_token(&hs256, s, now).is_err(), "only HS512");
        assert!(verify_token("let me in", s, now).is_err());
    }
}
