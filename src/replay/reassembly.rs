//! One direction's first turn, reassembled in sequence order from captured TCP segments:
//! retransmissions and overlaps keep the bytes first seen, out-of-order segments wait for the
//! gap before them, and the turn stops at the first gap that never fills. Never holds more
//! than `cap` bytes (in order and waiting together).

/// The bytes one side sent at the start of a connection, as far as they are contiguous.
#[derive(Debug, Clone, Default)]
pub struct Turn {
    /// Sequence number of the first payload byte (ISN + 1), once known.
    base: Option<u32>,
    /// Contiguous bytes from `base`, at most `cap`.
    bytes: Vec<u8>,
    /// Segments beyond a gap: (offset from `base`, bytes), sorted by offset.
    waiting: Vec<(usize, Vec<u8>)>,
    waiting_len: usize,
    /// Offset of the FIN, once seen.
    fin: Option<usize>,
    /// This side reset the connection.
    reset: bool,
    cap: usize,
}

/// Offsets this far past `base` (half the sequence space) are taken as bytes before it.
const BEHIND: u32 = 1 << 31;

impl Turn {
    pub fn new(cap: usize) -> Turn {
        Turn {
            cap,
            ..Turn::default()
        }
    }

    /// The SYN's sequence number: payload starts one after it.
    pub fn syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    /// The contiguous bytes so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Bytes held, in order and waiting (never more than `cap`).
    pub fn held(&self) -> usize {
        self.bytes.len() + self.waiting_len
    }

    /// Whether this side finished its stream (a FIN right after the contiguous bytes) or
    /// reset the connection.
    pub fn ended(&self) -> bool {
        self.reset || self.fin == Some(self.bytes.len())
    }

    pub fn rst(&mut self) {
        self.reset = true;
    }

    /// Adds one segment's payload (and FIN). A segment seen before any SYN starts the turn.
    pub fn segment(&mut self, seq: u32, payload: &[u8], fin: bool) {
        let base = *self.base.get_or_insert(seq);
        let rel = seq.wrapping_sub(base);
        let (offset, payload) = if rel >= BEHIND {
            // Starts before `base`: keep what lies at or after it.
            let skip = base.wrapping_sub(seq) as usize;
            (0, payload.get(skip..).unwrap_or_default())
        } else {
            (rel as usize, payload)
        };
        if fin {
            self.fin.get_or_insert(offset + payload.len());
        }
        if payload.is_empty() || offset >= self.cap {
            return;
        }
        let payload = &payload[..payload.len().min(self.cap - offset)];
        if offset <= self.bytes.len() {
            self.extend(offset, payload);
            self.drain_waiting();
        } else {
            self.wait(offset, payload);
        }
    }

    /// Appends the part of `payload` (at `offset`) past the contiguous end.
    fn extend(&mut self, offset: usize, payload: &[u8]) {
        let new = self.bytes.len() - offset;
        if let Some(rest) = payload.get(new..) {
            self.bytes.extend_from_slice(rest);
        }
    }

    fn wait(&mut self, offset: usize, payload: &[u8]) {
        let covered = self
            .waiting
            .iter()
            .any(|(o, b)| *o <= offset && o + b.len() >= offset + payload.len());
        if covered || self.held() + payload.len() > self.cap {
            return;
        }
        let at = self.waiting.partition_point(|(o, _)| *o <= offset);
        self.waiting.insert(at, (offset, payload.to_vec()));
        self.waiting_len += payload.len();
    }

    /// Moves waiting segments that now touch the contiguous end into it, drops the ones it
    /// already covers, and keeps the total within `cap`.
    fn drain_waiting(&mut self) {
        while let Some((offset, _)) = self.waiting.first() {
            if *offset > self.bytes.len() {
                break;
            }
            let (offset, payload) = self.waiting.remove(0);
            self.waiting_len -= payload.len();
            self.extend(offset, &payload);
        }
        while self.held() > self.cap {
            match self.waiting.pop() {
                Some((_, dropped)) => self.waiting_len -= dropped.len(),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISN: u32 = 1000;

    fn turn() -> Turn {
        let mut t = Turn::new(64);
        t.syn(ISN);
        t
    }

    #[test]
    fn in_order_segments_concatenate() {
        let mut t = turn();
        t.segment(ISN + 1, b"GET / ", false);
        t.segment(ISN + 7, b"HTTP/1.1", false);
        assert_eq!(t.bytes(), b"GET / HTTP/1.1");
        assert!(!t.ended());
    }

    #[test]
    fn out_of_order_segments_wait_for_the_gap() {
        let mut t = turn();
        t.segment(ISN + 7, b"HTTP/1.1", false);
        t.segment(ISN + 5, b"/ ", false);
        assert_eq!(t.bytes(), b"", "a gap at the start holds everything back");
        t.segment(ISN + 1, b"GET ", false);
        assert_eq!(t.bytes(), b"GET / HTTP/1.1");
        assert_eq!(t.held(), t.bytes().len());
    }

    #[test]
    fn retransmission_and_overlap_keep_the_first_bytes() {
        let mut t = turn();
        t.segment(ISN + 1, b"abcd", false);
        t.segment(ISN + 1, b"abcd", false);
        t.segment(ISN + 3, b"XXef", false);
        assert_eq!(t.bytes(), b"abcdef");
        // A segment that starts before the ISN + 1 (a stray SYN-data) keeps only its tail.
        let mut t = turn();
        t.segment(ISN - 2, b"zzzab", false);
        assert_eq!(t.bytes(), b"ab");
    }

    #[test]
    fn a_gap_that_never_fills_stops_the_turn() {
        let mut t = turn();
        t.segment(ISN + 1, b"abc", false);
        t.segment(ISN + 10, b"later", true);
        assert_eq!(t.bytes(), b"abc");
        assert!(
            !t.ended(),
            "a FIN after a gap does not end the contiguous turn"
        );
    }

    #[test]
    fn fin_after_the_contiguous_bytes_ends_the_turn() {
        let mut t = turn();
        t.segment(ISN + 1, b"abc", true);
        assert!(t.ended());
        let mut t = turn();
        t.segment(ISN + 1, b"", false);
        t.rst();
        assert!(t.ended());
    }

    #[test]
    fn never_holds_more_than_the_cap() {
        let mut t = Turn::new(8);
        t.syn(ISN);
        t.segment(ISN + 5, b"0123456789", false);
        assert!(t.held() <= 8);
        t.segment(ISN + 1, b"abcdefghijkl", false);
        assert_eq!(t.bytes(), b"abcdefgh");
        assert!(t.held() <= 8);
        let mut t = Turn::new(8);
        t.syn(ISN);
        for i in 0..100 {
            t.segment(ISN + 2 + i, b"xy", false);
        }
        assert!(t.held() <= 8);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut t = Turn::new(64);
        t.syn(u32::MAX - 1);
        t.segment(u32::MAX, b"ab", false);
        t.segment(1, b"cd", false);
        assert_eq!(t.bytes(), b"abcd");
    }

    #[test]
    fn a_turn_seen_without_its_syn_starts_at_the_first_segment() {
        let mut t = Turn::new(64);
        t.segment(5000, b"SSH-2.0-x\r\n", false);
        assert_eq!(t.bytes(), b"SSH-2.0-x\r\n");
    }
}
