//! The cloudlink upgrade checks (`protocols/cloudlink.md`, "Transport") on arbitrary path,
//! query and Origin: `cloudlink::upgrade::check` under several configurations (Origin
//! allow-lists with wildcards, `require_origin`, a per-address bucket), the broker's
//! `peerjs::route`, `Upgrade::param`, and a whole shard's routing of the same upgrade.
//!
//! Properties, each checked against rules written out here (not huddle's): `param` is the
//! first value of `application/x-www-form-urlencoded` parsing; a refusal is 400, 403 or
//! 429 only; 400 exactly when the `ugi` is missing or breaks
//! `^[A-Za-z0-9]+([_-][A-Za-z0-9]+)*$` or is over 128 bytes; else 403 exactly when the
//! Origin is not allowed (no Origin: allowed unless `require_origin`; an empty list allows
//! every Origin; `*` matches any run of characters); else 429 exactly when the address's
//! bucket (its size per minute, full again a minute later) is empty. An accepted upgrade
//! gives that `ugi` and the non-empty `token`, and `<ULID>_<ugi>` is a PeerJS id; the
//! shard routes `/cl5` and `/` with a `ugi` the same way and gives the connection an
//! instance id `<ULID>_<ugi>`. The broker's route carries `key`, `id` and `token` when
//! non-empty.
//!
//! Input: `[cfg][unix ms: u64 LE]` then path, query and Origin separated by NUL bytes (no
//! third part: no Origin). `cfg` bits 0–2: the configuration; bit 3: no Origin anyway;
//! bit 4: the request has a peer address; bits 5–7: the bucket size (0: no bucket).

use std::borrow::Cow;

use super::input::peerjs_id_ok;
use crate::cloudlink::{peerjs, upgrade};
use crate::config::{CloudlinkConfig, Config};
use crate::core::iprate::IpRate;
use crate::core::{ShardCore, Upgrade};
use crate::dialects::{Dialects, Route};

/// The page's `ugi` rule, written out.
fn ugi_ok(ugi: &str) -> bool {
    let b = ugi.as_bytes();
    if b.is_empty() || b.len() > 128 {
        return false;
    }
    // ^[A-Za-z0-9]+([_-][A-Za-z0-9]+)*$ as a two-state scan.
    let mut after_sep = true;
    for &c in b {
        if c.is_ascii_alphanumeric() {
            after_sep = false;
        } else if (c == b'_' || c == b'-') && !after_sep {
            after_sep = true;
        } else {
            return false;
        }
    }
    !after_sep
}

/// Whole-string wildcard match, `*` any run of characters (dynamic programming).
fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let mut row = vec![false; s.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; s.len() + 1];
        if pc == '*' {
            let mut any = false;
            for j in 0..=s.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 0..s.len() {
                next[j + 1] = row[j] && s[j] == pc;
            }
        }
        row = next;
    }
    row[s.len()]
}

/// `application/x-www-form-urlencoded` parsing, first value of `name`.
fn form_param(query: &str, name: &str) -> Option<String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() && hex(b[i + 1]).is_some() && hex(b[i + 2]).is_some() => {
                    out.push((hex(b[i + 1]).unwrap() * 16 + hex(b[i + 2]).unwrap()) as u8);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(k, _)| decode(k) == name)
        .map(|(_, v)| decode(v))
}

const CONFIGS: [(&[&str], bool); 5] = [
    (&[], false),
    (
        &[
            "https://*.turbowarp.org",
            "http://localhost:*",
            "https://penguinmod.com",
        ],
        false,
    ),
    (&["https://*.turbowarp.org", "https://penguinmod.com"], true),
    (&["*"], true),
    (&["a*b*c", "**", "*x*y", ""], false),
];

fn instance_id_ok(iid: &str, ugi: &str) -> bool {
    let ulid = |s: &str| {
        s.len() == 26
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_uppercase() && !b"ILOU".contains(&b)))
    };
    peerjs_id_ok(iid)
        && iid.len() > 27
        && ulid(&iid[..26])
        && iid.as_bytes()[26] == b'_'
        && &iid[27..] == ugi
}

