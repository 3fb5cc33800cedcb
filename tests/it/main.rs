//! The one integration-test binary: CLI, forward-listener pipeline and the namespace lab.

mod cli;
mod forward;
mod support;
