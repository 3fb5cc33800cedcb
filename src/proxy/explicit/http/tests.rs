//! The request-head rules of the `http_proxy` listener: where a head ends, what a CONNECT
//! may name, and what an absolute-form request becomes before it is forwarded.

use super::*;

fn connect(authority: &str) -> Result<Request, &'static str> {
    parse(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes())
}

#[test]
fn the_head_ends_at_the_first_empty_line_even_split_across_reads() {
    let head = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01";
    let whole = head.len() - 3;
    assert_eq!(head_end(head, 0), Some(whole));
    // Every split point: the terminator may straddle one read and the next.
    for cut in 0..whole {
        assert_eq!(head_end(&head[..cut], 0), None, "cut at {cut}");
        assert_eq!(head_end(head, cut), Some(whole), "cut at {cut}");
    }
    assert_eq!(head_end(b"GET http://a/ HTTP/1.0\n\n", 0), Some(24));
    assert_eq!(head_end(b"GET http://a/ HTTP/1.0\n\n", 23), Some(24));
    assert_eq!(head_end(b"CONNECT a:443 HTTP/1.1\r\n", 0), None);
}

#[test]
fn connect_names_a_host_and_a_port() {
    let target = |host: Host, port| Ok(Request::Connect(Target { host, port }));
    assert_eq!(
        connect("Web.Example.com:443"),
        target(Host::Name("web.example.com".into()), 443)
    );
    assert_eq!(
        connect("10.1.2.3:22"),
        target(Host::Ip("10.1.2.3".parse().unwrap()), 22)
    );
    assert_eq!(
        connect("[fd00::1]:8443"),
        target(Host::Ip("fd00::1".parse().unwrap()), 8443)
    );
    for bad in [
        "web.example.com",
        "web.example.com:0",
        "web:99999",
        "fd00::1:443",
        "[web]:443",
        ":443",
    ] {
        assert_eq!(connect(bad), Err("CONNECT needs host:port"), "{bad}");
    }
}

#[test]
fn garbage_and_oversized_header_counts_are_refused() {
    assert_eq!(
        parse(b"\x16\x03\x01\x02\x00\r\n\r\n"),
        Err("the request is not HTTP/1.x")
    );
    let mut many = b"CONNECT a:443 HTTP/1.1\r\n".to_vec();
    for i in 0..=MAX_HEADERS {
        many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(parse(&many), Err("too many header fields"));
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err("a proxy request needs an absolute URI (http://host/...)")
    );
}

#[test]
fn absolute_form_is_rewritten_without_hop_by_hop_fields_or_proxy_credentials() {
    let head = b"POST http://web.example.com:8080/up?x=1#frag HTTP/1.1\r\n\
        Host: web.example.com:8080\r\nProxy-Authorization: Basic c2VjcmV0\r\n\
        Proxy-Connection: keep-alive, X-Hop\r\nConnection: Keep-Alive\r\nKeep-Alive: 300\r\n\
        X-Hop: 1\r\nTE: trailers\r\nUser-Agent: curl/8\r\nContent-Length: 5\r\n\r\n";
    let Ok(Request::Absolute(req)) = parse(head) else {
        panic!("not absolute-form: {:?}", parse(head));
    };
    assert_eq!(
        req.target,
        Target {
            host: Host::Name("web.example.com".into()),
            port: 8080
        }
    );
    assert_eq!(req.body_len, 5);
    assert_eq!(
        String::from_utf8(req.head).unwrap(),
        "POST /up?x=1 HTTP/1.1\r\nHost: web.example.com:8080\r\nUser-Agent: curl/8\r\n\
         Content-Length: 5\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn absolute_form_limits() {
    let req = |line: &str| parse(format!("{line}\r\nHost: a\r\n\r\n").as_bytes());
    let Ok(Request::Absolute(plain)) = req("GET http://a HTTP/1.1") else {
        panic!("no path means /");
    };
    assert!(plain.head.starts_with(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    assert_eq!(plain.target.port, 80);
    assert_eq!(
        req("GET https://a/ HTTP/1.1"),
        Err("only http:// URIs are forwarded; use CONNECT for https")
    );
    assert_eq!(
        req("GET http://user:pw@a/ HTTP/1.1"),
        Err("credentials in the URI are not forwarded")
    );
    let chunked = b"POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        parse(chunked),
        Err("chunked request bodies are not forwarded; send Content-Length")
    );
}
