//! Standalone mode against the kernel (root): the plugin runs inside a
//! throwaway "node" namespace (so the host veth never touches the machine's
//! own namespace) and plumbs a throwaway pod namespace.

mod common;

use common::{
    fake_agent::{Call, FakeAgent, GATEWAY},
    netns::{Netns, require_root, unique},
    plugin::{Outcome, run_with},
};
use serde_json::{Value, json};
use sluice_api::agent::v1::Attachment;

struct Rig {
    node: Netns,
    pod: Netns,
    agent: FakeAgent,
    dir: tempfile::TempDir,
    container_id: String,
}

impl Rig {
    fn new(subnet: u8) -> Self {
        require_root();
        Self {
            node: Netns::new("slcn-node"),
            pod: Netns::new("slcn-pod"),
            agent: FakeAgent::start(subnet),
            dir: tempfile::tempdir().unwrap(),
            container_id: unique("ctr"),
        }
    }

    fn conf(&self, version: &str) -> Value {
        json!({
            "cniVersion": version, "name": "sluice-priv", "type": "sluice-cni",
            "agentSocket": self.agent.socket, "logLevel": "debug",
            "logFile": self.dir.path().join("cni.log"),
            "dns": {"nameservers": ["10.250.0.10"]},
        })
    }

    fn dead_conf(&self) -> Value {
        let mut c = self.conf("1.0.0");
        c["agentSocket"] = json!(self.dir.path().join("nobody.sock"));
        c
    }

    fn call(&self, cmd: &str, netns: &str, conf: &Value) -> Outcome {
        let prefix = self.node.nsenter();
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        run_with(
            &prefix,
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", &self.container_id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/usr/lib/cni"),
                (
                    "CNI_ARGS",
                    "K8S_POD_UID=uid-7;IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;\
                     K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_NAME=web-0",
                ),
            ],
            &conf.to_string(),
        )
    }

    fn add(&self, conf: &Value) -> Outcome {
        self.call("ADD", &self.pod.path(), conf)
    }

    fn host_veth(&self) -> String {
        sluice_cni::names::host_veth(&self.container_id, "eth0")
    }

    fn node_veths(&self) -> Vec<String> {
        self.node
            .link_names()
            .into_iter()
            .filter(|n| n.starts_with("lxc"))
            .collect()
    }

    fn att(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            interface: "eth0".into(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cni.log")).unwrap_or_default()
    }
}

