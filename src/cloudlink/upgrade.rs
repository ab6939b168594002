//! Whether a signaling upgrade may start: a valid `ugi` (else 400), an allowed `Origin`
//! (else 403), and room in the address's per-minute bucket (else 429).

use std::sync::Arc;

use super::identity::valid_ugi;
use crate::config::CloudlinkConfig;
use crate::core::iprate::IpRate;
use crate::core::{HttpRefusal, Upgrade};

const BAD_UGI: HttpRefusal = HttpRefusal {
    status: 400,
    reason: "Bad Request",
    body: "a valid ugi query parameter is required: letters and digits, parts joined by single _ or -, at most 128 bytes\n",
};

const FORBIDDEN_ORIGIN: HttpRefusal = HttpRefusal {
    status: 403,
    reason: "Forbidden",
    body: "this origin may not connect (cloudlink.allowed_origins, cloudlink.require_origin)\n",
};

const TOO_MANY: HttpRefusal = HttpRefusal {
    status: 429,
    reason: "Too Many Requests",
    body: "too many new connections from this address (cloudlink.conns_per_ip_per_min)\n",
};

/// Does `origin` match `pattern`, where `*` stands for any run of characters?
pub fn origin_matches(pattern: &str, origin: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = origin.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The checks of a signaling upgrade, in the page's order; its game and `?token=`.
pub fn check(
    cfg: &CloudlinkConfig,
    ip_rate: Option<&IpRate>,
    upgrade: &Upgrade<'_>,
    unix_ms: u64,
) -> Result<(Arc<str>, Option<Box<str>>), HttpRefusal> {
    let ugi = upgrade
        .param("ugi")
        .filter(|u| valid_ugi(u))
        .ok_or(BAD_UGI)?;
    let allowed = match upgrade.origin {
        None => !cfg.require_origin,
        Some(origin) => {
            cfg.allowed_origins.is_empty()
                || cfg
                    .allowed_origins
                    .iter()
                    .any(|p| origin_matches(p, origin))
        }
    };
    if !allowed {
        return Err(FORBIDDEN_ORIGIN);
    }
    if let (Some(rate), Some(ip)) = (ip_rate, upgrade.peer) {
        if !rate.take(ip, unix_ms) {
            return Err(TOO_MANY);
        }
    }
    let token = upgrade.param("token").filter(|t| !t.is_empty());
    Ok((Arc::from(ugi), token.map(Box::from)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_wildcards() {
        let p = "https://*.turbowarp.org";
        assert!(origin_matches(p, "https://www.turbowarp.org"));
        assert!(origin_matches(p, "https://a.b.turbowarp.org"));
        assert!(!origin_matches(p, "https://turbowarp.org"));
        assert!(!origin_matches(p, "https://evil.org/x.turbowarp.org.evil"));
        assert!(!origin_matches(p, "http://www.turbowarp.org"));
        assert!(origin_matches(
            "https://penguinmod.com",
            "https://penguinmod.com"
        ));
        assert!(!origin_matches(
            "https://penguinmod.com",
            "https://penguinmod.com.evil"
        ));
        assert!(origin_matches("*", "anything"));
        assert!(origin_matches(
            "http://localhost:*",
            "http://localhost:8000"
        ));
        assert!(origin_matches("a*b*c", "abc") && !origin_matches("a*b*c", "acb"));
    }

    fn up<'a>(query: &'a str, origin: Option<&'a str>) -> Upgrade<'a> {
        Upgrade {
            path: "/cl5",
            query,
            origin,
            peer: Some("192.0.2.9".parse().unwrap()),
        }
    }

    #[test]
    fn ugi_then_origin_then_the_address_bucket() {
        let mut cfg = CloudlinkConfig::default();
        let rate = IpRate::new(2);
        let (ugi, token) = check(&cfg, Some(&rate), &up("ugi=game-1&token=t", None), 0).unwrap();
        assert_eq!(&*ugi, "game-1");
        assert_eq!(token.as_deref(), Some("t"));
        assert_eq!(check(&cfg, None, &up("token=t", None), 0), Err(BAD_UGI));
        assert_eq!(check(&cfg, None, &up("ugi=a__b", None), 0), Err(BAD_UGI));
        cfg.allowed_origins = vec!["https://*.turbowarp.org".into()];
        let turbowarp = Some("https://studio.turbowarp.org");
        assert!(check(&cfg, None, &up("ugi=g", turbowarp), 0).is_ok());
        assert_eq!(
            check(&cfg, None, &up("ugi=g", Some("https://x.org")), 0),
            Err(FORBIDDEN_ORIGIN)
        );
        assert!(
            check(&cfg, None, &up("ugi=g", None), 0).is_ok(),
            "no Origin: a non-browser client"
        );
        cfg.require_origin = true;
        assert_eq!(
            check(&cfg, None, &up("ugi=g", None), 0),
            Err(FORBIDDEN_ORIGIN)
        );
        assert!(check(&cfg, Some(&rate), &up("ugi=g", turbowarp), 0).is_ok());
        assert_eq!(
            check(&cfg, Some(&rate), &up("ugi=g", turbowarp), 0),
            Err(TOO_MANY)
        );
        assert_eq!(
            check(&cfg, Some(&rate), &up("ugi=bad_", turbowarp), 0),
            Err(BAD_UGI),
            "a refused ugi takes no token"
        );
    }
}
