//! Monotonic values from senders that restart: the exposed value of a
//! counter (or a histogram's count, sum and buckets) never goes down while
//! the gateway runs.
//!
//! A cumulative point carries the sender's start time. A later start time,
//! or a count below the last one, means the sender restarted: what it had
//! counted before becomes an offset added to everything it reports from
//! then on. Delta points are added up.

/// Why a point was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// From an earlier run of the sender than the one already seen.
    Stale,
    /// Negative delta or negative value in a monotonic series.
    Negative,
    /// A different number of values (histogram buckets changed).
    Shape,
}

/// `values[0]` decides resets (a counter's value, a histogram's count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Accumulator {
    start_unix_nano: u64,
    last: Vec<f64>,
    offset: Vec<f64>,
}

impl Accumulator {
    pub fn new(width: usize) -> Self {
        Self {
            start_unix_nano: 0,
            last: vec![0.0; width],
            offset: vec![0.0; width],
        }
    }

    pub fn width(&self) -> usize {
        self.last.len()
    }

    /// A cumulative point: `raw` counted since `start_unix_nano`.
    pub fn observe_cumulative(&mut self, start_unix_nano: u64, raw: &[f64]) -> Result<(), Skip> {
        if raw.len() != self.width() {
            return Err(Skip::Shape);
        }
        if raw.iter().any(|v| *v < 0.0 || v.is_nan()) {
            return Err(Skip::Negative);
        }
        if start_unix_nano != 0 && start_unix_nano < self.start_unix_nano {
            return Err(Skip::Stale);
        }
        let restarted = start_unix_nano > self.start_unix_nano && self.start_unix_nano != 0
            || raw[0] < self.last[0];
        if restarted {
            for (offset, last) in self.offset.iter_mut().zip(&self.last) {
                *offset += last;
            }
        }
        if start_unix_nano != 0 {
            self.start_unix_nano = start_unix_nano;
        }
        self.last.copy_from_slice(raw);
        Ok(())
    }

    /// A delta point: `delta` counted since the previous point.
    pub fn add_delta(&mut self, delta: &[f64]) -> Result<(), Skip> {
        if delta.len() != self.width() {
            return Err(Skip::Shape);
        }
        if delta.iter().any(|v| *v < 0.0 || v.is_nan()) {
            return Err(Skip::Negative);
        }
        for (offset, d) in self.offset.iter_mut().zip(delta) {
            *offset += d;
        }
        Ok(())
    }

    /// The monotonic values to expose.
    pub fn values(&self) -> Vec<f64> {
        self.offset
            .iter()
            .zip(&self.last)
            .map(|(o, l)| o + l)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter() -> Accumulator {
        Accumulator::new(1)
    }

    #[test]
    fn cumulative_points_are_exposed_as_sent() {
        let mut c = counter();
        c.observe_cumulative(100, &[5.0]).unwrap();
        c.observe_cumulative(100, &[7.0]).unwrap();
        assert_eq!(c.values(), [7.0]);
    }

    #[test]
    fn a_new_start_time_carries_the_old_total_over() {
        let mut c = counter();
        c.observe_cumulative(100, &[5.0]).unwrap();
        c.observe_cumulative(100, &[9.0]).unwrap();
        // The sender restarted: it counts from 0 again, with a later start.
        c.observe_cumulative(200, &[2.0]).unwrap();
        assert_eq!(c.values(), [11.0]);
        c.observe_cumulative(200, &[4.0]).unwrap();
        assert_eq!(c.values(), [13.0]);
        // Restarted again and already past the old raw value: still a reset.
        c.observe_cumulative(300, &[20.0]).unwrap();
        assert_eq!(c.values(), [33.0]);
    }

    #[test]
    fn a_drop_without_start_time_is_a_reset_too() {
        let mut c = counter();
        c.observe_cumulative(0, &[10.0]).unwrap();
        c.observe_cumulative(0, &[3.0]).unwrap();
        assert_eq!(c.values(), [13.0]);
    }

    #[test]
    fn a_point_from_an_older_run_is_skipped() {
        let mut c = counter();
        c.observe_cumulative(200, &[4.0]).unwrap();
        assert_eq!(c.observe_cumulative(100, &[50.0]), Err(Skip::Stale));
        assert_eq!(c.values(), [4.0]);
    }

    #[test]
    fn deltas_add_up_and_negative_ones_are_refused() {
        let mut c = counter();
        c.add_delta(&[3.0]).unwrap();
        c.add_delta(&[4.5]).unwrap();
        assert_eq!(c.add_delta(&[-1.0]), Err(Skip::Negative));
        assert_eq!(c.values(), [7.5]);
    }

    #[test]
    fn histogram_buckets_follow_the_count_reset() {
        // [count, sum, bucket0, bucket1]
        let mut h = Accumulator::new(4);
        h.observe_cumulative(100, &[3.0, 30.0, 1.0, 2.0]).unwrap();
        h.observe_cumulative(200, &[1.0, 5.0, 1.0, 0.0]).unwrap();
        assert_eq!(h.values(), [4.0, 35.0, 2.0, 2.0]);
        assert_eq!(
            h.observe_cumulative(200, &[1.0, 5.0, 1.0]),
            Err(Skip::Shape)
        );
    }
}
