//! Pods: declared ports, node placement, and the object the agents see.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::manifests::{get_at, set_at, str_at};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One declared `containerPort`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortSpec {
    pub port: u16,
    pub protocol: Protocol,
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol.as_str())
    }
}

/// Every `containerPort` of every container (TCP and UDP; SCTP is not
/// served), sorted and without repeats.
pub fn declared_ports(pod: &Value) -> Result<Vec<PortSpec>> {
    let mut ports = Vec::new();
    let containers = get_at(pod, &["spec", "containers"])
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for container in &containers {
        let declared = container
            .get("ports")
            .and_then(Value::as_sequence)
            .cloned()
            .unwrap_or_default();
        for port in &declared {
            let Some(number) = port.get("containerPort").and_then(Value::as_u64) else {
                bail!("a containerPort is missing or not a number");
            };
            let Ok(number) = u16::try_from(number) else {
                bail!("containerPort {number} is out of range");
            };
            let protocol = match port.get("protocol").and_then(Value::as_str) {
                None | Some("TCP") => Protocol::Tcp,
                Some("UDP") => Protocol::Udp,
                Some(other) => {
                    eprintln!("note: containerPort {number}/{other} is not served (TCP/UDP only)");
                    continue;
                }
            };
            ports.push(PortSpec {
                port: number,
                protocol,
            });
        }
    }
    ports.sort();
    ports.dedup();
    Ok(ports)
}

/// The `hostPort`s of every container as CNI `portMappings` entries
/// (what kubelet hands the runtime): hostPort, containerPort, protocol in
/// lower case, hostIP when set.
pub fn port_mappings(pod: &Value) -> Vec<serde_json::Value> {
    let containers = get_at(pod, &["spec", "containers"])
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::new();
    for port in containers
        .iter()
        .filter_map(|c| c.get("ports").and_then(Value::as_sequence))
        .flatten()
    {
        let (Some(host_port), Some(container_port)) = (
            port.get("hostPort").and_then(Value::as_u64),
            port.get("containerPort").and_then(Value::as_u64),
        ) else {
            continue;
        };
        let protocol = port
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or("TCP")
            .to_ascii_lowercase();
        let mut mapping = serde_json::json!({
            "hostPort": host_port,
            "containerPort": container_port,
            "protocol": protocol,
        });
        if let Some(ip) = port.get("hostIP").and_then(Value::as_str) {
            mapping["hostIP"] = serde_json::Value::from(ip);
        }
        out.push(mapping);
    }
    out
}

/// The node a pod runs on: its `spec.nodeName` (which must exist), else
/// the node with the fewest pods (lowest index on a tie).
pub fn place(pod: &Value, pods_per_node: &BTreeMap<String, usize>) -> Result<String> {
    if let Some(node) = str_at(pod, &["spec", "nodeName"]) {
        if !pods_per_node.contains_key(node) {
            bail!(
                "spec.nodeName {node} is not a node of this mesh (nodes: {})",
                pods_per_node.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        return Ok(node.to_owned());
    }
    pods_per_node
        .iter()
        .min_by_key(|(name, load)| (**load, node_index(name)))
        .map(|(name, _)| name.clone())
        .ok_or_else(|| anyhow::anyhow!("the mesh has no nodes"))
}

/// `node-12` → 12, so node-10 sorts after node-9.
fn node_index(name: &str) -> u32 {
    name.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX)
}

/// What the running pod adds to the user's object, as a kubelet and the
/// API server would: node, UID, phase and addresses.
pub struct PodRuntime<'a> {
    pub node: &'a str,
    pub node_ip: Ipv4Addr,
    pub uid: &'a str,
    /// None before CNI ADD gave the pod an address.
    pub ip: Option<Ipv4Addr>,
}

pub fn render(pod: &Value, runtime: &PodRuntime<'_>) -> Value {
    let mut out = pod.clone();
    set_at(&mut out, &["spec", "nodeName"], Value::from(runtime.node));
    set_at(&mut out, &["metadata", "uid"], Value::from(runtime.uid));
    set_at(
        &mut out,
        &["status", "hostIP"],
        Value::from(runtime.node_ip.to_string()),
    );
    match runtime.ip {
        Some(ip) => {
            set_at(&mut out, &["status", "phase"], Value::from("Running"));
            set_at(&mut out, &["status", "podIP"], Value::from(ip.to_string()));
            let ips: Value = serde_yaml::from_str(&format!("[{{ip: '{ip}'}}]")).unwrap_or_default();
            set_at(&mut out, &["status", "podIPs"], ips);
        }
        None => set_at(&mut out, &["status", "phase"], Value::from("Pending")),
    }
    out
}

