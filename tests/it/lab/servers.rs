//! The lab's servers (python web server, sshd) and the gateway (portcullis, nftables redirect).

use std::fs;
use std::path::{Path, PathBuf};

use super::host::{need, sh};
use super::{Lab, GW, SRV, SSH_V4, WEB_V4, WEB_V6};

impl Lab {
    pub(super) fn start_servers(&mut self) {
        let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
        let www = self.path("www");
        fs::create_dir_all(&www).expect("mkdir www");
        fs::write(www.join("index.html"), self.page()).expect("write page");
        let python = Path::new("/usr/bin/python3").to_path_buf();
        let python = if python.is_file() {
            python
        } else {
            need("python3")
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/web.py");
        let mut args = vec![script.to_string_lossy().into_owned()];
        for (k, v) in [
            ("--root", www.to_string_lossy().into_owned()),
            (
                "--cert",
                certs.join("server.pem").to_string_lossy().into_owned(),
            ),
            (
                "--key",
                certs.join("server-key.pem").to_string_lossy().into_owned(),
            ),
            ("--listen", format!("{WEB_V4}:80")),
            ("--listen", format!("{WEB_V4}:443:tls")),
            ("--listen", format!("{WEB_V4}:8443:tls")),
            ("--listen", format!("[{WEB_V6}]:443:tls")),
        ] {
            args.push(k.to_owned());
            args.push(v);
        }
        self.spawn(SRV, "web", &python, &args);

        let keygen = need("ssh-keygen");
        for key in ["ssh_host_ed25519_key", "client_key"] {
            let p = self.path(key).to_string_lossy().into_owned();
            sh(
                &keygen,
                &["-q", "-t", "ed25519", "-N", "", "-C", &self.id, "-f", &p],
            );
        }
        fs::copy(self.path("client_key.pub"), self.path("authorized_keys"))
            .expect("authorized_keys");
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let d = self.dir.path().display();
        let config = format!(
            "Port 22\nPort 443\nPort 80\nListenAddress {SSH_V4}\nHostKey {d}/ssh_host_ed25519_key\n\
             PidFile none\nAuthorizedKeysFile {d}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
             LogLevel VERBOSE\n"
        );
        fs::write(self.path("sshd_config"), config).expect("sshd_config");
        let args = [
            "-D",
            "-f",
            &format!("{d}/sshd_config"),
            "-E",
            &format!("{d}/sshd.events.log"),
        ];
        self.spawn(SRV, "sshd", &need("sshd"), &args.map(str::to_owned));

        for port in [80, 443, 8443] {
            self.wait_tcp(SRV, WEB_V4, port, "web");
        }
        self.wait_tcp(SRV, WEB_V6, 443, "web");
        self.wait_tcp(SRV, SSH_V4, 22, "sshd");
        self.wait_tcp(SRV, SSH_V4, 443, "sshd");
        self.wait_tcp(SRV, SSH_V4, 80, "sshd");
    }

    /// portcullis on port 15001 of `gw`, behind an nftables `redirect`, or with `tproxy`
    /// behind TPROXY (nftables `tproxy` + a policy route delivering marked packets locally).
    pub(super) fn start_gateway(&mut self, tproxy: bool) {
        let policy = self.path("policy");
        fs::create_dir_all(&policy).expect("mkdir policy");
        let rules = "[[allow]]\nports = [443]\nprotocols = [\"tls\"]\n\n\
                     [[allow]]\nports = [80]\nprotocols = [\"http\"]\n\n\
                     [[allow]]\nports = [22]\nprotocols = [\"ssh\"]\n\n\
                     [[allow]]\nports = [25]\nprotocols = [\"smtp\"]\n\n\
                     [[allow]]\nports = [21]\nprotocols = [\"ftp\"]\n";
        for (segment, v4, v6) in [
            ("block", "10.77.1.0/24", "fd77:1::/64"),
            ("monitor", "10.77.3.0/24", "fd77:3::/64"),
        ] {
            let text = format!(
                "segment = \"{segment}\"\nsources = [\"{v4}\", \"{v6}\"]\nmode = \"{segment}\"\n\
                 on_unidentified = \"block\"\n\n{rules}"
            );
            fs::write(policy.join(format!("{segment}.toml")), text).expect("write policy");
        }
        let mode = if tproxy { "tproxy" } else { "redirect" };
        let config = format!(
            "policy_dir = \"{}\"\n\n[[listener]]\nmode = \"{mode}\"\nlisten = \"0.0.0.0:15001\"\n\n\
             [[listener]]\nmode = \"{mode}\"\nlisten = \"[::]:15001\"\n\n[detect]\ntimeout_ms = 2000\n\n\
             [events]\nsink = \"file:{}\"\n",
            policy.display(),
            self.events_path().display()
        );
        fs::write(self.path("portcullis.toml"), config).expect("write config");
        if tproxy {
            self.nft(
                GW,
                "gw.nft",
                "table inet pcllab {\n chain pre {\n  type filter hook prerouting priority mangle; policy accept;\n  \
                 iifname { \"gw-b\", \"gw-m\" } meta l4proto tcp socket transparent 1 meta mark set 1 accept\n  \
                 iifname { \"gw-b\", \"gw-m\" } meta nfproto ipv4 meta l4proto tcp tproxy ip to :15001 meta mark set 1 accept\n  \
                 iifname { \"gw-b\", \"gw-m\" } meta nfproto ipv6 meta l4proto tcp tproxy ip6 to :15001 meta mark set 1 accept\n }\n}\n",
            );
            for family in ["-4", "-6"] {
                let any = if family == "-4" { "0.0.0.0/0" } else { "::/0" };
                self.ip(GW, &format!("{family} rule add fwmark 1 lookup 100"));
                self.ip(
                    GW,
                    &format!("{family} route add local {any} dev lo table 100"),
                );
            }
        } else {
            self.nft(
                GW,
                "gw.nft",
                "table inet pcllab {\n chain pre {\n  type nat hook prerouting priority dstnat; policy accept;\n  iifname { \"gw-b\", \"gw-m\" } meta l4proto tcp redirect to :15001\n }\n}\n",
            );
        }
        // PORTCULLIS_BIN runs the lab against another build (e.g. an installed package).
        let bin = std::env::var_os("PORTCULLIS_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_portcullis")),
            PathBuf::from,
        );
        let args = [
            "run".to_owned(),
            "--config".to_owned(),
            self.path("portcullis.toml").to_string_lossy().into_owned(),
        ];
        self.spawn(GW, "portcullis", &bin, &args);
        self.wait_tcp(GW, "127.0.0.1", 15001, "portcullis");
        self.wait_tcp(GW, "::1", 15001, "portcullis");
    }

    /// The small page the web server serves at `/`.
    pub fn page(&self) -> String {
        format!("<html><body>portcullis lab {}</body></html>\n", self.id)
    }

    /// Writes `size` random bytes as `/big.bin` on the web server; returns their sha256.
    pub fn make_big_file(&self, size: usize) -> Vec<u8> {
        use sha2::{Digest, Sha256};
        let mut data = vec![0u8; size];
        let mut f = fs::File::open("/dev/urandom").expect("urandom");
        std::io::Read::read_exact(&mut f, &mut data).expect("read urandom");
        fs::write(self.path("www/big.bin"), &data).expect("write big.bin");
        Sha256::digest(&data).to_vec()
    }
}
