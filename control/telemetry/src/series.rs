//! Every received series, by metric name and label set, with its type and
//! the state that keeps counters monotonic. Stored series cost memory from
//! the gateway's budget until they expire.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::{
    accumulate::{Accumulator, Skip},
    budget::Budget,
};

pub type Labels = Vec<(String, String)>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One received data point, already classified.
#[derive(Clone, Debug, PartialEq)]
pub enum Point {
    /// Monotonic cumulative sum.
    CounterCumulative { start_unix_nano: u64, value: f64 },
    /// Monotonic delta sum.
    CounterDelta(f64),
    /// Gauge, or non-monotonic cumulative sum.
    Gauge(f64),
    /// Non-monotonic delta sum (an up-down counter's change).
    GaugeAdd(f64),
    Histogram {
        cumulative: bool,
        start_unix_nano: u64,
        /// Upper bounds (without +Inf).
        bounds: Vec<f64>,
        count: f64,
        sum: f64,
        /// Per bucket (not cumulative), `bounds.len() + 1` of them.
        buckets: Vec<f64>,
    },
}

impl Point {
    pub fn kind(&self) -> Kind {
        match self {
            Point::CounterCumulative { .. } | Point::CounterDelta(_) => Kind::Counter,
            Point::Gauge(_) | Point::GaugeAdd(_) => Kind::Gauge,
            Point::Histogram { .. } => Kind::Histogram,
        }
    }
}

/// Why a point was not stored (the `reason` label of the rejected counter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    TypeConflict,
    MemoryLimit,
    Stale,
    Negative,
    Shape,
    Unsupported,
    Invalid,
}

impl Reject {
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::TypeConflict => "type_conflict",
            Reject::MemoryLimit => "memory_limit",
            Reject::Stale => "stale",
            Reject::Negative => "negative",
            Reject::Shape => "bucket_layout",
            Reject::Unsupported => "unsupported_type",
            Reject::Invalid => "invalid",
        }
    }
}

impl From<Skip> for Reject {
    fn from(s: Skip) -> Self {
        match s {
            Skip::Stale => Reject::Stale,
            Skip::Negative => Reject::Negative,
            Skip::Shape => Reject::Shape,
        }
    }
}

#[derive(Debug)]
enum State {
    Counter(Accumulator),
    Gauge(f64),
    /// `acc` holds [count, sum, bucket…].
    Histogram {
        bounds: Vec<f64>,
        acc: Accumulator,
    },
}

#[derive(Debug)]
struct Series {
    state: State,
    last_seen: Instant,
    cost: usize,
}

#[derive(Debug)]
struct Family {
    kind: Kind,
    help: String,
    series: HashMap<Labels, Series>,
}

#[derive(Debug)]
pub struct SeriesStore {
    families: BTreeMap<String, Family>,
    budget: Arc<Budget>,
    count: usize,
}

/// Estimated bytes of a stored series.
fn cost(name: &str, labels: &Labels, width: usize) -> usize {
    128 + name.len()
        + labels
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum::<usize>()
        + width * 16
}

