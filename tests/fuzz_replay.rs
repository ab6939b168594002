//! Every committed fuzz input through the fuzz targets' own checks, on stable: for each
//! target in `huddle::fuzzcheck::TARGETS`, every file in `fuzz/seeds/<target>/` and in
//! `fuzz/regressions/<target>/` (past crash inputs, kept in the repo) goes through
//! `check_<target>`, the function the cargo-fuzz target calls. A test fails naming each
//! file whose check panicked, with the panic's message.

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use huddle::fuzzcheck::TARGETS;

/// `fuzz/` in this checkout.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The inputs in `dir` (none if it does not exist), by name; dotfiles and `README*` are not
/// inputs.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable folder entry").path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && !name.starts_with("README")
        })
        .collect();
    files.sort();
    files
}

/// The folder names under `fuzz/<kind>/`.
fn folders(kind: &str) -> Vec<String> {
    let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.expect("a readable folder entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Replays `target`'s seeds and regressions through its check; panics listing every file
/// whose check panicked. Returns how many files of each kind it replayed.
fn replay(target: &str) -> (usize, usize) {
    let check = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("{target} is not in huddle::fuzzcheck::TARGETS"))
        .1;
    let seeds = inputs(&fuzz_dir().join("seeds").join(target));
    let regressions = inputs(&fuzz_dir().join("regressions").join(target));
    let mut failed = Vec::new();
    let started = Instant::now();
    for file in seeds.iter().chain(&regressions) {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(a panic without a message)");
            failed.push(format!("{}: {message}", file.display()));
        }
    }
    eprintln!(
        "{target}: {} seeds, {} regressions in {:?}",
        seeds.len(),
        regressions.len(),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{target}: {} of {} inputs fail its check:\n{}",
        failed.len(),
        seeds.len() + regressions.len(),
        failed.join("\n")
    );
    (seeds.len(), regressions.len())
}

/// One test per target, so they run in parallel and a failure names its target.
macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {
        /// The targets this file has a test for.
        const TESTED: &[&str] = &[$(stringify!($target)),*];
        $(
            #[test]
            fn $target() {
                let (seeds, _) = replay(stringify!($target));
                assert!(seeds > 0, "{} has no committed seeds", stringify!($target));
            }
        )*
    };
}

replay_tests!(
    auth,
    cloudlink_frames,
    http_handoff,
    http_parse,
    inbound,
    json_decode,
    json_tape_message,
    msgpack_decode,
    pairkit_messages,
    peerjs_frames,
    recover,
    rooms_envelope,
    sim_session,
    state_ops,
    upgrade_query,
    ws_frame_parse,
);

/// Every target is replayed: the tests above, `TARGETS`, the `[[bin]]`s of
/// `fuzz/Cargo.toml` and the seed folders name the same set, and every regression folder
/// names a target (a crash input in a misspelt folder would never be replayed).
#[test]
fn every_target_is_replayed() {
    let mut targets: Vec<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    targets.sort();
    let mut tested: Vec<String> = TESTED.iter().map(|t| t.to_string()).collect();
    tested.sort();
    assert_eq!(tested, targets, "a test per entry of TARGETS");

    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let mut bins: Vec<String> = manifest
        .split("[[bin]]")
        .skip(1)
        .map(|bin| {
            let name = bin
                .lines()
                .find_map(|l| l.trim().strip_prefix("name = "))
                .expect("a [[bin]] has a name");
            name.trim_matches('"').to_string()
        })
        .collect();
    bins.sort();
    assert_eq!(bins, targets, "fuzz/Cargo.toml's targets are TARGETS");
    for bin in &bins {
        let source = fs::read_to_string(fuzz_dir().join(format!("fuzz_targets/{bin}.rs"))).unwrap();
        assert!(
            source.contains(&format!("huddle::fuzzcheck::check_{bin}(data)")),
            "fuzz_targets/{bin}.rs calls check_{bin}"
        );
    }

    assert_eq!(folders("seeds"), targets, "a seed folder per target");
    for folder in folders("regressions") {
        assert!(
            targets.contains(&folder),
            "fuzz/regressions/{folder} names no fuzz target"
        );
    }
}
