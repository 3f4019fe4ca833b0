//! The gateway in-process behind its real tonic server on loopback,
//! reached by the tonic OTLP client: the memory limit refuses with
//! RESOURCE_EXHAUSTED and counts it, malformed and oversized requests get a
//! clear error and the gateway keeps serving.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_client::MetricsServiceClient,
    },
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        metric::Data, number_data_point::Value,
    },
    resource::v1::Resource,
};
use sluice_telemetry::{Gateway, GatewayConfig, metrics::GatewayMetrics, server};
use tonic::{Code, transport::Channel};

fn text(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    })
}

/// One counter `name` with `series` label values `id=0..series`, each
/// carrying a `pad` attribute of `pad` bytes.
fn request(name: &str, series: usize, pad: usize) -> ExportMetricsServiceRequest {
    let data_points = (0..series)
        .map(|i| NumberDataPoint {
            attributes: vec![
                KeyValue {
                    key: "id".into(),
                    value: text(&i.to_string()),
                    ..Default::default()
                },
                KeyValue {
                    key: "pad".into(),
                    value: text(&"x".repeat(pad)),
                    ..Default::default()
                },
            ],
            start_time_unix_nano: 1,
            value: Some(Value::AsInt(1)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "sluice.cluster".into(),
                    value: text("c1"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Sum(Sum {
                        data_points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

async fn start(config: GatewayConfig) -> (Arc<Gateway>, Channel) {
    let gateway = Gateway::new(config, GatewayMetrics::default(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve_otlp(
        gateway.clone(),
        listener,
        None,
        std::future::pending(),
    ));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to the gateway");
    (gateway, channel)
}

fn line<'a>(exposition: &'a str, prefix: &str) -> Option<&'a str> {
    exposition.lines().find(|l| l.starts_with(prefix))
}

#[tokio::test]
async fn memory_limit_rejects_new_series_then_refuses_requests_and_counts_both() {
    let (gateway, channel) = start(GatewayConfig {
        memory_limit_bytes: 256 * 1024,
        ..GatewayConfig::default()
    })
    .await;
    let mut client = MetricsServiceClient::new(channel);

    // 400 series of ~570 bytes each cannot all be kept in 256 KiB.
    let answer: ExportMetricsServiceResponse = client
        .export(request("many", 400, 200))
        .await
        .expect("a request that fits is accepted")
        .into_inner();
    let partial = answer.partial_success.expect("some points were not kept");
    assert!(partial.rejected_data_points > 0 && partial.rejected_data_points < 400);
    assert!(
        partial.error_message.contains("memory_limit"),
        "{}",
        partial.error_message
    );

    // The series now hold nearly all of the budget: a request larger than
    // what is left is refused whole.
    let status = client
        .export(request("more", 200, 1000))
        .await
        .expect_err("over the memory limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("memory limit"), "{status:?}");

    let text = gateway.encode();
    assert!(
        text.contains(
            "sluice_telemetry_refused_requests_total{signal=\"metrics\",reason=\"memory_limit\"} 1\n"
        ),
        "{text}"
    );
    let rejected = line(
        &text,
        "sluice_telemetry_rejected_total{signal=\"metrics\",reason=\"memory_limit\"}",
    )
    .expect("rejected points are counted");
    assert!(
        rejected.ends_with(&format!(" {}", partial.rejected_data_points)),
        "{rejected}"
    );

    // Once the series expire the memory is back and exports succeed.
    gateway.expire(Instant::now() + Duration::from_secs(3600));
    client
        .export(request("more", 200, 1000))
        .await
        .expect("accepted again once the series expired");
}

/// A message whose field 1 is a varint where OTLP has a length-delimited
/// ResourceMetrics: undecodable as an ExportMetricsServiceRequest.
#[derive(Clone, PartialEq, prost::Message)]
struct Malformed {
    #[prost(uint64, tag = "1")]
    resource_metrics: u64,
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_clear_errors_and_the_gateway_stays_up() {
    let (gateway, channel) = start(GatewayConfig {
        max_request_bytes: 64 * 1024,
        ..GatewayConfig::default()
    })
    .await;

    let mut raw = tonic::client::Grpc::new(channel.clone());
    raw.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<Malformed, ExportMetricsServiceResponse>::default();
    let status = raw
        .unary(
            tonic::Request::new(Malformed {
                resource_metrics: 7,
            }),
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
                .parse()
                .unwrap(),
            codec,
        )
        .await
        .expect_err("undecodable");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(status.message().contains("decode"), "{status:?}");

    let mut client = MetricsServiceClient::new(channel);
    let status = client
        .export(request("big", 1, 100 * 1024))
        .await
        .expect_err("over --otlp-max-request-bytes");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{status:?}");

    // A point without a value is rejected with a reason, the rest is kept.
    let mut req = request("ok", 2, 1);
    if let Some(Data::Sum(sum)) = &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data {
        sum.data_points[1].value = None;
    }
    let answer = client
        .export(req)
        .await
        .expect("gateway still serves")
        .into_inner();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_data_points, 1);
    assert!(
        partial.error_message.contains("invalid"),
        "{}",
        partial.error_message
    );
    let text = gateway.encode();
    assert!(
        text.contains("ok_total{cluster=\"c1\",id=\"0\",node=\"unknown\",pad=\"x\"} 1.0\n"),
        "{text}"
    );
}
