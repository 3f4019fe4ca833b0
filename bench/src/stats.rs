//! Small statistics over measured samples.

/// Percentile `p` (0..=100) of `samples` (nearest rank); NaN when empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// `value / baseline`, rounded for tables.
pub fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        f64::NAN
    } else {
        value / baseline
    }
}

/// Min, median and max of one figure over a run's rounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    /// NaN everywhere when `samples` is empty or holds a NaN (a figure
    /// that could not be measured must not look measured).
    pub fn of(samples: &[f64]) -> Self {
        if samples.is_empty() || samples.iter().any(|s| s.is_nan()) {
            return Self {
                min: f64::NAN,
                median: f64::NAN,
                max: f64::NAN,
            };
        }
        Self {
            min: samples.iter().copied().fold(f64::INFINITY, f64::min),
            median: median(samples),
            max: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"min": self.min, "median": self.median, "max": self.max})
    }
}

/// `0..n` in an order that differs from round to round (a seeded
/// xorshift Fisher-Yates shuffle, so a run can be repeated): configurations
/// measured in a fixed order would carry the machine's drift, and the
/// first one every warm-up effect.
pub fn shuffled(n: usize, round: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = round.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_and_shuffles() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.0, 3.0));
        assert!(Spread::of(&[]).median.is_nan());
        assert!(Spread::of(&[1.0, f64::NAN]).max.is_nan());
        let orders: Vec<Vec<usize>> = (0..8).map(|r| shuffled(6, r)).collect();
        for order in &orders {
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "a permutation");
        }
        assert!(
            orders.iter().any(|o| o[0] != orders[0][0]),
            "the first configuration changes between rounds: {orders:?}"
        );
        assert_eq!(shuffled(6, 3), shuffled(6, 3));
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median(&s), 50.0);
        assert_eq!(percentile(&s, 99.0), 99.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
        assert!(median(&[]).is_nan());
    }
}
