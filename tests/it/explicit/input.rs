//! Bad input to the explicit listeners, on loopback: garbage, a request line without an end,
//! oversized heads, a slowloris client, SOCKS4 and TLS on the SOCKS5 port, unsupported
//! methods and commands, truncated requests. Each gets a clear refusal or a close, within
//! the detection budget, and other clients are served meanwhile. Clients are python (raw
//! sockets; its ssl module makes the ClientHello) and curl.

use std::net::SocketAddr;
use std::process::Command;

use crate::support::{forward_config, free_port, local_segment, ConfigDir, Gateway};

/// The gateway with an `http_proxy` and a `socks5` listener (and a forward listener its
/// readiness probe uses); a one-second detection budget bounds every handshake.
struct Proxies {
    _gw: Gateway,
    http: SocketAddr,
    socks: SocketAddr,
}

fn start() -> Proxies {
    let probe: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let nowhere: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let socks: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let extra = format!(
        "[[listener]]\nmode = \"http_proxy\"\nlisten = \"{http}\"\n\n\
         [[listener]]\nmode = \"socks5\"\nlisten = \"{socks}\"\n\n[detect]\ntimeout_ms = 1000\nclient_first_ms = 200\n"
    );
    let rules = "[[allow]]\nports = [443]\nprotocols = [\"tls\"]\n";
    let cfg = ConfigDir::new(
        &forward_config(probe, nowhere, &extra),
        &[("local.toml", &local_segment("block", rules))],
    );
    Proxies {
        _gw: Gateway::start(cfg, probe),
        http,
        socks,
    }
}

/// Runs `script` with `PROXY` bound to (host, port); returns what it printed.
fn python(proxy: SocketAddr, script: &str) -> String {
    let prelude = format!(
        "import socket, ssl, struct, time\nPROXY = ('{}', {})\n\
         def recv_all(s, limit=65536):\n    out = b''\n    while len(out) < limit:\n        \
         try:\n            d = s.recv(4096)\n        except (ConnectionResetError, socket.timeout):\n            break\n        \
         if not d: break\n        out += d\n    return out\n",
        proxy.ip(),
        proxy.port()
    );
    let out = Command::new("python3")
        .args(["-c", &format!("{prelude}{script}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn garbage_and_endless_or_oversized_heads_get_400_and_a_close() {
    let p = start();
    let send = |payload: &str| {
        python(
            p.http,
            &format!(
                "s = socket.create_connection(PROXY, timeout=10)\ntry:\n    s.sendall({payload})\nexcept OSError:\n    pass\n\
                 print(recv_all(s).decode('latin-1'))\n"
            ),
        )
    };
    assert_eq!(
        status_line(&send("b'\\x00\\x17garbage\\xff\\r\\n\\r\\n'")),
        "HTTP/1.1 400 Bad Request"
    );
    // A request line that never ends: refused once the head bound is passed.
    assert_eq!(
        status_line(&send("b'CONNECT ' + b'a' * 40000")),
        "HTTP/1.1 400 Bad Request"
    );
    // Header fields beyond the bound.
    let big = "b'CONNECT a.test:443 HTTP/1.1\\r\\n' + b'X-Pad: ' + b'p' * 20000 + b'\\r\\n\\r\\n'";
    assert_eq!(status_line(&send(big)), "HTTP/1.1 400 Bad Request");
    // A request line cut short by the client closing: closed without an answer.
    let truncated = python(
        p.http,
        "s = socket.create_connection(PROXY, timeout=10)\ns.sendall(b'CONNECT a.test:4')\n\
         s.shutdown(socket.SHUT_WR)\nprint(len(recv_all(s)))\n",
    );
    assert_eq!(truncated, "0");
}

/// A client that sends its head a byte at a time gets 408 and a close while it is still
/// sending; meanwhile another client is answered at once.
#[test]
fn slowloris_gets_408_while_others_are_served() {
    let p = start();
    let script = "import threading\n\
        slow = socket.create_connection(PROXY, timeout=15)\n\
        answer = []\n\
        def reader():\n    answer.append(recv_all(slow))\n\
        t = threading.Thread(target=reader)\nt.start()\n\
        other = socket.create_connection(PROXY, timeout=10)\n\
        other.sendall(b'CONNECT a.test:25 HTTP/1.1\\r\\n\\r\\n')\n\
        print(recv_all(other).decode().split('\\r\\n')[0])\n\
        sent = 0\n\
        for b in b'CONNECT a.test:443 HTTP/1.1\\r\\nX-Slow: ' + b'x' * 40:\n    \
            if answer: break\n    \
            try:\n        slow.sendall(bytes([b]))\n    except OSError:\n        break\n    \
            sent += 1\n    time.sleep(0.2)\n\
        t.join()\n\
        print(answer[0].decode().split('\\r\\n')[0])\n\
        print('unfinished' if sent < 70 else 'finished')\n";
    let out = python(p.http, script);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "HTTP/1.1 403 Forbidden",
            "HTTP/1.1 408 Request Timeout",
            "unfinished"
        ]
    );
}

#[test]
fn socks4_and_tls_on_the_socks5_port_are_refused_in_their_own_terms() {
    let p = start();
    // curl speaking SOCKS4 learns its request was rejected (code 91).
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--socks4",
            &p.socks.to_string(),
            "http://10.9.9.9/",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("91") || err.contains("rejected"),
        "curl: {err}"
    );
    // A TLS ClientHello (made by python's ssl module) gets "no acceptable methods".
    let tls = python(
        p.socks,
        "ctx = ssl.create_default_context()\nbio_in, bio_out = ssl.MemoryBIO(), ssl.MemoryBIO()\n\
         obj = ctx.wrap_bio(bio_in, bio_out, server_hostname='a.test')\n\
         try:\n    obj.do_handshake()\nexcept ssl.SSLWantReadError:\n    pass\n\
         s = socket.create_connection(PROXY, timeout=10)\ns.sendall(bio_out.read())\n\
         print(recv_all(s).hex())\n",
    );
    assert_eq!(tls, "05ff");
}

