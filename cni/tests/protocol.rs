//! The CNI env-var protocol, driven through the built binary against the
//! in-process fake agent. Needs no privileges: nothing here creates links.

mod common;

use common::{
    fake_agent::{Call, FakeAgent},
    plugin::{Outcome, run},
};
use serde_json::{Value, json};
use sluice_api::agent::v1::Attachment;

fn conf(version: &str, socket: &str, log: &str) -> Value {
    json!({
        "cniVersion": version, "name": "sluice-test", "type": "sluice-cni",
        "agentSocket": socket, "logFile": log, "logLevel": "debug",
    })
}

struct Rig {
    agent: FakeAgent,
    dir: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        Self {
            agent: FakeAgent::start(1),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn log(&self) -> String {
        self.dir.path().join("cni.log").display().to_string()
    }

    fn conf(&self, version: &str) -> Value {
        conf(version, self.agent.socket.to_str().unwrap(), &self.log())
    }

    /// A socket path nothing listens on.
    fn dead_conf(&self, version: &str) -> Value {
        conf(
            version,
            &self.dir.path().join("nobody.sock").display().to_string(),
            &self.log(),
        )
    }
}

fn container_env<'a>(cmd: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c0ffee01"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
        (
            "CNI_ARGS",
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_UID=u-1",
        ),
    ]
}

fn att() -> Attachment {
    Attachment {
        container_id: "c0ffee01".into(),
        interface: "eth0".into(),
    }
}

