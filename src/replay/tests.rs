//! Replay tests against the recorded fixtures under tests/fixtures/pcap.
