//! The namespace lab with the admin endpoint on (loopback inside `gw`): redirected traffic
//! from both segments moves `/metrics` exactly as its events say, read with the Prometheus
//! parser; `/connections` is empty once everything closed.

use crate::lab::{Conn, Gateway, Lab, ADMIN, CB, CB_V4, CM, CM_V4, GW, SSH_V4, WEB_V4};

use super::metrics::parse;

fn scrape(lab: &Lab) -> std::collections::BTreeMap<String, f64> {
    let out = lab.run(
        GW,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            &format!("http://{ADMIN}/metrics"),
        ],
    );
    assert!(out.status.success());
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn decisions(segment: &str, action: &str, reason: &str, protocol: &str) -> String {
    format!("portcullis_decisions_total{{action=\"{action}\",protocol=\"{protocol}\",reason=\"{reason}\",segment=\"{segment}\"}}")
}

#[test]
fn lab_metrics_count_redirected_traffic_per_segment_as_the_events_do() {
    let Some(lab) = Lab::start(Gateway::On) else {
        return;
    };
    let before = scrape(&lab);

    assert!(lab
        .curl(CB, &["-o", "/dev/null", "http://web.lab.test/"])
        .status
        .success());
    assert!(lab
        .curl(CB, &["-o", "/dev/null", "https://web.lab.test/"])
        .status
        .success());
    // SSH on 443: refused in the block segment, let through with an alert in monitor.
    assert!(!lab.ssh(CB, 443, "true").status.success());
    assert!(lab.ssh(CM, 443, "true").status.success());
    let conns: Vec<(&str, Conn)> = vec![
        ("block", lab.connection(CB_V4, WEB_V4, 80)),
        ("block", lab.connection(CB_V4, WEB_V4, 443)),
        ("block", lab.connection(CB_V4, SSH_V4, 443)),
        ("monitor", lab.connection(CM_V4, SSH_V4, 443)),
    ];
    let after = scrape(&lab);
    let delta = |key: &str| {
        after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
    };

    assert_eq!(
        delta(&decisions("block", "allowed", "allowed", "http")),
        1.0
    );
    assert_eq!(delta(&decisions("block", "allowed", "allowed", "tls")), 1.0);
    assert_eq!(
        delta(&decisions(
            "block",
            "blocked",
            "protocol_not_allowed",
            "ssh"
        )),
        1.0
    );
    assert_eq!(
        delta(&decisions(
            "monitor",
            "alerted",
            "protocol_not_allowed",
            "ssh"
        )),
        1.0
    );
    for segment in ["block", "monitor"] {
        let mine = || conns.iter().filter(|(s, _)| *s == segment).map(|(_, c)| c);
        let up: u64 = mine().map(|c| c.close_u64("/source/bytes")).sum();
        let down: u64 = mine().map(|c| c.close_u64("/destination/bytes")).sum();
        let key =
            |d: &str| format!("portcullis_bytes_total{{direction=\"{d}\",segment=\"{segment}\"}}");
        assert_eq!(delta(&key("upstream")), up as f64, "{segment}");
        assert_eq!(delta(&key("downstream")), down as f64, "{segment}");
        assert!(down > 0, "{segment}: answers came back");
        assert_eq!(
            after[&format!("portcullis_connections_active{{segment=\"{segment}\"}}")],
            0.0
        );
    }
    // The TLS and HTTP clients spoke first; the ssh clients too (OpenSSH sends its banner
    // at once).
    assert_eq!(
        delta("portcullis_detection_duration_seconds_count{side=\"client\"}"),
        4.0
    );
    let version = conns[0].1.d("/rule/version");
    assert_eq!(
        after[&format!("portcullis_policy_info{{version=\"{version}\"}}")],
        1.0
    );
    let listed = lab.run(
        GW,
        &[
            "curl",
            "-sS",
            "--max-time",
            "10",
            &format!("http://{ADMIN}/connections"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}
