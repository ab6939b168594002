//! End-to-end compatibility with the reference client SDK (`@triformine/nexis-sdk`).
//!
//! Each test starts its own `huddle` (2 shards, optional auth) on a free port and
//! runs one scenario script from `tests/sdk/` with Node 20+
//! (`node --experimental-websocket tests/sdk/<scenario>.mjs ws://127.0.0.1:<port>/rooms`).
//! The script drives the unmodified SDK bundled at
//! `<repo root>/../shared/clients/nexis-sdk/nexis-sdk.mjs` in both codecs (msgpack,
//! and JSON inside binary frames) and prints one line per codec run. On failure
//! the node output (with the frames each client received) and the server's
//! stderr are printed. Set `HUDDLE_SDK_VERBOSE=1` to log every frame.
//!
//! Node is required: without it these tests fail (they never skip).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The configuration every scenario runs against.
const CONFIG: &str = "shards = 2\n[auth]\nmode = \"optional\"\n";
/// How long the server may take to log its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A scenario script runs both codecs, each under its own 10 s timeout; this is a
/// last resort in case node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `huddle`; killed (and its config file removed) when dropped, panics included.
struct Server {
    child: Child,
    port: u16,
    config_path: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let config_path = std::env::temp_dir().join(format!(
            "huddle-sdk-e2e-{}-{}-{nanos}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&config_path, CONFIG)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));

        let mut child = Command::new(env!("CARGO_BIN_EXE_huddle"))
            .arg("--config")
            .arg(&config_path)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", env!("CARGO_BIN_EXE_huddle")));

        // Drain stderr for the server's whole life (so it never blocks on a full
        // pipe), keeping the lines for failure messages.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        let pipe = child.stderr.take().expect("stderr is piped");
        let kept = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                let _ = tx.send(line);
            }
        });

        let mut server = Server {
            child,
            port: 0,
            config_path,
            stderr,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(port) = parse_listening_port(&line) {
                        server.port = port;
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "huddle logged no `listening on 127.0.0.1:<port>` line within {STARTUP_TIMEOUT:?}; \
                     its stderr so far:\n{}",
                    server.stderr_text()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().map(|s| s.to_string());
                    panic!(
                        "huddle exited ({}) before logging `listening on`; its stderr:\n{}",
                        status.unwrap_or_else(|e| e.to_string()),
                        server.stderr_text()
                    );
                }
            }
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/rooms", self.port)
    }

    fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// The port in a log line containing `listening on 127.0.0.1:<port>` (ANSI colours ignored).
fn parse_listening_port(line: &str) -> Option<u16> {
    let plain = strip_ansi(line);
    let rest = &plain[plain.find("listening on")? + "listening on".len()..];
    let rest = &rest[rest.find("127.0.0.1:")? + "127.0.0.1:".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&port| port != 0)
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) && c != '[' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fails (never skips) unless `node` 20 or newer is on PATH.
fn require_node() {
    let output = Command::new("node").arg("--version").output();
    let output = match output {
        Ok(output) => output,
        Err(e) => panic!(
            "`node` could not be run ({e}): the SDK end-to-end tests need Node.js 20 or newer \
             on PATH (e.g. `apt-get install nodejs`)"
        ),
    };
    let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let major: Option<u32> = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok());
    match major {
        Some(major) if major >= 20 => {}
        _ => panic!(
            "the SDK end-to-end tests need Node.js 20 or newer, `node --version` says {version:?}"
        ),
    }
}

fn sdk_path() -> PathBuf {
    manifest_dir()
        .join("..")
        .join("shared")
        .join("clients")
        .join("nexis-sdk")
        .join("nexis-sdk.mjs")
}

fn spawn_reader<R: Read + Send + 'static>(pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(pipe).read_to_string(&mut text);
        text
    })
}

