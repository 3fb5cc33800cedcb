//! The one integration-test binary: CLI, forward-listener pipeline and the namespace lab.

mod cli;
mod e2e;
mod forward;
mod lab;
mod support;
