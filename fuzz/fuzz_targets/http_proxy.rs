//! Fuzz target: the HTTP proxy's request head, as a client sends it.
//!
//! - Finding the head's end never panics, and searching again from where an earlier read
//!   stopped finds the same end (the listener searches each read's new bytes only).
//! - Parsing the head never panics.
//! - An absolute-form request's rewritten head, the one the origin server gets, is one
//!   complete HTTP/1.1 request: exactly one `Host`, `Connection: close`, and none of the
//!   client's proxy credentials or hop-by-hop fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::proxy::fuzzing::{head_end, parse, Request};

fuzz_target!(|data: &[u8]| {
    let whole = head_end(data, 0);
    for searched in 0..=data.len().min(512) {
        if whole.is_some_and(|end| end <= searched) {
            break;
        }
        assert_eq!(head_end(data, searched), whole, "searched {searched}");
    }
    let Some(end) = whole else {
        let _ = parse(data);
        return;
    };
    let Ok(Request::Absolute(request)) = parse(&data[..end]) else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; 256];
    let mut sent = httparse::Request::new(&mut headers);
    let parsed = sent.parse(&request.head);
    assert!(
        matches!(parsed, Ok(httparse::Status::Complete(n)) if n == request.head.len()),
        "the rewritten head is not one complete request: {parsed:?}"
    );
    assert_eq!(sent.version, Some(1));
    let named = |name: &str| {
        sent.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    };
    assert_eq!(named("host"), 1);
    assert_eq!(named("connection"), 1);
    for gone in [
        "proxy-authorization",
        "proxy-connection",
        "keep-alive",
        "transfer-encoding",
        "upgrade",
    ] {
        assert_eq!(named(gone), 0, "{gone} reached the origin server");
    }
});
