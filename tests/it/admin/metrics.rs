//! `GET /metrics` moves with the traffic it counts, read with the Prometheus project's Python
//! text parser (`prometheus_client.parser`), and `GET /connections` lists what is open.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// Parses an exposition with `prometheus_client.parser`; fails the test on a line the parser
/// rejects. Samples are keyed `name{label="value",...}` with labels sorted.
pub fn parse(text: &str) -> BTreeMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value, family.type])
print(json.dumps(out))
"#;
    let mut child = Command::new(python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        panic!(
            "python3-prometheus-client is missing (apt-get install python3-prometheus-client; .ci/run installs it)"
        );
    }
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the exposition: {stderr}\n{text}"
    );
    let samples: Vec<(String, BTreeMap<String, String>, f64, String)> =
        serde_json::from_slice(&out.stdout).unwrap();
    samples
        .into_iter()
        .map(|(name, labels, value, _)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            (format!("{name}{{{}}}", labels.join(",")), value)
        })
        .collect()
}

pub fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let got = admin(addr, "/metrics", &[]);
    assert_eq!(got.status, 200, "{got:?}");
    assert!(
        got.headers
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        got.headers
    );
    parse(&got.body)
}

fn value(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

const ALLOWED_HTTP: &str =
    "portcullis_decisions_total{action=\"allowed\",protocol=\"http\",reason=\"allowed\",segment=\"local\"}";
const BLOCKED_TLS: &str =
    "portcullis_decisions_total{action=\"blocked\",protocol=\"tls\",reason=\"protocol_not_allowed\",segment=\"local\"}";
const CLIENT_DETECTIONS: &str = "portcullis_detection_duration_seconds_count{side=\"client\"}";
const UP: &str = "portcullis_bytes_total{direction=\"upstream\",segment=\"local\"}";
const DOWN: &str = "portcullis_bytes_total{direction=\"downstream\",segment=\"local\"}";
const ACTIVE: &str = "portcullis_connections_active{segment=\"local\"}";

#[test]
fn metrics_counters_move_with_the_traffic_they_count() {
    let web = WebServer::start();
    let (gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let skip = gw.events().len();
    let before = scrape(addr);

    for _ in 0..5 {
        let got = get_through(listen);
        assert_eq!(
            (got.status, got.body.as_str()),
            (200, "hello from upstream\n"),
            "{got:?}"
        );
    }
    // TLS (curl's real ClientHello) to a port that allows only HTTP: T1571, refused.
    for _ in 0..3 {
        let got = curl(&["-k"], &format!("https://localhost:{}/", listen.port()));
        assert!(!got.ok && got.status == 0, "{got:?}");
    }
    let (decisions, closes) = gw.connections_after(skip, 8);
    assert_eq!(decisions.len(), 8);
    let sent: u64 = closes
        .iter()
        .map(|c| c["source"]["bytes"].as_u64().unwrap())
        .sum();
    let received: u64 = closes
        .iter()
        .map(|c| c["destination"]["bytes"].as_u64().unwrap())
        .sum();
    let after = scrape(addr);

    let delta = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(delta(ALLOWED_HTTP), 5.0);
    assert_eq!(delta(BLOCKED_TLS), 3.0);
    assert_eq!(delta(CLIENT_DETECTIONS), 8.0);
    assert_eq!(delta(UP), sent as f64, "bytes agree with the close events");
    assert_eq!(delta(DOWN), received as f64);
    assert!(received > 5 * 20, "the five answers came back: {received}");
    assert_eq!(value(&after, ACTIVE), 0.0, "every connection closed");

    // The histogram is cumulative, ends with +Inf equal to _count, and its buckets span
    // microseconds to seconds.
    let buckets: Vec<(f64, f64)> = after
        .iter()
        .filter(|(k, _)| {
            k.starts_with("portcullis_detection_duration_seconds_bucket{")
                && k.contains("side=\"client\"")
        })
        .map(|(k, v)| {
            let le = k.split("le=\"").nth(1).unwrap().split('"').next().unwrap();
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                },
                *v,
            )
        })
        .collect();
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(
        sorted.first().unwrap().0 <= 0.00001 && sorted.iter().any(|b| b.0 >= 5.0),
        "{sorted:?}"
    );
    assert!(
        sorted.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {sorted:?}"
    );
    assert_eq!(
        sorted.last().unwrap(),
        &(f64::INFINITY, value(&after, CLIENT_DETECTIONS))
    );

    let version = decisions[0]["rule"]["version"].as_str().unwrap();
    assert_eq!(
        value(
            &after,
            &format!("portcullis_policy_info{{version=\"{version}\"}}")
        ),
        1.0
    );
    assert_eq!(value(&after, "portcullis_events_dropped_total{}"), 0.0);
    assert!(after.contains_key("portcullis_events_dropped_total{}"));
    for result in ["success", "failure"] {
        assert!(after.contains_key(&format!(
            "portcullis_policy_reloads_total{{result=\"{result}\"}}"
        )));
    }
}

