//! `examples/portcullis.service`: the systemd contract of issue 7 (Type=notify, reload by
//! SIGHUP, no capability beyond CAP_NET_ADMIN, every directive explained), checked as text
//! and, where systemd-analyze exists, by systemd's own parser.

use std::process::Command;

use super::*;

const UNIT: &str = include_str!("../../../examples/portcullis.service");

/// `[Service]`'s directives as (key, value).
fn service() -> Vec<(&'static str, &'static str)> {
    UNIT.split("[Service]")
        .nth(1)
        .unwrap()
        .split("\n[")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .map(|l| l.split_once('=').unwrap())
        .collect()
}

#[test]
fn the_systemd_unit_notifies_reloads_and_holds_only_cap_net_admin() {
    let s = service();
    let get = |k: &str| {
        s.iter()
            .filter(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    assert_eq!(get("Type"), ["notify"]);
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("CapabilityBoundingSet"), ["CAP_NET_ADMIN"]);
    assert_eq!(get("AmbientCapabilities"), ["CAP_NET_ADMIN"]);
    for hardening in [
        "NoNewPrivileges",
        "ProtectSystem",
        "ProtectHome",
        "PrivateDevices",
    ] {
        assert!(
            matches!(get(hardening)[..], ["yes"] | ["strict"]),
            "{hardening}"
        );
    }
    assert!(get("ExecStartPre")[0].contains("portcullis check"));

    // Every directive is explained: each block of directives follows a comment.
    let mut explained = false;
    for line in UNIT.split("[Service]").nth(1).unwrap().lines() {
        if line.starts_with('#') {
            explained = true;
        } else if line.is_empty() {
            explained = false;
        } else if line.starts_with('[') {
            break;
        } else {
            assert!(explained, "no comment explains {line:?}");
        }
    }

    let Some(analyze) = crate::lab::tool("systemd-analyze") else {
        println!("SKIP: systemd-analyze is not installed");
        return;
    };
    // systemd's parser, on a copy that names this build's binary.
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("portcullis.service");
    std::fs::write(&unit, UNIT.replace("/usr/local/bin/portcullis", BIN)).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
}
