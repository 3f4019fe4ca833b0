//! Which flows an `ObserveFlows` request wants.

use sluice_api::agent::v1::{Flow, ObserveFlowsRequest};

fn either_end(flow: &Flow, test: impl Fn(&sluice_api::agent::v1::FlowEndpoint) -> bool) -> bool {
    flow.source.as_ref().is_some_and(&test) || flow.destination.as_ref().is_some_and(&test)
}

/// Whether `flow` passes every filter `request` sets.
pub fn matches(request: &ObserveFlowsRequest, flow: &Flow) -> bool {
    if !request.namespace.is_empty()
        && !either_end(flow, |e| {
            e.pod.split('/').next() == Some(request.namespace.as_str())
        })
    {
        return false;
    }
    if !request.pod.is_empty() && !either_end(flow, |e| e.pod == request.pod) {
        return false;
    }
    if request.identity != 0 && !either_end(flow, |e| e.identity == request.identity) {
        return false;
    }
    if !request.verdict.is_empty() && !flow.verdict.eq_ignore_ascii_case(&request.verdict) {
        return false;
    }
    if !request.reason.is_empty() && !flow.drop_reason.eq_ignore_ascii_case(&request.reason) {
        return false;
    }
    if request.port != 0
        && flow
            .destination
            .as_ref()
            .is_none_or(|d| d.port != request.port)
    {
        return false;
    }
    if !request.protocol.is_empty() && !flow.protocol.eq_ignore_ascii_case(&request.protocol) {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use sluice_api::agent::v1::FlowEndpoint;

    use super::*;

    fn flow() -> Flow {
        Flow {
            protocol: "TCP".into(),
            verdict: "DROPPED".into(),
            drop_reason: "POLICY_DENIED".into(),
            source: Some(FlowEndpoint {
                pod: "shop/web-1".into(),
                identity: 300,
                ..Default::default()
            }),
            destination: Some(FlowEndpoint {
                pod: "db/pg-0".into(),
                identity: 301,
                port: 5432,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn every_filter_narrows() {
        let all = ObserveFlowsRequest::default();
        assert!(matches(&all, &flow()));
        let want = |r: ObserveFlowsRequest| matches(&r, &flow());
        assert!(want(ObserveFlowsRequest {
            namespace: "db".into(),
            ..all.clone()
        }));
        assert!(!want(ObserveFlowsRequest {
            namespace: "kube".into(),
            ..all.clone()
        }));
        assert!(want(ObserveFlowsRequest {
            pod: "shop/web-1".into(),
            ..all.clone()
        }));
        assert!(want(ObserveFlowsRequest {
            identity: 301,
            ..all.clone()
        }));
        assert!(!want(ObserveFlowsRequest {
            identity: 7,
            ..all.clone()
        }));
        assert!(want(ObserveFlowsRequest {
            verdict: "dropped".into(),
            ..all.clone()
        }));
        assert!(!want(ObserveFlowsRequest {
            verdict: "FORWARDED".into(),
            ..all.clone()
        }));
        assert!(want(ObserveFlowsRequest {
            reason: "POLICY_DENIED".into(),
            ..all.clone()
        }));
        assert!(want(ObserveFlowsRequest {
            port: 5432,
            ..all.clone()
        }));
        assert!(!want(ObserveFlowsRequest {
            port: 80,
            ..all.clone()
        }));
        assert!(!want(ObserveFlowsRequest {
            protocol: "UDP".into(),
            ..all
        }));
    }
}
