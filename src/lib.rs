//! portcullis: an inline egress gateway that identifies each TCP connection's protocol from
//! its first bytes and enforces, per network segment, which protocols may leave on which
//! ports (MITRE ATT&CK T1571, mitigations M1030 and M1031).
//!
//! # Layout
//!
//! - [`sniff`]: protocol identification, pure functions over `&[u8]` answering
//!   `NeedMore | Match | NoMatch`: the catalogue of DESIGN.md, client-first (TLS
//!   ClientHello with SNI/ALPN/JA4, HTTP/1.x, the HTTP/2 preface, SSH, ...) and server-first
//!   (SMTP/FTP/POP3/IMAP/NNTP greetings, MySQL, VNC, SSH banners, ...). No I/O, no tokio.
//! - [`policy`]: segments, rules, port sets, the service catalogue and `decide()`: data in,
//!   a `Decision` (action, reason, rule) out. No I/O, no tokio.
//! - [`config`]: raw serde structs -> validated types, every problem as `FILE:LINE:COL`; the
//!   embedded default (`src/default/`) and the built-in catalogue (`policy/services.toml`).
//! - [`proxy`]: the data path: listeners (redirect, TPROXY, forward), original destination,
//!   admission limits, the detection driver (client first, else the server's banner), the
//!   agreement check on the server's first turn, native refusals, the explicit proxies
//!   (`proxy::explicit`: HTTP CONNECT / absolute-form and SOCKS5, whose tunnels go through
//!   the same detection and decision), and the splice(2) relay. The only module that runs
//!   tokio, and the only one that emits live events.
//! - [`events`]: the ECS event schema and the writer thread that keeps the data path from
//!   ever blocking on the sink.
//! - [`metrics`]: Prometheus counters, gauges and histograms over atomics, the table of open
//!   connections, and the text exposition.
//! - [`admin`]: the admin endpoint (hyper, optionally rustls with client certificates):
//!   health, readiness, metrics, the policy, open connections, reload.
//! - [`replay`]: `portcullis replay`: pcap/pcapng captures -> TCP flows -> each direction's
//!   first turn reassembled -> the same sniffers and `decide()` as the live path -> the same
//!   decision events, plus a summary.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod events;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod replay;
pub mod sniff;
