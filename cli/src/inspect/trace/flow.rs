//! Asking agents for a trace: one agent (its own view, where a step on
//! another node stays NOT_LOCAL), or a whole local mesh, where the egress
//! step comes from the source's node and the ingress step from the
//! destination's node, each evaluated with the other end's identity as
//! that node sees it.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use sluice_api::agent::v1 as pb;
use tonic::Code;

use super::{
    Protocol,
    view::{PeerView, StepView, TraceView},
};
use crate::inspect::{
    client::{Agent, MeshNode, status_error},
    endpoint::identities,
    output::non_empty,
};

/// The flow to trace, as the user gave it.
pub struct Query {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
}

impl Query {
    fn request(&self, from: &str, to: &str) -> pb::TracePolicyRequest {
        pb::TracePolicyRequest {
            from: from.to_owned(),
            to: to.to_owned(),
            port: u32::from(self.port),
            protocol: self.protocol.name().to_owned(),
        }
    }
}

fn ask(
    agent: &Agent,
    request: pb::TracePolicyRequest,
) -> Result<pb::TracePolicyResponse, tonic::Status> {
    agent.call_status(|mut api| async move { api.trace_policy(request).await })
}

fn labels_of(agent: &Agent, identity: u32) -> Result<Vec<String>> {
    Ok(identities(agent)?
        .into_iter()
        .find(|(id, _, _)| *id == identity)
        .map(|(_, labels, _)| labels)
        .unwrap_or_default())
}

fn step_of(
    answer: &pb::TracePolicyResponse,
    direction: &str,
    peer: &pb::TracePeer,
    peer_identity: u32,
) -> Result<StepView> {
    let step = answer
        .steps
        .iter()
        .find(|s| s.direction == direction)
        .with_context(|| format!("node {} answered without a {direction} step", answer.node))?;
    Ok(StepView {
        direction: step.direction.clone(),
        node: non_empty(step.node.clone()),
        endpoint: step.endpoint.clone(),
        pod: non_empty(peer.pod.clone()),
        verdict: step.verdict.clone(),
        policy: non_empty(step.policy.clone()),
        rule: non_empty(step.rule.clone()),
        peer_identity,
    })
}

/// An end with its identity as `answer`'s node numbers it.
fn peer_view(
    name: &str,
    peer: &pb::TracePeer,
    (answer, identity): (&pb::TracePolicyResponse, u32),
    labels: Vec<String>,
) -> PeerView {
    PeerView {
        identity_node: answer.node.clone(),
        name: name.to_owned(),
        address: peer.address.clone(),
        pod: non_empty(peer.pod.clone()),
        node: non_empty(peer.node.clone()),
        identity,
        labels,
    }
}

fn ends(answer: &pb::TracePolicyResponse) -> Result<(pb::TracePeer, pb::TracePeer)> {
    match (&answer.source, &answer.destination) {
        (Some(s), Some(d)) => Ok((s.clone(), d.clone())),
        _ => bail!(
            "the agent of node {:?} does not say where the ends live: it predates \
             cross-node tracing (upgrade it)",
            answer.node
        ),
    }
}

/// One agent's view of the flow.
pub fn on_one_agent(agent: &Agent, query: &Query) -> Result<TraceView> {
    let answer = ask(agent, query.request(&query.from, &query.to)).map_err(status_error)?;
    let (source, destination) = ends(&answer)?;
    let steps = vec![
        step_of(&answer, "EGRESS", &source, answer.destination_identity)?,
        step_of(&answer, "INGRESS", &destination, answer.source_identity)?,
    ];
    let from = peer_view(
        &query.from,
        &source,
        (&answer, answer.source_identity),
        labels_of(agent, answer.source_identity)?,
    );
    let to = peer_view(
        &query.to,
        &destination,
        (&answer, answer.destination_identity),
        labels_of(agent, answer.destination_identity)?,
    );
    Ok(TraceView::new(
        from,
        to,
        (query.port, query.protocol),
        steps,
    ))
}

/// The agents of a local mesh, connected on first use.
struct MeshAgents<'a> {
    mesh: &'a str,
    nodes: &'a [MeshNode],
    connected: BTreeMap<String, Agent>,
}

