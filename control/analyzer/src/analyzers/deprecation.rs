//! Istio's deprecation analyzer: removed CRD types and deprecated fields.

use super::util::{array_at, as_u64, str_at};
use crate::{context::Context, kinds, message::istio};

/// Istio's removed RBAC custom resource types.
const REMOVED_CRDS: &[(&str, &str)] = &[
    ("rbac.istio.io", "ClusterRbacConfig"),
    ("rbac.istio.io", "RbacConfig"),
    ("rbac.istio.io", "ServiceRole"),
    ("rbac.istio.io", "ServiceRoleBinding"),
];

/// IST0002 for `fault.delay.percent` in VirtualServices, `outboundTrafficPolicy.egressProxy`
/// in Sidecars, and CRDs of removed Istio types.
pub fn deprecations(ctx: &mut Context) {
    let mut reports = Vec::new();
    for vs in ctx.snapshot.of(kinds::VIRTUAL_SERVICE) {
        for route in array_at(&vs.body, "/spec/http") {
            let percent = route
                .pointer("/fault/delay/percent")
                .and_then(as_u64)
                .unwrap_or(0);
            if percent > 0 {
                let text = "HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage";
                reports.push((vs, text.to_string()));
            }
        }
    }
    for sidecar in ctx.snapshot.of(kinds::SIDECAR) {
        if !sidecar
            .at("/spec/outboundTrafficPolicy/egressProxy")
            .is_null()
        {
            reports.push((
                sidecar,
                "OutboundTrafficPolicy.EgressProxy ignored".to_string(),
            ));
        }
    }
    for crd in ctx.snapshot.of(kinds::CRD) {
        let group = str_at(&crd.body, "/spec/group");
        let kind = str_at(&crd.body, "/spec/names/kind");
        if REMOVED_CRDS.contains(&(group, kind)) {
            reports.push((
                crd,
                format!("Custom resource type {group} {kind} is removed"),
            ));
        }
    }
    for (resource, text) in reports {
        ctx.report(istio::DEPRECATED, resource, vec![text]);
    }
}
