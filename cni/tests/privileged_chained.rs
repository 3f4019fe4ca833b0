//! Chained mode after Debian's real `bridge` + `host-local` (root): both
//! plugins run inside a throwaway "node" namespace; the bridge's result is
//! passed to sluice-cni as prevResult.

mod common;

use std::path::Path;

use common::{
    fake_agent::{Call, FakeAgent},
    netns::{Netns, require_root, unique},
    plugin::{Outcome, run_program},
};
use serde_json::{Value, json};

const BRIDGE: &str = "/usr/lib/cni/bridge";

struct Rig {
    node: Netns,
    pod: Netns,
    agent: FakeAgent,
    dir: tempfile::TempDir,
    container_id: String,
}

impl Rig {
    fn new() -> Self {
        require_root();
        assert!(
            Path::new(BRIDGE).exists(),
            "{BRIDGE} is missing: install Debian's containernetworking-plugins"
        );
        Self {
            node: Netns::new("slcc-node"),
            pod: Netns::new("slcc-pod"),
            agent: FakeAgent::start(40),
            dir: tempfile::tempdir().unwrap(),
            container_id: unique("chain"),
        }
    }

    fn bridge_conf(&self) -> Value {
        // No gateway on the bridge: nothing is routed, only plumbed.
        json!({
            "cniVersion": "1.0.0", "name": "slchain", "type": "bridge",
            "bridge": "slbr0", "isGateway": false,
            "ipam": {"type": "host-local", "subnet": "10.250.40.0/24",
                     "dataDir": self.dir.path().join("ipam")},
        })
    }

    fn sluice_conf(&self, prev: &Value) -> Value {
        json!({
            "cniVersion": "1.0.0", "name": "slchain", "type": "sluice-cni",
            "agentSocket": self.agent.socket,
            "logFile": self.dir.path().join("cni.log"), "logLevel": "debug",
            "prevResult": prev,
        })
    }

    fn call(&self, plugin: &str, cmd: &str, netns: &str, conf: &Value) -> Outcome {
        let prefix = self.node.nsenter();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        run_program(
            &prefix,
            plugin,
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", &self.container_id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                (
                    "CNI_ARGS",
                    "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=cart-1;K8S_POD_UID=u-9",
                ),
            ],
            &conf.to_string(),
        )
    }
}

/// The parts of a result both plugins must agree on (the bridge prints an
/// empty `dns: {}` that the 1.0 layout leaves out).
fn essentials(v: &Value) -> Value {
    json!({
        "cniVersion": v["cniVersion"], "interfaces": v["interfaces"],
        "ips": v["ips"], "routes": v["routes"],
    })
}

#[test]
fn chained_after_bridge_registers_the_bridge_veth_and_passes_the_result_on() {
    let rig = Rig::new();
    let prev = rig
        .call(BRIDGE, "ADD", &rig.pod.path(), &rig.bridge_conf())
        .ok()
        .json();
    let node_links = rig.node.link_names();
    let pod_links = rig.pod.link_names();
    let bridge_veth = prev["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none() && i["name"] != "slbr0")
        .expect("bridge lists its host veth")["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let pod_ip = prev["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();

    let sluice = rig.call(
        common::plugin::BIN,
        "ADD",
        &rig.pod.path(),
        &rig.sluice_conf(&prev),
    );
    sluice.ok();
    assert_eq!(
        essentials(&sluice.json()),
        essentials(&prev),
        "prevResult passed on"
    );
    assert_eq!(rig.node.link_names(), node_links, "no new host interfaces");
    assert_eq!(rig.pod.link_names(), pod_links, "no new pod interfaces");
    assert_eq!(
        rig.agent.allocated(&rig.container_id, "eth0"),
        None,
        "no Sluice IPAM"
    );

    let ep = rig
        .agent
        .endpoint(&rig.container_id, "eth0")
        .expect("endpoint created");
    assert_eq!(ep.host_interface, bridge_veth);
    assert_eq!(ep.ipv4, pod_ip);
    assert_eq!(ep.netns, rig.pod.path());
    assert_eq!(ep.pod_mac, prev["interfaces"][2]["mac"].as_str().unwrap());
    assert_eq!(
        (ep.pod_namespace.as_str(), ep.pod_name.as_str()),
        ("shop", "cart-1")
    );

    // DEL removes the endpoint but leaves the bridge's interfaces alone.
    let conf = rig.sluice_conf(&prev);
    rig.call(common::plugin::BIN, "DEL", &rig.pod.path(), &conf)
        .ok();
    assert!(rig.agent.endpoint(&rig.container_id, "eth0").is_none());
    assert!(
        rig.agent
            .calls()
            .iter()
            .any(|c| matches!(c, Call::DeleteEndpoint(_)))
    );
    assert!(
        rig.node.has_link(&bridge_veth),
        "the bridge plugin owns its veth"
    );
    rig.call(BRIDGE, "DEL", &rig.pod.path(), &rig.bridge_conf())
        .ok();
}

#[test]
fn chained_with_the_agent_down_is_11_and_keeps_the_bridge_setup() {
    let rig = Rig::new();
    let prev = rig
        .call(BRIDGE, "ADD", &rig.pod.path(), &rig.bridge_conf())
        .ok()
        .json();
    let mut conf = rig.sluice_conf(&prev);
    conf["agentSocket"] = json!(rig.dir.path().join("nobody.sock"));
    rig.call(common::plugin::BIN, "ADD", &rig.pod.path(), &conf)
        .error(11);
    assert!(rig.pod.has_link("eth0"));
    rig.call(BRIDGE, "DEL", &rig.pod.path(), &rig.bridge_conf())
        .ok();
}
