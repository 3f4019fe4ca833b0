#!/usr/bin/env python3
"""Writes the Sluice Grafana dashboards (deploy/grafana/*.json).

Edit the panels here and re-run `python3 deploy/grafana/generate.py`; the
JSON files are its output (Grafana dashboard model, schemaVersion 39).
Every query uses metric names the product exports; `cargo test -p
sluice-control --test dashboards` evaluates each one against a live
Prometheus.
"""

import json
import os

SEL = 'cluster=~"$cluster", node=~"$node"'
CSEL = 'cluster=~"$cluster"'


def panel(title, exprs, unit="short", kind="timeseries", description=""):
    return {
        "title": title,
        "type": kind,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "expr": expr,
                "legendFormat": legend,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def variables(cluster_metric):
    ds = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
    }
    def var(name, query):
        return {
            "name": name,
            "type": "query",
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "query": {"query": query, "refId": name},
            "definition": query,
            "includeAll": True,
            "multi": True,
            "allValue": ".*",
            "current": {"text": "All", "value": "$__all"},
            "refresh": 2,
        }
    out = [ds]
    if cluster_metric:
        out.append(var("cluster", f"label_values({cluster_metric}, cluster)"))
        out.append(var("node", f'label_values({cluster_metric}{{cluster=~"$cluster"}}, node)'))
    return out


