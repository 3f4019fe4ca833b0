//! Calling the real `sluice-cni` the way containerd does: CNI_* environment,
//! the network config on stdin, run inside the node's network namespace.

use std::{
    io::Write,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::{layout::netns_path, process::in_netns};

/// Interface name of every pod's network interface.
pub const POD_IFNAME: &str = "eth0";
/// The network name in the config (what a conflist's `name` would be).
const NETWORK_NAME: &str = "sluice-mesh";

/// One pod attachment as CNI sees it.
pub struct CniCall<'a> {
    pub plugin: &'a Path,
    pub node_netns: &'a str,
    pub agent_socket: &'a Path,
    pub log_file: &'a Path,
    pub container_id: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    /// hostPorts as `runtimeConfig.portMappings` (ADD), as kubelet passes
    /// them for the `portMappings` capability; empty: none.
    pub port_mappings: Vec<Value>,
}

/// The plugin's network config, as a runtime derives it from a conflist
/// (cniVersion and name copied into each plugin's config).
pub fn network_config(agent_socket: &Path, log_file: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": NETWORK_NAME,
        "type": "sluice-cni",
        "agentSocket": agent_socket,
        "logFile": log_file,
    })
}

/// `CNI_ARGS` with the pod identity, as containerd sends it.
pub fn cni_args(namespace: &str, name: &str, uid: &str, container_id: &str) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};\
         K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}"
    )
}

impl CniCall<'_> {
    /// ADD: returns the pod's IPv4 address from the result.
    pub fn add(&self, pod_netns: &str) -> Result<Ipv4Addr> {
        let result = self.run("ADD", Some(&netns_path(pod_netns)))?;
        address_of(&result)
    }

    /// DEL; `pod_netns` None is containerd's second DEL (netns gone).
    pub fn del(&self, pod_netns: Option<&str>) -> Result<()> {
        self.run("DEL", pod_netns.map(netns_path).as_deref())
            .map(drop)
    }

    fn run(&self, command: &str, netns: Option<&Path>) -> Result<Value> {
        let plugin_dir = self.plugin.parent().map(PathBuf::from).unwrap_or_default();
        let mut cmd = Command::new(self.plugin);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", self.container_id)
            .env("CNI_NETNS", netns.map(Path::as_os_str).unwrap_or_default())
            .env("CNI_IFNAME", POD_IFNAME)
            .env("CNI_PATH", plugin_dir)
            .env(
                "CNI_ARGS",
                cni_args(self.namespace, self.name, self.uid, self.container_id),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        in_netns(&mut cmd, &netns_path(self.node_netns))?;
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.plugin.display()))?;
        let mut config = network_config(self.agent_socket, self.log_file);
        if !self.port_mappings.is_empty() {
            config["capabilities"] = json!({"portMappings": true});
            config["runtimeConfig"] = json!({"portMappings": self.port_mappings});
        }
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(config.to_string().as_bytes())?;
        }
        let output = child.wait_with_output()?;
        let stdout: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if !output.status.success() {
            let msg = stdout
                .get("msg")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| String::from_utf8_lossy(&output.stdout).into_owned());
            let details = stdout.get("details").and_then(Value::as_str).unwrap_or("");
            bail!(
                "sluice-cni {command} for {}/{} failed: {msg} {details} (log: {})",
                self.namespace,
                self.name,
                self.log_file.display()
            );
        }
        Ok(stdout)
    }
}

/// The first IPv4 address of a CNI result (`ips[].address`, CIDR form).
pub fn address_of(result: &Value) -> Result<Ipv4Addr> {
    let ips = result
        .get("ips")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for ip in &ips {
        let Some(cidr) = ip.get("address").and_then(Value::as_str) else {
            continue;
        };
        if let Ok(addr) = cidr.split('/').next().unwrap_or("").parse() {
            return Ok(addr);
        }
    }
    bail!("the CNI result has no IPv4 address: {result}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_and_args_are_what_a_runtime_sends() {
        let config = network_config(Path::new("/run/a.sock"), Path::new("/tmp/cni.log"));
        assert_eq!(config["cniVersion"], "1.0.0");
        assert_eq!(config["type"], "sluice-cni");
        assert_eq!(config["agentSocket"], "/run/a.sock");
        let args = cni_args("shop", "web", "u-1", "c0ffee");
        assert!(args.contains("K8S_POD_NAMESPACE=shop;"));
        assert!(args.contains("K8S_POD_NAME=web;"));
        assert!(args.ends_with("K8S_POD_UID=u-1"));
    }

    #[test]
    fn reads_the_address_from_a_result() {
        let result =
            json!({"cniVersion": "1.0.0", "ips": [{"address": "10.244.1.5/32", "interface": 1}]});
        assert_eq!(address_of(&result).unwrap(), Ipv4Addr::new(10, 244, 1, 5));
        assert!(address_of(&json!({"ips": []})).is_err());
    }
}
