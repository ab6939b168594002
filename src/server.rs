//! Starting and stopping the server: binds one `SO_REUSEPORT` listener per shard, builds
//! the mesh, seeds each shard, spawns the pinned shard threads. Generic over the dialect
//! set it runs (`huddle::start` runs huddle's). Used by `main` and by end-to-end tests.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};

use rand::RngCore;

use crate::config::Config;
use crate::core::{shard_seed, Dialect, MeshMsg, ShardCore, ShardId};
use crate::mesh::{Mesh, MeshPort};
use crate::metrics::ShardMetrics;
use crate::reactor::{Shard, ShardParts, WAKER};

/// A running server.
pub struct Server {
    /// The address every shard listens on (the real port when the config said 0).
    pub addr: SocketAddr,
    /// Shards running.
    pub shards: usize,
    threads: Vec<JoinHandle<()>>,
    shutdown: Arc<AtomicBool>,
    wake_all: Box<dyn Fn() + Send + Sync>,
    metrics: Arc<Vec<Arc<ShardMetrics>>>,
}

/// A shard's `SO_REUSEPORT` listener; an error names the address.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listen = || -> io::Result<std::net::TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    };
    listen().map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

impl Server {
    /// Binds every shard's listener and starts the shard threads, each running dialect
    /// set `D`.
    pub fn start<D: Dialect>(cfg: Config) -> io::Result<Server> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let shards = cfg.shard_count();
        let cfg = Arc::new(cfg);
        let first = bind(cfg.listen)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..shards {
            listeners.push(bind(addr)?);
        }
        let polls: Vec<mio::Poll> = (0..shards)
            .map(|_| mio::Poll::new())
            .collect::<io::Result<_>>()?;
        let wakers = polls
            .iter()
            .map(|p| mio::Waker::new(p.registry(), WAKER).map(Arc::new))
            .collect::<io::Result<Vec<_>>>()?;
        let mesh: Arc<Mesh<MeshMsg<D>>> = Arc::new(Mesh::new(wakers, cfg.limits.mesh_queue_len));
        let unix_base_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let shared = Arc::new(D::shared(&cfg));
        let cores: Vec<ShardCore<D>> = (0..shards)
            .map(|i| {
                let id = ShardId(i as u16);
                let seed = if cfg.seed == 0 {
                    let mut seed = [0u8; 32];
                    rand::rngs::OsRng.fill_bytes(&mut seed);
                    seed
                } else {
                    shard_seed(cfg.seed, id)
                };
                ShardCore::build(id, shards, cfg.clone(), &shared, seed, unix_base_ms)
            })
            .collect();
        let metrics: Arc<Vec<Arc<ShardMetrics>>> =
            Arc::new(cores.iter().map(|c| c.metrics().clone()).collect());
        let shutdown = Arc::new(AtomicBool::new(false));
        let total_conns = Arc::new(AtomicUsize::new(0));
        let cpus = if cfg.pin_shards {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut threads = Vec::with_capacity(shards);
        let shard_io = polls.into_iter().zip(listeners);
        for (i, ((poll, listener), core)) in shard_io.zip(cores).enumerate() {
            let id = ShardId(i as u16);
            let parts = ShardParts {
                id,
                poll,
                listener,
                core,
                port: MeshPort::new(id, mesh.clone()),
                shutdown: shutdown.clone(),
                total_conns: total_conns.clone(),
                all_metrics: metrics.clone(),
            };
            let pin = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let shard = Shard::new(parts)?;
            let handle = std::thread::Builder::new()
                .name(format!("huddle-shard-{i}"))
                .spawn(move || {
                    if let Some(core_id) = pin {
                        if !core_affinity::set_for_current(core_id) {
                            tracing::warn!(shard = i, "could not pin to core {}", core_id.id);
                        }
                    }
                    shard.run();
                })?;
            threads.push(handle);
        }
        Ok(Server {
            addr,
            shards,
            threads,
            shutdown,
            wake_all: Box::new(move || mesh.wake_all()),
            metrics,
        })
    }

    /// Every shard's counters.
    pub fn metrics(&self) -> &[Arc<ShardMetrics>] {
        &self.metrics
    }

    /// Asks every shard to close its clients with 1001 and stop.
    pub fn shutdown(&self) {
        self.shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
        (self.wake_all)();
    }

    /// The flag the signal handler sets.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// Wakes every shard (after setting the shutdown flag from outside).
    pub fn wake_all(&self) {
        (self.wake_all)();
    }

    /// Waits for every shard thread to finish.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }

    /// Shuts down and waits.
    pub fn stop(self) {
        self.shutdown();
        self.join();
    }
}