impl MeshAgents<'_> {
    fn agent(&mut self, node: &str) -> Result<&Agent> {
        if !self.connected.contains_key(node) {
            let found = self
                .nodes
                .iter()
                .find(|n| n.name == node)
                .with_context(|| format!("node {node} is not a node of mesh {:?}", self.mesh))?;
            let agent = Agent::connect_to(&found.api_socket)
                .with_context(|| format!("node {node}'s agent"))?;
            self.connected.insert(node.to_owned(), agent);
        }
        Ok(&self.connected[node])
    }

    /// Where `what` lives, from the first agent that knows it: agents
    /// know other nodes' pods, but one may lag behind another.
    fn locate(&mut self, what: &str, query: &Query) -> Result<pb::TracePeer> {
        let mut unknown = Vec::new();
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        for node in &names {
            let agent = match self.agent(node) {
                Ok(agent) => agent,
                Err(e) => {
                    unknown.push(format!("{node}: {e:#}"));
                    continue;
                }
            };
            // Both ends the same: only the names matter here.
            match ask(agent, query.request(what, what)) {
                Ok(answer) => return Ok(ends(&answer)?.0),
                Err(status) if status.code() == Code::NotFound => {
                    unknown.push(format!("{node}: {}", status.message()));
                }
                Err(status) => {
                    return Err(status_error(status)).with_context(|| format!("node {node}"));
                }
            }
        }
        bail!(
            "no agent of mesh {:?} knows {what}:\n  {}",
            self.mesh,
            unknown.join("\n  ")
        )
    }

    /// The trace on `node` (cached: a same-node flow asks once).
    fn trace_on(
        &mut self,
        node: &str,
        source: &pb::TracePeer,
        destination: &pb::TracePeer,
        query: &Query,
        answers: &mut BTreeMap<String, pb::TracePolicyResponse>,
    ) -> Result<pb::TracePolicyResponse> {
        if let Some(answer) = answers.get(node) {
            return Ok(answer.clone());
        }
        let request = query.request(&source.address, &destination.address);
        let answer = ask(self.agent(node)?, request)
            .map_err(status_error)
            .with_context(|| format!("tracing on node {node}"))?;
        answers.insert(node.to_owned(), answer.clone());
        Ok(answer)
    }
}

/// The whole flow in a local mesh: egress on the source's node, ingress
/// on the destination's node.
pub fn across_mesh(mesh: &str, nodes: &[MeshNode], query: &Query) -> Result<TraceView> {
    let Some(first) = nodes.first() else {
        bail!("mesh {mesh:?} has no nodes");
    };
    let mut agents = MeshAgents {
        mesh,
        nodes,
        connected: BTreeMap::new(),
    };
    let source = agents.locate(&query.from, query)?;
    let destination = agents.locate(&query.to, query)?;
    // An end on no node (outside, a host) has no step to enforce: any
    // node answers NO_ENDPOINT for it.
    let node_of =
        |peer: &pb::TracePeer| non_empty(peer.node.clone()).unwrap_or_else(|| first.name.clone());
    let (source_node, destination_node) = (node_of(&source), node_of(&destination));
    let mut answers = BTreeMap::new();
    let at_source = agents.trace_on(&source_node, &source, &destination, query, &mut answers)?;
    let at_destination = agents.trace_on(
        &destination_node,
        &source,
        &destination,
        query,
        &mut answers,
    )?;
    let steps = vec![
        step_of(
            &at_source,
            "EGRESS",
            &source,
            at_source.destination_identity,
        )?,
        step_of(
            &at_destination,
            "INGRESS",
            &destination,
            at_destination.source_identity,
        )?,
    ];
    let from = peer_view(
        &query.from,
        &source,
        (&at_source, at_source.source_identity),
        labels_of(agents.agent(&source_node)?, at_source.source_identity)?,
    );
    let to = peer_view(
        &query.to,
        &destination,
        (&at_destination, at_destination.destination_identity),
        labels_of(
            agents.agent(&destination_node)?,
            at_destination.destination_identity,
        )?,
    );
    Ok(TraceView::new(
        from,
        to,
        (query.port, query.protocol),
        steps,
    ))
}
