//! The gateway's data path: listeners, original destination, detection, decision, relay.
//!
//! `serve` binds every listener, then runs until SIGTERM/SIGINT; SIGHUP reloads the policy,
//! SIGUSR1 reopens the event file.
//! Each accepted connection is one task (`conn::handle`) that emits exactly one decision
//! event and one close event.

mod agree;
mod conn;
mod detect;
mod explicit;
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
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub use detect::{client_first_turn, Detected};

use crate::config::{self, Detect, Limits, ListenerMode, Loaded, Sink as SinkConfig};
use crate::events::{self, Sink, SinkError, Target};
use crate::policy::{Admission, Policy};

use limits::{Limiter, Slot};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Events(#[from] SinkError),
    #[error("cannot install signal handlers: {0}")]
    Signal(io::Error),
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
    policy: RwLock<Arc<Policy>>,
    detect: Detect,
    limits: Limits,
    events: Sink,
    listeners: Vec<SocketAddr>,
    /// Turns true when the drain period after SIGTERM runs out.
    stop: watch::Receiver<bool>,
    limiter: Arc<Limiter>,
}

impl Shared {
    /// The policy in force now; a connection keeps the one it started with.
    pub fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
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
    let mut bound = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let tcp = listener::bind(l.listen, l.mode == ListenerMode::Tproxy).map_err(|source| {
            ProxyError::Bind {
                addr: l.listen,
                source,
            }
        })?;
        let addr = tcp.local_addr().unwrap_or(l.listen);
        let info = ListenerInfo {
            mode: l.mode,
            addr,
            upstream: l.upstream,
        };
        bound.push((info, tcp));
    }
    let mut terminate = signal(SignalKind::terminate()).map_err(ProxyError::Signal)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ProxyError::Signal)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(ProxyError::Signal)?;
    let mut rotate = signal(SignalKind::user_defined1()).map_err(ProxyError::Signal)?;
    let (events, writer) = Sink::start(&target(&config.events.sink))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let (quit_accepting, accepting_stopped) = watch::channel(false);
    let shared = Arc::new(Shared {
        policy: RwLock::new(Arc::new(policy)),
        detect: config.detect,
        limits: config.limits,
        events,
        listeners: bound.iter().map(|(info, _)| info.addr).collect(),
        stop: stop_rx,
        limiter: Arc::new(Limiter::new(&config.limits)),
    });
    for (info, tcp) in bound {
        eprintln!(
            "portcullis: listening on {} ({})",
            info.addr,
            info.mode.name()
        );
        tokio::spawn(accept_loop(
            Arc::clone(&shared),
            info,
            tcp,
            accepting_stopped.clone(),
        ));
    }
    {
        let policy = shared.policy();
        eprintln!(
            "portcullis: policy {} loaded from {}: {} segment(s)",
            policy.version,
            config.path.display(),
            policy.segments.len()
        );
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
            _ = hangup.recv() => reload(&shared, &config),
            _ = rotate.recv() => {
                let events = shared.events.clone();
                let _ = tokio::task::spawn_blocking(move || events.reopen()).await;
            }
            _ = drops.tick() => {
                let now = shared.events.dropped();
                if now > dropped {
                    eprintln!(
                        "portcullis: {} event(s) dropped in the last {:?}: the event sink cannot keep up",
                        now - dropped,
                        DROP_REPORT
                    );
                    dropped = now;
                }
            }
        }
    }
    let _ = notify::notify("STOPPING=1");

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
    Ok(())
}

/// SIGHUP: load and validate everything; only a fully valid policy replaces the old one.
fn reload(shared: &Shared, config: &config::Config) {
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
            let version = new.policy.version.clone();
            *shared
                .policy
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Arc::new(new.policy);
            eprintln!("portcullis: policy {version} reloaded");
            shared.events.emit(events::reload_event(&version, None));
        }
        Err(problems) => {
            let message = problems.to_string();
            eprintln!("portcullis: reload failed; the old policy stays in force:\n{message}");
            let version = shared.policy().version.clone();
            shared
                .events
                .emit(events::reload_event(&version, Some(&message)));
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    info: ListenerInfo,
    tcp: TcpListener,
    mut quit: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = relay::stopped(&mut quit) => return,
            accepted = tcp.accept() => match accepted {
                Ok((stream, peer)) if info.mode.is_explicit() => {
                    tokio::spawn(explicit::handle(Arc::clone(&shared), info, stream, peer));
                }
                Ok((stream, peer)) => {
                    tokio::spawn(conn::handle(Arc::clone(&shared), info, stream, peer));
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
