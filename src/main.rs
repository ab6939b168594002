//! The `huddle` binary: CLI, config, logging, signals. Everything else is in the library.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use huddle::config::Config;
use huddle::rooms::auth::{self, AuthMode};

/// A real-time multiplayer WebSocket server.
#[derive(Parser, Debug)]
#[command(name = "huddle", version, about)]
struct Cli {
    /// Config file (TOML); every key is optional.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address, overriding the config (e.g. 0.0.0.0:7777).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Shard (reactor thread) count, overriding the config; 0 = one per core.
    #[arg(long)]
    shards: Option<usize>,
    /// Serve the echo dialect at /echo (WebSocket conformance testing), as `[echo]
    /// enabled = true` does.
    #[arg(long)]
    echo: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mints a rooms-dialect token with the project's secret from the config.
    Token {
        /// Project id (its secret must be in [auth.secrets]).
        #[arg(long)]
        project: String,
        /// Lifetime: 90s, 15m, 1h, 2d...
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut cfg = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = cli.listen {
        cfg.listen = listen;
    }
    if let Some(shards) = cli.shards {
        cfg.shards = shards;
    }
    if cli.echo {
        cfg.echo.enabled = true;
    }
    cfg.validate()?;
    match cli.command {
        Some(Command::Token { project, ttl }) => mint(&cfg, &project, &ttl),
        None => serve(cfg),
    }
}

fn mint(cfg: &Config, project: &str, ttl: &str) -> anyhow::Result<()> {
    let ttl_ms = auth::parse_ttl_ms(ttl).map_err(anyhow::Error::msg)?;
    let Some(secret) = cfg.auth.secrets.get(project) else {
        bail!("no secret for project {project:?}: add it under [auth.secrets] in the config file");
    };
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    println!(
        "{}",
        auth::mint_token(secret.as_bytes(), project, now, ttl_ms)
    );
    Ok(())
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    if !cfg.listen.ip().is_loopback() && cfg.auth.mode != AuthMode::Required {
        tracing::warn!(
            "binding non-loopback address {} with auth mode {}: anyone who can reach it can connect (set [auth] mode = \"required\")",
            cfg.listen,
            cfg.auth.mode
        );
    }
    let mode = cfg.auth.mode;
    let mut dialects = format!(
        "rooms at /rooms and /, cloudlink at /cl5 and /?ugi=… (PeerJS broker at {}peerjs), \
         pairkit at /pairkit and / (a first message with a type; phones' page at /play)",
        cfg.cloudlink.peerjs_prefix
    );
    if cfg.echo.enabled {
        dialects.push_str(", echo at /echo");
    }
    let server = huddle::start(cfg).context("starting the server")?;
    tracing::info!(
        "listening on {} (shards={}, auth={}, dialects: {dialects})",
        server.addr,
        server.shards,
        mode
    );
    let flag = server.shutdown_flag();
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, flag.clone()).context("installing signal handlers")?;
    }
    while !flag.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("shutting down: closing clients with 1001");
    server.wake_all();
    server.join();
    tracing::info!("stopped");
    Ok(())
}
