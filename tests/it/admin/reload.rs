//! `POST /reload` and SIGHUP: 200 with the new version or 422 with `FILE:LINE:COL` errors;
//! storms of both at once never leave a mix of two policies; `/readyz` turns 503 while the
//! gateway drains.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::metrics::scrape;
use super::*;

fn reload(addr: SocketAddr) -> Curl {
    admin(addr, "/reload", &["-X", "POST"])
}

/// Replaces the policy file in one rename, as an editor or a config tool would.
fn write_policy(gw: &Gateway, rules: &str) {
    let dir = gw.cfg.dir.path().join("policy");
    let tmp = dir.join(".local.toml.tmp");
    std::fs::write(&tmp, local_segment("block", rules)).unwrap();
    std::fs::rename(tmp, dir.join("local.toml")).unwrap();
}

#[test]
fn post_reload_answers_the_new_version_or_every_error_and_keeps_the_old_policy() {
    let web = WebServer::start();
    let (gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let first = gw.events()[0]["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();

    // Unchanged files: the same version.
    let same = reload(addr);
    assert_eq!(
        (same.status, same.json()["version"].as_str()),
        (200, Some(first.as_str())),
        "{same:?}"
    );

    let policy = gw.cfg.dir.path().join("policy/local.toml");
    std::fs::write(
        &policy,
        "segment = \"local\"\nsources = [\"127.0.0.0/8\"]\nmode = \"blok\"\n\n[[allow]]\nports = [80]\nprotocols = [\"sshh\"]\n",
    )
    .unwrap();
    let failed = reload(addr);
    assert_eq!(failed.status, 422, "{failed:?}");
    let errors: Vec<String> = serde_json::from_value(failed.json()["errors"].clone()).unwrap();
    let p = policy.display();
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!("{p}:3:8: unknown mode \"blok\"")),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with(&format!("{p}:7:14: unknown protocol \"sshh\"")),
        "{errors:?}"
    );
    let event = &gw.wait_event("policy_reload_failed", |e| {
        e["event"]["action"] == "policy_reload_failed"
    });
    assert_eq!(
        event["rule"]["version"],
        first.as_str(),
        "the old policy stays"
    );
    assert_eq!(get_through(listen).status, 200, "and keeps judging");
    assert_eq!(
        admin(addr, "/policy", &[]).json()["version"],
        first.as_str()
    );

    // A valid change: 200, the new version everywhere, new connections judged by it.
    write_policy(&gw, "[[allow]]\nports = [1]\nprotocols = [\"http\"]\n");
    let ok = reload(addr);
    assert_eq!(ok.status, 200, "{ok:?}");
    let second = ok.json()["version"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(
        admin(addr, "/policy", &[]).json()["version"],
        second.as_str()
    );
    assert_eq!(get_through(listen).status, 0, "port no longer allowed");
    let refused = &gw.wait_event("port_not_allowed", |e| {
        e["event"]["reason"] == "port_not_allowed"
    });
    assert_eq!(refused["rule"]["version"], second.as_str());

    let m = scrape(addr);
    assert_eq!(
        m[&format!("portcullis_policy_info{{version=\"{second}\"}}")],
        1.0
    );
    assert!(
        !m.keys().any(|k| k.contains(&first)),
        "only the policy in force is listed"
    );
    assert_eq!(
        m["portcullis_policy_reloads_total{result=\"success\"}"],
        2.0
    );
    assert_eq!(
        m["portcullis_policy_reloads_total{result=\"failure\"}"],
        1.0
    );
}

#[test]
fn reload_storms_of_sighup_and_post_never_mix_two_policies() {
    let web = WebServer::start();
    let open_port = "[[allow]]\nports = [PORT]\nprotocols = [\"http\"]\n"
        .replace("PORT", &web.addr.port().to_string());
    let closed_port = "[[allow]]\nports = [1]\nprotocols = [\"http\"]\n";
    let (gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let allowing = gw.events()[0]["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    write_policy(&gw, closed_port);
    let refusing = reload(addr).json()["version"].as_str().unwrap().to_owned();
    assert_ne!(allowing, refusing);
    let skip = gw.events().len();

    let stop = Arc::new(AtomicBool::new(false));
    let (made, posted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Connections all through the storm.
    let traffic = {
        let (stop, made) = (Arc::clone(&stop), Arc::clone(&made));
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && made.load(Ordering::Relaxed) < 400 {
                let _ = get_through(listen);
                made.fetch_add(1, Ordering::Relaxed);
            }
            made.load(Ordering::Relaxed)
        })
    };
    // POST /reload from two clients at once.
    let posters: Vec<_> = (0..2)
        .map(|_| {
            let (stop, posted) = (Arc::clone(&stop), Arc::clone(&posted));
            thread::spawn(move || {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) && answers.len() < 200 {
                    let got = reload(addr);
                    assert_eq!(got.status, 200, "{got:?}");
                    answers.push(got.json()["version"].as_str().unwrap().to_owned());
                    posted.fetch_add(1, Ordering::Relaxed);
                }
                answers
            })
        })
        .collect();
    // SIGHUPs in bursts while the policy file flips between the two versions, for at least 40
    // rounds and until both the connections and the POSTs have had 20 turns (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut round = 0;
    while round < 40
        || (Instant::now() < deadline
            && (made.load(Ordering::Relaxed) < 20 || posted.load(Ordering::Relaxed) < 20))
    {
        round += 1;
        write_policy(
            &gw,
            if round % 2 == 0 {
                &open_port
            } else {
                closed_port
            },
        );
        for _ in 0..5 {
            gw.signal("HUP");
        }
        thread::sleep(Duration::from_millis(15));
    }
    // End on the allowing policy, and make sure it is the one in force.
    write_policy(&gw, &open_port);
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let connections = traffic.join().unwrap();
    let answers: Vec<String> = posters
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(
        connections >= 20 && answers.len() >= 20,
        "{connections} connections, {} answers",
        answers.len()
    );
    assert!(
        answers.iter().all(|v| *v == allowing || *v == refusing),
        "{answers:?}"
    );
    assert_eq!(
        reload(addr).json()["version"],
        allowing.as_str(),
        "the last files are in force"
    );
    let through = get_through(listen);
    assert_eq!(through.status, 200, "{through:?}");

    // Every decision was taken by one whole policy: its version says which, and its verdict
    // is that policy's.
    let events = gw.events();
    let decisions: Vec<&Value> = events[skip..]
        .iter()
        .filter(|e| matches!(e["event"]["action"].as_str(), Some("allowed" | "blocked")))
        .collect();
    assert!(
        decisions.len() > connections / 2,
        "{} decisions",
        decisions.len()
    );
    for d in &decisions {
        let version = d["rule"]["version"].as_str().unwrap();
        let expected = if version == allowing {
            ("allowed", "allowed")
        } else {
            assert_eq!(version, refusing, "{d}");
            ("blocked", "port_not_allowed")
        };
        assert_eq!(
            (
                d["event"]["action"].as_str().unwrap(),
                d["event"]["reason"].as_str().unwrap()
            ),
            expected,
            "{d}"
        );
    }
    let reloads = events[skip..]
        .iter()
        .filter(|e| e["event"]["action"] == "policy_reloaded")
        .count();
    assert!(
        reloads >= answers.len(),
        "{reloads} reload events for {} POSTs",
        answers.len()
    );
    assert!(!events
        .iter()
        .any(|e| e["event"]["action"] == "policy_reload_failed"));
}

#[test]
fn readyz_turns_503_while_draining_and_healthz_stays_200() {
    let up = keep_open_upstream();
    let extra = "[limits]\ndrain_ms = 20000\n";
    let (mut gw, listen, addr) = gateway(up.addr, ALLOW_HTTP, PLAIN_ADMIN, extra);
    assert_eq!(admin(addr, "/readyz", &[]).status, 200);
    // An open connection keeps the gateway draining.
    let skip = gw.events().len();
    let request = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";
    let mut open = TcpStream::connect(listen).unwrap();
    open.write_all(request).unwrap();
    gw.wait_events(skip + 1);
    gw.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = admin(addr, "/readyz", &[]);
        if ready.status == 503 {
            assert_eq!(ready.body, "draining\n");
            break;
        }
        assert!(Instant::now() < deadline, "{ready:?}");
        thread::sleep(Duration::from_millis(20));
    }
    let health = admin(addr, "/healthz", &[]);
    assert_eq!(health.status, 200, "alive while draining");
    // The open connection still works; its end ends the drain.
    open.write_all(request).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = [0u8; 80];
    let mut got = 0;
    while got < answer.len() {
        got += std::io::Read::read(&mut open, &mut answer[got..]).unwrap();
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    drop(open);
    assert!(gw.terminate().success());
}

/// Issue 7's bad reloads, each through `POST /reload`: the answer is 422 with the exact
/// problem, and the policy in force does not change.
#[test]
fn each_kind_of_bad_reload_is_refused_with_its_exact_error() {
    let web = WebServer::start();
    let (gw, listen, addr) = gateway(web.addr, ALLOW_HTTP, PLAIN_ADMIN, "");
    let version = gw.events()[0]["rule"]["version"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = gw.cfg.dir.path().join("policy");
    let good = std::fs::read(dir.join("local.toml")).unwrap();
    let other = "segment = \"other\"\nsources = [\"127.0.0.0/8\"]\nmode = \"block\"\n";
    let cases: Vec<(&str, &str, Vec<u8>, String)> = vec![
        (
            "unreadable file",
            "local.toml",
            b"segment = \"local\"\n\xff\xfe\n".to_vec(),
            format!(
                "{}:1:1: cannot read: stream did not contain valid UTF-8",
                dir.join("local.toml").display()
            ),
        ),
        (
            "TOML syntax error",
            "local.toml",
            b"segment = \"local\"\nsources = [\"127.0.0.0/8\"\n".to_vec(),
            format!("{}:2:25: unclosed array", dir.join("local.toml").display()),
        ),
        (
            "unknown protocol",
            "local.toml",
            local_segment(
                "block",
                "[[allow]]\nports = [80]\nprotocols = [\"gopher\"]\n",
            )
            .into_bytes(),
            format!(
                "{}:8:14: unknown protocol \"gopher\"",
                dir.join("local.toml").display()
            ),
        ),
        (
            "two segments with the same prefix",
            "other.toml",
            other.as_bytes().to_vec(),
            format!(
                "{}:2:12: source 127.0.0.0/8 is also a source of segment \"local\"",
                dir.join("other.toml").display()
            ),
        ),
    ];
    for (what, file, text, expected) in cases {
        std::fs::write(dir.join(file), &text).unwrap();
        let got = reload(addr);
        assert_eq!(got.status, 422, "{what}: {got:?}");
        let errors = got.json()["errors"].clone();
        assert!(
            errors[0].as_str().unwrap().starts_with(&expected),
            "{what}: {errors}"
        );
        assert_eq!(
            admin(addr, "/policy", &[]).json()["version"],
            version.as_str(),
            "{what}"
        );
        // Put things back as they were.
        std::fs::write(dir.join("local.toml"), &good).unwrap();
        let _ = std::fs::remove_file(dir.join("other.toml"));
    }
    assert_eq!(
        get_through(listen).status,
        200,
        "the old policy still judges"
    );
    let m = scrape(addr);
    assert_eq!(
        m["portcullis_policy_reloads_total{result=\"failure\"}"],
        4.0
    );
    assert_eq!(reload(addr).json()["version"], version.as_str());
}
