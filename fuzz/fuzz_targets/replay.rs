//! Fuzz target: replaying a capture never panics, whatever the file holds: a damaged or
//! hostile pcap/pcapng file gives its decided flows and a named error, nothing else.
//! Judged with the embedded default policy, as `portcullis replay` without `--config`.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::config::{load_embedded, Loaded};
use portcullis::replay::{replay_reader, Summary};

fuzz_target!(|data: &[u8]| {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    let loaded = LOADED.get_or_init(|| load_embedded().expect("the embedded default loads"));
    let mut summary = Summary::default();
    let _ = replay_reader(
        Path::new("fuzz.pcap"),
        data,
        data.len() as u64,
        &loaded.policy,
        loaded.config.detect,
        &mut std::io::sink(),
        &mut summary,
    );
});
