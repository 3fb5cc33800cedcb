//! SSH identification-string sniffer: OpenSSH's client and server banners.

use super::*;
use crate::sniff::ssh::{sniff_client, sniff_server};
use crate::sniff::{sniff_server as sniff_server_side, Meta, Protocol, Side, SshBanner};

const OPENSSH: &str = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10";

fn banner(b: &str) -> Verdict<SshBanner> {
    Verdict::Match(SshBanner { banner: b.into() })
}

#[test]
fn openssh_client_and_server_banners() {
    assert_eq!(sniff_client(SSH_CLIENT), banner(OPENSSH));
    assert_eq!(sniff_server(SSH_SERVER), banner(OPENSSH));
    match sniff_server_side(SSH_SERVER) {
        Verdict::Match(s) => {
            assert_eq!(s.protocol, Protocol::Ssh);
            assert_eq!(s.side, Side::Server);
            assert_eq!(
                s.meta,
                Meta::Ssh(SshBanner {
                    banner: OPENSSH.into()
                })
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_prefix_of_every_banner_needs_more_or_matches() {
    assert_eq!(
        check_all_prefixes("client", SSH_CLIENT, sniff_client),
        banner(OPENSSH)
    );
    assert_eq!(
        check_all_prefixes("server", SSH_SERVER, sniff_server),
        banner(OPENSSH)
    );
    let with_lines = [
        &b"Welcome to example\r\nAuthorised use only\n"[..],
        SSH_SERVER,
    ]
    .concat();
    assert_eq!(
        check_all_prefixes("lines", &with_lines, sniff_server),
        banner(OPENSSH)
    );
}

#[test]
fn only_the_server_may_send_lines_before_its_banner() {
    let with_lines = [&b"Welcome\r\n"[..], SSH_CLIENT].concat();
    assert_eq!(sniff_client(&with_lines), Verdict::NoMatch);
    assert_eq!(sniff_server(&with_lines), banner(OPENSSH));
    let too_many = [&b"x\r\n".repeat(17)[..], SSH_SERVER].concat();
    assert_eq!(sniff_server(&too_many), Verdict::NoMatch);
    let binary_line = [&b"\x00\x01\r\n"[..], SSH_SERVER].concat();
    assert_eq!(sniff_server(&binary_line), Verdict::NoMatch);
}

#[test]
fn bare_lf_split_banner_and_trailing_bytes() {
    let bare_lf = format!("{OPENSSH}\n");
    assert_eq!(sniff_client(bare_lf.as_bytes()), banner(OPENSSH));
    // Split anywhere: the halves need more, the whole matches.
    let (a, _) = SSH_CLIENT.split_at(10);
    assert_eq!(sniff_client(a), Verdict::NeedMore);
    // The key exchange that follows the banner does not change the answer.
    let kexinit = [SSH_CLIENT, &[0, 0, 5, 0xdc, 0x06, 0x14][..]].concat();
    assert_eq!(sniff_client(&kexinit), banner(OPENSSH));
}

#[test]
fn versions_and_malformed_lines() {
    assert_eq!(
        sniff_client(b"SSH-1.99-Legacy_1.0\r\n"),
        banner("SSH-1.99-Legacy_1.0")
    );
    assert_eq!(sniff_client(b"SSH-1.5-Old\r\n"), Verdict::NoMatch);
    assert_eq!(sniff_client(b"SSH-2.0-\r\n"), Verdict::NoMatch); // no software version
    assert_eq!(sniff_client(b"SSH-2.0-a\rb\r\n"), Verdict::NoMatch);
    assert_eq!(sniff_client(b"SSH-2.0-\x00"), Verdict::NoMatch);
    assert_eq!(sniff_client(b"ssh-2.0-x\r\n"), Verdict::NoMatch);
    let long = format!("SSH-2.0-{}", "a".repeat(300));
    assert_eq!(sniff_client(long.as_bytes()), Verdict::NoMatch);
    let max = format!("SSH-2.0-{}\r\n", "a".repeat(255 - 10));
    assert_eq!(max.len(), 255);
    assert!(matches!(sniff_client(max.as_bytes()), Verdict::Match(_)));
}