fn mac_of(ns: &Netns, dev: &str) -> String {
    ns.ip_json(&["link", "show", "dev", dev])[0]["address"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn add_plumbs_the_pod_and_registers_the_endpoint_then_del_twice_cleans_up() {
    let rig = Rig::new(11);
    let out = rig.add(&rig.conf("1.0.0"));
    out.ok();
    let result = out.json();
    let host = rig.host_veth();
    let ip = rig
        .agent
        .allocated(&rig.container_id, "eth0")
        .expect("address allocated");

    // The kernel side.
    assert_eq!(rig.node_veths(), vec![host.clone()], "{}", rig.log());
    let addrs = rig.pod.ip_json(&["-4", "addr", "show", "dev", "eth0"]);
    let addr = &addrs[0]["addr_info"][0];
    assert_eq!(addr["local"], ip.to_string());
    assert_eq!(addr["prefixlen"], 32);
    assert_eq!(addrs[0]["operstate"], "UP");
    let lo = rig.pod.ip_json(&["link", "show", "dev", "lo"]);
    assert!(
        lo[0]["flags"].as_array().unwrap().contains(&json!("UP")),
        "{lo}"
    );
    let routes = rig.pod.ip_json(&["-4", "route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == GATEWAY && r["dev"] == "eth0"),
        "{routes}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == GATEWAY && r["scope"] == "link" && r["dev"] == "eth0"),
        "{routes}"
    );
    let host_link = rig.node.ip_json(&["link", "show", "dev", &host]);
    assert!(
        host_link[0]["flags"]
            .as_array()
            .unwrap()
            .contains(&json!("UP"))
    );

    // The result.
    let pod_mac = mac_of(&rig.pod, "eth0");
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": host, "mac": mac_of(&rig.node, &host)},
                {"name": "eth0", "mac": pod_mac, "sandbox": rig.pod.path()},
            ],
            "ips": [{"interface": 1, "address": format!("{ip}/32"), "gateway": GATEWAY}],
            "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
            "dns": {"nameservers": ["10.250.0.10"]},
        })
    );

    // What the agent was told.
    let created: Vec<_> = rig
        .agent
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateEndpoint(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(created.len(), 1);
    let req = &created[0];
    assert_eq!(req.attachment.as_ref(), Some(&rig.att()));
    assert_eq!(req.netns, rig.pod.path());
    assert_eq!(req.host_interface, host);
    assert_eq!(req.ipv4, ip.to_string());
    assert_eq!(req.pod_mac, pod_mac);
    assert_eq!(
        (
            req.pod_namespace.as_str(),
            req.pod_name.as_str(),
            req.pod_uid.as_str()
        ),
        ("shop", "web-0", "uid-7")
    );
    assert!(
        req.routed,
        "standalone mode asks the agent to route the pod"
    );

    // A retried ADD converges on the same state and result.
    let again = rig.add(&rig.conf("1.0.0"));
    again.ok();
    assert_eq!(again.json(), result);
    assert_eq!(rig.node_veths(), vec![host.clone()]);
    assert_eq!(
        rig.pod.link_names().iter().filter(|n| *n == "eth0").count(),
        1
    );

    // containerd's two DELs: with the netns, then with CNI_NETNS="".
    let conf = rig.conf("1.0.0");
    rig.call("DEL", &rig.pod.path(), &conf).ok();
    assert!(rig.node_veths().is_empty(), "veth removed");
    assert!(!rig.pod.has_link("eth0"), "pod side goes with it");
    assert_eq!(rig.agent.allocated(&rig.container_id, "eth0"), None);
    assert!(rig.agent.endpoint(&rig.container_id, "eth0").is_none());
    assert!(rig.agent.calls().contains(&Call::Release(rig.att())));
    rig.call("DEL", "", &conf).ok();
    assert!(rig.node_veths().is_empty());
}

#[test]
fn add_with_the_agent_down_fails_with_11_and_leaves_nothing() {
    let rig = Rig::new(12);
    let v = rig.add(&rig.dead_conf()).error(11);
    assert!(
        v["details"].as_str().unwrap().contains("nobody.sock"),
        "{v}"
    );
    assert!(rig.node_veths().is_empty());
    assert!(!rig.pod.has_link("eth0"));
    // DEL with the agent down still succeeds (and removes the veth by name).
    rig.call("DEL", &rig.pod.path(), &rig.dead_conf()).ok();
}

#[test]
fn del_with_the_agent_down_removes_the_veth() {
    let rig = Rig::new(13);
    rig.add(&rig.conf("1.0.0")).ok();
    assert_eq!(rig.node_veths().len(), 1);
    rig.call("DEL", "", &rig.dead_conf()).ok();
    assert!(rig.node_veths().is_empty(), "{}", rig.log());
}

#[test]
fn failed_create_endpoint_rolls_everything_back() {
    let rig = Rig::new(14);
    rig.agent.fail_create_endpoint(true);
    let v = rig.add(&rig.conf("1.0.0")).error(100);
    assert!(
        v["details"].as_str().unwrap().contains("injected failure"),
        "{v}"
    );
    assert!(rig.node_veths().is_empty(), "no veth left: {}", rig.log());
    assert!(!rig.pod.has_link("eth0"));
    assert_eq!(
        rig.agent.allocated(&rig.container_id, "eth0"),
        None,
        "address released"
    );
    assert!(rig.agent.endpoint(&rig.container_id, "eth0").is_none());
}

