//! The `huddle` binary as an operator runs it: defaults, `token`, config errors, SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_huddle");

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) addr: String,
    /// stderr lines before the listening line.
    early: Vec<String>,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn start(args: &[&str]) -> Running {
    match launch(args) {
        Ok(run) => run,
        Err(stderr) => panic!("no 'listening on' line; stderr: {stderr:?}"),
    }
}

/// Starts the binary; its stderr when it never says it is listening (it exited, or said
/// nothing for 10 s).
fn launch(args: &[&str]) -> Result<Running, Vec<String>> {
    let mut child = Command::new(BIN)
        .args(args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn huddle");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap().to_string();
                    return Ok(Running {
                        child,
                        addr,
                        early: seen,
                        stderr: rx,
                    });
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(seen);
            }
        }
    }
}

fn handshake(addr: &str) -> tungstenite::WebSocket<TcpStream> {
    handshake_with(addr, r#"{"v":1,"codecs":["json"],"project_id":"demo"}"#).0
}

/// Connects, sends `hello`, and returns the socket and the `handshake.ok` text.
fn handshake_with(addr: &str, hello: &str) -> (tungstenite::WebSocket<TcpStream>, String) {
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(format!("ws://{addr}/rooms"), stream).unwrap();
    ws.send(Message::text(hello)).unwrap();
    let ok = ws.read().unwrap().into_text().unwrap().to_string();
    assert!(ok.contains("handshake.ok"), "{ok}");
    (ws, ok)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The README's first command: with no arguments huddle serves 127.0.0.1:7777. When
/// something else on this machine holds that port, it must say so, naming the address,
/// rather than pick another one.
#[test]
fn no_arguments_listens_on_loopback_7777_with_optional_auth() {
    match launch(&[]) {
        Ok(run) => {
            assert_eq!(run.addr, "127.0.0.1:7777");
            let (mut ws, ok) = handshake_with(&run.addr, r#"{"v":1,"project_id":"demo"}"#);
            assert!(ok.contains(r#""auth_mode":"optional""#), "{ok}");
            ws.close(None).ok();
        }
        Err(stderr) => {
            let busy = std::net::TcpListener::bind("127.0.0.1:7777").is_err();
            assert!(
                busy,
                "no 'listening on' line although 7777 is free: {stderr:?}"
            );
            let said = stderr.join("\n");
            assert!(
                said.contains("cannot listen on 127.0.0.1:7777"),
                "the port is taken and the error must name it: {said}"
            );
        }
    }
}

#[test]
fn the_echo_flag_serves_slash_echo_which_is_a_404_without_it() {
    let status = |addr: &str| {
        let stream = TcpStream::connect(addr).unwrap();
        match tungstenite::client::client(format!("ws://{addr}/echo"), stream) {
            Ok((mut ws, _)) => {
                ws.send(Message::text("ping?")).unwrap();
                assert_eq!(ws.read().unwrap(), Message::text("ping?"));
                101
            }
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                r.status().as_u16()
            }
            Err(e) => panic!("{e}"),
        }
    };
    let plain = start(&["--listen", "127.0.0.1:0", "--shards", "1"]);
    assert_eq!(status(&plain.addr), 404);
    let echo = start(&["--listen", "127.0.0.1:0", "--shards", "1", "--echo"]);
    assert_eq!(status(&echo.addr), 101);
}

#[test]
fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut run = start(&["--listen", "127.0.0.1:0", "--shards", "2"]);
    let mut clients: Vec<_> = (0..4).map(|_| handshake(&run.addr)).collect();
    sigterm(&run.child);
    for ws in &mut clients {
        let code = loop {
            match ws.read() {
                Ok(Message::Close(Some(frame))) => break u16::from(frame.code),
                Ok(Message::Close(None)) => panic!("close without a code"),
                Ok(_) => continue,
                Err(e) => panic!("no close frame: {e}"),
            }
        };
        assert_eq!(code, 1001);
    }
    let status = run.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    // The reader thread ends at EOF, closing the channel.
    let logs: Vec<String> =
        std::iter::from_fn(|| run.stderr.recv_timeout(Duration::from_secs(5)).ok()).collect();
    assert!(logs.iter().any(|l| l.contains("shutting down")), "{logs:?}");
}

#[test]
fn token_subcommand_mints_a_token_the_server_accepts() {
    let dir = std::env::temp_dir().join(format!("huddle-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("huddle.toml");
    std::fs::write(
        &config,
        "[auth]\nmode = \"required\"\n[auth.secrets]\ndemo = \"s3cret\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "token",
            "--project",
            "demo",
            "--ttl",
            "10m",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(token.matches('.').count(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    huddle::rooms::auth::verify_token(&token, b"s3cret", "demo", now).expect("valid token");
    let run = start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let hello = format!(r#"{{"v":1,"codecs":["json"],"project_id":"demo","token":"{token}"}}"#);
    let (_ws, ok) = handshake_with(&run.addr, &hello);
    assert!(ok.contains(r#""authenticated":true"#), "{ok}");
    // the same project without a secret: a clear error
    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "token",
            "--project",
            "nope",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret for project"));
}

#[test]
fn a_bad_config_file_is_a_clear_error_not_a_start() {
    let dir = std::env::temp_dir().join(format!("huddle-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (text, needle) in [
        ("listne = 1", "unknown field"),
        ("[limits]\nidle_ms = 1\nping_ms = 5", "idle_ms"),
        ("[rooms]\ntypes = [\"poker\"]", "unknown room type"),
    ] {
        let config = dir.join("bad.toml");
        std::fs::write(&config, text).unwrap();
        let out = Command::new(BIN)
            .args(["--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{text}: {err}");
    }
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/huddle.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[test]
fn non_loopback_without_required_auth_logs_a_warning() {
    let run = start(&["--listen", "0.0.0.0:0"]);
    assert!(
        run.early
            .iter()
            .any(|l| l.contains("WARN") && l.contains("non-loopback")),
        "{:?}",
        run.early
    );
    let quiet = start(&["--listen", "127.0.0.1:0"]);
    assert!(!quiet.early.iter().any(|l| l.contains("non-loopback")));
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn past_the_connection_cap_new_connections_get_http_503() {
    let dir = std::env::temp_dir().join(format!("huddle-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("cap.toml");
    std::fs::write(&config, "shards = 1\n[limits]\nconns_max = 3\n").unwrap();
    let run = start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let _held: Vec<_> = (0..3).map(|_| handshake(&run.addr)).collect();
    let refused = http_get(&run.addr, "/healthz").unwrap();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    let metrics_line = {
        drop(_held);
        std::thread::sleep(Duration::from_millis(200));
        http_get(&run.addr, "/metrics").unwrap()
    };
    assert!(
        metrics_line.contains("huddle_connections_refused_total{shard=\"all\"} 1"),
        "{metrics_line}"
    );
}

#[test]
fn out_of_file_descriptors_the_accept_loop_pauses_and_recovers() {
    // 48 descriptors: a few for the process, the rest for connections.
    let mut child = Command::new("prlimit")
        .args([
            "--nofile=48:48",
            BIN,
            "--listen",
            "127.0.0.1:0",
            "--shards",
            "1",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs the server with few descriptors");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listening line");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let mut run = Running {
        child,
        addr,
        early: Vec::new(),
        stderr: rx,
    };
    // Far more connections than descriptors: the kernel queues them, accept hits EMFILE.
    let flood: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect(&run.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let paused = std::iter::from_fn(|| run.stderr.recv_timeout(Duration::from_millis(500)).ok())
        .any(|l| l.contains("pausing accepts"));
    assert!(paused, "EMFILE must pause accepting, with a log line");
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    // Descriptors are free again: the server accepts and answers.
    let mut answered = false;
    for _ in 0..20 {
        if http_get(&run.addr, "/healthz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")) {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(answered, "the server recovers once descriptors are free");
    assert!(run.child.try_wait().unwrap().is_none(), "still running");
}
