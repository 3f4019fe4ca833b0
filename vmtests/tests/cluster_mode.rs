//! Cluster mode end to end: two nodes' real agents (`--source kubernetes`),
//! the real CNI plugin and the real operator, all talking to the
//! Kubernetes API test double (`sluice_vmtests::apiserver`) over HTTPS
//! with their kube-rs clients, with real datapaths and real pod traffic.
//!
//! The test plays kubelet: it creates each Pod object, runs CNI ADD for
//! it, then sets the pod's status as kubelet would.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use sluice_vmtests::{
    apiserver::{ApiServer, Part},
    cluster::{Cluster, attach_to_underlay},
    eventually,
    netns::NetNs,
    operator::OperatorProcess,
    require_root, unique_suffix,
    workload::{Reply, in_netns, serve, tcp_name},
};

/// The double's address on the underlay.
const API_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 0, 200);
const NS: &str = "shop";
const TIMEOUT: Duration = Duration::from_millis(500);
/// Short enough for the test; the default is 15 minutes.
const GC_GRACE_SECS: &str = "2";
const WAIT: Duration = Duration::from_secs(20);

fn operator_args() -> Vec<&'static str> {
    vec![
        "--cluster-cidr",
        "10.244.0.0/16",
        "--node-cidr-mask-size",
        "24",
        "--identity-gc-grace-secs",
        GC_GRACE_SECS,
        "--endpoint-gc-interval-secs",
        "2",
        "--metrics-addr",
        "127.0.0.1:19091",
        "--lease-namespace",
        "sluice-system",
        "--lease-duration-secs",
        "4",
        "--lease-renew-secs",
        "1",
    ]
}

fn policy(name: &str, from_app: &str) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {"app": from_app}}}],
                "ports": [{"port": "http"}],
            }],
        },
    })
}

struct Harness {
    // Drop order: operator and agents (in the cluster) before the double.
    operator: Option<OperatorProcess>,
    cluster: Cluster,
    api: ApiServer,
    api_ns: NetNs,
}

impl Harness {
    /// A Node as kubelet registers it in cluster-pool IPAM: no podCIDR
    /// (the operator allocates one on the node's SluiceNode, and the agents
    /// route from there).
    fn add_node(&self, node: usize) {
        let name = &self.cluster.nodes[node].name;
        self.api
            .create("Node", None, json!({"metadata": {"name": name}}));
        let ip = self.cluster.nodes[node].ip.to_string();
        self.api.merge_patch(
            "Node",
            None,
            name,
            Part::Status,
            json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}]}}),
        );
    }

    /// What the operator's IPAM recorded for `node`.
    fn allocated_cidr(&self, node: usize) -> Option<String> {
        let name = &self.cluster.nodes[node].name;
        self.api.get("SluiceNode", None, name)?["status"]["podCIDR"]
            .as_str()
            .map(str::to_owned)
    }

    /// kubelet: the Pod object, CNI ADD, then the pod's status.
    fn add_pod(&mut self, node: usize, name: &str, app: &str) -> usize {
        let node_name = self.cluster.nodes[node].name.clone();
        let pod = self.api.create(
            "Pod",
            Some(NS),
            json!({
                "metadata": {"name": name, "labels": {"app": app}},
                "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x",
                         "ports": [{"name": "http", "containerPort": 8080}]}]},
            }),
        );
        let uid = pod["metadata"]["uid"].as_str().expect("a uid").to_owned();
        let id = format!("{NS}/{name}");
        self.cluster.pod_uids.insert(id.clone(), uid);
        let index = self.cluster.add_pod(node, &id);
        let ip = self.cluster.pods[index].ip.to_string();
        self.api.merge_patch(
            "Pod",
            Some(NS),
            name,
            Part::Status,
            json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}),
        );
        index
    }

    /// kubelet: CNI DEL (twice, as containerd does), then the object goes.
    fn delete_pod(&mut self, index: usize, name: &str) {
        self.cluster.delete_pod(index, &format!("{NS}/{name}"));
        self.api.delete("Pod", Some(NS), name);
    }

    fn endpoint(&self, pod: &str) -> Option<Value> {
        self.api.get("SluiceEndpoint", Some(NS), pod)
    }

    /// The identity number of `pod`'s SluiceEndpoint.
    fn identity_of(&self, pod: &str) -> Option<u64> {
        self.endpoint(pod)?["spec"]["identity"].as_u64()
    }

    fn number(&self, pod: &str) -> u64 {
        self.identity_of(pod)
            .unwrap_or_else(|| panic!("{pod} has no SluiceEndpoint with an identity"))
    }

    /// Every SluiceIdentity: number -> label set.
    fn identities(&self) -> BTreeMap<String, Value> {
        self.api
            .list("SluiceIdentity")
            .into_iter()
            .map(|i| {
                let name = i["metadata"]["name"].as_str().unwrap_or("").to_owned();
                (name, i["spec"]["labels"].clone())
            })
            .collect()
    }

    fn probe(&self, from: usize, to: usize) -> Reply {
        let ip = self.cluster.pods[to].ip;
        in_netns(&self.cluster.pods[from].ns.path(), move || {
            tcp_name(ip, 8080, TIMEOUT)
        })
    }

    /// List requests for `path` served so far.
    fn lists_of(&self, path: &str) -> usize {
        self.api
            .requests()
            .iter()
            .filter(|r| r.is_list_of(path))
            .count()
    }
}

