//! Objects the API server (and so `apply`) accepts but an agent does not
//! apply, e.g. a policy valid by schema that the policy compiler rejects:
//! gathered from every node's agent (`ListRejected`), for `apply`'s
//! warnings and the STATUS column of `get policies`.

use std::{collections::BTreeMap, fmt, time::Duration};

use sluice_api::agent::v1::ListRejectedRequest;

use super::{context::Mesh, manifests::ObjectKey};

/// How long one agent may take to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Which nodes' agents reject an object, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rejection {
    /// Reasons (`; `-joined) → the nodes giving them.
    pub reasons: BTreeMap<String, Vec<String>>,
}

impl Rejection {
    /// The reasons, without the nodes (the same on every node as a rule).
    pub fn reason(&self) -> String {
        self.reasons.keys().cloned().collect::<Vec<_>>().join(" | ")
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .map(|(reason, nodes)| format!("{}: {reason}", nodes.join(", ")))
            .collect();
        f.write_str(&parts.join(" | "))
    }
}

/// Every object some reachable agent rejects (unreachable agents are
/// skipped: `status` reports them).
pub fn by_agents(mesh: &Mesh) -> BTreeMap<ObjectKey, Rejection> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return BTreeMap::new();
    };
    let mut all: BTreeMap<ObjectKey, Rejection> = BTreeMap::new();
    for node in &mesh.state.nodes {
        let answer = runtime.block_on(async {
            let mut client = sluice_api::connect_unix(&node.api_socket).await.ok()?;
            tokio::time::timeout(AGENT_TIMEOUT, client.list_rejected(ListRejectedRequest {}))
                .await
                .ok()?
                .ok()
        });
        let Some(answer) = answer else { continue };
        for object in answer.into_inner().objects {
            let key = ObjectKey {
                kind: object.kind,
                namespace: (!object.namespace.is_empty()).then_some(object.namespace),
                name: object.name,
            };
            all.entry(key)
                .or_default()
                .reasons
                .entry(object.reasons.join("; "))
                .or_default()
                .push(node.name.clone());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_group_nodes_by_reason() {
        let rejection = Rejection {
            reasons: BTreeMap::from([
                (
                    "bad cidr".to_owned(),
                    vec!["node-1".to_owned(), "node-2".to_owned()],
                ),
                ("other".to_owned(), vec!["node-3".to_owned()]),
            ]),
        };
        assert_eq!(
            rejection.to_string(),
            "node-1, node-2: bad cidr | node-3: other"
        );
        assert_eq!(rejection.reason(), "bad cidr | other");
    }
}
