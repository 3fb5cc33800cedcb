//! Table-driven decision tests.
