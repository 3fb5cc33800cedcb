//! Fuzz target: the two sniffing entry points never panic, and a prefix never contradicts
//! the whole input (every prefix is `NeedMore` or the final answer, as DESIGN.md requires).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::sniff::{sniff_client, sniff_server, Verdict};

fuzz_target!(|data: &[u8]| {
    for sniff in [sniff_client, sniff_server] {
        let whole = sniff(data);
        // Every split point: the detection driver calls the sniffer once per read.
        // Bounded, so long inputs stay fast; the first 512 prefixes cover every header.
        for n in (0..data.len()).take(512) {
            let prefix = sniff(&data[..n]);
            assert!(
                prefix == Verdict::NeedMore || prefix == whole,
                "prefix {n}/{}: {prefix:?} but whole input: {whole:?}",
                data.len()
            );
        }
    }
});
