//! Anti-replay window with extended sequence numbers (RFC 4303 3.4.3 and Appendix A).
//!
//! A bitmap of [`WINDOW`] bits indexed by sequence number modulo the window size, plus the
//! highest sequence number accepted. Sequence number 0 is never valid (senders start at 1).
//! The window itself is single-threaded; `Sa` shares it between workers behind a mutex.

/// Packets the window remembers. RFC 4303 3.4.3: "a minimum window size of 32 packets MUST be
/// supported when 32-bit sequence numbers are employed; a window size of 64 is preferred";
/// reordering across worker threads and multi-queue NICs calls for much more.
pub const WINDOW: u64 = 1024;
const WORDS: usize = (WINDOW / 64) as usize;

/// Received sequence numbers near the highest one.
#[derive(Debug, Clone)]
pub struct Window {
    /// Highest sequence number accepted (0: none yet).
    top: u64,
    bits: [u64; WORDS],
}

impl Default for Window {
    fn default() -> Window {
        Window {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

fn slot(seq: u64) -> (usize, u64) {
    let i = seq % WINDOW;
    ((i / 64) as usize, 1 << (i % 64))
}

impl Window {
    /// A window restored after a restart from a stored `top`: everything up to `top` counts as
    /// received (the stored value may lag the real one; nothing at or below it is accepted
    /// again), and the high bits of what follows are inferred from it.
    pub fn restored(top: u64) -> Window {
        Window {
            top,
            bits: [u64::MAX; WORDS],
        }
    }

    /// The highest sequence number accepted so far.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// The full 64-bit sequence number of a packet carrying the low 32 bits `low`
    /// (RFC 4303 Appendix A2.2), or `None` when it would lie below 1 or more than 2^31 ahead.
    ///
    /// Appendix A2.2 reads a `low` below the window as the next sub-space and lets the ICV
    /// refuse it. A packet that far ahead would mean 2^31 packets lost in a row; it is far more
    /// likely a stale one, so it is refused here as too old, without spending a decryption.
    pub fn infer(&self, low: u32) -> Option<u64> {
        let w = WINDOW as u32;
        let th = (self.top >> 32) as u32;
        let tl = self.top as u32;
        let high = if tl >= w - 1 {
            // Case A: the window lies within one sub-space.
            if low >= tl - (w - 1) {
                Some(th)
            } else {
                th.checked_add(1)
            }
        } else {
            // Case B: the window spans two sub-spaces.
            if low >= tl.wrapping_sub(w - 1) {
                th.checked_sub(1)
            } else {
                Some(th)
            }
        }?;
        let seq = (u64::from(high) << 32) | u64::from(low);
        if seq == 0 || seq.saturating_sub(self.top) > 1 << 31 {
            return None;
        }
        Some(seq)
    }

    /// True if `seq` is new: above the top, or inside the window and not seen.
    pub fn check(&self, seq: u64) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let (word, bit) = slot(seq);
        self.bits[word] & bit == 0
    }

    /// Marks `seq` received if it is new; false if it is a replay or too old.
    pub fn accept(&mut self, seq: u64) -> bool {
        if !self.check(seq) {
            return false;
        }
        if seq > self.top {
            let ahead = seq - self.top;
            if ahead >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Forget the slots the window slides over (they held seq - WINDOW and older).
                for s in self.top + 1..seq {
                    let (word, bit) = slot(s);
                    self.bits[word] &= !bit;
                }
                let (word, bit) = slot(seq);
                self.bits[word] &= !bit;
            }
            self.top = seq;
        }
        let (word, bit) = slot(seq);
        self.bits[word] |= bit;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_reordered_duplicate_and_old() {
        let mut w = Window::default();
        assert!(!w.accept(0), "0 is never a valid sequence number");
        assert!(w.accept(1));
        assert!(!w.accept(1));
        assert!(w.accept(5));
        assert!(w.accept(3), "late but inside the window");
        assert!(!w.accept(3));
        assert!(w.accept(2000));
        assert!(!w.check(2000 - WINDOW), "just outside the window");
        assert!(w.accept(2000 - WINDOW + 1), "the oldest slot still inside");
        assert!(!w.accept(5), "far below the window");
    }

    #[test]
    fn a_restored_window_refuses_up_to_its_top_and_infers_beyond() {
        let top = (5 << 32) + 100;
        let w = Window::restored(top);
        assert!(
            !w.check(top) && !w.check(top - 3),
            "everything up to the top counts as seen"
        );
        assert_eq!(
            w.infer(101),
            Some(top + 1),
            "the high bits come from the stored top"
        );
        assert_eq!(Window::default().infer(101), Some(101));
    }

    #[test]
    fn sliding_forgets_old_slots() {
        let mut w = Window::default();
        for s in 1..=WINDOW {
            assert!(w.accept(s));
        }
        // s + WINDOW reuses the slot of s: it must read as new.
        for s in WINDOW + 1..=3 * WINDOW {
            assert!(w.accept(s), "{s}");
            assert!(!w.accept(s));
        }
        // Jumps of every size keep the window exact.
        let mut w = Window::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut s = 1u64;
        for step in [1u64, 3, 63, 64, 65, 700, 1023, 1024, 1025, 5, 2] {
            s += step;
            assert!(w.accept(s));
            seen.insert(s);
            for t in s.saturating_sub(WINDOW + 10)..=s + 2 {
                let expect = t != 0 && t + WINDOW > s && !seen.contains(&t) || t > s;
                assert_eq!(w.check(t), expect, "after {s}: {t}");
            }
        }
    }

    #[test]
    fn esn_inference_follows_appendix_a() {
        let mut w = Window::default();
        assert_eq!(w.infer(1), Some(1));
        assert_eq!(w.infer(0), None);
        assert_eq!(
            w.infer(u32::MAX),
            None,
            "would be below the first sub-space"
        );
        // Near the end of sub-space 0: numbers past the wrap belong to sub-space 1.
        assert!(w.accept(u64::from(u32::MAX) - 10));
        assert_eq!(w.infer(u32::MAX - 20), Some(u64::from(u32::MAX) - 20));
        assert_eq!(w.infer(5), Some((1 << 32) + 5));
        // Just after the wrap (case B): late packets from sub-space 0 keep high bits 0.
        assert!(w.accept((1 << 32) + 3));
        assert_eq!(w.infer(u32::MAX - 2), Some(u64::from(u32::MAX) - 2));
        assert!(w.check(u64::from(u32::MAX) - 2));
        assert_eq!(w.infer(2), Some((1 << 32) + 2));
        assert_eq!(w.infer(100), Some((1 << 32) + 100));
        // Far in sub-space 1.
        assert!(w.accept((1 << 32) + 5000));
        assert_eq!(w.infer(4000), Some((1 << 32) + 4000));
        // Below the window: Appendix A2.2 would say the next sub-space, 2^32 - 4000 ahead.
        assert_eq!(w.infer(1000), None, "too old, not 2^32 ahead");
        assert!(w.accept((1 << 32) + 0xc000_0000));
        assert_eq!(
            w.infer(1000),
            Some((2 << 32) + 1000),
            "past the half: next sub-space"
        );
    }
}
