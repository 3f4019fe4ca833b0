//! Talking to a test agent over its gRPC socket from synchronous tests.

use std::path::Path;

use sluice_agent::api::format_mac;
use sluice_api::agent::v1::{self as pb, agent_client::AgentClient};
use tonic::transport::Channel;

use crate::topology::Pod;

/// A blocking client of one agent.
pub struct Api {
    runtime: tokio::runtime::Runtime,
    client: AgentClient<Channel>,
}

impl Api {
    pub fn connect(socket: &Path) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let client = runtime
            .block_on(sluice_api::connect_unix(socket))
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
        Self { runtime, client }
    }

    /// Registers `pod` as the CNI plugin would, as pod `namespace/name`.
    pub fn create_endpoint(&mut self, pod: &Pod, namespace: &str, name: &str) -> pb::Endpoint {
        let request = pb::CreateEndpointRequest {
            attachment: Some(attachment(pod)),
            netns: pod.ns.path().display().to_string(),
            host_interface: pod.host_if.clone(),
            ipv4: pod.ip.to_string(),
            pod_mac: format_mac(pod.pod_mac),
            pod_namespace: namespace.to_owned(),
            pod_name: name.to_owned(),
            pod_uid: format!("uid-{name}"),
            // The test topology already gave the host side its addresses.
            routed: false,
            port_mappings: Vec::new(),
        };
        let client = &mut self.client;
        self.runtime
            .block_on(client.create_endpoint(request))
            .unwrap_or_else(|e| panic!("CreateEndpoint {name}: {e}"))
            .into_inner()
    }

    pub fn list_endpoints(&mut self) -> Vec<pb::Endpoint> {
        let client = &mut self.client;
        let mut endpoints = self
            .runtime
            .block_on(client.list_endpoints(pb::ListEndpointsRequest {}))
            .expect("ListEndpoints")
            .into_inner()
            .endpoints;
        endpoints.sort_by(|a, b| a.ipv4.cmp(&b.ipv4));
        endpoints
    }
}

/// The CNI attachment of a test pod (container id = its namespace name).
pub fn attachment(pod: &Pod) -> pb::Attachment {
    pb::Attachment {
        container_id: pod.ns.name().to_owned(),
        interface: "eth0".to_owned(),
    }
}
