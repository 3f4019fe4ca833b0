//! OTLP metrics requests into the series store: names, labels and point
//! types (monotonic sums are counters, other sums and gauges are gauges,
//! explicit-bucket histograms are histograms; summaries and exponential
//! histograms are refused as unsupported).

use std::{collections::BTreeMap, time::Instant};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    metrics::v1::{
        AggregationTemporality, HistogramDataPoint, NumberDataPoint, metric::Data,
        number_data_point::Value,
    },
};

use crate::{
    labels::{Sender, label_set},
    names,
    series::{Point, Reject, SeriesStore},
};

/// What became of a request's data points.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub accepted: u64,
    pub rejected: BTreeMap<Reject, u64>,
}

impl Outcome {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, why: Reject, n: u64) {
        if n > 0 {
            *self.rejected.entry(why).or_default() += n;
        }
    }

    /// The partial-success message a client sees.
    pub fn message(&self) -> String {
        self.rejected
            .iter()
            .map(|(why, n)| format!("{n} data points rejected: {}", why.as_str()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

pub fn data_points(request: &ExportMetricsServiceRequest) -> u64 {
    let mut n = 0;
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                n += match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 1,
                } as u64;
            }
        }
    }
    n
}

pub fn apply(
    store: &mut SeriesStore,
    request: &ExportMetricsServiceRequest,
    now: Instant,
) -> Outcome {
    let mut out = Outcome::default();
    for rm in &request.resource_metrics {
        let sender = Sender::of(rm.resource.as_ref());
        for sm in &rm.scope_metrics {
            for metric in &sm.metrics {
                let help = names::help(&metric.description);
                let mut record = |name: &str, attrs, point: Result<Point, Reject>| {
                    let result = point
                        .and_then(|p| store.record(name, &help, label_set(&sender, attrs), p, now));
                    match result {
                        Ok(()) => out.accepted += 1,
                        Err(why) => out.reject(why, 1),
                    }
                };
                if metric.name.is_empty() {
                    let n = match &metric.data {
                        Some(Data::Gauge(g)) => g.data_points.len(),
                        Some(Data::Sum(s)) => s.data_points.len(),
                        Some(Data::Histogram(h)) => h.data_points.len(),
                        _ => 1,
                    };
                    out.reject(Reject::Invalid, n as u64);
                    continue;
                }
                match &metric.data {
                    Some(Data::Gauge(g)) => {
                        let name = names::metric_name(&metric.name, false);
                        for p in &g.data_points {
                            record(&name, &p.attributes, number(p).map(Point::Gauge));
                        }
                    }
                    Some(Data::Sum(s)) => {
                        let delta =
                            s.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let cumulative =
                            s.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                        let name = names::metric_name(&metric.name, s.is_monotonic);
                        for p in &s.data_points {
                            let point = number(p).and_then(|v| {
                                Ok(match (s.is_monotonic, delta, cumulative) {
                                    (true, true, _) => Point::CounterDelta(v),
                                    (true, _, true) => Point::CounterCumulative {
                                        start_unix_nano: p.start_time_unix_nano,
                                        value: v,
                                    },
                                    (false, true, _) => Point::GaugeAdd(v),
                                    (false, _, true) => Point::Gauge(v),
                                    _ => return Err(Reject::Invalid),
                                })
                            });
                            record(&name, &p.attributes, point);
                        }
                    }
                    Some(Data::Histogram(h)) => {
                        let cumulative =
                            h.aggregation_temporality == AggregationTemporality::Cumulative as i32;
                        let delta =
                            h.aggregation_temporality == AggregationTemporality::Delta as i32;
                        let name = names::metric_name(&metric.name, false);
                        for p in &h.data_points {
                            let point = if cumulative || delta {
                                histogram(p, cumulative)
                            } else {
                                Err(Reject::Invalid)
                            };
                            record(&name, &p.attributes, point);
                        }
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        out.reject(Reject::Unsupported, h.data_points.len() as u64)
                    }
                    Some(Data::Summary(s)) => {
                        out.reject(Reject::Unsupported, s.data_points.len() as u64)
                    }
                    None => out.reject(Reject::Invalid, 1),
                }
            }
        }
    }
    out
}

fn number(p: &NumberDataPoint) -> Result<f64, Reject> {
    match p.value {
        Some(Value::AsDouble(d)) if d.is_finite() => Ok(d),
        Some(Value::AsInt(i)) => Ok(i as f64),
        _ => Err(Reject::Invalid),
    }
}

fn histogram(p: &HistogramDataPoint, cumulative: bool) -> Result<Point, Reject> {
    let bounds_sorted = p.explicit_bounds.windows(2).all(|w| w[0] < w[1]);
    let counts_match = p.bucket_counts.len() == p.explicit_bounds.len() + 1;
    let total: u64 = p.bucket_counts.iter().sum();
    if !bounds_sorted || !counts_match || total != p.count {
        return Err(Reject::Invalid);
    }
    Ok(Point::Histogram {
        cumulative,
        start_unix_nano: p.start_time_unix_nano,
        bounds: p.explicit_bounds.clone(),
        count: p.count as f64,
        sum: p.sum.unwrap_or(0.0),
        buckets: p.bucket_counts.iter().map(|c| *c as f64).collect(),
    })
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::{
        common::v1::{AnyValue, KeyValue, any_value},
        metrics::v1::{Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary},
        resource::v1::Resource,
    };

    use super::*;
    use crate::budget::Budget;

    fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "sluice.cluster".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("c1".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn sum(name: &str, temporality: AggregationTemporality, monotonic: bool, v: f64) -> Metric {
        Metric {
            name: name.into(),
            data: Some(Data::Sum(Sum {
                data_points: vec![NumberDataPoint {
                    start_time_unix_nano: 10,
                    value: Some(Value::AsDouble(v)),
                    ..Default::default()
                }],
                aggregation_temporality: temporality as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn good_points_are_accepted_bad_ones_counted_by_reason() {
        let mut store = SeriesStore::new(Budget::new(1 << 20));
        let bad_histogram = Metric {
            name: "h".into(),
            data: Some(Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    count: 5,
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![1.0],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        };
        let summary = Metric {
            name: "s".into(),
            data: Some(Data::Summary(Summary {
                data_points: vec![Default::default(), Default::default()],
            })),
            ..Default::default()
        };
        let req = request(vec![
            sum("a.count", AggregationTemporality::Cumulative, true, 4.0),
            sum("b", AggregationTemporality::Delta, true, 2.0),
            sum("c", AggregationTemporality::Delta, true, -2.0),
            sum("d", AggregationTemporality::Unspecified, true, 1.0),
            sum("", AggregationTemporality::Delta, true, 1.0),
            bad_histogram,
            summary,
        ]);
        assert_eq!(data_points(&req), 8);
        let out = apply(&mut store, &req, Instant::now());
        assert_eq!(out.accepted, 2);
        assert_eq!(out.rejected[&Reject::Negative], 1);
        assert_eq!(out.rejected[&Reject::Invalid], 3);
        assert_eq!(out.rejected[&Reject::Unsupported], 2);
        assert_eq!(out.rejected_total(), 6);
        assert!(
            out.message()
                .contains("2 data points rejected: unsupported_type")
        );
    }
}
