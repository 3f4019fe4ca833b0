//! Login attempts per client IP: a token bucket per address (`governor`).

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock};

/// Addresses tracked before idle buckets are dropped.
const MAX_TRACKED: usize = 10_000;

pub struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: governor::clock::DefaultClock,
}

impl LoginLimiter {
    /// `burst` attempts at once, then one every `period`.
    pub fn new(burst: NonZeroU32, period: Duration) -> Self {
        let quota = Quota::with_period(period)
            .expect("a positive period (validated in the config)")
            .allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: governor::clock::DefaultClock::default(),
        }
    }

    /// `Ok` when `ip` may start a login now; else how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_per_address() {
        let limiter = LoginLimiter::new(NonZeroU32::new(3).unwrap(), Duration::from_secs(3600));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "::1".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(3600));
        assert!(
            limiter.check(b).is_ok(),
            "another address has its own bucket"
        );
    }
}
