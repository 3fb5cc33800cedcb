//! The command line as an operator uses it: check, explain, sniff, and `run` refusing a bad
//! policy with the same messages as `check`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

fn json(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn shipped_examples_are_valid() {
    for config in [
        "examples/quickstart/portcullis.toml",
        "examples/gateway/portcullis.toml",
    ] {
        let out = Command::new(BIN)
            .args(["check", "--config", &repo(config)])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{config}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_and_run_report_every_problem_with_file_line_col_and_exit_1() {
    let cfg = ConfigDir::new(
        "policy_dir = \"policy\"\n\n[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:0\"\n",
        &[(
            "ws.toml",
            "segment = \"ws\"\nsources = [\"10.0.0.0/8\"]\nmode = \"block\"\n\n[[allow]]\nports = [443]\nprotocols = [\"tls\", \"sshh\"]\n\n[[allow]]\nports = [\"9000-8000\"]\nprotocols = [\"http\"]\n",
        )],
    );
    let check = cfg.portcullis(&["check"]);
    assert_eq!(check.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&check.stderr).to_string();
    let file = cfg.dir.path().join("policy/ws.toml").display().to_string();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:7:21: ")) && l.contains("sshh")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{file}:10:10: ")) && l.contains("9000-8000")),
        "{stderr}"
    );

    let run = cfg.portcullis(&["run"]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        stderr,
        "run must print what check prints"
    );
}

#[test]
fn explain_names_the_reason_and_the_rule() {
    let config = repo("examples/gateway/portcullis.toml");
    let ask = |destination: &str, protocol: &str, extra: &[&str]| {
        let mut args = vec![
            "explain",
            "--config",
            &config,
            "--source",
            "10.10.1.5",
            "--destination",
            destination,
            "--protocol",
            protocol,
        ];
        args.extend_from_slice(extra);
        json(&Command::new(BIN).args(&args).output().unwrap())
    };
    let ssh_on_443 = ask("203.0.113.7:443", "ssh", &[]);
    assert_eq!(ssh_on_443["reason"], "protocol_not_allowed");
    assert_eq!(
        ssh_on_443["action"], "alerted",
        "workstations is in monitor mode"
    );
    assert_eq!(ssh_on_443["would_block"], true);
    assert_eq!(ssh_on_443["rule"]["id"], "workstations/allow[0]");
    assert_eq!(ssh_on_443["expected_protocols"], serde_json::json!(["tls"]));

    let tls = ask(
        "203.0.113.7:443",
        "tls",
        &["--server-name", "www.example.com"],
    );
    assert_eq!(
        (tls["reason"].as_str(), tls["action"].as_str()),
        (Some("allowed"), Some("allowed"))
    );

    let exempt = ask("10.1.2.3:13505", "unknown", &[]);
    assert_eq!(exempt["reason"], "exempt_destination");

    let bad = Command::new(BIN)
        .args([
            "explain",
            "--config",
            &config,
            "--source",
            "10.10.1.5",
            "--destination",
            "203.0.113.7:443",
            "--protocol",
            "sshh",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn sniff_reports_protocol_side_and_metadata() {
    let hello = repo("tests/fixtures/sniff/tls_curl.bin");
    let out = json(
        &Command::new(BIN)
            .args(["sniff", "--port", "8088", "--client-file", &hello])
            .output()
            .unwrap(),
    );
    assert_eq!(out["protocol"], "tls");
    assert_eq!(out["detection"], "matched");
    assert_eq!(out["side"], "client");
    assert!(out["tls"]["client"]["ja4"]
        .as_str()
        .unwrap()
        .starts_with("t13d"));

    let get = "474554202f20485454502f312e310d0a486f73743a206578616d706c652e636f6d0d0a0d0a";
    let out = json(
        &Command::new(BIN)
            .args(["sniff", "--port", "13505", "--client-hex", get])
            .output()
            .unwrap(),
    );
    assert_eq!(
        (
            out["protocol"].as_str(),
            out["http"]["request"]["method"].as_str()
        ),
        (Some("http"), Some("GET"))
    );
    assert_eq!(out["url"]["domain"], "example.com");

    let partial = json(
        &Command::new(BIN)
            .args(["sniff", "--port", "443", "--client-hex", "160301"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        (partial["protocol"].as_str(), partial["detection"].as_str()),
        (Some("unknown"), Some("need_more"))
    );

    let odd = Command::new(BIN)
        .args(["sniff", "--port", "443", "--client-hex", "160"])
        .output()
        .unwrap();
    assert_eq!(odd.status.code(), Some(1));
}

#[test]
fn check_and_explain_without_a_config_use_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let check = Command::new(BIN)
        .arg("check")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("<embedded>"));

    let explain = json(
        &Command::new(BIN)
            .args([
                "explain",
                "--source",
                "192.0.2.1",
                "--destination",
                "198.51.100.1:443",
                "--protocol",
                "ssh",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap(),
    );
    assert_eq!(explain["reason"], "protocol_not_allowed");
    assert_eq!(
        explain["action"], "alerted",
        "the embedded default is monitor mode"
    );
    let explain = json(
        &Command::new(BIN)
            .args([
                "explain",
                "--source",
                "2001:db8::1",
                "--destination",
                "[2001:db8::2]:22",
                "--protocol",
                "ssh",
            ])
            .current_dir(dir.path())
            .output()
            .unwrap(),
    );
    assert_eq!(explain["reason"], "allowed");
}

#[test]
fn run_without_arguments_listens_on_15001_for_both_families_and_stops_on_sigterm() {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .arg("run")
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = |addr: &str| {
        TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_millis(100)).is_ok()
    };
    while !(ready("127.0.0.1:15001") && ready("[::1]:15001")) {
        assert!(
            Instant::now() < deadline,
            "the embedded default never listened on 15001"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Those probes dialled the listener itself: refused as self_destination, in monitor mode's
    // stdout events. Wait for the first event before stopping, so the probes are not still
    // in the accept queue when SIGTERM closes the listeners.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let _ = tx.send(line.unwrap());
        }
    });
    let first_line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("no event on stdout");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status}");
    reader.join().unwrap();
    let first: Value = serde_json::from_str(&first_line).unwrap();
    assert_eq!(first["event"]["reason"], "self_destination");
    assert_eq!(first["network"]["name"], "default");
}
