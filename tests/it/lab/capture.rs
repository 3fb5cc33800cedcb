//! Packet capture in the gateway namespace (tcpdump), for replaying what the gateway saw.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::host::need;
use super::{Lab, GW, READY};

impl Lab {
    /// Starts tcpdump on every interface of `gw`, keeping only the client segments'
    /// conversations (as the clients saw them: original destinations), and waits until it
    /// captures. Returns the capture file; stop it with `stop_capture`.
    pub fn start_capture(&mut self, name: &str) -> PathBuf {
        let file = self.path(name);
        let filter =
            "tcp and (net 10.77.1.0/24 or net 10.77.3.0/24 or net fd77:1::/64 or net fd77:3::/64)";
        let args = [
            "-Z",
            "root",
            "-U",
            // Deliver each packet at once: without it the last packets can still sit in the
            // kernel's ring buffer when SIGINT stops tcpdump.
            "--immediate-mode",
            "-n",
            "-i",
            "any",
            "-s",
            "0",
            "-w",
            &file.to_string_lossy(),
            filter,
        ]
        .map(str::to_owned);
        self.spawn(GW, "tcpdump", &need("tcpdump"), &args);
        let start = Instant::now();
        while !fs::read_to_string(self.path("tcpdump.log"))
            .unwrap_or_default()
            .contains("listening on")
        {
            assert!(start.elapsed() < READY, "tcpdump did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        file
    }

    /// Stops the capture started by `start_capture` (SIGINT: tcpdump flushes and exits).
    pub fn stop_capture(&mut self) {
        // Let the last packets (resets, FINs) land first.
        std::thread::sleep(Duration::from_millis(500));
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == "tcpdump") {
            let _ = Command::new("kill")
                .args(["-INT", &p.child.id().to_string()])
                .status();
            let _ = p.child.wait();
        }
    }
}
