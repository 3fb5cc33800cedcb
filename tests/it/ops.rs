//! Operating a running gateway: SIGHUP reloads (new connections get the new policy, open ones
//! keep theirs, a broken policy never replaces a valid one) and SIGUSR1 log rotation.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";

fn echo_gateway(rules: &str) -> (Gateway, SocketAddr, Upstream) {
    let up = Upstream::answering(|request| request.to_vec());
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rules = rules.replace("PORT", &up.addr.port().to_string());
    let cfg = ConfigDir::new(
        &forward_config(
            listen,
            up.addr,
            "[detect]\nclient_first_ms = 100\ntimeout_ms = 500\n",
        ),
        &[("local.toml", &local_segment("block", &rules))],
    );
    (Gateway::start(cfg, listen), listen, up)
}

/// Sends GET, half-closes, returns what came back (empty when refused).
fn request(listen: SocketAddr) -> Vec<u8> {
    let mut client = TcpStream::connect(listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = client.write_all(GET);
    let _ = client.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    got
}

#[test]
fn sighup_reload_judges_new_connections_by_the_new_policy_and_spares_open_ones() {
    let allow_http = "[[allow]]\nports = [PORT]\nprotocols = [\"http\"]\n";
    let (gw, listen, up) = echo_gateway(allow_http);
    assert_eq!(request(listen), GET);
    let before = gw.events().last().unwrap()["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();

    // A connection open across the reload: allowed under the old policy.
    let n = gw.wait_events(4).len();
    let mut open = TcpStream::connect(listen).unwrap();
    open.write_all(GET).unwrap();
    let decided = gw.wait_events(n + 1);
    assert_eq!(decided[n]["event"]["action"], "allowed");

    // The new policy names another port only: HTTP to the upstream's port is refused.
    let policy = gw.cfg.dir.path().join("policy/local.toml");
    std::fs::write(
        &policy,
        local_segment("block", "[[allow]]\nports = [1]\nprotocols = [\"http\"]\n"),
    )
    .unwrap();
    gw.signal("HUP");
    let reloaded = &gw.wait_event("policy_reloaded", |e| {
        e["event"]["action"] == "policy_reloaded"
    });
    let after = reloaded["rule"]["version"].as_str().unwrap().to_owned();
    assert_ne!(
        before, after,
        "rule.version changes exactly when the policy does"
    );

    assert!(
        request(listen).is_empty(),
        "new connections get the new policy"
    );
    let refused = &gw.wait_event("port_not_allowed", |e| {
        e["event"]["reason"] == "port_not_allowed"
    });
    assert_eq!(refused["rule"]["version"], after);

    // The open connection keeps its decision and its bytes.
    open.write_all(b"more after the reload").unwrap();
    open.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    open.read_to_end(&mut got).unwrap();
    assert_eq!(got, [GET, b"more after the reload".as_slice()].concat());
    assert_eq!(up.accepted(), 2);
}

#[test]
fn a_broken_policy_never_replaces_the_one_in_force() {
    let allow_http = "[[allow]]\nports = [PORT]\nprotocols = [\"http\"]\n";
    let (gw, listen, _up) = echo_gateway(allow_http);
    let version = gw.events()[0]["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = gw.cfg.dir.path().join("policy/local.toml");
    std::fs::write(
        &policy,
        "segment = \"local\"\nsources = [\"127.0.0.0/8\"]\nmode = \"blok\"\n",
    )
    .unwrap();
    gw.signal("HUP");
    let failed = &gw.wait_event("policy_reload_failed", |e| {
        e["event"]["action"] == "policy_reload_failed"
    });
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{}:3:8: ", policy.display())) && message.contains("blok"),
        "{message}"
    );
    assert_eq!(
        failed["rule"]["version"],
        version.as_str(),
        "the old policy stays in force"
    );
    assert_eq!(request(listen), GET, "and keeps judging connections");
}

#[test]
fn sigusr1_reopens_the_event_file_without_losing_or_splitting_an_event() {
    let allow_http = "[[allow]]\nports = [PORT]\nprotocols = [\"http\"]\n";
    let (gw, listen, _up) = echo_gateway(allow_http);
    for _ in 0..20 {
        assert_eq!(request(listen), GET);
    }
    gw.wait_events(2 + 40);
    let rotated = gw.cfg.dir.path().join("events.jsonl.1");
    std::fs::rename(gw.cfg.events_path(), &rotated).unwrap();
    // Connections during the rotation: their events land in one file or the other.
    let during = thread::spawn(move || (0..20).map(|_| request(listen)).collect::<Vec<_>>());
    gw.signal("USR1");
    assert!(during.join().unwrap().iter().all(|r| r == GET));
    for _ in 0..10 {
        assert_eq!(request(listen), GET);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // Every whole line of both files parses (read_events panics on a bad line), and
        // none is missing.
        let total = read_events(&rotated).len() + gw.events().len();
        if total == 2 + 40 + 40 + 20 {
            break;
        }
        assert!(
            total < 102 && Instant::now() < deadline,
            "{total} events in the two files"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !gw.events().is_empty(),
        "events after SIGUSR1 start a new file"
    );
    // The old file ends with a whole line: no event began in it and went on in the new one.
    assert!(std::fs::read(&rotated).unwrap().ends_with(b"\n"));
}

/// The CPUs in a `Cpus_allowed_list` line of /proc/PID/status ("0-2,5").
fn cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// The CPUs a thread or process may run on, from its /proc status file.
fn allowed_cpus(status: &std::path::Path) -> Vec<usize> {
    let status = std::fs::read_to_string(status).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap();
    cpu_list(line)
}

/// Each data-path thread (`portcullis-N`) of the gateway, in the order of N, with the CPUs
/// it may run on.
fn data_path_threads(pid: u32) -> Vec<(usize, Vec<usize>)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap();
        let n = name
            .trim()
            .strip_prefix("portcullis-")
            .and_then(|n| n.parse().ok());
        if let Some(n) = n {
            threads.push((n, allowed_cpus(&task.join("status"))));
        }
    }
    threads.sort();
    threads
}

#[test]
fn data_path_threads_are_pinned_one_per_cpu_unless_told_not_to() {
    let cpus = allowed_cpus(std::path::Path::new("/proc/self/status"));
    // One thread per CPU the gateway may use; under a smaller CPU quota, fewer, unpinned.
    let threads = std::thread::available_parallelism().unwrap().get();
    let pinnable = threads == cpus.len();
    for pin in [None, Some("0")] {
        let up = Upstream::answering(|request| request.to_vec());
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let cfg = ConfigDir::new(
            &forward_config(listen, up.addr, ""),
            &[("local.toml", &local_segment("allow", ""))],
        );
        let env: Vec<(&str, &str)> = pin.map(|v| ("PORTCULLIS_PIN", v)).into_iter().collect();
        let gw = Gateway::start_with_env(cfg, listen, &env);
        let running = data_path_threads(gw.pid());
        assert_eq!(running.len(), threads, "one thread per CPU: {running:?}");
        let given: Vec<Vec<usize>> = running.into_iter().map(|(_, c)| c).collect();
        if pin.is_none() && pinnable {
            // Thread N on the Nth CPU the process may use, each on its own.
            let each: Vec<Vec<usize>> = cpus.iter().map(|&c| vec![c]).collect();
            assert_eq!(given, each);
        } else {
            assert!(given.iter().all(|c| *c == cpus), "{given:?}");
        }
    }
}
