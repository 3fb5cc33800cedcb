//! The gateway's data path: listeners, original destination, detection, decision, relay.
//!
//! `serve` binds every listener, then runs until SIGTERM/SIGINT; SIGHUP reloads the policy,
//! SIGUSR1 reopens the event file.
//! The admin endpoint (`crate::admin`), when configured, starts once the listeners are bound.
//! Connections run on one single-threaded runtime per CPU (`start_workers`), each accepting
//! on its own `SO_REUSEPORT` socket of every listener; each accepted connection is one task
//! (`conn::handle`) that emits exactly one decision event and one close event.

mod agree;
mod conn;
mod cpus;
mod detect;
mod dial;
mod explicit;
#[cfg(fuzzing)]
#[doc(hidden)]
pub use explicit::fuzzing;
mod in_force;
mod lanes;
mod limits;
mod listener;
mod notify;
mod orig_dst;
mod relay;
#[cfg(target_os = "linux")]
mod splice;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub use detect::{client_first_turn, Detected};
pub use in_force::InForce;

use crate::admin::{self, AdminError};
use crate::config::{self, Detect, Limits, ListenerMode, Loaded, Sink as SinkConfig};
use crate::events::{self, Sink, SinkError, Target};
use crate::metrics::Metrics;
use crate::policy::{Admission, Policy};

