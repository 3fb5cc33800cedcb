//! portcullis: an inline egress gateway that identifies each TCP connection's protocol from
//! its first bytes and enforces, per network segment, which protocols may leave on which
//! ports (MITRE ATT&CK T1571, mitigations M1030 and M1031).
#![forbid(unsafe_code)]

pub mod config;
pub mod events;
pub mod policy;
pub mod proxy;
pub mod replay;
pub mod sniff;
