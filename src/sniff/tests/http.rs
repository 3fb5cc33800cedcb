//! HTTP/1.x request sniffer: curl's requests, structure over magic, evasions.

use super::*;
use crate::sniff::http::sniff;
use crate::sniff::HttpRequest;

fn matched(input: &[u8]) -> HttpRequest {
    match sniff(input) {
        Verdict::Match(req) => req,
        other => panic!(
            "expected a request in {:?}, got {other:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[test]
fn curl_get_gives_method_host_without_port_and_user_agent() {
    let req = matched(HTTP_CURL_GET);
    assert_eq!(req.method, "GET");
    assert_eq!(req.host.as_deref(), Some("www.example.test"));
    assert_eq!(req.user_agent.as_deref(), Some("curl/7.88.1"));
}

#[test]
fn lowercase_unknown_method_and_ipv6_literal_host() {
    // curl -X purge -H 'Host: [::1]:8080': the method is kept as sent, brackets and port go.
    let req = matched(HTTP_CURL_IPV6_HOST);
    assert_eq!(req.method, "purge");
    assert_eq!(req.host.as_deref(), Some("::1"));
}

#[test]
fn every_prefix_of_every_request_needs_more_or_matches() {
    for (name, input) in HTTP_FIXTURES {
        let last = check_all_prefixes(name, input, sniff);
        assert!(matches!(last, Verdict::Match(_)), "{name}");
    }
}

#[test]
fn match_waits_for_the_end_of_the_header_block() {
    let end = HTTP_CURL_GET.len();
    assert_eq!(sniff(&HTTP_CURL_GET[..end - 1]), Verdict::NeedMore);
    let request_line_only = b"GET / HTTP/1.1\r\n";
    assert_eq!(sniff(request_line_only), Verdict::NeedMore);
}

#[test]
fn leading_empty_lines_are_tolerated() {
    let expected = matched(HTTP_CURL_GET);
    for lead in [&b"\r\n"[..], b"\r\n\r\n\r\n", b"\n"] {
        let input = [lead, HTTP_CURL_GET].concat();
        assert_eq!(
            check_all_prefixes("lead", &input, sniff),
            Verdict::Match(expected.clone())
        );
    }
    let too_many = [&b"\r\n".repeat(17)[..], HTTP_CURL_GET].concat();
    assert_eq!(sniff(&too_many), Verdict::NoMatch);
}

#[test]
fn bytes_after_the_header_block_do_not_change_the_answer() {
    let expected = matched(HTTP_CURL_GET);
    let input = [HTTP_CURL_GET, b"body bytes \x00\xff"].concat();
    assert_eq!(sniff(&input), Verdict::Match(expected));
}

#[test]
fn any_token_is_a_method() {
    for method in ["get", "M-SEARCH", "PROPFIND", "X_CUSTOM.1"] {
        let input = format!("{method} /x HTTP/1.0\r\n\r\n");
        let req = matched(input.as_bytes());
        assert_eq!(req.method, method);
        assert_eq!(req.host, None); // HTTP/1.0 without Host
    }
}

#[test]
fn lines_without_an_http_version_are_refused_at_their_line_end() {
    assert_eq!(sniff(b"EHLO mail.example.test"), Verdict::NeedMore);
    assert_eq!(sniff(b"EHLO mail.example.test\r"), Verdict::NoMatch);
    assert_eq!(
        sniff(b"MAIL FROM:<a@example.test> SIZE=100\r\n"),
        Verdict::NoMatch
    );
    assert_eq!(sniff(b"GET /\r\n"), Verdict::NoMatch); // HTTP/0.9
    assert_eq!(sniff(b"USER anonymous\r\n"), Verdict::NoMatch);
}

#[test]
fn http2_preface_is_not_http1() {
    assert_eq!(sniff(HTTP2_CURL), Verdict::NoMatch);
    assert_eq!(sniff(b"PRI * HTTP/2"), Verdict::NoMatch);
}

#[test]
fn lengths_are_bounded() {
    let long_method = format!("{} / HTTP/1.1\r\n\r\n", "A".repeat(33));
    assert_eq!(sniff(long_method.as_bytes()), Verdict::NoMatch);
    let long_target = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(8000));
    assert_eq!(sniff(long_target.as_bytes()), Verdict::NoMatch);
    let mut long_head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long_head.resize(16 * 1024 + 1, b'a');
    assert_eq!(sniff(&long_head), Verdict::NoMatch);
}

#[test]
fn host_variants() {
    let host = |h: &str| sniff(format!("GET / HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes());
    let named = |name: &str| {
        Verdict::Match(HttpRequest {
            method: "GET".into(),
            host: Some(name.into()),
            user_agent: None,
        })
    };
    assert_eq!(host("WWW.Example.COM:8080"), named("www.example.com"));
    assert_eq!(host("  example.com  "), named("example.com"));
    assert_eq!(host("example.com:"), named("example.com"));
    assert_eq!(host("[2001:DB8::1]"), named("2001:db8::1"));
    assert_eq!(host("192.0.2.1:80"), named("192.0.2.1"));
    for bad in ["a b", "a:b", "[::1", "[::1]x", ":80", "user@evil.test"] {
        assert_eq!(host(bad), Verdict::NoMatch, "{bad}");
    }
}

#[test]
fn ambiguous_header_blocks_are_refused() {
    let two_hosts = b"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n";
    assert_eq!(sniff(two_hosts), Verdict::NoMatch);
    let space_before_colon = b"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n";
    assert_eq!(sniff(space_before_colon), Verdict::NoMatch);
    let folded = b"GET / HTTP/1.1\r\nHost: a.test\r\n b.test\r\n\r\n";
    assert_eq!(sniff(folded), Verdict::NoMatch);
    let bare_cr = b"GET / HTTP/1.1\r\nHost: a.test\rX: y\r\n\r\n";
    assert_eq!(sniff(bare_cr), Verdict::NoMatch);
}

#[test]
fn header_names_are_case_insensitive() {
    let req = matched(b"GET / HTTP/1.1\r\nhOsT: A.test\r\nuser-AGENT: x/1\r\n\r\n");
    assert_eq!(req.host.as_deref(), Some("a.test"));
    assert_eq!(req.user_agent.as_deref(), Some("x/1"));
}