use in_force::PolicyCell;
use limits::{Limiter, Slot};
use listener::Acceptor;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Events(#[from] SinkError),
    #[error("cannot install signal handlers: {0}")]
    Signal(io::Error),
    #[error("cannot start the data path: {0}")]
    Runtime(io::Error),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// A bound listener, as connections see it.
#[derive(Debug, Clone, Copy)]
pub struct ListenerInfo {
    pub mode: ListenerMode,
    pub addr: SocketAddr,
    pub upstream: Option<SocketAddr>,
}

/// State every connection task shares.
pub struct Shared {
    policy: PolicyCell,
    detect: Detect,
    limits: Limits,
    events: Sink,
    listeners: Vec<SocketAddr>,
    /// Turns true when the drain period after SIGTERM runs out.
    stop: watch::Receiver<bool>,
    limiter: Arc<Limiter>,
    // Operations (issue 7): what reloads read, metrics, readiness.
    config: config::Config,
    metrics: Metrics,
    /// True from SIGTERM on: `GET /readyz` answers 503.
    draining: AtomicBool,
    /// Reloads run one at a time, so the last one started is the one left in force.
    reloading: Mutex<()>,
}

impl Shared {
    /// The policy in force now; a connection keeps the one it started with.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.policy()
    }

    /// The policy in force with its segments' counters and load time.
    pub fn in_force(&self) -> InForce {
        self.policy.get()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// True once SIGTERM or SIGINT has been received.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Events dropped so far because the sink could not keep up.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// SIGHUP and `POST /reload`: loads and validates everything on a blocking thread; only
    /// a fully valid policy replaces the old one. Returns the version now in force, or every
    /// problem (the old policy stays).
    pub async fn reload(self: &Arc<Self>) -> Result<String, config::Problems> {
        let shared = Arc::clone(self);
        tokio::task::spawn_blocking(move || reload(&shared))
            .await
            .unwrap_or_else(|err| {
                Err(config::Problems(vec![config::Problem {
                    file: shared_path(self),
                    line: 1,
                    col: 1,
                    message: format!("reload failed: {err}"),
                }]))
            })
    }

    /// The checks that come before the policy, in DESIGN.md's order: self destination, then
    /// connection limits, then the source's rate.
    fn admit(
        &self,
        listener: &ListenerInfo,
        peer: SocketAddr,
        destination: SocketAddr,
        local: SocketAddr,
    ) -> (Admission, Option<Slot>) {
        if self.is_self(listener, destination, local) {
            return (Admission::SelfDestination, None);
        }
        match self.limiter.admit(peer.ip()) {
            Ok(slot) => (Admission::Admitted, Some(slot)),
            Err(refusal) => (refusal, None),
        }
    }

    /// True when forwarding would connect the gateway to one of its own listeners: a
    /// redirect listener's connection that was not redirected (its destination is the
    /// listener itself), or any destination that is a listening address.
    fn is_self(&self, listener: &ListenerInfo, destination: SocketAddr, local: SocketAddr) -> bool {
        (listener.mode == ListenerMode::Redirect && destination == local)
            || self.listeners.iter().any(|l| {
                l.port() == destination.port()
                    && (l.ip() == destination.ip()
                        || (l.ip().is_unspecified()
                            && (destination.ip().is_loopback()
                                || destination.ip().is_unspecified()
                                || destination.ip() == local.ip())))
            })
    }
}

fn target(sink: &SinkConfig) -> Target {
    match sink {
        SinkConfig::Stdout => Target::Stdout,
        SinkConfig::File(path) => Target::File(path.clone()),
    }
}

/// Raises the open-file soft limit to the hard limit (as HAProxy does): every connection
/// costs two descriptors, plus a pooled pipe while bytes are in flight. Returns the limit now
/// in force.
fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// How often dropped events are reported in the log.
const DROP_REPORT: Duration = Duration::from_secs(10);

/// Runs the gateway until SIGTERM or SIGINT, then drains and returns.
pub async fn serve(loaded: Loaded) -> Result<(), ProxyError> {
    let Loaded { config, policy } = loaded;
    if let Some(limit) = raise_fd_limit() {
        let wanted = config.limits.max_connections as u64 * 2;
        if limit < wanted {
            eprintln!(
                "portcullis: warning: {limit} file descriptors allowed, fewer than the {wanted} \
                 that limits.max_connections = {} needs",
                config.limits.max_connections
            );
        }
    }
    let threads = data_path_threads();
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let group = listener::bind(l.listen, l.mode == ListenerMode::Tproxy, threads).map_err(
            |source| ProxyError::Bind {
                addr: l.listen,
                source,
            },
        )?;
        let addr = group
            .first()
            .and_then(|s| s.local_addr().ok())
            .unwrap_or(l.listen);
        let info = ListenerInfo {
            mode: l.mode,
            addr,
            upstream: l.upstream,
        };
        bound.push((info, group));
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;
    let mut rotate = signal(SignalKind::user_defined1()).map_err(ProxyError::Signal)?;
    let (events, writer) = Sink::start(&target(&config.events.sink))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (quit_accepting, accepting_stopped) = watch::channel(false);
    let metrics = Metrics::with_table(config.admin.is_some());
    let admin = match &config.admin {
        Some(a) => Some(admin::bind(a).await?),
        None => None,
    };
    let shared = Arc::new(Shared {
        policy: PolicyCell::new(InForce::new(policy, &metrics)),
        detect: config.detect,
        limits: config.limits,
        events,
        listeners: bound.iter().map(|(info, _)| info.addr).collect(),
        stop: stop_rx,
        limiter: Arc::new(Limiter::new(&config.limits)),
        config: config.clone(),
        metrics,
        draining: AtomicBool::new(false),
        reloading: Mutex::new(()),
    });
    for (info, _) in &bound {
        eprintln!(
            "portcullis: listening on {} ({})",
            info.addr,
            info.mode.name()
        );
    }
    let pinned = cpus::plan(threads, cpus::wanted());
    match &pinned {
        Some(cpus) => {
            let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
            eprintln!(
                "portcullis: {threads} data-path thread(s), pinned to CPU(s) {}",
                list.join(",")
            );
        }
        None => eprintln!("portcullis: {threads} data-path thread(s), not pinned"),
    }
    let (finished_tx, finished) = watch::channel(false);
    let workers = start_workers(
        &shared,
        bound,
        pinned,
        threads,
        &accepting_stopped,
        &finished,
    )?;
    {
        let policy = shared.policy();
        eprintln!(
            "portcullis: policy {} loaded from {}: {} segment(s)",
            policy.version,
            config.path.display(),
            policy.segments.len()
        );
    }

    if let Some(admin) = admin {
        eprintln!("portcullis: admin endpoint on {}", admin.describe());
        tokio::spawn(admin.run(Arc::clone(&shared)));
    }
    if let Err(err) = notify::notify("READY=1") {
        eprintln!("portcullis: cannot tell systemd we are ready: {err}");
    }
    let mut drops = tokio::time::interval(DROP_REPORT);
    let mut dropped = 0;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                let _ = shared.reload().await;
            }
            _ = rotate.recv() => {
                let events = shared.events.clone();
                let _ = tokio::task::spawn_blocking(move || events.reopen()).await;
            }
            _ = drops.tick() => {
                let now = shared.events.dropped();
                if now > dropped {
                    eprintln!(
                        "portcullis: {} event(s) dropped in the last {:?}: the event sink cannot keep up or cannot write",
                        now - dropped,
                        DROP_REPORT
                    );
                    dropped = now;
                }
            }
        }
    }
    let _ = notify::notify("STOPPING=1");
    shared.draining.store(true, Ordering::Relaxed);

    eprintln!(
        "portcullis: stopping; draining {} connection(s) for up to {:?}",
        shared.limiter.active(),
        config.limits.drain
    );
    let _ = quit_accepting.send(true);
    if tokio::time::timeout(config.limits.drain, shared.limiter.wait_idle())
        .await
        .is_err()
    {
        let _ = stop_tx.send(true);
        // Let the remaining connections write their close events.
        let _ = tokio::time::timeout(Duration::from_secs(2), shared.limiter.wait_idle()).await;
    }
    writer.finish(&shared.events);
    let _ = finished_tx.send(true);
    for worker in workers {
        let _ = worker.join();
    }
    Ok(())
}

