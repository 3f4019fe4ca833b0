//! What a Kubernetes API server does to an object before storing it, for the
//! sources that stand in for one (the `files` source, hence the local mesh).
//!
//! With `--source kubernetes` the real API server has already done all of
//! this; objects read from manifests must come out the same, or policies that
//! rely on a platform guarantee (e.g. selecting a namespace by
//! `kubernetes.io/metadata.name`) silently match nothing.

pub mod defaults;

pub use defaults::apply_defaults;
