//! Tokens: minting, verifying, claims, modes, TTL parsing.

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