#[test]
fn results_follow_the_config_version() {
    for (subnet, version, legacy) in [
        (15, "0.3.1", true),
        (16, "0.4.0", true),
        (17, "1.1.0", false),
    ] {
        let rig = Rig::new(subnet);
        let out = rig.add(&rig.conf(version));
        out.ok();
        let v = out.json();
        assert_eq!(v["cniVersion"], version);
        if legacy {
            assert_eq!(v["ips"][0]["version"], "4", "{v}");
        } else {
            assert!(v["ips"][0].get("version").is_none(), "{v}");
        }
        rig.call("DEL", &rig.pod.path(), &rig.conf(version)).ok();
    }
}

#[test]
fn check_passes_after_add_and_catches_a_missing_address() {
    let rig = Rig::new(18);
    let result = rig.add(&rig.conf("1.0.0")).ok().json();
    let mut conf = rig.conf("1.0.0");
    conf["prevResult"] = result;
    rig.call("CHECK", &rig.pod.path(), &conf).ok();
    common::netns::sh(&["ip", "-n", &rig.pod.name, "addr", "flush", "dev", "eth0"]);
    rig.call("CHECK", &rig.pod.path(), &conf).error(102);
    rig.call("DEL", &rig.pod.path(), &conf).ok();
}

#[test]
fn concurrent_adds_get_distinct_veths_and_addresses_and_dels_leak_nothing() {
    const PODS: usize = 8;
    let rig = Rig::new(19);
    let pods: Vec<(Netns, String)> = (0..PODS)
        .map(|_| (Netns::new("slcn-cpod"), unique("cc")))
        .collect();
    let conf = rig.conf("1.0.0").to_string();
    let prefix = rig.node.nsenter();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let call = |cmd: &str, pod: &Netns, id: &str| {
        run_with(
            &prefix,
            &[
                ("CNI_COMMAND", cmd),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", &pod.path()),
                ("CNI_IFNAME", "eth0"),
            ],
            &conf,
        )
    };
    let results: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .map(|(pod, id)| s.spawn(|| call("ADD", pod, id).ok().json()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<&str> = results
        .iter()
        .map(|r| r["ips"][0]["address"].as_str().unwrap())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    assert_eq!(ips.len(), PODS, "distinct addresses: {ips:?}");
    assert_eq!(rig.node_veths().len(), PODS);

    std::thread::scope(|s| {
        for (pod, id) in &pods {
            s.spawn(|| call("DEL", pod, id).ok().stdout.len());
        }
    });
    assert!(rig.node_veths().is_empty(), "{}", rig.log());
    for (_, id) in &pods {
        assert_eq!(rig.agent.allocated(id, "eth0"), None);
        assert!(rig.agent.endpoint(id, "eth0").is_none());
    }
}

#[test]
fn port_mappings_reach_the_agent_and_bad_ones_fail_before_anything_is_plumbed() {
    let rig = Rig::new(21);
    let mut bad = rig.conf("1.0.0");
    bad["capabilities"] = json!({"portMappings": true});
    bad["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]});
    let err = rig.add(&bad).error(7);
    assert!(
        err["details"]
            .as_str()
            .is_some_and(|d| d.contains("portMappings[0]: hostPort 0")),
        "{err}"
    );
    assert!(rig.agent.calls().is_empty(), "nothing allocated or created");
    assert!(rig.node_veths().is_empty());

    let mut conf = rig.conf("1.0.0");
    conf["capabilities"] = json!({"portMappings": true});
    conf["runtimeConfig"] = json!({"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "172.31.0.1"},
    ]});
    rig.add(&conf).ok();
    let created: Vec<_> = rig
        .agent
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::CreateEndpoint(r) => Some(r),
            _ => None,
        })
        .collect();
    let mappings: Vec<_> = created[0]
        .port_mappings
        .iter()
        .map(|m| {
            (
                m.host_port,
                m.container_port,
                m.protocol.as_str(),
                m.host_ip.as_str(),
            )
        })
        .collect();
    assert_eq!(
        mappings,
        [(8080, 80, "tcp", ""), (5353, 53, "udp", "172.31.0.1")]
    );
    rig.call("DEL", &rig.pod.path(), &conf).ok();
}
