//! Rate limiting the answers to refused connections (RST, ICMP port
//! unreachable for a frontend without backends), so that a flood of
//! refused packets cannot turn the node into an amplifier (the kernel
//! limits its own ICMP errors the same way: `icmp_msgs_per_sec`).
//!
//! Each CPU has a bucket of time credit: it fills at one nanosecond per
//! nanosecond up to one second, and each answer costs `1 s / rate`; so a
//! CPU sends at most `rate` answers per second after a burst of `rate`.

/// Default answers per second for the whole node (the agent splits it
/// over the CPUs), as Linux's `icmp_msgs_per_sec`.
pub const DEFAULT_REFUSALS_PER_SECOND: u32 = 1000;

const SECOND_NS: u64 = 1_000_000_000;

/// One CPU's bucket (a per-CPU array entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalBucket {
    /// Credit left, in nanoseconds (at most one second).
    pub credit_ns: u64,
    /// When the credit was last brought up to date.
    pub last_ns: u64,
}

impl RefusalBucket {
    /// Whether one more answer may be sent at `now_ns` with `rate` answers
    /// per second (0: unlimited); takes its credit if so.
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = now_ns;
        let credit = self.credit_ns.saturating_add(elapsed);
        self.credit_ns = if credit > SECOND_NS {
            SECOND_NS
        } else {
            credit
        };
        let cost = SECOND_NS / u64::from(rate);
        if self.credit_ns >= cost {
            self.credit_ns -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for RefusalBucket {}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 5 * SECOND_NS;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let mut bucket = RefusalBucket::default();
        let sent = (0..1000).filter(|_| bucket.take(START, 100)).count();
        assert_eq!(sent, 100, "the burst is one second's worth");
        // 10 ms later: one more answer's credit.
        assert!(bucket.take(START + 10_000_000, 100));
        assert!(!bucket.take(START + 10_000_000, 100));
        // Over the next 2 s of a flood, 200 more.
        let flood = (1..=200_000u64)
            .filter(|i| bucket.take(START + 10_000_000 + i * 10_000, 100))
            .count();
        assert_eq!(flood, 200);
    }

    #[test]
    fn idle_time_refills_only_one_second() {
        let mut bucket = RefusalBucket::default();
        assert_eq!((0..500).filter(|_| bucket.take(START, 100)).count(), 100);
        let later = START + 3600 * SECOND_NS;
        assert_eq!((0..500).filter(|_| bucket.take(later, 100)).count(), 100);
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut bucket = RefusalBucket::default();
        assert!((0..10_000).all(|_| bucket.take(START, 0)));
    }
}
