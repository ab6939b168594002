//! The controller page (`GET /play`, issue 20) end to end: its own logic under Node's test
//! runner (`tests/clients/play/logic.test.mjs`), the routes and headers over a socket,
//! and a whole game in a real browser: `tests/clients/play/browser.mjs` drives Debian's
//! `chromium` (headless, through the pinned `playwright-core`) as two phones, with a host
//! scripted over the WebSocket (the pinned `ws`), against a 2-shard server in this process
//! with `pairkit.strict_payloads` on (every event the page sends is checked against the
//! flow) and a 4 s grace window (a phone away longer loses its place).
//!
//! Node, npm and `/usr/bin/chromium` are required: without them these tests fail, they
//! never skip (`.ci/run` installs them). The packages are installed with `npm ci` when
//! `tests/clients/play/node_modules` lacks them. The browser test writes a screenshot of
//! each screen to `<target>/play-screenshots/` (kept as artifacts, not committed); on
//! failure it prints every step it passed and the error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::node::{client_dir, ensure_installed, require, run, run_script};
use crate::support::*;

/// Debian's chromium package puts its launcher here (the script's `executablePath`).
const CHROMIUM: &str = "/usr/bin/chromium";
/// The server's grace window: the page must resume within it, and one phone stays away
/// longer on purpose.
const GRACE_MS: u64 = 4_000;
/// Every wait in the script is 10 s at most; this is the last resort if node hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);
/// The last line of a browser run that passed.
const SUCCESS: &str = "ok: the controller page passed every step";

fn require_node() {
    require(
        "node",
        "the controller page's tests run under Node.js 20 or newer (`apt-get install nodejs`)",
    );
}

/// `<target>/play-screenshots`, emptied.
fn screenshot_dir() -> PathBuf {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let dir = target.join("play-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// The page's logic (message shapes, joystick and throttle, canvas points and strokes,
/// the resend buffer, bound values, screen state, prompts, control effects, joining and
/// reconnecting) under `node --test`.
#[test]
fn the_pages_own_logic_passes_its_node_tests() {
    require_node();
    let script = client_dir("play").join("logic.test.mjs");
    let ran = run(
        Command::new("node").arg("--test").arg(&script),
        Duration::from_secs(60),
    );
    assert!(
        ran.success(),
        "node --test {} {}\n---- stdout ----\n{}\n---- stderr ----\n{}",
        script.display(),
        ran.verdict(Duration::from_secs(60)),
        ran.stdout,
        ran.stderr
    );
    for line in ran.stdout.lines().filter(|l| l.starts_with("# ")) {
        println!("{line}");
    }
}

fn has(head: &str, line: &str) -> bool {
    head.lines().any(|l| l.eq_ignore_ascii_case(line))
}

/// The page and its assets over a socket, as a phone's browser fetches them: each with
/// its type, caching and security headers and its length; another method is 405, as for
/// every plain route; an unknown file is 404.
#[test]
fn the_page_and_its_assets_are_served_over_plain_http() {
    let s = TestServer::default_config();
    let (head, body) = http_request(s.addr, "GET", "/play?code=ABCD");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    for line in [
        "Content-Type: text/html; charset=utf-8",
        "Cache-Control: no-cache",
        "X-Content-Type-Options: nosniff",
        &format!("Content-Security-Policy: {}", huddle::pairkit::play::CSP),
        &format!("Content-Length: {}", body.len()),
    ] {
        assert!(has(&head, line), "{line:?} in\n{head}");
    }
    let html = String::from_utf8(body).unwrap();
    let version = huddle::pairkit::play::version();
    for (file, ty) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("logic.mjs", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let path = format!("/play/{version}/{file}");
        if file != "logic.mjs" {
            assert!(html.contains(&path), "the page loads {path}");
        }
        let (head, body) = http_request(s.addr, "GET", &path);
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{path}: {head}");
        assert!(has(&head, &format!("Content-Type: {ty}")), "{head}");
        assert!(has(
            &head,
            "Cache-Control: public, max-age=31536000, immutable"
        ));
        assert!(!body.is_empty());
    }
    let (head, _) = http_request(s.addr, "GET", &format!("/play/{version}/missing.js"));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http_request(s.addr, "HEAD", "/play");
    assert!(
        head.starts_with("HTTP/1.1 405"),
        "only GET, as everywhere: {head}"
    );
}

/// The scenario in Chromium: two phones open `/play?code=…` and join; a button
/// (two fingers at once are one press), the joystick, a choice and a stroke reach the
/// host with each phone's player_id and the page's payloads; new screens are drawn and
/// acknowledged by both; a tracked flash broadcast is acked by both, a vibration reaches
/// `navigator.vibrate`; a request is answered through the prompt and another cancelled;
/// the host's `control.resend_request` gets the stroke again; a phone that drops resumes
/// as the same player on the screen it missed; one away past the grace window is told so;
/// the host's ending and wrong codes are said plainly; no Content-Security-Policy
/// violation (the page's WebSocket to `/pairkit` passes `connect-src 'self'`).
#[test]
fn two_phones_play_a_whole_game_from_the_controller_page_in_chromium() {
    require_node();
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: this test drives Debian's chromium (`apt-get install chromium`; \
         .ci/run installs it)"
    );
    ensure_installed("play");
    let s = TestServer::start(|c| {
        c.pairkit.grace_ms = GRACE_MS;
        c.pairkit.strict_payloads = true;
    });
    let shots = screenshot_dir();
    let script = client_dir("play").join("browser.mjs");
    run_script(
        Command::new("node")
            .arg(&script)
            .arg(format!("http://{}", s.addr))
            .arg(&shots)
            .env("HUDDLE_PLAY_GRACE_MS", GRACE_MS.to_string())
            .current_dir(client_dir("play")),
        SUCCESS,
        SCRIPT_TIMEOUT,
    );
}
