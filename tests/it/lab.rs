//! The end-to-end namespace lab: client, gateway and server namespaces with real servers
//! (python HTTPS, sshd) and portcullis behind an nftables redirect, torn down on drop.
//!
//! Topology (one lab per test; every name carries `pcl<pid>-<n>`):
//! `cb` 10.77.1.2 fd77:1::2 ─ `gw` ─ `srv` 10.77.2.2 (web) 10.77.2.3 (sshd) fd77:2::2 (web)
//! `cm` 10.77.3.2 fd77:3::2 ─┘  10.77.1.1 10.77.3.1 10.77.2.1 (+ fd77:N::1), forwarding on.
//! Segment "block" is 10.77.1.0/24 + fd77:1::/64, segment "monitor" 10.77.3.0/24 + fd77:3::/64.

use std::fs;
use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

mod banners;
mod capture;
mod clients;
mod events;
mod host;
mod servers;

pub use banners::{FTP_FILE, FTP_V4, SMTP_V4};
pub use events::Conn;
pub use host::tool;
use host::{is_root, kill_group, need, remove_namespace, remove_stale};

/// Client of the block segment.
pub const CB: Ns = Ns("cb");
/// Client of the monitor segment.
pub const CM: Ns = Ns("cm");
/// The gateway.
pub const GW: Ns = Ns("gw");
/// The servers.
pub const SRV: Ns = Ns("srv");

pub const CB_V4: &str = "10.77.1.2";
pub const CB_V6: &str = "fd77:1::2";
pub const CM_V4: &str = "10.77.3.2";
pub const WEB_V4: &str = "10.77.2.2";
pub const WEB_V6: &str = "fd77:2::2";
pub const SSH_V4: &str = "10.77.2.3";

/// Longest a client command may run before `timeout` kills it.
const CLIENT_SECS: u64 = 30;
const READY: Duration = Duration::from_secs(15);
const EVENT_WAIT: Duration = Duration::from_secs(15);

/// A namespace role in the lab.
#[derive(Clone, Copy, Debug)]
pub struct Ns(&'static str);

/// Whether portcullis runs in `gw` (behind an nftables redirect, or TPROXY), or `gw` only
/// routes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Gateway {
    On,
    Tproxy,
    Off,
}

struct Proc {
    name: &'static str,
    child: Child,
}

/// One running lab. Dropping it kills every process it started and removes its namespaces.
pub struct Lab {
    id: String,
    dir: tempfile::TempDir,
    namespaces: Vec<String>,
    procs: Vec<Proc>,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);
static STALE: Once = Once::new();

impl Lab {
    /// Builds a lab, or prints `SKIP: ...` and returns `None` when it cannot run here (not
    /// root, no nft). With `CI` set it fails instead: CI must run the lab.
    pub fn start(gateway: Gateway) -> Option<Lab> {
        let missing = if !is_root() {
            Some("not running as root")
        } else if tool("nft").is_none() {
            Some("`nft` (nftables) is not installed")
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but the namespace lab cannot run: {why}"
            );
            println!("SKIP: namespace lab: {why}");
            return None;
        }
        let ip = need("ip");
        STALE.call_once(|| remove_stale(&ip));
        let id = format!(
            "pcl{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("{id}-"))
            .tempdir()
            .expect("tempdir");
        let mut lab = Lab {
            id,
            dir,
            namespaces: Vec::new(),
            procs: Vec::new(),
        };
        lab.build_network();
        lab.start_servers();
        match gateway {
            Gateway::On => lab.start_gateway(false),
            Gateway::Tproxy => lab.start_gateway(true),
            Gateway::Off => {}
        }
        Some(lab)
    }

    pub fn ns(&self, ns: Ns) -> String {
        format!("{}-{}", self.id, ns.0)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in [
                "portcullis.log",
                "web.log",
                "sshd.events.log",
                "events.jsonl",
            ] {
                let text = fs::read_to_string(self.path(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("---- lab {} {name} (last lines) ----", self.id);
                tail.iter().rev().for_each(|l| eprintln!("{l}"));
            }
        }
        for p in &mut self.procs {
            kill_group(p.child.id());
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        if let Some(ip) = tool("ip") {
            for name in &self.namespaces {
                remove_namespace(&ip, name);
            }
        }
    }
}