#[test]
fn socks5_methods_commands_and_truncated_requests_get_reply_codes() {
    let p = start();
    let exchange = |greeting: &str, request: &str| {
        python(
            p.socks,
            &format!(
                "s = socket.create_connection(PROXY, timeout=10)\ns.sendall({greeting})\n\
                 m = s.recv(2)\nif m != b'\\x05\\x00':\n    print(m.hex())\n    raise SystemExit\n\
                 s.sendall({request})\ns.shutdown(socket.SHUT_WR)\nprint(recv_all(s)[:2].hex())\n"
            ),
        )
    };
    // Username/password only: no acceptable method.
    assert_eq!(exchange("b'\\x05\\x01\\x02'", "b''"), "05ff");
    let to = "b'\\x01\\x01\\x01\\x01\\x01\\xbb'";
    // BIND and UDP ASSOCIATE: command not supported.
    assert_eq!(
        exchange(
            "b'\\x05\\x01\\x00'",
            &format!("b'\\x05\\x02\\x00\\x01' + {to}")
        ),
        "0507"
    );
    assert_eq!(
        exchange(
            "b'\\x05\\x01\\x00'",
            &format!("b'\\x05\\x03\\x00\\x01' + {to}")
        ),
        "0507"
    );
    // An unknown address type; a request cut short.
    assert_eq!(
        exchange(
            "b'\\x05\\x01\\x00'",
            &format!("b'\\x05\\x01\\x00\\x09' + {to}")
        ),
        "0508"
    );
    assert_eq!(
        exchange("b'\\x05\\x01\\x00'", "b'\\x05\\x01\\x00\\x03\\x0aweb'"),
        "0501"
    );
    // A port no rule names, by address: not allowed by the ruleset.
    assert_eq!(
        exchange(
            "b'\\x05\\x01\\x00'",
            "b'\\x05\\x01\\x00\\x01\\x0a\\x09\\x09\\x09\\x00\\x19'"
        ),
        "0502"
    );
}