/// Starts a server, runs `tests/sdk/<scenario>.mjs` against it and asserts it passed.
fn run_scenario(scenario: &str) {
    require_node();
    let sdk = sdk_path();
    assert!(
        sdk.is_file(),
        "the reference SDK is missing: expected it at {} (<repo root>/../shared/clients/nexis-sdk/)",
        sdk.display()
    );
    let script = Path::new("tests")
        .join("sdk")
        .join(format!("{scenario}.mjs"));
    assert!(
        manifest_dir().join(&script).is_file(),
        "missing scenario script {}",
        script.display()
    );

    let server = Server::start();
    let mut child = Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(&script)
        .arg(server.url())
        .current_dir(manifest_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node {}: {e}", script.display()));
    let stdout = spawn_reader(child.stdout.take().expect("stdout is piped"));
    let stderr = spawn_reader(child.stderr.take().expect("stderr is piped"));

    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => panic!("waiting for node failed: {e}"),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let verdict = match status {
        Some(status) if status.success() => {
            print!("{stdout}");
            return;
        }
        Some(status) => format!("failed ({status})"),
        None => format!("did not finish within {SCRIPT_TIMEOUT:?} and was killed"),
    };
    panic!(
        "SDK scenario `{scenario}` {verdict} against {url}\n\
         ---- node stdout ----\n{stdout}\n\
         ---- node stderr ----\n{stderr}\n\
         ---- huddle stderr ----\n{server_log}\n",
        url = server.url(),
        server_log = server.stderr_text(),
    );
}

/// Scenario 1: `connect` resolves, the negotiated codec is the one used
/// (msgpack when offered, else JSON), `getSessionId()` is a string.
#[test]
fn sdk_connects_with_the_negotiated_codec_in_both_codecs() {
    run_scenario("connect");
}

/// Scenario 2: echo_room relays `room.send` to every member, sender included, with `from`.
#[test]
fn sdk_relays_room_messages_to_all_members_in_both_codecs() {
    run_scenario("relay");
}

/// Scenario 3: `sendBytes` is relayed as `room.message.bytes` with `data_b64`.
#[test]
fn sdk_relays_room_bytes_as_data_b64_in_both_codecs() {
    run_scenario("bytes");
}

/// Scenario 4: `room.joined` / `room.members` on join, `room.left` on leave.
#[test]
fn sdk_sees_presence_events_on_join_and_leave_in_both_codecs() {
    run_scenario("presence");
}

/// Scenario 5: the joiner gets a `state.snapshot` (seq 0) and its ack is accepted.
#[test]
fn sdk_gets_a_state_snapshot_on_join_and_acks_it_in_both_codecs() {
    run_scenario("snapshot");
}

/// Scenario 6: `listRooms` lists joined rooms with member counts and room types.
#[test]
fn sdk_lists_rooms_with_member_counts_in_both_codecs() {
    run_scenario("room_list");
}

/// Scenario 7: failing RPCs resolve with `{ok:false, code}` instead of hanging.
#[test]
fn sdk_rpc_errors_resolve_with_codes_in_both_codecs() {
    run_scenario("rpc_errors");
}

/// Scenario 8: with 2 shards, 3 rooms of 2 clients each, relays stay within each room.
#[test]
fn sdk_relays_stay_within_their_room_across_two_shards_in_both_codecs() {
    run_scenario("shards");
}

/// Extra: counter_room patches (seq 1, 2, top-level `set`) reach every member's SDK state.
#[test]
fn sdk_applies_state_patches_in_both_codecs() {
    run_scenario("state_patch");
}

/// Matchmaking (rooms.md "Matchmaking"): the first ticket is queued at position 1,
/// the completing one answers `matched`; `match.found` reaches every participant
/// (the SDK's `autoJoinMatchedRoom` relies on it) and both auto-join; the room's
/// seats are reserved (`room_full` for outsiders, even before anyone joined);
/// `dequeueMatchmaking` answers `removed:true` only when a ticket was held.
#[test]
fn sdk_match_found_reaches_every_participant_who_auto_joins_a_reserved_room_in_both_codecs() {
    run_scenario("matchmaking");
}

/// Sessions and resume: a non-1000 close parks the session (`room.dropped`), the
/// SDK's own reconnect resumes it (`resumed:true`, same ids, `room.reconnected`,
/// a fresh snapshot the SDK applies); `client.close()` (no code) also parks; a
/// close with 1000 leaves at once (`room.left`) and cannot be resumed.
#[test]
fn sdk_resumes_a_dropped_session_and_a_close_1000_leaves_at_once_in_both_codecs() {
    run_scenario("resume");
}

/// State sync: members converge, patches are numbered +1 from the snapshot, no
/// checksum unless negotiated, nested state_room ops arrive flattened to top-level
/// `set`/`del`, a root set arrives as a snapshot, and the SDK never throws or resyncs.
#[test]
fn sdk_state_converges_with_top_level_patches_numbered_one_by_one_in_both_codecs() {
    run_scenario("state_sync");
}

/// RFC 6455 §5.5.1: the server answers a client's Close frame with its own, so the
/// SDK's socket sees a clean close with its code (1005 for `client.close()`,
/// else the code sent) instead of 1006.
#[test]
fn sdk_close_frames_are_answered_by_the_server_in_both_codecs() {
    run_scenario("close_handshake");
}
