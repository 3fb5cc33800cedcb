//! Offline replay: judges the TCP flows of pcap and pcapng captures with the live gateway's
//! sniffers and policy, one decision event per flow, as if the gateway had seen them.
//!
//! A capture is streamed frame by frame ([`capture`]), each frame cut down to its TCP
//! segment ([`packet`]), each flow's first turns reassembled ([`reassembly`]) and judged by
//! [`classify()`](classify::classify) (detection) and `Policy::gate` / `Policy::decide_rules` (decision) as soon
//! as no later packet can change the outcome. Memory is bounded: a flow holds at most
//! `detect.max_bytes` per direction, and a decided flow keeps no bytes at all.

pub mod capture;
pub mod classify;
pub mod flows;
pub mod packet;
pub mod reassembly;
mod summary;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

pub use capture::CaptureError;
pub use classify::{classify, Classified, Observed, TurnView};
pub use flows::{Flows, Judged};
pub use summary::Summary;

use crate::config::Detect;
use crate::policy::Policy;

/// A capture that could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `frames` were read (and their decided flows judged) before the damage; the
    /// `undecided` flows still waiting for packets there were not judged.
    #[error("{}: {source} ({frames} frame(s) read; {undecided} flow(s) cut short were not judged)", path.display())]
    Capture {
        path: PathBuf,
        source: CaptureError,
        frames: u64,
        undecided: usize,
    },
    #[error("cannot write events: {0}")]
    Write(std::io::Error),
}

/// What one file held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileStats {
    pub frames: u64,
    /// Frames that carried a TCP segment replay could read.
    pub tcp: u64,
    pub flows: u64,
    pub bytes: u64,
}

/// Replays one capture file: writes one decision event per TCP flow to `out` and counts
/// them in `summary`. A damaged file still has the flows decided before the damage written
/// before the error is returned.
pub fn replay_file(
    path: &Path,
    policy: &Policy,
    detect: Detect,
    out: &mut dyn Write,
    summary: &mut Summary,
) -> Result<FileStats, ReplayError> {
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: path.to_owned(),
        source,
    })?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let input = BufReader::with_capacity(1 << 16, file);
    replay_reader(path, input, bytes, policy, detect, out, summary)
}

/// Replays a capture read from `input` (`bytes` long), named `path` in its events and
/// errors: [`replay_file`] without the file.
pub fn replay_reader(
    path: &Path,
    input: impl Read + Send,
    bytes: u64,
    policy: &Policy,
    detect: Detect,
    out: &mut dyn Write,
    summary: &mut Summary,
) -> Result<FileStats, ReplayError> {
    let name = path.to_string_lossy();
    let mut flows = Flows::new(policy, detect, &name);
    let mut stats = FileStats {
        bytes,
        ..FileStats::default()
    };
    let mut write_error = None;
    let mut emit = |judged: Judged| {
        stats.flows += 1;
        if write_error.is_none() {
            if let Err(err) = writeln!(out, "{}", judged.json) {
                write_error = Some(err);
            }
        }
        summary.add(&name, &judged);
    };
    let mut tcp = 0u64;
    let mut frames = 0u64;
    let read = capture::frames(input, |frame| {
        frames += 1;
        let Some(link) = frame.link else { return };
        if let Some(seg) = packet::parse(link, frame.data) {
            tcp += 1;
            flows.segment(frame.at, &seg, &mut emit);
        }
    });
    // A damaged file ends where its flows were cut short: judging them would report a
    // timeout that never happened.
    let undecided = if read.is_ok() {
        flows.finish(&mut emit);
        0
    } else {
        flows.open_flows()
    };
    if let Some(err) = write_error {
        return Err(ReplayError::Write(err));
    }
    stats.tcp = tcp;
    match read {
        Ok(frames) => Ok(FileStats { frames, ..stats }),
        Err(source) => Err(ReplayError::Capture {
            path: path.to_owned(),
            source,
            frames,
            undecided,
        }),
    }
}
