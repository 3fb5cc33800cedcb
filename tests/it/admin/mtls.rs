//! The admin endpoint over TLS (rustls) with and without client certificates, checked with
//! curl: a client with a certificate from `client_ca` is answered; one without a certificate,
//! or with one from another CA, gets no HTTP answer at all (the handshake fails).

use std::process::Command;

use super::*;

const TLS_ADMIN: &str =
    "listen = \"ADMIN\"\ntls_cert = \"CERTS/admin.pem\"\ntls_key = \"CERTS/admin-key.pem\"\n";

fn mtls_admin() -> String {
    format!("{TLS_ADMIN}client_ca = \"CERTS/ca.pem\"\n")
}

fn https(addr: SocketAddr, path: &str, args: &[&str]) -> Curl {
    let ca = cert("ca.pem");
    let mut all = vec!["--cacert", ca.as_str()];
    all.extend(args);
    curl(&all, &format!("https://{addr}{path}"))
}

/// A CA and a client certificate the gateway has never heard of, made with openssl.
fn rogue_client(dir: &Path) -> (String, String) {
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path("rogue-ca-key.pem"),
        "-out",
        &path("rogue-ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=rogue CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &path("rogue-key.pem"),
        "-out",
        &path("rogue.csr"),
        "-subj",
        "/CN=rogue client",
    ]);
    std::fs::write(dir.join("rogue.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &path("rogue.csr"),
        "-CA",
        &path("rogue-ca.pem"),
        "-CAkey",
        &path("rogue-ca-key.pem"),
        "-CAcreateserial",
        "-out",
        &path("rogue.pem"),
        "-days",
        "2",
        "-extfile",
        &path("rogue.ext"),
    ]);
    (path("rogue.pem"), path("rogue-key.pem"))
}

#[test]
fn mtls_answers_only_clients_with_a_certificate_from_client_ca() {
    let web = WebServer::start();
    let (_gw, _listen, addr) = gateway(web.addr, ALLOW_HTTP, &mtls_admin(), "");
    let (client, key) = (cert("client.pem"), cert("client-key.pem"));

    let with = https(addr, "/healthz", &["--cert", &client, "--key", &key]);
    assert_eq!((with.status, with.body.as_str()), (200, "ok\n"), "{with:?}");
    let metrics = https(addr, "/metrics", &["--cert", &client, "--key", &key]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("portcullis_policy_info{version=\""));

    let without = https(addr, "/healthz", &[]);
    assert!(!without.ok, "{without:?}");
    assert_eq!(
        (
            without.status,
            without.body.as_str(),
            without.headers.as_str()
        ),
        (0, "", "")
    );

    let dir = tempfile::tempdir().unwrap();
    let (rogue, rogue_key) = rogue_client(dir.path());
    let other_ca = https(addr, "/healthz", &["--cert", &rogue, "--key", &rogue_key]);
    assert!(!other_ca.ok, "{other_ca:?}");
    assert_eq!(
        (
            other_ca.status,
            other_ca.body.as_str(),
            other_ca.headers.as_str()
        ),
        (0, "", "")
    );

    // Plain HTTP on the TLS port is no way around it.
    let plain = admin(addr, "/healthz", &[]);
    assert_eq!((plain.status, plain.body.as_str()), (0, ""), "{plain:?}");

    // The refused clients did not disturb the endpoint.
    let again = https(addr, "/readyz", &["--cert", &client, "--key", &key]);
    assert_eq!((again.status, again.body.as_str()), (200, "ready\n"));
}

#[test]
fn tls_without_client_ca_serves_any_client_and_the_server_certificate_verifies() {
    let web = WebServer::start();
    let (_gw, _listen, addr) = gateway(web.addr, ALLOW_HTTP, TLS_ADMIN, "");
    let got = https(addr, "/healthz", &[]);
    assert_eq!((got.status, got.body.as_str()), (200, "ok\n"), "{got:?}");
    let by_name = curl(
        &["--cacert", &cert("ca.pem")],
        &format!("https://localhost:{}/readyz", addr.port()),
    );
    assert_eq!(by_name.status, 200, "{by_name:?}");
}

#[test]
fn check_rejects_a_non_loopback_admin_without_client_certificates() {
    let cfg = ConfigDir::new(
        &format!(
            "[[listener]]\nmode = \"redirect\"\nlisten = \"127.0.0.1:15001\"\n\n[admin]\nlisten = \"0.0.0.0:9901\"\ntls_cert = \"{CERTS}/admin.pem\"\ntls_key = \"{CERTS}/admin-key.pem\"\n"
        ),
        &[("local.toml", &local_segment("block", "[[allow]]\nports = [80]\nprotocols = [\"http\"]\n"))],
    );
    let out = cfg.portcullis(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "{}:6:10: [admin] listen 0.0.0.0:9901 is not a loopback address, so client_ca (client certificates) is required",
        cfg.config().display()
    );
    assert!(
        stdout.contains(&expected) || stderr.contains(&expected),
        "{stdout}{stderr}"
    );
}