/// The `upgrade_query` fuzz target's properties on one input (the module's documentation lists
/// them): panics on the first one violated.
pub fn check_upgrade_query(data: &[u8]) {
    if data.len() < 9 {
        return;
    }
    let cfg_byte = data[0];
    let unix_ms = u64::from_le_bytes(data[1..9].try_into().unwrap());
    let mut parts = data[9..].splitn(3, |&b| b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or(&[]));
    let query = String::from_utf8_lossy(parts.next().unwrap_or(&[]));
    let origin: Option<Cow<'_, str>> = parts
        .next()
        .filter(|_| cfg_byte & 8 == 0)
        .map(String::from_utf8_lossy);
    let (patterns, require_origin) = CONFIGS[usize::from(cfg_byte & 7) % CONFIGS.len()];
    let cfg = CloudlinkConfig {
        allowed_origins: patterns.iter().map(|p| p.to_string()).collect(),
        require_origin,
        ..CloudlinkConfig::default()
    };
    let peer = (cfg_byte & 0x10 != 0).then(|| "192.0.2.7".parse().unwrap());
    let per_min = u32::from(cfg_byte >> 5);
    let rate = (per_min > 0).then(|| IpRate::new(per_min));
    let up = Upgrade {
        path: &path,
        query: &query,
        origin: origin.as_deref(),
        peer,
    };

    // `param` is form-urlencoded parsing.
    for name in ["ugi", "token", "id", "key"] {
        assert_eq!(
            up.param(name),
            form_param(&query, name),
            "param {name} of {query:?}"
        );
    }
    let ugi = form_param(&query, "ugi");
    let ugi_valid = ugi.as_deref().is_some_and(ugi_ok);
    let origin_allowed = match origin.as_deref() {
        None => !require_origin,
        Some(o) => patterns.is_empty() || patterns.iter().any(|p| glob(p, o)),
    };
    let token = form_param(&query, "token").filter(|t| !t.is_empty());

    // A few upgrades from the address now, then a minute later: the bucket's size of them
    // pass (when everything else does), and it is full again a minute on.
    let tries = if rate.is_some() && peer.is_some() {
        per_min + 2
    } else {
        1
    };
    for minute in 0..2u64 {
        for i in 0..tries {
            let at = unix_ms.wrapping_add(minute * 60_000);
            let result = upgrade::check(&cfg, rate.as_ref(), &up, at);
            let want = if !ugi_valid {
                Err(400)
            } else if !origin_allowed {
                Err(403)
            } else if rate.is_some() && peer.is_some() && i >= per_min {
                Err(429)
            } else {
                Ok(())
            };
            match (&result, want) {
                (Ok((got_ugi, got_token)), Ok(())) => {
                    let ugi = ugi.as_deref().unwrap();
                    assert_eq!(&**got_ugi, ugi);
                    assert!(ugi_ok(got_ugi) && got_ugi.len() <= 128, "{got_ugi:?}");
                    let iid = format!("01ARZ3NDEKTSV4RRFFQ69G5FAV_{got_ugi}");
                    assert!(peerjs_id_ok(&iid), "{iid:?} is no PeerJS id");
                    assert_eq!(got_token.as_deref(), token.as_deref(), "token");
                }
                (Err(r), Err(status)) => {
                    assert!([400, 403, 429].contains(&r.status), "refused {}", r.status);
                    assert_eq!(r.status, status, "{path:?} {query:?} {origin:?}");
                }
                (got, want) => panic!(
                    "{path:?} {query:?} {origin:?} (config {}): {:?}, the page says {want:?}",
                    cfg_byte & 7,
                    got.as_ref().map(|_| ()).map_err(|r| r.status)
                ),
            }
            // With an empty allow-list and no require_origin, Origin never refuses.
            if patterns.is_empty() && !require_origin {
                assert!(!matches!(&result, Err(r) if r.status == 403));
            }
        }
        if tries == 1 {
            break;
        }
    }

    // The broker's route: its parameters when non-empty.
    let route = peerjs::route(&up);
    let nonempty = |n| form_param(&query, n).filter(|v| !v.is_empty());
    assert_eq!(route.key.as_deref(), nonempty("key").as_deref());
    assert_eq!(route.id.as_deref(), nonempty("id").as_deref());
    assert_eq!(route.token.as_deref(), nonempty("token").as_deref());

    // A whole shard routes `/cl5` and `/` with a ugi as cloudlink, by the same checks (no
    // peer address: the shared bucket is not this target's).
    let signaling = path == "/cl5" || (path == "/" && ugi.is_some());
    if signaling {
        let config = Config {
            cloudlink: cfg.clone(),
            ..Config::default()
        };
        let mut core: ShardCore<Dialects> = ShardCore::alone(config);
        let anon = Upgrade { peer: None, ..up };
        match core.route(&anon, 1) {
            Ok(routed) => {
                let Route::Cloudlink(s) = routed.route else {
                    panic!("{path:?} {query:?}: not routed to cloudlink");
                };
                assert!(ugi_valid && origin_allowed, "{path:?} {query:?} {origin:?}");
                assert!(instance_id_ok(&s.instance_id, &s.ugi), "{}", s.instance_id);
                assert_eq!(Some(&*s.ugi), ugi.as_deref());
            }
            Err(r) => {
                let want = if !ugi_valid { 400 } else { 403 };
                assert!(!(ugi_valid && origin_allowed), "refused {}", r.status);
                assert_eq!(r.status, want, "{path:?} {query:?} {origin:?}");
            }
        }
    }
}