#[test]
fn agents_cni_and_operator_run_a_cluster_against_the_api_double() {
    require_root();
    let started = Instant::now();
    let api_ns = NetNs::new(&format!("slt-api-{}", unique_suffix()));
    let api = ApiServer::start(&api_ns, API_IP);
    let cluster = Cluster::in_cluster_mode(2, &api.kubeconfig(), &[]);
    attach_to_underlay(&cluster.underlay, &api_ns, "api", API_IP);
    let mut h = Harness {
        operator: None,
        cluster,
        api,
        api_ns,
    };
    h.api.create(
        "Namespace",
        None,
        json!({"metadata": {"name": "sluice-system"}}),
    );
    h.api.create(
        "Namespace",
        None,
        json!({"metadata": {"name": NS, "labels": {"team": "shop"}}}),
    );

    // The operator gives each Node its pod CIDR; each agent waits for its own.
    h.add_node(0);
    h.operator = Some(OperatorProcess::start(
        &h.api_ns,
        &h.api.kubeconfig(),
        &operator_args(),
    ));
    eventually("node-1's pod CIDR", WAIT, || {
        h.allocated_cidr(0).as_deref() == Some("10.244.0.0/24")
    });
    h.add_node(1);
    eventually("node-2's pod CIDR", WAIT, || {
        h.allocated_cidr(1).as_deref() == Some("10.244.1.0/24")
    });
    let lease = h
        .api
        .get("Lease", Some("sluice-system"), "sluice-operator")
        .expect("the operator leads through its Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "sluice-operator");
    h.cluster.start_agent(0);
    h.cluster.start_agent(1);
    // Each agent publishes its own status on its SluiceNode (server-side
    // apply on /status as sluice-agent); the operator's podCIDR stays.
    for (node, cidr) in [(0, "10.244.0.0/24"), (1, "10.244.1.0/24")] {
        let name = h.cluster.nodes[node].name.clone();
        eventually(&format!("{name}'s agent status"), WAIT, || {
            h.api.get("SluiceNode", None, &name).is_some_and(|n| {
                n["status"]["agent"]["ready"] == true
                    && n["status"]["agent"]["version"] == env!("CARGO_PKG_VERSION")
                    && n["status"]["podCIDR"] == cidr
            })
        });
    }
    assert!(
        h.api.requests().iter().any(|r| r.method == "PATCH"
            && r.path.ends_with("/sluicenodes/node-1/status")
            && r.query.contains("fieldManager=sluice-agent")),
        "the agent applies its status on the status subresource"
    );

    // Pods on both nodes, created the way kubelet creates them.
    let web = h.add_pod(0, "web", "web");
    let keeper = h.add_pod(0, "keeper", "client");
    let client = h.add_pod(1, "client", "client");
    let other = h.add_pod(1, "other", "other");
    let temp = h.add_pod(1, "temp", "temp");
    for pod in ["web", "keeper", "client", "other", "temp"] {
        eventually(&format!("{pod}'s SluiceEndpoint"), WAIT, || {
            h.identity_of(pod).is_some_and(|n| n >= 256)
        });
    }
    let node_of =
        |pod: &str| h.endpoint(pod).unwrap()["metadata"]["labels"]["sluice.io/node"].clone();
    assert_eq!(node_of("web"), "node-1");
    assert_eq!(node_of("client"), "node-2");
    assert_eq!(
        h.number("client"),
        h.number("keeper"),
        "one label set, one number, on both nodes"
    );
    let distinct: std::collections::BTreeSet<u64> = ["web", "client", "other", "temp"]
        .map(|p| h.number(p))
        .into();
    assert_eq!(distinct.len(), 4, "each label set has its own number");
    let identities = h.identities();
    for pod in ["web", "client", "other", "temp"] {
        let labels = &identities[&h.number(pod).to_string()];
        let app = h.api.get("Pod", Some(NS), pod).unwrap()["metadata"]["labels"]["app"].clone();
        let wanted = format!("k8s:app={}", app.as_str().unwrap());
        assert!(
            labels
                .as_array()
                .unwrap()
                .iter()
                .any(|l| l == &json!(wanted)),
            "SluiceIdentity {} of {pod} has {labels}",
            h.number(pod)
        );
    }

    // Cross-node traffic, then a policy by identity enforced across nodes.
    let _server = serve(&h.cluster.pods[web].ns, "web", 8080);
    eventually("other → web before any policy", WAIT, || {
        h.probe(other, web) == Reply::Name("web".into())
    });
    h.api.create(
        "NetworkPolicy",
        Some(NS),
        policy("web-from-client", "client"),
    );
    eventually("the policy to isolate web", WAIT, || {
        h.probe(other, web) == Reply::Timeout
    });
    assert_eq!(
        h.probe(client, web),
        Reply::Name("web".into()),
        "client (node-2) → web (node-1) is allowed by its identity"
    );

    // 410 Gone on every live watch; while nobody watches, the allowed
    // peer changes. The watchers must re-list and miss neither change.
    let path = "/apis/networking.k8s.io/v1/networkpolicies";
    let lists_before = h.lists_of(path);
    h.api.store().expire_watches(|_| {
        h.api.delete("NetworkPolicy", Some(NS), "web-from-client");
        h.api
            .create("NetworkPolicy", Some(NS), policy("web-from-other", "other"));
    });
    eventually("both agents to re-list NetworkPolicies", WAIT, || {
        h.lists_of(path) >= lists_before + 2
    });
    eventually("the policy created during the gap", WAIT, || {
        h.probe(other, web) == Reply::Name("web".into())
    });
    eventually("the policy deleted during the gap", WAIT, || {
        h.probe(client, web) == Reply::Timeout
    });

    // Pod deletion: the records go; the identity of temp (no other user)
    // is collected after the grace period, client's (keeper still uses it)
    // never is.
    let (temp_number, client_number) = (h.number("temp"), h.number("client"));
    h.delete_pod(temp, "temp");
    h.delete_pod(client, "client");
    eventually("the deleted pods' SluiceEndpoints to go", WAIT, || {
        h.endpoint("temp").is_none() && h.endpoint("client").is_none()
    });
    eventually("temp's unused identity to be collected", WAIT, || {
        !h.identities().contains_key(&temp_number.to_string())
    });
    let kept = h
        .api
        .get("SluiceIdentity", None, &client_number.to_string())
        .expect("an identity in use is never collected");
    assert!(
        kept["status"]["unusedSince"].is_null(),
        "an identity in use is not marked unused: {kept}"
    );
    assert_eq!(h.identity_of("keeper"), Some(client_number));

    // Restarting an agent, then the operator, changes no number, not even
    // for a moment (watched for longer than the GC grace).
    let numbers = |h: &Harness| -> BTreeMap<&str, Option<u64>> {
        ["web", "keeper", "other"]
            .map(|p| (p, h.identity_of(p)))
            .into()
    };
    let (numbers_before, identities_before) = (numbers(&h), h.identities());
    let steady = |h: &Harness, what: &str| {
        let until = Instant::now() + Duration::from_secs(GC_GRACE_SECS.parse::<u64>().unwrap() + 2);
        while Instant::now() < until {
            assert_eq!(
                h.identities(),
                identities_before,
                "{what} changed the SluiceIdentities"
            );
            assert_eq!(
                numbers(h),
                numbers_before,
                "{what} changed identity numbers"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    // keeper → web is denied; it must stay so while the agent restarts.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, from, to) = (
            stop.clone(),
            h.cluster.pods[keeper].ns.path(),
            h.cluster.pods[web].ip,
        );
        std::thread::spawn(move || {
            let mut opened = 0;
            while !stop.load(Ordering::Relaxed) {
                let reply = in_netns(&from, move || {
                    tcp_name(to, 8080, Duration::from_millis(200))
                });
                opened += usize::from(matches!(reply, Reply::Name(_)));
            }
            opened
        })
    };
    h.cluster.start_agent(0);
    steady(&h, "restarting node-1's agent");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(
        prober.join().expect("prober"),
        0,
        "web's policy opened while its agent restarted"
    );
    eventually("the restarted agent to serve web", WAIT, || {
        h.probe(other, web) == Reply::Name("web".into())
    });
    h.operator.take().expect("running").kill();
    h.operator = Some(OperatorProcess::start(
        &h.api_ns,
        &h.api.kubeconfig(),
        &operator_args(),
    ));
    steady(&h, "restarting the operator");
    assert_eq!(
        h.probe(keeper, web),
        Reply::Timeout,
        "policy still enforced"
    );
    eprintln!("cluster mode e2e took {:?}", started.elapsed());
}
