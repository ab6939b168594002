//! The pairkit dialect's controller page (`GET /play`) on a simulated server: every shard
//! serves it and its assets, the dialects' other plain routes are untouched.

use huddle::config::Config;
use huddle::pairkit::play;
use huddle::sim::Sim;

#[test]
fn every_shard_serves_the_page_with_a_code_and_the_assets_it_names() {
    let mut sim = Sim::new(2, Config::default());
    for shard in 0..2 {
        let page = sim.http_get(shard, "/play?code=ABCD").expect("the page");
        assert_eq!(page.status, 200);
        assert_eq!(page.content_type, "text/html; charset=utf-8");
        assert!(page.headers.contains(&("Cache-Control", "no-cache")));
        assert!(page
            .headers
            .contains(&("Content-Security-Policy", play::CSP)));
        let html = String::from_utf8(page.body).unwrap();
        for asset in ["app.js", "app.css"] {
            let path = format!("/play/{}/{asset}", play::version());
            assert!(html.contains(&path), "the page names {path}");
            let reply = sim.http_get(shard, &path).expect(asset);
            assert_eq!(reply.status, 200, "{path} on shard {shard}");
            assert!(reply
                .headers
                .contains(&("X-Content-Type-Options", "nosniff")));
        }
        let module = format!("/play/{}/logic.mjs", play::version());
        assert!(sim.http_get(shard, &module).is_some(), "app.js imports it");
    }
    assert!(
        sim.http_get(0, "/play/app.js").is_none(),
        "no unversioned asset"
    );
    assert!(sim.http_get(0, "/players").is_none());
    let id = sim
        .http_get(1, "/peerjs/id")
        .expect("cloudlink still answers its GETs");
    assert_eq!(id.status, 200);
}
