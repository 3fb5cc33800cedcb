//! The admin endpoint cannot be used to starve the gateway: connections beyond its limit are
//! closed at once, an idle connection is closed after the request-head deadline, and the
//! data path keeps forwarding throughout.

use std::io::Read;
use std::net::TcpStream;
use std::time::Instant;

use super::*;

/// Reads (discarding what comes) until the server closes the connection; `Err` with what
/// was read when `limit` passes first.
fn closed_within(mut s: &TcpStream, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still open; read {:?}",
                String::from_utf8_lossy(&seen)
            ));
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
            Err(e) => return Err(format!("{e}")),
        }
    }
}

#[test]
fn admin_connections_are_limited_and_idle_ones_time_out_without_touching_the_data_path() {
    let web = WebServer::start();
    let (_gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    // Let the endpoint finish with the readiness probe's connection.
    thread::sleep(Duration::from_millis(300));
    // portcullis::admin::MAX_CONNECTIONS idle connections that never send a request...
    let idle: Vec<TcpStream> = (0..16).map(|_| TcpStream::connect(addr).unwrap()).collect();
    thread::sleep(Duration::from_millis(200));
    // ... and every one after them is closed at once.
    for _ in 0..4 {
        let over = TcpStream::connect(addr).unwrap();
        closed_within(&over, Duration::from_secs(3))
            .expect("a connection over the limit is closed");
    }
    let through = get_through(listen);
    assert_eq!(
        through.status, 200,
        "the data path is untouched: {through:?}"
    );

    // The request-head deadline (5 s) closes every idle connection, freeing the endpoint.
    for s in &idle {
        closed_within(s, Duration::from_secs(15)).expect("an idle admin connection is closed");
    }
    assert_eq!(admin(addr, "/healthz", &[]).status, 200);
}
