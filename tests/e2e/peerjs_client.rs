//! A real client end to end: the official `peerjs` npm client (1.5.4) on Node's WebRTC
//! stack (`@roamhq/wrtc`) against the cloudlink dialect and its PeerJS broker, on a
//! 2-shard server in this process. `tests/clients/peerjs/cl5_datachannel.mjs` makes a CL5
//! lobby of two, registers both instance_ids on the broker, dials host ← peer as the CL5
//! extension does and sends a G_MSG each way over the data channel (ICE on this machine
//! only: `iceServers: []`).
//!
//! Node and npm are required: without them this test fails, it never skips. The client's
//! dependencies are pinned in `tests/clients/peerjs/package-lock.json`; when
//! `node_modules` lacks them at those versions they are installed with `npm ci` (from
//! the npm registry only) into a private staging directory and moved into place, so two
//! test runs at once never install over each other. On failure the script's output
//! (every frame each side received) is printed; `HUDDLE_PEERJS_VERBOSE=1` prints it on
//! success too.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

/// The script's own steps time out after 10 s each; this is the last resort if node hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// `npm ci` fetches 11 packages (the largest, wrtc's prebuilt binary, ~10 MB).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The line the script prints when the data channel carried both messages.
const SUCCESS: &str = "ok: peerjs 1.5.4 data channel ";

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/peerjs")
}

/// How a child process ended, with everything it printed.
struct Ran {
    /// `None`: killed after the timeout.
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` (which must not be spawned yet) to completion or until `timeout`, then kills it.
fn run(cmd: &mut Command, timeout: Duration) -> Ran {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child
            .try_wait()
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
        {
            Some(status) => break Some(status),
            None if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    Ran {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Reads `pipe` to its end on a thread of its own, so the child never blocks on a full pipe.
fn read_all<R: Read + Send + 'static>(mut pipe: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// Fails (never skips) unless `tool --version` runs.
fn require(tool: &str, why: &str) {
    if let Err(e) = Command::new(tool).arg("--version").output() {
        panic!("`{tool}` could not be run ({e}): {why}");
    }
}

/// True when every dependency in `package.json` is in `modules` at exactly its pinned version.
fn installed(package_json: &Value, modules: &Path) -> bool {
    let deps = package_json["dependencies"]
        .as_object()
        .expect("package.json has dependencies");
    deps.iter().all(|(name, pinned)| {
        let manifest = modules.join(name).join("package.json");
        let Ok(text) = std::fs::read_to_string(manifest) else {
            return false;
        };
        let found: Value = serde_json::from_str(&text).unwrap_or_default();
        found["version"] == *pinned
    })
}

/// Makes sure `tests/clients/peerjs/node_modules` holds the pinned dependencies: if not,
/// `npm ci` runs in a staging directory of its own and the result is renamed into place.
/// A concurrent run that renames first wins; a stale or partial `node_modules` is replaced.
fn ensure_client_installed() {
    let dir = client_dir();
    let package_json: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).expect("read package.json"),
    )
    .expect("package.json is JSON");
    let modules = dir.join("node_modules");
    if installed(&package_json, &modules) {
        return;
    }
    require(
        "npm",
        "this test installs the pinned peerjs client from the npm registry \
         (`apt-get install npm`, or `npm ci` in tests/clients/peerjs by hand)",
    );
    static STAGING: AtomicUsize = AtomicUsize::new(0);
    let staging = dir.join(format!(
        ".install-{}-{}",
        std::process::id(),
        STAGING.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging).expect("create the staging directory");
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(dir.join(file), staging.join(file)).expect("copy into staging");
    }
    let started = Instant::now();
    let ran = run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&staging),
        INSTALL_TIMEOUT,
    );
    let ok = ran.status.is_some_and(|s| s.success());
    if ok && !installed(&package_json, &modules) {
        // Replace a stale or partial install; a concurrent run may get there first.
        let _ = std::fs::remove_dir_all(&modules);
        let _ = std::fs::rename(staging.join("node_modules"), &modules);
    }
    let _ = std::fs::remove_dir_all(&staging);
    assert!(
        ok,
        "`npm ci` for tests/clients/peerjs {} after {:?}\n---- stdout ----\n{}\n---- stderr ----\n{}",
        ran.status
            .map_or("was killed".to_string(), |s| format!("failed ({s})")),
        started.elapsed(),
        ran.stdout,
        ran.stderr
    );
    assert!(
        installed(&package_json, &modules),
        "after `npm ci`, {} still lacks the versions pinned in package.json",
        modules.display()
    );
    println!(
        "npm ci for tests/clients/peerjs took {:?}",
        started.elapsed()
    );
}

/// cloudlink.md "Transport", "Client → server" and "PeerJS-compatible broker" with the
/// real client: INIT / CREATE_LOBBY / JOIN_LOBBY on `/cl5`, both instance_ids opened on
/// `/peerjs` by PeerJS 1.5.4, OFFER / ANSWER / CANDIDATE forwarded between them (their
/// homes may be different shards), HEARTBEATs taken silently, and the data channel the
/// peer dials (`label: "default", reliable: true`) carries a G_MSG each way.
#[test]
fn peerjs_client_opens_a_data_channel_between_two_cl5_lobby_members() {
    require(
        "node",
        "this test runs the peerjs npm client under Node.js 20 or newer (`apt-get install nodejs`)",
    );
    ensure_client_installed();
    let s = TestServer::default_config();
    let script = client_dir().join("cl5_datachannel.mjs");
    let url = format!("ws://{}", s.addr);
    let started = Instant::now();
    let ran = run(
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .current_dir(client_dir()),
        SCRIPT_TIMEOUT,
    );
    let passed = ran.status.is_some_and(|s| s.success())
        && ran.stdout.lines().any(|line| line.starts_with(SUCCESS));
    let verdict = match ran.status {
        None => format!("did not finish within {SCRIPT_TIMEOUT:?} and was killed"),
        Some(status) => format!("exited with {status}"),
    };
    assert!(
        passed,
        "node {} {url} {verdict} (wanted exit 0 and a line starting {SUCCESS:?})\n\
         ---- node stdout ----\n{}\n---- node stderr ----\n{}",
        script.display(),
        ran.stdout,
        ran.stderr
    );
    print!("{}", ran.stdout);
    println!("node ran for {:?}", started.elapsed());
}