impl SeriesStore {
    pub fn new(budget: Arc<Budget>) -> Self {
        Self {
            families: BTreeMap::new(),
            budget,
            count: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn record(
        &mut self,
        name: &str,
        help: &str,
        labels: Labels,
        point: Point,
        now: Instant,
    ) -> Result<(), Reject> {
        let kind = point.kind();
        if let Some(family) = self.families.get(name)
            && family.kind != kind
        {
            return Err(Reject::TypeConflict);
        }
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| Family {
                kind,
                help: help.to_string(),
                series: HashMap::new(),
            });
        if !family.series.contains_key(&labels) {
            let width = match &point {
                Point::Histogram { buckets, .. } => buckets.len() + 2,
                _ => 1,
            };
            let bytes = cost(name, &labels, width);
            if !self.budget.try_take(bytes) {
                if family.series.is_empty() {
                    self.families.remove(name);
                }
                return Err(Reject::MemoryLimit);
            }
            let state = match &point {
                Point::CounterCumulative { .. } | Point::CounterDelta(_) => {
                    State::Counter(Accumulator::new(1))
                }
                Point::Gauge(_) | Point::GaugeAdd(_) => State::Gauge(0.0),
                Point::Histogram { bounds, .. } => State::Histogram {
                    bounds: bounds.clone(),
                    acc: Accumulator::new(width),
                },
            };
            family.series.insert(
                labels.clone(),
                Series {
                    state,
                    last_seen: now,
                    cost: bytes,
                },
            );
            self.count += 1;
        }
        let series = family.series.get_mut(&labels).expect("inserted above");
        apply(&mut series.state, point)?;
        series.last_seen = now;
        Ok(())
    }

    /// Drops series not updated within `ttl`; returns how many.
    pub fn expire(&mut self, now: Instant, ttl: Duration) -> usize {
        let mut dropped = 0;
        let budget = &self.budget;
        self.families.retain(|_, family| {
            family.series.retain(|_, s| {
                let keep = now.saturating_duration_since(s.last_seen) < ttl;
                if !keep {
                    budget.release(s.cost);
                    dropped += 1;
                }
                keep
            });
            !family.series.is_empty()
        });
        self.count -= dropped;
        dropped
    }

    /// Writes every family in the OpenMetrics text format.
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, family) in &self.families {
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut family_encoder =
                encoder.encode_descriptor(name, &family.help, None, metric_type)?;
            let mut sorted: Vec<_> = family.series.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            for (labels, series) in sorted {
                let mut e = family_encoder.encode_family(labels)?;
                match &series.state {
                    State::Counter(acc) => {
                        e.encode_counter::<NoLabelSet, f64, f64>(&acc.values()[0], None)?
                    }
                    State::Gauge(v) => e.encode_gauge(v)?,
                    State::Histogram { bounds, acc } => {
                        let v = acc.values();
                        let buckets: Vec<(f64, u64)> = v[2..]
                            .iter()
                            .enumerate()
                            .map(|(i, c)| (bounds.get(i).copied().unwrap_or(f64::MAX), *c as u64))
                            .collect();
                        e.encode_histogram::<NoLabelSet>(v[1], v[0] as u64, &buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

fn apply(state: &mut State, point: Point) -> Result<(), Reject> {
    match (state, point) {
        (
            State::Counter(acc),
            Point::CounterCumulative {
                start_unix_nano,
                value,
            },
        ) => Ok(acc.observe_cumulative(start_unix_nano, &[value])?),
        (State::Counter(acc), Point::CounterDelta(d)) => Ok(acc.add_delta(&[d])?),
        (State::Gauge(g), Point::Gauge(v)) => {
            *g = v;
            Ok(())
        }
        (State::Gauge(g), Point::GaugeAdd(d)) => {
            *g += d;
            Ok(())
        }
        (
            State::Histogram { bounds, acc },
            Point::Histogram {
                cumulative,
                start_unix_nano,
                bounds: new_bounds,
                count,
                sum,
                buckets,
            },
        ) => {
            if *bounds != new_bounds {
                return Err(Reject::Shape);
            }
            let mut values = Vec::with_capacity(buckets.len() + 2);
            values.push(count);
            values.push(sum);
            values.extend(buckets);
            if cumulative {
                Ok(acc.observe_cumulative(start_unix_nano, &values)?)
            } else {
                Ok(acc.add_delta(&values)?)
            }
        }
        _ => Err(Reject::TypeConflict),
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{collector::Collector, registry::Registry};

    use super::*;

    fn labels(node: &str) -> Labels {
        vec![
            ("cluster".into(), "c1".into()),
            ("node".into(), node.into()),
        ]
    }

    #[derive(Debug)]
    struct Show(std::sync::Mutex<SeriesStore>);
    impl Collector for Show {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            self.0.lock().unwrap().encode(&mut encoder)
        }
    }

    fn text(store: SeriesStore) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Show(std::sync::Mutex::new(store))));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn types_and_values_are_exposed() {
        let now = Instant::now();
        let mut store = SeriesStore::new(Budget::new(1 << 20));
        let c = |v| Point::CounterCumulative {
            start_unix_nano: 1,
            value: v,
        };
        store
            .record("flows", "Flows seen", labels("n1"), c(3.0), now)
            .unwrap();
        store
            .record("flows", "", labels("n1"), c(5.0), now)
            .unwrap();
        store
            .record("temp", "", labels("n1"), Point::Gauge(-2.5), now)
            .unwrap();
        store
            .record(
                "lat",
                "",
                labels("n1"),
                Point::Histogram {
                    cumulative: false,
                    start_unix_nano: 0,
                    bounds: vec![1.0],
                    count: 3.0,
                    sum: 4.0,
                    buckets: vec![2.0, 1.0],
                },
                now,
            )
            .unwrap();
        assert_eq!(
            store.record("flows", "", labels("n2"), Point::Gauge(1.0), now),
            Err(Reject::TypeConflict)
        );
        let out = text(store);
        assert!(out.contains("# TYPE flows counter\n"), "{out}");
        assert!(
            out.contains("flows_total{cluster=\"c1\",node=\"n1\"} 5.0\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE temp gauge\n"), "{out}");
        assert!(
            out.contains("temp{cluster=\"c1\",node=\"n1\"} -2.5\n"),
            "{out}"
        );
        assert!(
            out.contains("lat_bucket{le=\"1.0\",cluster=\"c1\",node=\"n1\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("lat_bucket{le=\"+Inf\",cluster=\"c1\",node=\"n1\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("lat_count{cluster=\"c1\",node=\"n1\"} 3\n"),
            "{out}"
        );
    }

    #[test]
    fn stale_series_expire_and_give_their_memory_back() {
        let budget = Budget::new(1 << 20);
        let mut store = SeriesStore::new(budget.clone());
        let t0 = Instant::now();
        store
            .record("g", "", labels("n1"), Point::Gauge(1.0), t0)
            .unwrap();
        store
            .record(
                "g",
                "",
                labels("n2"),
                Point::Gauge(1.0),
                t0 + Duration::from_secs(50),
            )
            .unwrap();
        assert!(budget.used() > 0);
        assert_eq!(
            store.expire(t0 + Duration::from_secs(60), Duration::from_secs(30)),
            1
        );
        assert_eq!(store.len(), 1);
        assert_eq!(
            store.expire(t0 + Duration::from_secs(100), Duration::from_secs(30)),
            1
        );
        assert!(store.is_empty());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn new_series_beyond_the_budget_are_refused() {
        let budget = Budget::new(400);
        let mut store = SeriesStore::new(budget);
        let now = Instant::now();
        store
            .record("g", "", labels("n1"), Point::Gauge(1.0), now)
            .unwrap();
        assert_eq!(
            store.record(
                "g",
                "",
                labels("a-much-longer-node-name"),
                Point::Gauge(1.0),
                now
            ),
            Err(Reject::MemoryLimit)
        );
        // Existing series still update.
        store
            .record("g", "", labels("n1"), Point::Gauge(2.0), now)
            .unwrap();
        assert_eq!(store.len(), 1);
    }
}
