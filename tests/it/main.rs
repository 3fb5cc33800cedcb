//! The one integration-test binary: CLI, forward-listener pipeline and the namespace lab.
mod e2e;
mod lab;
