//! NetworkPolicy enforced by the datapath with real traffic: default deny,
//! an allow by pod selector and port, replies through conntrack, a drop
//! counted under its reason, and a policy removal taking effect.

use std::time::Duration;

use sluice_agent::datapath::maps::read_counters;
use sluice_bpf_common::metrics::DropReason;
use sluice_vmtests::{
    cluster::Cluster,
    eventually, manifests, require_root,
    workload::{Reply, in_netns, serve, tcp_name},
};

const TIMEOUT: Duration = Duration::from_millis(500);

const POLICY: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: default}
spec:
  podSelector: {matchLabels: {app: db}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {app: api}}}]
    ports: [{port: http}]
";

#[test]
fn network_policy_allows_only_what_it_says_across_nodes() {
    require_root();
    let mut cluster = Cluster::new(2);
    let db = cluster.add_pod(0, "default/db");
    let api = cluster.add_pod(1, "default/api");
    let web = cluster.add_pod(1, "default/web");
    let local = cluster.add_pod(0, "default/local");
    let _servers = [
        serve(&cluster.pods[db].ns, "db", 8080),
        serve(&cluster.pods[db].ns, "db-9090", 9090),
    ];
    let ip = |i: usize| cluster.pods[i].ip;
    let pods = [
        manifests::pod("db", "db", "node-1", ip(db)),
        manifests::pod("api", "api", "node-2", ip(api)),
        manifests::pod("web", "web", "node-2", ip(web)),
        manifests::pod("local", "web", "node-1", ip(local)),
    ]
    .concat();
    let dir = cluster.manifests_dir().to_owned();
    std::fs::write(dir.join("pods.yaml"), pods).unwrap();
    let db_ip = ip(db);
    let probe = |from: usize, port: u16| {
        let netns = cluster.pods[from].ns.path();
        in_netns(&netns, move || tcp_name(db_ip, port, TIMEOUT))
    };
    assert_eq!(
        probe(web, 8080),
        Reply::Name("db".into()),
        "open before any policy"
    );

    std::fs::write(dir.join("policy.yaml"), POLICY).unwrap();
    eventually("the policy to isolate db", Duration::from_secs(15), || {
        probe(web, 8080) == Reply::Timeout
    });
    assert_eq!(
        probe(api, 8080),
        Reply::Name("db".into()),
        "api → db:http is allowed"
    );
    assert_eq!(
        probe(api, 9090),
        Reply::Timeout,
        "only the named port is allowed"
    );
    assert_eq!(
        probe(local, 8080),
        Reply::Timeout,
        "same-node peers are denied too"
    );
    let drops = read_counters(&cluster.pin_dir(0))
        .unwrap()
        .drop(DropReason::PolicyDefaultDeny)
        .packets;
    assert!(
        drops > 0,
        "denied SYNs are counted under POLICY_DEFAULT_DENY"
    );
    // db's own egress is not isolated: it still reaches others (and the
    // replies of its allowed connections come back through conntrack).
    let api_ip = ip(api);
    let _api_server = serve(&cluster.pods[api].ns, "api", 8080);
    let db_ns = cluster.pods[db].ns.path();
    assert_eq!(
        in_netns(&db_ns, move || tcp_name(api_ip, 8080, TIMEOUT)),
        Reply::Name("api".into())
    );

    std::fs::remove_file(dir.join("policy.yaml")).unwrap();
    eventually("the policy removal", Duration::from_secs(15), || {
        probe(web, 8080) == Reply::Name("db".into())
    });
}
