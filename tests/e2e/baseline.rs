//! After hostile clients, the `huddle` process is back where it was (issue 19): the same
//! file descriptors and, within a small allowance, the same resident memory. The server
//! runs as its own process (the binary, two shards) so `/proc/<pid>` measures it alone.
//!
//! One barrage: on every dialect's path each protocol-breaking frame of
//! `hostile.rs` on its own connection, 100,000-deep JSON, a 64 KiB echo (the
//! limit), 200 connections
//! that upgrade and vanish mid-frame, 50 half-sent heads dropped, garbage and a 9 KiB head;
//! a bystander keeps talking. The first barrage warms the allocator and the server's pools;
//! the baseline is taken after it. Four more follow, and after each the process must be
//! back to the baseline's descriptors and within `RSS_SLACK_KB` of its memory: a leak of
//! even a few bytes per offending connection (over 1,000 per barrage) would add up past it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::hostile::{self, breaking_frames, close_code, frame, read_head, upgraded, PATHS};
use crate::process::start;
use crate::support::*;

/// How far resident memory may sit above the baseline after a barrage, KiB: the allocator
/// keeps some freed memory in its arenas, and which thread frees what varies run to run.
const RSS_SLACK_KB: u64 = 4 * 1024;

/// Barrages after the warm-up one.
const ROUNDS: usize = 4;

/// `VmRSS` of `pid`, KiB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Open file descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits (at most 10 s) for `pid`'s descriptors to fall back to `want`; the count then.
fn settle_fds(pid: u32, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds(pid) > want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    fds(pid)
}

/// `pid`'s descriptors once they have not changed for a second (at most 10 s).
fn steady_fds(pid: u32) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = fds(pid);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let now = fds(pid);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// The rooms member that must hear itself after every part of a barrage.
fn still_talks(c: &mut Client, n: &mut u64) {
    *n += 1;
    hostile::still_talks(c, "calm", *n);
}

/// One barrage against `addr` (described in the module documentation).
fn barrage(addr: SocketAddr, bystander: &mut Client, n: &mut u64) {
    for path in PATHS {
        for (what, bytes, want) in breaking_frames() {
            let mut sock = upgraded(addr, path);
            sock.write_all(&bytes).unwrap();
            assert_eq!(close_code(&mut sock), Some(want), "{path}: {what}");
        }
        still_talks(bystander, n);
    }
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    for path in ["/rooms", "/pairkit", "/cl5?ugi=g"] {
        let mut ws = ws_connect(addr, path);
        ws.send(Message::text(deep.clone())).unwrap();
        assert!(ws.read().is_ok(), "{path}: deep JSON gets an answer");
    }
    let big = vec![0x5a; 64 * 1024];
    let mut echo = ws_connect(addr, "/echo");
    echo.send(Message::binary(big.clone())).unwrap();
    assert_eq!(
        echo.read().unwrap().into_data().len(),
        big.len(),
        "64 KiB echoed"
    );
    drop(echo);
    still_talks(bystander, n);
    // Upgraded, then gone halfway through a 64 KiB frame.
    let cut = frame(0x82, 65_536, &[1; 30_000], true);
    let vanished: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut sock = upgraded(addr, PATHS[i % PATHS.len()]);
            sock.write_all(&cut).unwrap();
            sock
        })
        .collect();
    drop(vanished);
    // Heads that never finish, then drop.
    let half: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut sock = TcpStream::connect(addr).unwrap();
            sock.write_all(b"GET /rooms HTTP/1.1\r\nHost: t\r\nUpgrade: web")
                .unwrap();
            sock
        })
        .collect();
    drop(half);
    let mut garbage = TcpStream::connect(addr).unwrap();
    garbage.set_read_timeout(Some(WAIT)).unwrap();
    garbage.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    assert!(read_head(&mut garbage).starts_with("HTTP/1.1 400"));
    let mut huge = TcpStream::connect(addr).unwrap();
    huge.set_read_timeout(Some(WAIT)).unwrap();
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000)).repeat(9);
    let _ = write!(huge, "GET /rooms HTTP/1.1\r\nHost: t\r\n{filler}\r\n");
    assert!(read_head(&mut huge).starts_with("HTTP/1.1 431"));
    still_talks(bystander, n);
}

#[test]
fn after_hostile_barrages_the_process_is_back_to_its_baseline_fds_and_memory() {
    // Each barrage upgrades ~60 times on /cl5: past cloudlink's per-address budget.
    let cfg = std::env::temp_dir().join(format!("huddle-baseline-{}.toml", std::process::id()));
    std::fs::write(&cfg, "[cloudlink]\nconns_per_ip_per_min = 0\n").unwrap();
    let run = start(&[
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--shards",
        "2",
        "--echo",
    ]);
    std::fs::remove_file(&cfg).ok();
    let pid = run.child.id();
    let addr: SocketAddr = run.addr.parse().unwrap();
    let mut bystander = Client::new(addr, Codec::Json);
    bystander.join("echo_room", "calm");
    let mut n = 0;
    barrage(addr, &mut bystander, &mut n);
    let base_fds = steady_fds(pid);
    let base_rss = rss_kb(pid);
    let mut after = Vec::new();
    for round in 1..=ROUNDS {
        barrage(addr, &mut bystander, &mut n);
        let f = settle_fds(pid, base_fds);
        let r = rss_kb(pid);
        eprintln!(
            "barrage {round}: fds {f} (baseline {base_fds}), RSS {r} KiB (baseline {base_rss} KiB)"
        );
        after.push((f, r));
    }
    for (round, (f, r)) in after.iter().enumerate() {
        assert_eq!(*f, base_fds, "barrage {}: descriptors back", round + 1);
        assert!(
            *r <= base_rss + RSS_SLACK_KB,
            "barrage {}: RSS {r} KiB, baseline {base_rss} KiB (+{RSS_SLACK_KB} KiB allowed); all: {after:?}",
            round + 1
        );
    }
}
