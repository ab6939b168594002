//! Running Node clients from the tests: a child process with a timeout and its whole
//! output, a required tool (the test fails, never skips, without it), and a client's
//! pinned npm packages installed with `npm ci` when missing (`tests/clients/<name>/`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// `npm ci` of a client's few packages; the largest (wrtc's prebuilt binary, for the
/// PeerJS client) is about 10 MB.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `tests/clients/<name>`: a Node client with its own `package.json` and lock file.
pub fn client_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

/// How a child process ended, with everything it printed.
pub struct Ran {
    /// `None`: killed after the timeout.
    pub status: Option<ExitStatus>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Ran {
    /// Exited 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// "exited with …" or "was killed after …", for a failure message.
    pub fn verdict(&self, timeout: Duration) -> String {
        match self.status {
            None => format!("did not finish within {timeout:?} and was killed"),
            Some(status) => format!("exited with {status}"),
        }
    }
}

/// Runs `cmd` (which must not be spawned yet) to completion or until `timeout`, then kills it.
pub fn run(cmd: &mut Command, timeout: Duration) -> Ran {
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

/// Runs a client script to its end: it passed when it exits 0 and prints a line starting
/// with `success`; else this panics with everything it printed. On success its output and
/// how long it ran are printed.
pub fn run_script(cmd: &mut Command, success: &str, timeout: Duration) {
    let what = format!("{cmd:?}");
    let started = Instant::now();
    let ran = run(cmd, timeout);
    let passed = ran.success() && ran.stdout.lines().any(|l| l.starts_with(success));
    assert!(
        passed,
        "{what} {} (wanted exit 0 and a line starting {success:?})\n\
         ---- stdout ----\n{}\n---- stderr ----\n{}",
        ran.verdict(timeout),
        ran.stdout,
        ran.stderr
    );
    print!("{}", ran.stdout);
    println!("it ran for {:?}", started.elapsed());
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
pub fn require(tool: &str, why: &str) {
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

/// Makes sure `tests/clients/<name>/node_modules` holds the pinned dependencies: if not,
/// `npm ci` (from the npm registry only) runs in a staging directory of its own and the
/// result is renamed into place. A concurrent run that renames first wins; a stale or
/// partial `node_modules` is replaced.
pub fn ensure_installed(name: &str) {
    let dir = client_dir(name);
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
        &format!(
            "this test installs its pinned npm packages from the npm registry \
             (`apt-get install npm`, or `npm ci` in tests/clients/{name} by hand)"
        ),
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
    if ran.success() && !installed(&package_json, &modules) {
        // Replace a stale or partial install; a concurrent run may get there first.
        let _ = std::fs::remove_dir_all(&modules);
        let _ = std::fs::rename(staging.join("node_modules"), &modules);
    }
    let _ = std::fs::remove_dir_all(&staging);
    assert!(
        ran.success(),
        "`npm ci` for tests/clients/{name} {} after {:?}\n---- stdout ----\n{}\n---- stderr ----\n{}",
        ran.verdict(INSTALL_TIMEOUT),
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
        "npm ci for tests/clients/{name} took {:?}",
        started.elapsed()
    );
}