def dashboard(uid, title, description, panels, cluster_metric="sluice_agent_ready"):
    laid = []
    for i, p in enumerate(panels):
        p = dict(p, id=i + 1, gridPos={"h": 8, "w": 12, "x": (i % 2) * 12, "y": (i // 2) * 8})
        laid.append(p)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sluice"],
        "schemaVersion": 39,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": variables(cluster_metric)},
        "panels": laid,
    }


R = "$__rate_interval"

DASHBOARDS = {
    "datapath": dashboard(
        "sluice-datapath",
        "Sluice / Datapath",
        "Forwarded and dropped packets, drop reasons, new flows, map pressure (agents' metrics via the telemetry gateway).",
        [
            panel("Packets by verdict", [(f"sum by (verdict) (rate(sluice_datapath_packets_total{{{SEL}}}[{R}]))", "{{verdict}}")], "pps"),
            panel("Bytes by verdict", [(f"sum by (verdict) (rate(sluice_datapath_bytes_total{{{SEL}}}[{R}]))", "{{verdict}}")], "Bps"),
            panel("Drops by reason", [(f"sum by (reason) (rate(sluice_datapath_drops_total{{{SEL}}}[{R}]))", "{{reason}}")], "pps"),
            panel("Drops by node", [(f"sum by (cluster, node) (rate(sluice_datapath_drops_total{{{SEL}}}[{R}]))", "{{cluster}}/{{node}}")], "pps"),
            panel("New flows by verdict", [(f"sum by (verdict) (rate(sluice_flows_total{{{SEL}}}[{R}]))", "{{verdict}}")], "ops"),
            panel("Map fill (CT, NAT, policy, ...)", [(f"max by (map) (sluice_map_entries{{{SEL}}} / sluice_map_capacity{{{SEL}}})", "{{map}}")], "percentunit"),
            panel("Agents ready", [(f"sum by (cluster) (sluice_agent_ready{{{SEL}}})", "{{cluster}}")]),
            panel("Endpoints and identities", [
                (f"sum by (cluster, node) (sluice_agent_endpoints{{{SEL}}})", "endpoints {{node}}"),
                (f"sum by (cluster, node) (sluice_agent_identities{{{SEL}}})", "identities {{node}}"),
            ]),
        ],
    ),
    "services": dashboard(
        "sluice-services",
        "Sluice / Services",
        "Service translation: connections to frontends by destination workload and port, frontends and backends in the datapath.",
        [
            panel("Translated connections by destination", [(f'sum by (dst_namespace, dst_workload, port) (rate(sluice_flows_total{{{SEL}, verdict="TRANSLATED"}}[{R}]))', "{{dst_namespace}}/{{dst_workload}}:{{port}}")], "ops"),
            panel("Service-translated packets", [(f'sum by (cluster, node, verdict) (rate(sluice_datapath_packets_total{{{SEL}, verdict=~"SERVICE_TRANSLATED|SERVICE_REPLY_TRANSLATED|SOCKET_TRANSLATED"}}[{R}]))', "{{verdict}} {{node}}")], "pps"),
            panel("Frontends", [(f"sum by (cluster, node) (sluice_agent_service_frontends{{{SEL}}})", "{{cluster}}/{{node}}")]),
            panel("Backends and services in the datapath", [(f'sum by (map) (sluice_map_entries{{{SEL}, map=~"LB_.*"}})', "{{map}}")]),
            panel("No-backend drops", [(f'sum by (cluster, node) (rate(sluice_datapath_drops_total{{{SEL}, reason="NO_SERVICE_BACKEND"}}[{R}]))', "{{node}}")], "pps"),
        ],
    ),
    "policy": dashboard(
        "sluice-policy",
        "Sluice / Policy",
        "Denies by policy and rule, audit hits, denied flows by workload.",
        [
            panel("Denies by policy and rule", [(f'sum by (policy, rule) (rate(sluice_policy_verdicts_total{{{SEL}, verdict="DROPPED"}}[{R}]))', "{{policy}} {{rule}}")], "ops"),
            panel("Audit hits by policy", [(f'sum by (policy, rule) (rate(sluice_policy_verdicts_total{{{SEL}, verdict="AUDIT"}}[{R}]))', "{{policy}} {{rule}}")], "ops"),
            panel("Policy drops by reason", [(f'sum by (reason) (rate(sluice_datapath_drops_total{{{SEL}, reason=~"POLICY_.*"}}[{R}]))', "{{reason}}")], "pps"),
            panel("Denied flows by workload pair", [(f'sum by (src_namespace, src_workload, dst_namespace, dst_workload, port) (rate(sluice_flows_total{{{SEL}, verdict="DROPPED"}}[{R}]))', "{{src_namespace}}/{{src_workload}} -> {{dst_namespace}}/{{dst_workload}}:{{port}}")], "ops"),
            panel("Policy map fill", [(f'max by (cluster, node) (sluice_map_entries{{{SEL}, map="POLICY"}} / sluice_map_capacity{{{SEL}, map="POLICY"}})', "{{node}}")], "percentunit"),
        ],
    ),
    "workloads": dashboard(
        "sluice-workloads",
        "Sluice / Workloads",
        "Service graph edges from flow metrics (source -> destination workload).",
        [
            panel("Service graph edges", [(f"sum by (src_namespace, src_workload, dst_namespace, dst_workload) (increase(sluice_flows_total{{{SEL}}}[5m]))", "{{src_namespace}}/{{src_workload}} -> {{dst_namespace}}/{{dst_workload}}")], "short", "table"),
            panel("Flows by destination workload", [(f"sum by (dst_namespace, dst_workload) (rate(sluice_flows_total{{{SEL}}}[{R}]))", "{{dst_namespace}}/{{dst_workload}}")], "ops"),
            panel("Flows by source workload", [(f"sum by (src_namespace, src_workload) (rate(sluice_flows_total{{{SEL}}}[{R}]))", "{{src_namespace}}/{{src_workload}}")], "ops"),
            panel("Flows by protocol and port", [(f"sum by (protocol, port) (rate(sluice_flows_total{{{SEL}}}[{R}]))", "{{protocol}}/{{port}}")], "ops"),
            panel("Flow label sets past the bound", [(f"sum by (cluster, node) (increase(sluice_flow_metrics_overflow_total{{{SEL}}}[5m]))", "{{node}}")]),
        ],
    ),
    "control-plane": dashboard(
        "sluice-control-plane",
        "Sluice / Control plane",
        "sluice-control: relay clients, warm state, safe mode, translation and snapshot times, Redis errors.",
        [
            panel("Relay clients", [
                ("sum(relay_push_clients_connected)", "connected"),
                ("sum(relay_push_clients_warmed)", "warm"),
            ]),
            panel("Safe mode", [("max(relay_safe_mode)", "safe mode")]),
            panel("Translation time p90", [(f"histogram_quantile(0.9, sum by (le) (rate(relay_translation_seconds_bucket[{R}])))", "p90")], "s"),
            panel("Snapshot time p90", [(f"histogram_quantile(0.9, sum by (le) (rate(relay_snapshot_seconds_bucket[{R}])))", "p90")], "s"),
            panel("Translation errors by kind", [(f"sum by (kind) (increase(relay_translation_errors_total[5m]))", "{{kind}}")]),
            panel("Redis errors", [
                (f"sum(rate(redis_errors_total[{R}]))", "store"),
                (f"sum(rate(sluice_telemetry_redis_errors_total[{R}]))", "log streams"),
            ], "ops"),
            panel("Refused relay connections", [(f"sum by (reason) (increase(relay_refused_total[5m]))", "{{reason}}")]),
        ],
        cluster_metric=None,
    ),
    "telemetry": dashboard(
        "sluice-telemetry",
        "Sluice / Telemetry",
        "The telemetry gateway: received, refused and rejected data, series, memory, log streams.",
        [
            panel("Received by signal", [(f"sum by (signal) (rate(sluice_telemetry_received_total[{R}]))", "{{signal}}")], "ops"),
            panel("Refused requests", [(f"sum by (signal, reason) (increase(sluice_telemetry_refused_requests_total[5m]))", "{{signal}} {{reason}}")]),
            panel("Rejected points and records", [(f"sum by (signal, reason) (increase(sluice_telemetry_rejected_total[5m]))", "{{signal}} {{reason}}")]),
            panel("Series held", [("sum(sluice_telemetry_series)", "series")]),
            panel("Memory vs limit", [
                ("sum(sluice_telemetry_memory_bytes)", "used"),
                ("sum(sluice_telemetry_memory_limit_bytes)", "limit"),
            ], "bytes"),
            panel("Log records written", [(f"sum(rate(sluice_telemetry_logs_written_total[{R}]))", "written")], "ops"),
            panel("Series expired", [(f"sum(increase(sluice_telemetry_expired_series_total[5m]))", "expired")]),
            panel("Flows not counted by agents", [(f"sum by (cluster, node) (increase(sluice_flow_metrics_lagged_total{{{CSEL}}}[5m]))", "{{cluster}}/{{node}}")]),
        ],
    ),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name, board in DASHBOARDS.items():
        with open(os.path.join(here, f"{name}.json"), "w") as f:
            json.dump(board, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
