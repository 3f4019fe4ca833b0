//! The pods a cluster will run: Pods in the input plus the pod templates of
//! workload controllers, so manifests without Pods can still be analyzed.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    analyzers::util::{
        Labels, array_at, as_u64, label_selector_matches, pod_spec, pod_template_labels, str_at,
    },
    kinds,
    snapshot::Snapshot,
};

/// A container port a workload declares.
#[derive(Clone, Debug)]
pub struct DeclaredPort {
    pub name: String,
    pub number: u64,
    pub protocol: String,
}

/// A pod or pod template.
#[derive(Clone, Debug)]
pub struct Workload {
    pub namespace: String,
    pub labels: Labels,
    pub ports: Vec<DeclaredPort>,
}

const CONTROLLERS: &[kinds::Kind] = &[
    kinds::DEPLOYMENT,
    kinds::STATEFUL_SET,
    kinds::DAEMON_SET,
    kinds::REPLICA_SET,
    kinds::JOB,
    kinds::CRON_JOB,
];

pub struct Workloads {
    all: Vec<Workload>,
    /// Indexes into `all` by namespace, so per-namespace scans stay cheap.
    by_namespace: HashMap<String, Vec<usize>>,
}

impl Workloads {
    pub fn build(snapshot: &Snapshot) -> Self {
        let mut all = Vec::new();
        let sources = std::iter::once(kinds::POD).chain(CONTROLLERS.iter().copied());
        for kind in sources {
            for r in snapshot.of(kind) {
                let labels = if kind == kinds::CRON_JOB {
                    crate::analyzers::util::labels_at(
                        &r.body,
                        "/spec/jobTemplate/spec/template/metadata/labels",
                    )
                } else {
                    pod_template_labels(r)
                };
                all.push(Workload {
                    namespace: r.ns().to_string(),
                    labels,
                    ports: declared_ports(pod_spec(r)),
                });
            }
        }
        let mut by_namespace: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, w) in all.iter().enumerate() {
            by_namespace.entry(w.namespace.clone()).or_default().push(i);
        }
        Workloads { all, by_namespace }
    }

    /// Workloads in one namespace, or in all of them for `None`.
    fn scope<'a>(&'a self, namespace: Option<&str>) -> Box<dyn Iterator<Item = &'a Workload> + 'a> {
        match namespace {
            None => Box::new(self.all.iter()),
            Some(ns) => Box::new(
                self.by_namespace
                    .get(ns)
                    .into_iter()
                    .flatten()
                    .map(|&i| &self.all[i]),
            ),
        }
    }

    /// Workloads a LabelSelector selects, in `namespace` (or every namespace for `None`).
    pub fn selected<'a>(
        &'a self,
        namespace: Option<&'a str>,
        selector: &'a Value,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.scope(namespace)
            .filter(move |w| label_selector_matches(selector, &w.labels, true))
    }

    /// Workloads in `namespace` whose labels contain a plain label map.
    pub fn matching_labels<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a Labels,
    ) -> impl Iterator<Item = &'a Workload> + 'a {
        self.all.iter().filter(move |w| {
            w.namespace == namespace
                && crate::analyzers::util::selector_matches(selector, &w.labels)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

fn declared_ports(spec: &Value) -> Vec<DeclaredPort> {
    array_at(spec, "/containers")
        .iter()
        .chain(array_at(spec, "/initContainers"))
        .flat_map(|c| array_at(c, "/ports"))
        .map(|p| DeclaredPort {
            name: str_at(p, "/name").to_string(),
            number: p.get("containerPort").and_then(as_u64).unwrap_or(0),
            protocol: match str_at(p, "/protocol") {
                "" => "TCP".to_string(),
                other => other.to_string(),
            },
        })
        .collect()
}
