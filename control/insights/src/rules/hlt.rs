//! HLT: agents, relay streams, PromQL answers and certificates; SYS for
//! queries that got no answer.

use crate::{
    catalog::*,
    input::{ClusterInput, Inputs, Sample},
    insight::{Insight, Target},
};

/// The PromQL queries the engine needs, by id; the sources run exactly
/// these ([`crate::sources::gather_prometheus`]).
pub const DROP_RATE_QUERY: (&str, &str) = (
    "drop-rate",
    "sum by (cluster, reason) (rate(sluice_datapath_drops_total[5m]))",
);
pub const MAP_FILL_QUERY: (&str, &str) = (
    "map-fill",
    "max by (cluster, node, map) (sluice_map_entries / sluice_map_capacity)",
);
pub const QUERIES: [(&str, &str); 2] = [DROP_RATE_QUERY, MAP_FILL_QUERY];

pub fn check_cluster(cluster: &ClusterInput, inputs: &Inputs, out: &mut Vec<Insight>) {
    let name = &cluster.name;
    for agent in &cluster.agents {
        let target = Target::new(name, "Agent", "", &agent.node);
        if !agent.ready {
            let (summary, details) = if agent.stale {
                let age = inputs.now_unix.saturating_sub(agent.heartbeat_unix);
                (
                    format!("the agent on node {} sends no status (stale)", agent.node),
                    format!(
                        "cluster {name}, node {}: last heartbeat {age}s ago",
                        agent.node
                    ),
                )
            } else {
                (
                    format!("the agent on node {} is not ready", agent.node),
                    format!("cluster {name}, node {}", agent.node),
                )
            };
            out.push(Insight::new(
                HLT_AGENT_NOT_READY,
                target.clone(),
                summary,
                details,
            ));
        }
        let recent = agent.last_restart_unix.is_some_and(|at| {
            inputs.now_unix.saturating_sub(at) < inputs.thresholds.restart_window_seconds
        });
        if recent {
            out.push(Insight::new(
                HLT_AGENT_RESTARTING,
                target,
                format!("the agent on node {} restarted recently", agent.node),
                format!("{} restarts in total", agent.restarts),
            ));
        }
    }
    let relay = Target::new(name, "Cluster", "", name);
    if !cluster.relay.connected {
        out.push(Insight::new(
            HLT_RELAY_DISCONNECTED,
            relay,
            format!("cluster {name} has no relay stream"),
            "the relay agent is not connected to the management server".into(),
        ));
    } else if !cluster.relay.warm && !cluster.relay.skip_warming {
        out.push(Insight::new(
            HLT_RELAY_NOT_WARM,
            relay,
            format!("cluster {name} is connected but not warm"),
            "its full snapshot is not stored yet".into(),
        ));
    }
}

pub fn check_global(inputs: &Inputs, out: &mut Vec<Insight>) {
    let t = &inputs.thresholds;
    if let Some(samples) = answer(inputs, DROP_RATE_QUERY, out) {
        for s in samples.iter().filter(|s| s.value > t.drop_rate_per_second) {
            let reason = label(s, "reason");
            out.push(Insight::new(
                HLT_DROP_RATE,
                Target::new(label(s, "cluster"), "DropReason", "", reason),
                format!("{:.1} drops/s for reason {reason}", s.value),
                format!(
                    "threshold {} drops/s; query: {}",
                    t.drop_rate_per_second, DROP_RATE_QUERY.1
                ),
            ));
        }
    }
    if let Some(samples) = answer(inputs, MAP_FILL_QUERY, out) {
        for s in samples.iter().filter(|s| s.value > t.map_fill) {
            let map = label(s, "map");
            let node = label(s, "node");
            out.push(Insight::new(
                HLT_MAP_PRESSURE,
                Target::new(label(s, "cluster"), "Map", node, map),
                format!("map {map} on node {node} is {:.0} % full", s.value * 100.0),
                format!("threshold {:.0} %", t.map_fill * 100.0),
            ));
        }
    }
    for cert in &inputs.certificates {
        let left = cert.not_after_unix as i64 - inputs.now_unix as i64;
        if left >= t.cert_expiry_seconds as i64 {
            continue;
        }
        let details = if left <= 0 {
            format!("expired {} days ago", -left / 86_400)
        } else {
            format!("expires in {} days", left / 86_400)
        };
        out.push(Insight::new(
            HLT_CERT_EXPIRING,
            Target::new(&cert.cluster, "Certificate", "", &cert.name),
            format!("certificate {} {details}", cert.name),
            format!("notAfter (unix) {}", cert.not_after_unix),
        ));
    }
}

