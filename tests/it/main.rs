//! The one integration-test binary: CLI, forward-listener pipeline and the namespace lab.
// Test code: a failed step is reported by panicking (clippy.toml allows this in #[test]
// functions; the helpers they share are test code too).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod banners;
mod cli;
mod e2e;
mod explicit;
mod forward;
mod lab;
mod ops;
mod replay;
mod support;
mod tproxy;
