//! The controller page phones open to join a party: `GET /play` (the page reads an
//! optional `?code=ABCD` itself), and its scripts and style sheet. Owns the routes and
//! their headers; the files are `src/pairkit/play/`, built into the binary (nothing to
//! deploy, no CDN: a LAN without internet access works). What the page does is its own
//! JavaScript's (`logic.mjs` is tested under Node, the whole page in Chromium).
//!
//! ```text
//!  GET /play, /play/            ─► index.html  no-cache (a new build's page is seen at once)
//!  GET /play/<version>/<file>   ─► the file    cached for a year, immutable
//!  anything else under /play    ─► 404
//! ```
//!
//! `<version>` is a hash of every asset, computed at compile time: the page names its
//! files with it, so a browser never mixes an old build's cached script with a new page,
//! and no revalidation is needed (the engine's plain `GET` carries no request headers, so
//! `ETag` / `304` are not an option). The page is the only response that is not cached.

use crate::core::{HttpGet, HttpReply};

/// Where the page is served.
pub const PATH: &str = "/play";

/// Allows the page's own origin for everything it loads, and for its WebSocket (CSP 3:
/// `'self'` in `connect-src` matches `ws:`/`wss:` on the page's host and port); images
/// may also be `data:` URLs (a flow's `image` widget inlines its picture). No inline
/// script or style, no framing, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The page's headers: always fetched again (`no-cache`: revalidate, and with no
/// validator that is a fresh copy, a few KiB), the policy, and no MIME sniffing.
const PAGE_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "no-cache"),
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
];

/// A versioned asset's headers: its URL changes with its bytes, so it may be kept.
const ASSET_HEADERS: &[(&str, &str)] = &[
    ("Cache-Control", "public, max-age=31536000, immutable"),
    ("X-Content-Type-Options", "nosniff"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
];

/// The page, with `{{version}}` where its assets' URLs carry the version.
const INDEX: &str = include_str!("play/index.html");

/// A file the page loads.
struct Asset {
    /// Its name under `/play/<version>/`.
    name: &'static str,
    /// `Content-Type` (a module script must be served as JavaScript).
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("play/app.js"),
    },
    Asset {
        name: "logic.mjs",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("play/logic.mjs"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("play/app.css"),
    },
];

/// FNV-1a (64 bits) of every asset in order: changes whenever one does. Not a security
/// hash; it only has to tell builds apart.
const fn assets_hash(assets: &[Asset]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < assets.len() {
        let body = assets[i].body;
        let mut j = 0;
        while j < body.len() {
            hash ^= body[j] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            j += 1;
        }
        i += 1;
    }
    hash
}

/// The assets' version: 16 hex digits in their URLs.
pub const VERSION: u64 = assets_hash(&ASSETS);

/// The version as it appears in a URL.
pub fn version() -> String {
    format!("{VERSION:016x}")
}

/// The page or one of its assets, or `None` (a 404) for any other path.
pub fn http_get(get: &HttpGet<'_>) -> Option<HttpReply> {
    let rest = get.path.strip_prefix(PATH)?;
    if rest.is_empty() || rest == "/" {
        return Some(HttpReply {
            status: 200,
            reason: "OK",
            content_type: "text/html; charset=utf-8",
            headers: PAGE_HEADERS,
            body: INDEX.replace("{{version}}", &version()).into_bytes(),
        });
    }
    let (version, name) = rest.strip_prefix('/')?.split_once('/')?;
    if version != self::version() {
        return None;
    }
    let asset = ASSETS.iter().find(|a| a.name == name)?;
    Some(HttpReply {
        status: 200,
        reason: "OK",
        content_type: asset.content_type,
        headers: ASSET_HEADERS,
        body: asset.body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(target: &str) -> Option<HttpReply> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        http_get(&HttpGet { path, query })
    }

    fn header(reply: &HttpReply, name: &str) -> Option<&'static str> {
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    #[test]
    fn the_page_is_served_with_or_without_a_code_and_never_cached() {
        for target in ["/play", "/play/", "/play?code=ABCD", "/play?code=k7pq&x=1"] {
            let page = get(target).unwrap_or_else(|| panic!("{target}"));
            assert_eq!(page.status, 200, "{target}");
            assert_eq!(page.content_type, "text/html; charset=utf-8");
            assert_eq!(header(&page, "Cache-Control"), Some("no-cache"));
            assert_eq!(header(&page, "Content-Security-Policy"), Some(CSP));
            assert_eq!(header(&page, "X-Content-Type-Options"), Some("nosniff"));
            let html = String::from_utf8(page.body).unwrap();
            assert!(html.starts_with("<!doctype html>"), "{target}");
            assert!(!html.contains("{{"), "every placeholder is filled");
            assert!(html.contains(&format!("/play/{}/app.js", version())));
            assert!(html.contains(&format!("/play/{}/app.css", version())));
        }
    }

    #[test]
    fn each_asset_has_its_type_and_is_cached_under_its_version() {
        let v = version();
        for (name, ty) in [
            ("app.js", "text/javascript; charset=utf-8"),
            ("logic.mjs", "text/javascript; charset=utf-8"),
            ("app.css", "text/css; charset=utf-8"),
        ] {
            let reply = get(&format!("/play/{v}/{name}")).expect(name);
            assert_eq!((reply.status, reply.content_type), (200, ty), "{name}");
            assert_eq!(
                header(&reply, "Cache-Control"),
                Some("public, max-age=31536000, immutable")
            );
            assert_eq!(header(&reply, "X-Content-Type-Options"), Some("nosniff"));
            assert!(!reply.body.is_empty());
        }
    }

    #[test]
    fn other_paths_and_other_versions_are_not_found() {
        let v = version();
        let old = format!("{:016x}", VERSION ^ 1);
        for target in [
            "/playx".to_string(),
            "/play/app.js".to_string(),
            format!("/play/{old}/app.js"),
            format!("/play/{v}/nope.js"),
            format!("/play/{v}/app.js/x"),
            format!("/play/{}/app.js", &v[1..]),
            format!("/play/0{v}/app.js"),
            "/pla".to_string(),
            "/".to_string(),
        ] {
            assert!(get(&target).is_none(), "{target}");
        }
    }

    #[test]
    fn the_policy_allows_only_the_pages_own_origin() {
        let directives: Vec<&str> = CSP.split(';').map(str::trim).collect();
        assert!(directives.contains(&"default-src 'none'"));
        for d in ["script-src", "style-src", "connect-src"] {
            assert!(directives.contains(&&*format!("{d} 'self'")), "{d}");
        }
        assert!(!CSP.contains("unsafe") && !CSP.contains('*') && !CSP.contains("http"));
    }

    #[test]
    fn the_version_follows_the_bytes() {
        let one = [Asset {
            name: "a",
            content_type: "",
            body: b"x",
        }];
        let two = [Asset {
            name: "a",
            content_type: "",
            body: b"y",
        }];
        assert_ne!(assets_hash(&one), assets_hash(&two));
        assert_eq!(version().len(), 16);
    }
}
