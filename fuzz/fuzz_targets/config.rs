//! Fuzz target: loading a configuration and its policy files never panics, and a refused
//! load names at least one problem, each in one of the files given (`FILE:LINE:COL`, lines
//! and columns inside the file).
//!
//! Input: the config text, then policy files, separated by NUL bytes. The first policy file
//! is `services.toml` (the catalogue override), the others are segment files.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::config::load_from_strs;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let config = parts.next().unwrap_or_default();
    let names = ["services.toml", "a.toml", "b.toml", "c.toml"];
    let files: Vec<(&str, &str)> = names.iter().copied().zip(parts).collect();
    let Err(problems) = load_from_strs("portcullis.toml", config, &files) else {
        return;
    };
    assert!(!problems.0.is_empty(), "refused without a problem");
    for p in &problems.0 {
        let text = if p.file == "portcullis.toml" {
            config
        } else {
            let Some((_, text)) = files.iter().find(|(name, _)| *name == p.file) else {
                panic!("problem in a file not given: {p}");
            };
            text
        };
        let lines = text.split('\n').count();
        assert!(p.line >= 1 && p.line <= lines, "line out of the file: {p}");
        let width = text
            .split('\n')
            .nth(p.line - 1)
            .map_or(0, |l| l.chars().count());
        assert!(
            p.col >= 1 && p.col <= width + 1,
            "column out of the line: {p}"
        );
    }
});