/// How many data-path threads: one per CPU this process may run on.
fn data_path_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Starts the data path: `threads` threads, each running its own single-threaded runtime
/// that accepts on its own socket of every listener (`listener::bind`) and serves the
/// connections it accepted, or hands one to a less busy thread (`lanes`), start to finish:
/// no connection's work crosses threads once it has begun. Thread `i` is pinned to CPU
/// `pinned[i]` when there is a plan (`cpus::plan`).
/// Each stops accepting when `quit` turns true and ends when `finished` does, abandoning
/// whatever is left (the drain period is over by then).
fn start_workers(
    shared: &Arc<Shared>,
    bound: Vec<(ListenerInfo, Vec<std::net::TcpListener>)>,
    pinned: Option<Vec<usize>>,
    threads: usize,
    quit: &watch::Receiver<bool>,
    finished: &watch::Receiver<bool>,
) -> Result<Vec<std::thread::JoinHandle<()>>, ProxyError> {
    let mut per_thread: Vec<Vec<(ListenerInfo, std::net::TcpListener)>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (info, group) in bound {
        for (mine, socket) in per_thread.iter_mut().zip(group) {
            mine.push((info, socket));
        }
    }
    let (lanes, handoffs) = lanes::Lanes::new(threads);
    let mut workers = Vec::with_capacity(threads);
    for ((i, listeners), mut handoffs) in per_thread.into_iter().enumerate().zip(handoffs) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ProxyError::Runtime)?;
        let (shared, quit, mut finished) = (Arc::clone(shared), quit.clone(), finished.clone());
        let lanes = Arc::clone(&lanes);
        let cpu = pinned.as_ref().map(|cpus| cpus[i]);
        let worker = std::thread::Builder::new()
            .name(format!("portcullis-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if let Err(err) = cpus::pin_to(cpu) {
                        eprintln!("portcullis: portcullis-{i} not pinned to CPU {cpu}: {err}");
                    }
                }
                runtime.block_on(async move {
                    tokio::spawn(heartbeat(shared.detect.client_first));
                    for (info, socket) in listeners {
                        match Acceptor::new(socket) {
                            Ok(tcp) => {
                                let lane = (Arc::clone(&lanes), i);
                                let shared = Arc::clone(&shared);
                                tokio::spawn(accept_loop(shared, info, tcp, quit.clone(), lane));
                            }
                            Err(err) => {
                                eprintln!("portcullis: cannot accept on {}: {err}", info.addr);
                            }
                        }
                    }
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        while let Some(h) = handoffs.recv().await {
                            serve_accepted(&shared, h.info, h.stream, h.peer, (&lanes, i));
                        }
                    });
                    relay::stopped(&mut finished).await;
                });
                // Lookups still running on the blocking pool are not waited for.
                runtime.shutdown_background();
            })
            .map_err(ProxyError::Runtime)?;
        workers.push(worker);
    }
    Ok(workers)
}

