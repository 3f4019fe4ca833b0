//! Every operator setting in one place: flag, environment variable, default.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Parser, ValueEnum};
use ipnet::Ipv4Net;

pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;
pub const DEFAULT_IDENTITY_GC_GRACE_SECS: u64 = 900;
pub const DEFAULT_ENDPOINT_GC_INTERVAL_SECS: u64 = 300;
pub const DEFAULT_METRICS_ADDR: &str = "0.0.0.0:9091";
pub const DEFAULT_LEASE_NAME: &str = "sluice-operator";
pub const DEFAULT_LEASE_NAMESPACE: &str = "sluice-system";
pub const DEFAULT_LEASE_DURATION_SECS: u64 = 15;
pub const DEFAULT_LEASE_RENEW_SECS: u64 = 5;

/// Where the cluster state lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// A Kubernetes API server (in-cluster or $KUBECONFIG).
    Kubernetes,
    /// A local mesh's shared directory (`--cluster-state`): identity and
    /// endpoint GC only.
    Files,
}

#[derive(Clone, Debug, Parser)]
#[command(
    name = "sluice-operator",
    version,
    about = "Sluice per-cluster operator"
)]
pub struct Config {
    /// Where the cluster state lives.
    #[arg(long, env = "SLUICE_OPERATOR_SOURCE", value_enum, default_value_t = Source::Kubernetes)]
    pub source: Source,

    /// With `--source files`: the cluster-state directory the mesh's agents
    /// share (their `--cluster-state`).
    #[arg(long, env = "SLUICE_CLUSTER_STATE", required_if_eq("source", "files"))]
    pub cluster_state: Option<PathBuf>,

    /// With `--source files`: the manifests directory whose Pods back the
    /// `SluiceEndpoint`s (endpoint GC is off without it).
    #[arg(long, env = "SLUICE_MANIFESTS")]
    pub manifests: Option<PathBuf>,

    /// Pool that node pod CIDRs are carved from (the agents' --cluster-cidr).
    #[arg(long, env = "SLUICE_CLUSTER_CIDR", default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: Ipv4Net,

    /// Prefix length of each node's pod CIDR (24: 254 pods per node).
    #[arg(long, env = "SLUICE_NODE_CIDR_MASK_SIZE", default_value_t = DEFAULT_NODE_CIDR_MASK_SIZE)]
    pub node_cidr_mask_size: u8,

    /// Seconds an identity may stay unused by every SluiceEndpoint before
    /// it is deleted (covers pods whose endpoint is not created yet).
    #[arg(long, env = "SLUICE_IDENTITY_GC_GRACE", default_value_t = DEFAULT_IDENTITY_GC_GRACE_SECS)]
    pub identity_gc_grace_secs: u64,

    /// Seconds between checks that an endpoint's pod still exists.
    #[arg(long, env = "SLUICE_ENDPOINT_GC_INTERVAL", default_value_t = DEFAULT_ENDPOINT_GC_INTERVAL_SECS)]
    pub endpoint_gc_interval_secs: u64,

    /// Address of the HTTP server (/metrics, /healthz, /readyz).
    #[arg(long, env = "SLUICE_METRICS_ADDR", default_value = DEFAULT_METRICS_ADDR)]
    pub metrics_addr: SocketAddr,

    /// Run the controllers only while holding the Lease (turn off only
    /// with a single replica).
    #[arg(long, env = "SLUICE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,

    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = DEFAULT_LEASE_NAMESPACE)]
    pub lease_namespace: String,

    /// Name of the leader-election Lease.
    #[arg(long, env = "SLUICE_LEASE_NAME", default_value = DEFAULT_LEASE_NAME)]
    pub lease_name: String,

    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "sluice-operator")]
    pub lease_holder: String,

    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "SLUICE_LEASE_DURATION", default_value_t = DEFAULT_LEASE_DURATION_SECS)]
    pub lease_duration_secs: u64,

    /// Seconds between renewals (well below the duration).
    #[arg(long, env = "SLUICE_LEASE_RENEW", default_value_t = DEFAULT_LEASE_RENEW_SECS)]
    pub lease_renew_secs: u64,
}

impl Config {
    pub fn identity_gc_grace(&self) -> Duration {
        Duration::from_secs(self.identity_gc_grace_secs)
    }

    pub fn endpoint_gc_interval(&self) -> Duration {
        Duration::from_secs(self.endpoint_gc_interval_secs)
    }
}