#[test]
fn version_lists_every_supported_version() {
    let out = run(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.4.0"}"#);
    out.ok();
    assert_eq!(
        out.json(),
        json!({"cniVersion": "1.1.0",
               "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
}

#[test]
fn missing_command_is_code_4() {
    let v = run(&[], "{}").error(4);
    assert!(
        v["details"].as_str().unwrap().contains("CNI_COMMAND"),
        "{v}"
    );
    run(&[("CNI_COMMAND", "BOUNCE")], "{}").error(4);
}

#[test]
fn missing_container_variables_are_code_4() {
    let rig = Rig::new();
    let stdin = rig.conf("1.0.0").to_string();
    for missing in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
        let env: Vec<_> = container_env("ADD", "/proc/self/ns/net")
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let v = run(&env, &stdin).error(4);
        assert!(v["details"].as_str().unwrap().contains(missing), "{v}");
    }
    assert!(rig.agent.calls().is_empty(), "nothing reaches the agent");
}

#[test]
fn wrong_ifname_is_code_4() {
    let rig = Rig::new();
    let mut env = container_env("ADD", "/proc/self/ns/net");
    env.retain(|(k, _)| *k != "CNI_IFNAME");
    env.push(("CNI_IFNAME", "this-name-is-too-long"));
    let v = run(&env, &rig.conf("1.0.0").to_string()).error(4);
    assert!(v["details"].as_str().unwrap().contains("CNI_IFNAME"), "{v}");
}

#[test]
fn missing_netns_path_is_code_4() {
    let rig = Rig::new();
    let v = run(
        &container_env("ADD", "/run/netns/sluice-cni-does-not-exist"),
        &rig.conf("1.0.0").to_string(),
    )
    .error(4);
    assert!(
        v["details"].as_str().unwrap().contains("does-not-exist"),
        "{v}"
    );
    assert!(rig.agent.calls().is_empty());
}

#[test]
fn malformed_json_is_code_6() {
    run(
        &container_env("ADD", "/proc/self/ns/net"),
        "{\"cniVersion\": \"1.0",
    )
    .error(6);
}

#[test]
fn missing_type_is_code_7() {
    let rig = Rig::new();
    let mut c = rig.conf("1.0.0");
    c.as_object_mut().unwrap().remove("type");
    let v = run(&container_env("ADD", "/proc/self/ns/net"), &c.to_string()).error(7);
    assert!(v["details"].as_str().unwrap().contains("type"), "{v}");
    // The error echoes the config's version.
    assert_eq!(v["cniVersion"], "1.0.0");
}

#[test]
fn unknown_field_is_code_7() {
    let rig = Rig::new();
    let mut c = rig.conf("1.0.0");
    c["agentSockt"] = json!("/x");
    let v = run(&container_env("ADD", "/proc/self/ns/net"), &c.to_string()).error(7);
    assert!(v["details"].as_str().unwrap().contains("agentSockt"), "{v}");
}

#[test]
fn unsupported_version_is_code_1() {
    let rig = Rig::new();
    let v = run(
        &container_env("ADD", "/proc/self/ns/net"),
        &rig.conf("0.2.0").to_string(),
    )
    .error(1);
    assert!(v["details"].as_str().unwrap().contains("1.1.0"), "{v}");
}

#[test]
fn add_with_the_agent_down_is_code_11_naming_the_socket() {
    let rig = Rig::new();
    let c = rig.dead_conf("1.0.0");
    let v = run(&container_env("ADD", "/proc/self/ns/net"), &c.to_string()).error(11);
    let details = v["details"].as_str().unwrap();
    assert!(details.contains("nobody.sock"), "{v}");
    assert!(details.contains("sluice-agent"), "{v}");
}

#[test]
fn status_reports_the_agent() {
    let rig = Rig::new();
    let env = [("CNI_COMMAND", "STATUS")];
    run(&env, &rig.conf("1.1.0").to_string()).ok();
    assert_eq!(rig.agent.calls(), vec![Call::Status]);

    rig.agent.set_ready(false);
    let v = run(&env, &rig.conf("1.1.0").to_string()).error(50);
    assert!(v["details"].as_str().unwrap().contains("not ready"), "{v}");

    let v = run(&env, &rig.dead_conf("1.1.0").to_string()).error(50);
    assert!(
        v["details"].as_str().unwrap().contains("nobody.sock"),
        "{v}"
    );
}

#[test]
fn status_and_gc_need_spec_1_1() {
    let rig = Rig::new();
    run(&[("CNI_COMMAND", "STATUS")], &rig.conf("1.0.0").to_string()).error(1);
    run(&[("CNI_COMMAND", "GC")], &rig.conf("1.0.0").to_string()).error(1);
}

#[test]
fn gc_passes_the_valid_attachments() {
    let rig = Rig::new();
    let mut c = rig.conf("1.1.0");
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep-me", "ifname": "eth0"}]);
    run(
        &[("CNI_COMMAND", "GC"), ("CNI_PATH", "/usr/lib/cni")],
        &c.to_string(),
    )
    .ok();
    assert_eq!(
        rig.agent.calls(),
        vec![Call::GarbageCollect(vec![Attachment {
            container_id: "keep-me".into(),
            interface: "eth0".into(),
        }])]
    );
}

#[test]
fn gc_without_valid_attachments_is_refused() {
    let rig = Rig::new();
    run(&[("CNI_COMMAND", "GC")], &rig.conf("1.1.0").to_string()).error(7);
    assert!(rig.agent.calls().is_empty(), "must not wipe the node");
}

#[test]
fn del_tells_the_agent_and_tolerates_an_empty_netns() {
    let rig = Rig::new();
    let out = run(&container_env("DEL", ""), &rig.conf("1.0.0").to_string());
    out.ok();
    assert_eq!(out.stdout, "", "DEL prints nothing on success");
    assert_eq!(
        rig.agent.calls(),
        vec![Call::DeleteEndpoint(att()), Call::Release(att())]
    );
}

#[test]
fn del_with_the_agent_down_succeeds() {
    let rig = Rig::new();
    let out = run(
        &container_env("DEL", ""),
        &rig.dead_conf("1.0.0").to_string(),
    );
    out.ok();
    let log = std::fs::read_to_string(rig.log()).unwrap();
    assert!(log.contains("agent unreachable"), "{log}");
}

#[test]
fn check_without_prev_result_is_code_7() {
    let rig = Rig::new();
    run(
        &container_env("CHECK", "/proc/self/ns/net"),
        &rig.conf("1.0.0").to_string(),
    )
    .error(7);
}

#[test]
fn check_needs_0_4_0() {
    let rig = Rig::new();
    run(
        &container_env("CHECK", "/proc/self/ns/net"),
        &rig.conf("0.3.1").to_string(),
    )
    .error(1);
}

#[test]
fn logs_go_to_the_log_file_not_stdout() {
    let rig = Rig::new();
    let out: Outcome = run(&container_env("DEL", ""), &rig.conf("1.0.0").to_string());
    out.ok();
    assert!(out.stdout.is_empty());
    let log = std::fs::read_to_string(rig.log()).expect("log file written");
    assert!(log.contains("DEL"), "{log}");
    assert!(log.contains("c0ffee01"), "{log}");
}
