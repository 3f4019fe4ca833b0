//! What an analyzer sees (the snapshot, mesh config, settings) and where it reports.

use ipnet::IpNet;

use crate::{
    mesh::MeshDoc,
    message::{Message, MessageType, Subject},
    resource::Resource,
    snapshot::Snapshot,
};

/// Settings for Sluice's datapath analyzers.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
}

pub const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            pod_cidrs: vec![DEFAULT_POD_CIDR.parse().expect("valid default CIDR")],
            service_cidrs: vec![DEFAULT_SERVICE_CIDR.parse().expect("valid default CIDR")],
        }
    }
}

/// The annotation listing codes (or `*`) not to report on a resource.
pub const SUPPRESS_ANNOTATION: &str = "galley.istio.io/analyze-suppress";

pub struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub mesh_config: &'a MeshDoc,
    pub mesh_networks: &'a MeshDoc,
    pub istio_namespace: &'a str,
    pub cluster: &'a ClusterSettings,
    messages: Vec<Message>,
}

impl<'a> Context<'a> {
    pub fn new(
        snapshot: &'a Snapshot,
        mesh_config: &'a MeshDoc,
        mesh_networks: &'a MeshDoc,
        istio_namespace: &'a str,
        cluster: &'a ClusterSettings,
    ) -> Self {
        Context {
            snapshot,
            mesh_config,
            mesh_networks,
            istio_namespace,
            cluster,
            messages: Vec::new(),
        }
    }

    /// Reports a message about a resource.
    pub fn report(&mut self, kind: MessageType, resource: &Resource, params: Vec<String>) {
        self.messages.push(Message {
            kind,
            subject: Some(subject_of(resource)),
            params,
        });
    }

    /// Reports a message about the mesh config (`MeshConfig istio-system/meshconfig`).
    pub fn report_mesh_config(&mut self, kind: MessageType, params: Vec<String>) {
        let subject = self.mesh_subject("MeshConfig", "meshconfig", self.mesh_config);
        self.messages.push(Message {
            kind,
            subject: Some(subject),
            params,
        });
    }

    /// Reports a message about the mesh networks (`MeshNetworks istio-system/meshnetworks`).
    pub fn report_mesh_networks(&mut self, kind: MessageType, params: Vec<String>) {
        let subject = self.mesh_subject("MeshNetworks", "meshnetworks", self.mesh_networks);
        self.messages.push(Message {
            kind,
            subject: Some(subject),
            params,
        });
    }

    fn mesh_subject(&self, kind: &str, name: &str, doc: &MeshDoc) -> Subject {
        Subject {
            friendly_name: format!("{kind} {}/{name}", self.istio_namespace),
            namespace: Some(self.istio_namespace.to_string()),
            origin: doc.origin.clone(),
            suppressed_codes: Vec::new(),
        }
    }

    pub fn into_messages(self) -> Vec<Message> {
        self.messages
    }
}

pub fn subject_of(resource: &Resource) -> Subject {
    let suppressed_codes = resource
        .annotations
        .get(SUPPRESS_ANNOTATION)
        .map(|codes| {
            codes
                .split(',')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    Subject {
        friendly_name: resource.friendly_name(),
        namespace: resource.namespace.clone(),
        origin: resource.origin.clone(),
        suppressed_codes,
    }
}