/// Keeps a data-path thread's timers due to wake it within half of `client_first`, forever.
///
/// tokio's timer wheel promises its event loop a wake-up time; a timer armed to fire before
/// that makes it interrupt the loop (a write(2) to its eventfd and one more turn), even when
/// the thread arming it is the one that runs the loop. Every connection arms timers due
/// `client_first` or later from now (detection's, the agreement check's), and a wheel that
/// held only relays' idle timers, or none, took each of them as sooner than its promise:
/// one interruption per connection. With this timer always due sooner, none is; it costs
/// one timer firing every `client_first / 2` (at least 10 ms) per thread.
async fn heartbeat(client_first: Duration) {
    let period = (client_first / 2).max(Duration::from_millis(10));
    let mut beat = tokio::time::interval(period);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beat.tick().await;
    }
}

fn shared_path(shared: &Shared) -> String {
    shared.config.path.display().to_string()
}

/// Loads and validates everything; only a fully valid policy replaces the old one.
fn reload(shared: &Shared) -> Result<String, config::Problems> {
    let _one_at_a_time = shared
        .reloading
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let config = &shared.config;
    let result = if config.path == Path::new(config::EMBEDDED) {
        config::load_embedded()
    } else {
        config::load(Some(&config.path))
    };
    match result {
        Ok(new) => {
            if new.config.listeners != config.listeners {
                eprintln!("portcullis: listener changes need a restart; the old listeners stay");
            }
            if new.config.admin != config.admin {
                eprintln!("portcullis: [admin] changes need a restart; the old endpoint stays");
            }
            let version = new.policy.version.clone();
            shared
                .policy
                .install(InForce::new(new.policy, &shared.metrics));
            shared.metrics.reloaded(true);
            eprintln!("portcullis: policy {version} reloaded");
            shared.events.emit(events::reload_event(&version, None));
            Ok(version)
        }
        Err(problems) => {
            let message = problems.to_string();
            eprintln!("portcullis: reload failed; the old policy stays in force:\n{message}");
            shared.metrics.reloaded(false);
            let version = shared.policy().version.clone();
            shared
                .events
                .emit(events::reload_event(&version, Some(&message)));
            Err(problems)
        }
    }
}

/// Serves a connection on this thread (lane `lane.1`), counted in its load: it joins this
/// thread's reactor here.
fn serve_accepted(
    shared: &Arc<Shared>,
    info: ListenerInfo,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    (lanes, lane): (&Arc<lanes::Lanes>, usize),
) {
    let stream = match TcpStream::from_std(stream) {
        Ok(stream) => stream,
        // epoll_ctl(2) refused it (out of memory): the connection is closed, and said so.
        Err(err) => {
            eprintln!("portcullis: connection from {peer} dropped: {err}");
            return;
        }
    };
    let shared = Arc::clone(shared);
    // Counted inside the connection's own task: a wrapping future would keep a second copy
    // of the arguments for the connection's whole life.
    let counted = lanes.count(lane);
    if info.mode.is_explicit() {
        tokio::spawn(explicit::handle(shared, info, stream, peer, counted));
    } else {
        tokio::spawn(conn::handle(shared, info, stream, peer, counted));
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    info: ListenerInfo,
    tcp: Acceptor,
    mut quit: watch::Receiver<bool>,
    (lanes, me): (Arc<lanes::Lanes>, usize),
) {
    loop {
        tokio::select! {
            () = relay::stopped(&mut quit) => return,
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) => {
                    let there = lanes.pick(me);
                    let stream = if there == me {
                        Some(stream)
                    } else {
                        lanes.hand(there, info, stream, peer)
                    };
                    if let Some(stream) = stream {
                        serve_accepted(&shared, info, stream, peer, (&lanes, me));
                    }
                }
                Err(err) => {
                    // Out of file descriptors or memory: back off instead of spinning.
                    eprintln!("portcullis: accept on {} failed: {err}", info.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}