/// Whether two versions of a pod differ only where a running pod may
/// change in place (metadata: labels, annotations). Anything else means
/// the pod is recreated, as Kubernetes would refuse the update.
pub fn updatable_in_place(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Value::Mapping(map) = &mut v {
            map.remove("metadata");
            map.remove("status");
        }
        v
    };
    strip(old) == strip(new)
}

/// A container ID as a runtime makes them: 64 hex characters.
pub fn new_container_id() -> String {
    random_hex(32)
}

/// A random RFC 4122 version 4 UID.
pub fn new_uid() -> String {
    let hex = random_hex(16);
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // getrandom(2) fills small buffers completely.
    // SAFETY: the pointer and length describe `buf`.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 || n as usize != buf.len() {
        // Unique enough for names: time and PID.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (seed >> ((i % 16) * 8)) as u8 ^ i as u8);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(yaml: &str) -> Value {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn spreads_over_the_least_loaded_node() {
        let mut load: BTreeMap<String, usize> = BTreeMap::new();
        for i in 1..=10 {
            load.insert(format!("node-{i}"), 0);
        }
        let p = pod("{spec: {}}");
        let mut placed = Vec::new();
        for _ in 0..11 {
            let node = place(&p, &load).unwrap();
            *load.get_mut(&node).unwrap() += 1;
            placed.push(node);
        }
        assert_eq!(placed[0], "node-1");
        assert_eq!(placed[1], "node-2");
        assert_eq!(placed[9], "node-10");
        assert_eq!(placed[10], "node-1");
    }

    #[test]
    fn honours_and_checks_node_name() {
        let load: BTreeMap<String, usize> =
            [("node-1".to_owned(), 0), ("node-2".to_owned(), 5)].into();
        assert_eq!(
            place(&pod("{spec: {nodeName: node-2}}"), &load).unwrap(),
            "node-2"
        );
        let err = place(&pod("{spec: {nodeName: node-9}}"), &load).unwrap_err();
        assert!(err.to_string().contains("not a node of this mesh"), "{err}");
    }

    #[test]
    fn reads_tcp_and_udp_ports() {
        let p = pod(
            "{spec: {containers: [
                {name: a, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]},
                {name: b, ports: [{containerPort: 80, protocol: TCP}, {containerPort: 9, protocol: SCTP}]}]}}",
        );
        let ports: Vec<String> = declared_ports(&p)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        assert!(
            declared_ports(&pod(
                "{spec: {containers: [{ports: [{containerPort: 70000}]}]}}"
            ))
            .is_err()
        );
    }

    #[test]
    fn host_ports_become_port_mappings_as_kubelet_passes_them() {
        let p = pod("{spec: {containers: [
                {name: a, ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 81}]},
                {name: b, ports: [{containerPort: 53, protocol: UDP, hostPort: 5353, hostIP: 172.31.0.1}]}]}}");
        assert_eq!(
            port_mappings(&p),
            [
                serde_json::json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
                serde_json::json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp",
                                   "hostIP": "172.31.0.1"}),
            ]
        );
        assert!(port_mappings(&pod("{spec: {containers: [{name: a}]}}")).is_empty());
    }

    #[test]
    fn renders_runtime_fields_and_detects_in_place_updates() {
        let p = pod("{metadata: {name: a, labels: {app: a}}, spec: {containers: []}}");
        let rendered = render(
            &p,
            &PodRuntime {
                node: "node-1",
                node_ip: Ipv4Addr::new(172, 31, 0, 1),
                uid: "u",
                ip: Some(Ipv4Addr::new(10, 244, 1, 2)),
            },
        );
        assert_eq!(str_at(&rendered, &["status", "podIP"]), Some("10.244.1.2"));
        assert_eq!(str_at(&rendered, &["spec", "nodeName"]), Some("node-1"));
        assert_eq!(str_at(&rendered, &["metadata", "uid"]), Some("u"));
        let relabelled = pod("{metadata: {name: a, labels: {app: b}}, spec: {containers: []}}");
        assert!(updatable_in_place(&p, &relabelled));
        let moved = pod("{metadata: {name: a}, spec: {nodeName: node-2, containers: []}}");
        assert!(!updatable_in_place(&p, &moved));
    }

    #[test]
    fn ids_look_like_a_runtime_s() {
        let id = new_container_id();
        assert_eq!(id.len(), 64);
        assert_ne!(id, new_container_id());
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(uid.as_bytes()[14], b'4');
    }
}
