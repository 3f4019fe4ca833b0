//! What `policy trace` prints: both steps with the node that decided
//! each, the deciding rule, and one verdict combined from the steps.

use serde::Serialize;

use super::Protocol;
use crate::inspect::output::{Render, Table, labels_cell, or_dash};

/// The flow's verdict, combined from its two steps.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verdict {
    Allowed,
    Denied,
    /// No step denies, but one is NOT_LOCAL: another node's agent decides
    /// it (a trace on one agent only).
    Undecided,
}

/// Step verdicts that drop the flow.
fn denies(verdict: &str) -> bool {
    matches!(verdict, "DENIED" | "DEFAULT_DENIED")
}

impl Verdict {
    /// DENIED if a step denies, else UNDECIDED if a step is another node's
    /// to decide, else ALLOWED. Never ALLOWED with a step undecided.
    pub fn combine(steps: &[StepView]) -> Verdict {
        if steps.iter().any(|s| denies(&s.verdict)) {
            Verdict::Denied
        } else if steps.iter().any(|s| s.verdict == "NOT_LOCAL") {
            Verdict::Undecided
        } else {
            Verdict::Allowed
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    /// EGRESS (at the source) or INGRESS (at the destination).
    pub direction: String,
    /// The node that decided this step (for NOT_LOCAL: the node that
    /// decides it); null when no node holds the endpoint (NO_ENDPOINT).
    pub node: Option<String>,
    /// The address whose policy was evaluated.
    pub endpoint: String,
    /// "namespace/name" when the endpoint is a known pod.
    pub pod: Option<String>,
    /// ALLOWED, DENIED, DEFAULT_DENIED, AUDIT, NOT_ENFORCED, NOT_LOCAL or
    /// NO_ENDPOINT.
    pub verdict: String,
    pub policy: Option<String>,
    pub rule: Option<String>,
    /// The other end's identity as this step's node sees it (the number
    /// its policy entries key on).
    pub peer_identity: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// As given: "namespace/name" or an address.
    pub name: String,
    pub address: String,
    pub pod: Option<String>,
    /// The node it lives on; null when on no node.
    pub node: Option<String>,
    /// Its identity: the number `identity_node` gives its labels (its own
    /// node in a whole-mesh trace, else the traced agent's node).
    pub identity: u32,
    pub identity_node: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct TraceView {
    pub verdict: Verdict,
    pub from: PeerView,
    pub to: PeerView,
    pub port: u16,
    pub protocol: Protocol,
    pub steps: Vec<StepView>,
    /// The step that decided: the denying one, else the one whose rule
    /// allowed (ingress first); `null` when no policy applies or the flow
    /// is undecided.
    pub deciding: Option<StepView>,
    /// For UNDECIDED: the step another node decides.
    pub undecided: Option<StepView>,
}

impl TraceView {
    /// Builds the view; the verdict and deciding step follow from `steps`.
    pub fn new(
        from: PeerView,
        to: PeerView,
        (port, protocol): (u16, Protocol),
        steps: Vec<StepView>,
    ) -> Self {
        let verdict = Verdict::combine(&steps);
        let deciding = deciding_step(verdict, &steps).cloned();
        let undecided = (verdict == Verdict::Undecided)
            .then(|| steps.iter().find(|s| s.verdict == "NOT_LOCAL").cloned())
            .flatten();
        Self {
            verdict,
            from,
            to,
            port,
            protocol,
            steps,
            deciding,
            undecided,
        }
    }
}

/// The step that decided the verdict.
pub fn deciding_step(verdict: Verdict, steps: &[StepView]) -> Option<&StepView> {
    match verdict {
        Verdict::Denied => steps.iter().find(|s| denies(&s.verdict)),
        Verdict::Allowed => steps.iter().rev().find(|s| s.policy.is_some()),
        Verdict::Undecided => None,
    }
}

fn step_cell(step: &StepView) -> String {
    match (&step.policy, &step.rule) {
        (Some(policy), Some(rule)) => format!("{policy} {rule}"),
        (Some(policy), None) => policy.clone(),
        _ if step.verdict == "DEFAULT_DENIED" => {
            "no rule allows it (a policy selects the endpoint: default deny)".into()
        }
        _ => "-".into(),
    }
}

fn node_cell(node: &Option<String>) -> String {
    node.clone().unwrap_or_else(|| "-".into())
}

impl Render for TraceView {
    fn render(&self, out: &mut String) {
        let peer = |p: &PeerView| {
            let place = match &p.node {
                Some(node) => format!("{} on {node}", p.address),
                None => p.address.clone(),
            };
            format!(
                "{} [{place}] (identity {} on {}: {})",
                p.name,
                p.identity,
                p.identity_node,
                labels_cell(&p.labels)
            )
        };
        let verdict = match (&self.verdict, &self.undecided) {
            (Verdict::Allowed, _) => "ALLOWED".to_owned(),
            (Verdict::Denied, _) => "DENIED".to_owned(),
            (Verdict::Undecided, Some(s)) => format!(
                "UNDECIDED here ({} decided on node {})",
                s.direction.to_ascii_lowercase(),
                node_cell(&s.node)
            ),
            (Verdict::Undecided, None) => "UNDECIDED here".to_owned(),
        };
        let mut head = Table::bare();
        head.row(vec!["Verdict:".into(), verdict]);
        head.row(vec!["From:".into(), peer(&self.from)]);
        head.row(vec!["To:".into(), peer(&self.to)]);
        head.row(vec![
            "Port:".into(),
            format!("{}/{}", self.port, self.protocol.name()),
        ]);
        let deciding = match (&self.deciding, self.verdict) {
            (Some(s), _) => format!(
                "{} ({} at {} on {})",
                step_cell(s),
                s.direction,
                s.endpoint,
                node_cell(&s.node)
            ),
            (None, Verdict::Undecided) => {
                "not known here: trace without --node in the mesh, or on that node".into()
            }
            (None, _) => "none (no policy applies)".into(),
        };
        head.row(vec!["Decided by:".into(), deciding]);
        out.push_str(&head.to_string());
        out.push('\n');
        let mut steps = Table::new(&["STEP", "NODE", "ENDPOINT", "VERDICT", "POLICY", "RULE"]);
        for s in &self.steps {
            let endpoint = match &s.pod {
                Some(pod) => format!("{pod} {}", s.endpoint),
                None => s.endpoint.clone(),
            };
            steps.row(vec![
                s.direction.clone(),
                node_cell(&s.node),
                endpoint,
                s.verdict.clone(),
                or_dash(s.policy.as_deref().unwrap_or_default()),
                or_dash(s.rule.as_deref().unwrap_or_default()),
            ]);
        }
        out.push_str(&steps.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(direction: &str, verdict: &str, policy: Option<&str>) -> StepView {
        StepView {
            direction: direction.into(),
            node: Some("node-1".into()),
            endpoint: "10.244.1.2".into(),
            pod: None,
            verdict: verdict.into(),
            policy: policy.map(str::to_owned),
            rule: policy.map(|_| "Ingress[0]".to_owned()),
            peer_identity: 256,
        }
    }

    fn verdict_of(egress: &str, ingress: &str) -> Verdict {
        Verdict::combine(&[step("EGRESS", egress, None), step("INGRESS", ingress, None)])
    }

    #[test]
    fn one_verdict_from_two_steps_never_allowed_while_a_step_is_elsewhere() {
        use Verdict::*;
        let passing = ["ALLOWED", "AUDIT", "NOT_ENFORCED", "NO_ENDPOINT"];
        for egress in passing {
            for ingress in passing {
                assert_eq!(verdict_of(egress, ingress), Allowed, "{egress} {ingress}");
            }
            assert_eq!(verdict_of(egress, "NOT_LOCAL"), Undecided, "{egress}");
            assert_eq!(verdict_of("NOT_LOCAL", egress), Undecided, "{egress}");
            for deny in ["DENIED", "DEFAULT_DENIED"] {
                assert_eq!(verdict_of(egress, deny), Denied);
                assert_eq!(verdict_of(deny, egress), Denied);
            }
        }
        // A denial here decides even if the other step is elsewhere.
        assert_eq!(verdict_of("DENIED", "NOT_LOCAL"), Denied);
        assert_eq!(verdict_of("NOT_LOCAL", "DEFAULT_DENIED"), Denied);
    }

    #[test]
    fn the_deciding_step_is_the_denial_or_the_last_allowing_rule() {
        let denied = [
            step("EGRESS", "NOT_ENFORCED", None),
            step("INGRESS", "DENIED", Some("p")),
        ];
        assert_eq!(
            deciding_step(Verdict::Denied, &denied).unwrap().direction,
            "INGRESS"
        );
        let allowed = [
            step("EGRESS", "ALLOWED", Some("e")),
            step("INGRESS", "NOT_ENFORCED", None),
        ];
        assert_eq!(
            deciding_step(Verdict::Allowed, &allowed).unwrap().direction,
            "EGRESS"
        );
        let open = [
            step("EGRESS", "NOT_ENFORCED", None),
            step("INGRESS", "NOT_ENFORCED", None),
        ];
        assert!(deciding_step(Verdict::Allowed, &open).is_none());
    }

    #[test]
    fn an_undecided_trace_names_the_node_that_decides() {
        let peer = PeerView {
            name: "tr/a".into(),
            address: "10.244.1.2".into(),
            pod: Some("tr/a".into()),
            node: Some("node-1".into()),
            identity: 256,
            identity_node: "node-1".into(),
            labels: vec![],
        };
        let mut elsewhere = step("INGRESS", "NOT_LOCAL", None);
        elsewhere.node = Some("node-2".into());
        let view = TraceView::new(
            peer.clone(),
            peer,
            (8080, Protocol::Tcp),
            vec![step("EGRESS", "ALLOWED", Some("e")), elsewhere],
        );
        assert_eq!(view.verdict, Verdict::Undecided);
        assert!(view.deciding.is_none());
        let mut text = String::new();
        view.render(&mut text);
        assert!(
            text.contains("UNDECIDED here (ingress decided on node node-2)"),
            "{text}"
        );
    }
}