/// The samples of `query`, or a SYS insight saying why there are none.
fn answer<'a>(
    inputs: &'a Inputs,
    (id, promql): (&str, &str),
    out: &mut Vec<Insight>,
) -> Option<&'a [Sample]> {
    let why = match inputs.prometheus.get(promql) {
        Some(Ok(samples)) => return Some(samples),
        Some(Err(e)) => e.clone(),
        None => "not run".to_string(),
    };
    out.push(Insight::new(
        SYS_PROMETHEUS_UNAVAILABLE,
        Target::new("", "Query", "", id),
        format!("PromQL query {id} failed"),
        format!("{promql}: {why}"),
    ));
    None
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels.get(name).map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        input::{AgentStatus, Certificate, DAY, RelayStatus},
        testing::{cluster, codes, inputs, sample},
    };

    const NOW: u64 = 1_800_000_000;

    fn run_cluster(c: ClusterInput) -> Vec<String> {
        let mut out = Vec::new();
        check_cluster(&c, &inputs(vec![], NOW), &mut out);
        codes(&out)
    }

    fn healthy() -> ClusterInput {
        let mut c = cluster("c1", vec![]);
        c.relay = RelayStatus {
            connected: true,
            warm: true,
            skip_warming: false,
        };
        c.agents = vec![AgentStatus {
            node: "node-1".into(),
            ready: true,
            restarts: 2,
            last_restart_unix: Some(NOW - 3600),
            ..AgentStatus::default()
        }];
        c
    }

    #[test]
    fn hlt0001_agent_not_ready() {
        assert!(run_cluster(healthy()).is_empty());
        let mut c = healthy();
        c.agents[0].ready = false;
        assert_eq!(run_cluster(c.clone()), [HLT_AGENT_NOT_READY]);
        c.agents[0].stale = true;
        c.agents[0].heartbeat_unix = NOW - 45;
        let mut out = Vec::new();
        check_cluster(&c, &inputs(vec![], NOW), &mut out);
        assert_eq!(codes(&out), [HLT_AGENT_NOT_READY]);
        assert!(out[0].summary.contains("stale"), "{}", out[0].summary);
        assert!(out[0].details.contains("45s ago"), "{}", out[0].details);
    }

    #[test]
    fn hlt0002_agent_restarted_recently() {
        let mut c = healthy();
        c.agents[0].last_restart_unix = Some(NOW - 60);
        assert_eq!(run_cluster(c), [HLT_AGENT_RESTARTING]);
        let mut c = healthy();
        c.agents[0].last_restart_unix = None;
        assert!(run_cluster(c).is_empty());
    }

    #[test]
    fn hlt0003_relay_disconnected() {
        let mut c = healthy();
        c.relay.connected = false;
        assert_eq!(run_cluster(c), [HLT_RELAY_DISCONNECTED]);
    }

    #[test]
    fn hlt0004_relay_not_warm_unless_it_skips_warming() {
        let mut c = healthy();
        c.relay.warm = false;
        assert_eq!(run_cluster(c.clone()), [HLT_RELAY_NOT_WARM]);
        c.relay.skip_warming = true;
        assert!(run_cluster(c).is_empty());
    }

    fn run_global(samples: Vec<(&str, Vec<Sample>)>, certs: Vec<Certificate>) -> Vec<Insight> {
        let mut i = inputs(vec![], NOW);
        for (q, s) in samples {
            i.prometheus.insert(q.to_string(), Ok(s));
        }
        i.certificates = certs;
        let mut out = Vec::new();
        check_global(&i, &mut out);
        out
    }

    fn answered(drop: f64, fill: f64) -> Vec<(&'static str, Vec<Sample>)> {
        vec![
            (
                DROP_RATE_QUERY.1,
                vec![sample(
                    &[("cluster", "c1"), ("reason", "policy_denied")],
                    drop,
                )],
            ),
            (
                MAP_FILL_QUERY.1,
                vec![sample(
                    &[("cluster", "c1"), ("node", "node-1"), ("map", "SLUICE_CT")],
                    fill,
                )],
            ),
        ]
    }

    #[test]
    fn hlt0005_drop_rate_above_threshold() {
        let out = run_global(answered(25.0, 0.1), vec![]);
        assert_eq!(codes(&out), [HLT_DROP_RATE]);
        assert_eq!(
            out[0].target,
            Target::new("c1", "DropReason", "", "policy_denied")
        );
        assert!(run_global(answered(2.0, 0.1), vec![]).is_empty());
    }

    #[test]
    fn hlt0006_map_above_90_percent() {
        let out = run_global(answered(0.0, 0.95), vec![]);
        assert_eq!(codes(&out), [HLT_MAP_PRESSURE]);
        assert_eq!(
            out[0].target,
            Target::new("c1", "Map", "node-1", "SLUICE_CT")
        );
        assert!(run_global(answered(0.0, 0.9), vec![]).is_empty());
    }

    #[test]
    fn hlt0007_certificate_expiring_within_30_days() {
        let cert = |days_left: u64| Certificate {
            cluster: "c1".into(),
            name: "relay".into(),
            not_after_unix: NOW + days_left * DAY,
        };
        let out = run_global(answered(0.0, 0.0), vec![cert(10)]);
        assert_eq!(codes(&out), [HLT_CERT_EXPIRING]);
        assert!(
            out[0].summary.contains("expires in 10 days"),
            "{}",
            out[0].summary
        );
        assert!(run_global(answered(0.0, 0.0), vec![cert(31)]).is_empty());
        let expired = Certificate {
            not_after_unix: NOW - 2 * DAY,
            ..cert(0)
        };
        assert!(
            run_global(answered(0.0, 0.0), vec![expired])[0]
                .summary
                .contains("expired 2 days ago")
        );
    }

    #[test]
    fn sys0001_query_failed_or_missing() {
        let mut i = inputs(vec![], NOW);
        i.prometheus
            .insert(DROP_RATE_QUERY.1.into(), Err("connection refused".into()));
        let mut out = Vec::new();
        check_global(&i, &mut out);
        assert_eq!(
            codes(&out),
            [SYS_PROMETHEUS_UNAVAILABLE, SYS_PROMETHEUS_UNAVAILABLE]
        );
        assert!(out[0].details.contains("connection refused"));
        assert!(run_global(answered(0.0, 0.0), vec![]).is_empty());
    }
}