#[test]
fn open_connections_are_listed_with_their_bytes_and_counted_as_active() {
    let up = keep_open_upstream();
    let (gw, listen, addr) = gateway(up.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let skip = gw.events().len();
    let request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut open = TcpStream::connect(listen).unwrap();
    open.write_all(request).unwrap();
    gw.wait_events(skip + 1);

    let deadline = Instant::now() + Duration::from_secs(10);
    let listed: Value = loop {
        let listed = admin(addr, "/connections", &[]).json();
        if listed[0]["bytes_downstream"].as_u64() > Some(0) {
            break listed;
        }
        assert!(Instant::now() < deadline, "{listed}");
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let c = &listed[0];
    assert_eq!(c["source"], open.local_addr().unwrap().to_string());
    assert_eq!(c["destination"], up.addr.to_string());
    assert_eq!(
        (c["segment"].as_str(), c["protocol"].as_str()),
        (Some("local"), Some("http"))
    );
    assert_eq!(
        (c["action"].as_str(), c["listener"].as_str()),
        (Some("allowed"), Some("forward"))
    );
    assert_eq!(c["bytes_upstream"], request.len());
    assert_eq!(c["bytes_downstream"], 40);
    assert!(c["age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(value(&scrape(addr), ACTIVE), 1.0);

    open.write_all(request).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin(addr, "/connections", &[]).json()[0]["bytes_upstream"] != 2 * request.len() {
        assert!(Instant::now() < deadline, "live bytes never grew");
        thread::sleep(Duration::from_millis(20));
    }
    drop(open);
    gw.wait_events(skip + 2);
    assert_eq!(
        admin(addr, "/connections", &[]).json(),
        serde_json::json!([])
    );
    assert_eq!(value(&scrape(addr), ACTIVE), 0.0);
}

#[test]
fn events_lost_to_a_full_disk_are_counted_and_never_stall_the_data_path() {
    let web = WebServer::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    // /dev/full fails every write with ENOSPC, as a full disk does.
    let config = forward_config(listen, web.addr, &format!("[admin]\nlisten = \"{addr}\"\n"))
        .replace("{EVENTS}", "/dev/full");
    let cfg = ConfigDir::new(
        &config,
        &[(
            "local.toml",
            &local_segment(
                "block",
                &ALLOW_HTTP.replace("PORT", &web.addr.port().to_string()),
            ),
        )],
    );
    let mut child = Command::new(BIN)
        .args(["run", "--config", cfg.config().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(addr);
    for _ in 0..5 {
        let got = get_through(listen);
        assert_eq!(got.status, 200, "{got:?}");
    }
    // Two events per connection, none of them written.
    let deadline = Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let dropped = value(&scrape(addr), "portcullis_events_dropped_total{}");
        if dropped >= 10.0 || Instant::now() > deadline {
            break dropped;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(dropped >= 10.0, "{dropped} events counted as dropped");
}
