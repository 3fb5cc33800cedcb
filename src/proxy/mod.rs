//! Proxy (placeholder).
