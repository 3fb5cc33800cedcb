//! End to end through a TPROXY listener: nftables `tproxy` plus a policy route deliver the
//! segment's connections to portcullis untouched (no NAT), IPv4 and IPv6; the original
//! destination is the accepted socket's local address.

use crate::lab::{Gateway, Lab, CB, CB_V4, CB_V6, SSH_V4, WEB_V4, WEB_V6};

#[test]
fn tproxy_judges_ipv4_and_ipv6_like_redirect() {
    let Some(lab) = Lab::start(Gateway::Tproxy) else {
        return;
    };
    let page = lab.curl(CB, &["https://web.lab.test/"]);
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&page.stdout), lab.page());
    let c = lab.connection(CB_V4, WEB_V4, 443);
    assert_eq!(c.d("/event/action"), "allowed", "{:#}", c.decision);
    assert_eq!(c.d("/network/protocol"), "tls");
    assert_eq!(c.d("/tls/client/server_name"), "web.lab.test");
    assert_eq!(c.d("/portcullis/listener"), "tproxy");
    assert!(c.close_u64("/destination/bytes") > 0);

    let v6 = format!("web.lab.test:443:[{WEB_V6}]");
    let page = lab.curl(CB, &["-6", "--resolve", &v6, "https://web.lab.test/"]);
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    let c = lab.connection(CB_V6, WEB_V6, 443);
    assert_eq!(c.d("/event/action"), "allowed", "{:#}", c.decision);
    assert_eq!(c.d("/network/type"), "ipv6");
    assert_eq!(c.d("/portcullis/listener"), "tproxy");

    let out = lab.ssh(CB, 443, "echo leaked");
    assert!(!out.status.success(), "ssh -p 443 must be refused");
    let c = lab.connection(CB_V4, SSH_V4, 443);
    assert_eq!(
        c.d("/event/reason"),
        "protocol_not_allowed",
        "{:#}",
        c.decision
    );
    assert_eq!(c.d("/network/protocol"), "ssh");
    assert_eq!(lab.ssh443_syns(), 0, "no SYN reached sshd on 443");
}
