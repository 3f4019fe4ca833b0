//! Sources of Kubernetes objects. Each writes the same typed objects into the
//! [`Store`](crate::store::Store) under its own [`Scope`](crate::store::Scope);
//! nothing downstream knows which source an object came from.
//!
//! - [`files`]: a directory of YAML manifests, watched for changes (local mesh,
//!   tests, and clusterless use);
//! - [`kubernetes`]: kube-rs watchers against the API server;
//! - [`cluster`]: with `kubernetes`, the cluster state shared with the
//!   operator and other nodes (identities, endpoint records).

pub mod cluster;
pub mod files;
pub mod kubernetes;
