//! Server-first servers for the lab: a real SMTP server (aiosmtpd) and a real FTP server
//! (pyftpdlib), each on its standard port and on 443 (a port the lab's policy allows only
//! for TLS), on addresses of their own in `srv`.

use std::fs;
use std::path::Path;

use super::host::need;
use super::{Lab, SRV};

/// The SMTP server's address in `srv` (ports 25 and 443).
pub const SMTP_V4: &str = "10.77.2.4";
/// The FTP server's address in `srv` (ports 21 and 443).
pub const FTP_V4: &str = "10.77.2.5";
/// The file the FTP server shares, and its content.
pub const FTP_FILE: (&str, &str) = ("hello.txt", "portcullis lab ftp\n");

impl Lab {
    /// Starts aiosmtpd on SMTP_V4:25 and :443 and pyftpdlib on FTP_V4:21 and :443; returns
    /// once every one accepts connections.
    pub fn start_banner_servers(&mut self) {
        let python = Path::new("/usr/bin/python3");
        let python = if python.is_file() {
            python.to_path_buf()
        } else {
            need("python3")
        };
        for a in [SMTP_V4, FTP_V4] {
            self.ip(SRV, &format!("addr add {a}/24 dev eth0"));
        }
        let ftp_root = self.path("ftp");
        fs::create_dir_all(&ftp_root).expect("mkdir ftp");
        fs::write(ftp_root.join(FTP_FILE.0), FTP_FILE.1).expect("write ftp file");
        let ftp_root = ftp_root.to_string_lossy().into_owned();
        let servers: [(&'static str, Vec<String>); 4] = [
            ("smtp25", smtp_args(25)),
            ("smtp443", smtp_args(443)),
            ("ftp21", ftp_args(21, &ftp_root)),
            ("ftp443", ftp_args(443, &ftp_root)),
        ];
        for (name, args) in servers {
            self.spawn(SRV, name, &python, &args);
        }
        self.wait_tcp(SRV, SMTP_V4, 25, "smtp25");
        self.wait_tcp(SRV, SMTP_V4, 443, "smtp443");
        self.wait_tcp(SRV, FTP_V4, 21, "ftp21");
        self.wait_tcp(SRV, FTP_V4, 443, "ftp443");
    }

    /// What the SMTP server on `port` logged (its Debugging handler prints every message).
    pub fn smtp_log(&self, port: u16) -> String {
        fs::read_to_string(self.path(&format!("smtp{port}.log"))).unwrap_or_default()
    }
}

fn smtp_args(port: u16) -> Vec<String> {
    // -n: stay root (no setuid to nobody); the default handler prints each message.
    ["-m", "aiosmtpd", "-n", "-l", &format!("{SMTP_V4}:{port}")]
        .map(str::to_owned)
        .to_vec()
}

fn ftp_args(port: u16, root: &str) -> Vec<String> {
    [
        "-m",
        "pyftpdlib",
        "-i",
        FTP_V4,
        "-p",
        &port.to_string(),
        "-d",
        root,
    ]
    .map(str::to_owned)
    .to_vec()
}
