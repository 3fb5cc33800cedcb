//! Configuration loading: `portcullis.toml` and the policy directory, parsed in two stages
//! (raw serde structs, then validated types) with every problem reported as
//! `FILE:LINE:COL: message`.
//!
//! Relative paths in `portcullis.toml` (`policy_dir`, `file:` sinks, admin certificates)
//! are resolved against the directory of the config file. Every `*.toml` in `policy_dir`
//! except `services.toml` is one segment; `services.toml` overrides the built-in service
//! catalogue protocol by protocol.

mod load;
mod parse;
mod problem;
mod raw;
mod segment;
mod services;
mod settings;
#[cfg(test)]
mod tests;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use load::{load, load_embedded, load_from_strs, EMBEDDED};
pub use problem::{Problem, Problems};
pub use settings::{MAX_DETECT_BYTES, MIN_DETECT_BYTES};

use crate::policy::Policy;

/// The validated `portcullis.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file, or `<embedded>` for the built-in default.
    pub path: PathBuf,
    /// The directory the policy was read from (`None` for the embedded default and for
    /// configurations parsed from strings).
    pub policy_dir: Option<PathBuf>,
    pub listeners: Vec<Listener>,
    pub detect: Detect,
    pub events: Events,
    pub limits: Limits,
    pub admin: Option<Admin>,
}

/// One `[[listener]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub mode: ListenerMode,
    pub listen: SocketAddr,
    /// `forward` only: the fixed destination.
    pub upstream: Option<SocketAddr>,
}

/// How connections reach a listener (contract names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerMode {
    Redirect,
    Tproxy,
    Forward,
    HttpProxy,
    Socks5,
}

impl ListenerMode {
    pub const fn name(self) -> &'static str {
        match self {
            ListenerMode::Redirect => "redirect",
            ListenerMode::Tproxy => "tproxy",
            ListenerMode::Forward => "forward",
            ListenerMode::HttpProxy => "http_proxy",
            ListenerMode::Socks5 => "socks5",
        }
    }

    /// `http_proxy` and `socks5`: the client names its destination in the proxy protocol.
    pub const fn is_explicit(self) -> bool {
        matches!(self, ListenerMode::HttpProxy | ListenerMode::Socks5)
    }
}

/// `[detect]`: the budget for identifying a connection's protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detect {
    /// Client silence after which the server's banner is read instead.
    pub client_first: Duration,
    /// Total budget for a verdict.
    pub timeout: Duration,
    /// Cap on bytes buffered for detection (16389 to 1 MiB).
    pub max_bytes: usize,
}

/// `[events]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub sink: Sink,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    /// `file:PATH`, relative paths resolved against the config file's directory.
    File(PathBuf),
}

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// New connections per second per source address.
    pub rate_per_source: u32,
    pub rate_burst_per_source: u32,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// After SIGTERM: how long established connections may finish.
    pub drain: Duration,
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
}

/// A configuration and the policy it points at, both valid.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub policy: Policy,
}
