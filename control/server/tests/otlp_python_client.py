"""Sends metrics and logs to an OTLP/gRPC endpoint with the official
OpenTelemetry Python SDK (PyPI opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-grpc; scripts/setup.sh installs them).

usage: otlp_python_client.py ENDPOINT ROOT_CA_PEM CLUSTER NODE COUNT

One run is one process start of a sender: its counter `py_requests`
counts COUNT from zero with a new start time, so two runs test how the
gateway keeps counters monotonic across a sender restart. Exits non-zero
when an export is not acknowledged.
"""

import logging
import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def main():
    endpoint, ca_path, cluster, node, count = sys.argv[1:6]
    count = int(count)
    with open(ca_path, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    resource = Resource.create(
        {
            "service.name": "py-sender",
            "sluice.cluster": cluster,
            "k8s.node.name": node,
        }
    )

    metric_exporter = OTLPMetricExporter(endpoint=endpoint, credentials=credentials)
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=600_000)
    meters = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meters.get_meter("sluice-test")
    requests = meter.create_counter("py_requests", description="Requests handled")
    in_flight = meter.create_up_down_counter("py_in_flight")
    latency = meter.create_histogram("py_latency_seconds")
    for i in range(count):
        requests.add(1, {"route": "/a"})
        in_flight.add(1)
        latency.record(0.01 * (i + 1))
    in_flight.add(-1)
    if not meters.force_flush(timeout_millis=10_000):
        sys.exit("metrics export was not acknowledged")

    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, credentials=credentials)))
    logger = logging.getLogger("sluice-test")
    logger.propagate = False
    logger.addHandler(LoggingHandler(level=logging.INFO, logger_provider=logs))
    logger.warning("rejected NetworkPolicy default/deny-all", extra={"kind": "NetworkPolicy"})
    if not logs.force_flush(timeout_millis=10_000):
        sys.exit("logs export was not acknowledged")
    meters.shutdown()
    logs.shutdown()
    print("sent")


if __name__ == "__main__":
    main()
