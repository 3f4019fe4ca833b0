//! The analyzers: Istio's (by their Istio names) and Sluice's own.
//!
//! Each analyzer is a plain function over a [`Context`]; the registry below
//! names them so `--analyzers` can select them.

mod authz;
mod cluster;
mod deployment;
mod deprecation;
mod destinationrule;
mod envoyfilter;
mod gateway;
mod injection;
mod service;
mod serviceentry;
mod services;
mod sidecar;
mod sluice;
mod telemetry;
pub mod util;
mod virtualservice;
mod vsrules;
mod webhooks;
mod x509;

use crate::context::Context;

/// A named analyzer.
pub struct AnalyzerDef {
    /// Istio's analyzer name (`gateway.IngressGatewayPortAnalyzer`) or Sluice's (`sluice.*`).
    pub name: &'static str,
    pub description: &'static str,
    pub run: fn(&mut Context),
}

const fn def(name: &'static str, description: &'static str, run: fn(&mut Context)) -> AnalyzerDef {
    AnalyzerDef {
        name,
        description,
        run,
    }
}

/// Every analyzer, in the order they run.
pub static ALL: &[AnalyzerDef] = &[
    def(
        "destinationrule.CaCertificateAnalyzer",
        "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
        destinationrule::ca_certificates,
    ),
    def(
        "destinationrule.SubsetSelectPodAnalyzer",
        "Checks if pods are selected by subsets in destination rules",
        destinationrule::subset_select_pods,
    ),
    def(
        "gateway.IngressGatewayPortAnalyzer",
        "Checks a gateway's ports against the gateway's Kubernetes service ports",
        gateway::ingress_gateway_port,
    ),
    def(
        "gateway.ConflictingGatewayAnalyzer",
        "Checks a gateway's selector, port number and hosts",
        gateway::conflicting_gateways,
    ),
    def(
        "gateway.SecretAnalyzer",
        "Checks a gateway's referenced secrets for correctness",
        gateway::secrets,
    ),
    def(
        "gateway.CertificateAnalyzer",
        "Checks a gateway certificate",
        gateway::duplicate_certificates,
    ),
    def(
        "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
        "Checks if multiple virtual services associated with the mesh gateway have conflicting hosts",
        virtualservice::conflicting_mesh_gateway_hosts,
    ),
    def(
        "virtualservice.DestinationHostAnalyzer",
        "Checks the destination hosts associated with each virtual service",
        virtualservice::destination_hosts,
    ),
    def(
        "virtualservice.DestinationRuleAnalyzer",
        "Checks the destination rules associated with each virtual service",
        virtualservice::destination_rules,
    ),
    def(
        "virtualservice.GatewayAnalyzer",
        "Checks the gateways associated with each virtual service",
        virtualservice::gateways,
    ),
    def(
        "virtualservice.JWTClaimRouteAnalyzer",
        "Checks the VirtualService using JWT claim based routing has corresponding RequestAuthentication",
        virtualservice::jwt_claim_route,
    ),
    def(
        "service.PortNameAnalyzer",
        "Checks the port names associated with each service",
        service::port_names,
    ),
    def(
        "applicationUID.Analyzer",
        "Checks invalid application UID",
        service::application_uid,
    ),
    def(
        "serviceentry.Analyzer",
        "Checks the validity of ServiceEntry",
        serviceentry::protocol_addresses,
    ),
    def(
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
        "Checks if multiple ServiceEntries define the same host and port with different protocols",
        serviceentry::conflicting_protocols,
    ),
    def(
        "externalcontrolplane.ExternalControlPlaneAnalyzer",
        "Checks that the remote IstioOperator resources reference an external control plane",
        webhooks::external_control_plane,
    ),
    def(
        "envoyfilter.EnvoyPatchAnalyzer",
        "Checks an envoyFilters",
        envoyfilter::envoy_patches,
    ),
    def(
        "injection.Analyzer",
        "Checks conditions related to Istio sidecar injection",
        injection::injection,
    ),
    def(
        "injection.ImageAnalyzer",
        "Checks the image of auto-injection configured with the running proxies on pods",
        injection::proxy_image,
    ),
    def(
        "injection.ImageAutoAnalyzer",
        "Makes sure that Pods and Deployments with `image: auto` are going to be injected",
        injection::image_auto,
    ),
    def(
        "sidecar.SelectorAnalyzer",
        "Validates that sidecars that define a workload selector match at least one pod, and that there aren't multiple sidecar resources that select overlapping pods",
        sidecar::selectors,
    ),
    def(
        "deployment.MultiServiceAnalyzer",
        "Checks association between services and pods",
        deployment::multi_service,
    ),
    def(
        "authn.BlockedCIDRsAnalyzer",
        "Checks that BLOCKED_CIDRS_IN_JWKS_URIS is configured on istiod when RequestAuthentication resources exist",
        deployment::blocked_cidrs,
    ),
    def(
        "telemetry.ProviderAnalyzer",
        "Validates that providers in telemetry resource is valid",
        telemetry::providers,
    ),
    def(
        "telemetry.SelectorAnalyzer",
        "Validates that telemetries that define a selector match at least one pod, and that there aren't multiple telemetry resources that select overlapping pods",
        telemetry::selectors,
    ),
    def(
        "telemetry.DefaultSelectorAnalyzer",
        "Validates that there aren't multiple telemetry resources that have no selector",
        telemetry::default_selectors,
    ),
    def(
        "telemetry.LightstepAnalyzer",
        "Validates that lightstep provider is still used",
        telemetry::lightstep,
    ),
    def(
        "meshnetworks.MeshNetworksAnalyzer",
        "Check the validity of MeshNetworks in the cluster",
        cluster::mesh_networks,
    ),
    def(
        "k8sgateway.CRDVersionAnalyzer",
        "Checks Gateway API CRDs are at the minimum version required by this Istio version",
        cluster::gateway_api_crd_version,
    ),
    def(
        "k8sgateway.SelectorAnalyzer",
        "Check that selectors are effective for Kubernetes gateway",
        cluster::k8s_gateway_selectors,
    ),
    def(
        "conditions.ConditionAnalyzer",
        "Checks for negative status conditions on resources",
        cluster::conditions,
    ),
    def(
        "webhook.Analyzer",
        "Checks the validity of Istio webhooks",
        webhooks::injection_webhooks,
    ),
    def(
        "deprecation.DeprecationAnalyzer",
        "Checks for deprecated Istio types and fields",
        deprecation::deprecations,
    ),
    def(
        "auth.AuthorizationPoliciesAnalyzer",
        "Checks the validity of authorization policies",
        authz::authorization_policies,
    ),
    def(
        "schema.ValidationAnalyzer.VirtualService",
        "Runs the rule-reachability checks of Istio's VirtualService validation",
        vsrules::virtual_service_rules,
    ),
    def(
        "sluice.PolicySelectorAnalyzer",
        "SLC0001: NetworkPolicies and Sluice policies whose pod selector matches no workload",
        sluice::policy_selects_nothing,
    ),
    def(
        "sluice.DenyShadowAnalyzer",
        "SLC0002: Sluice policy allow rules shadowed by a deny rule",
        sluice::shadowed_by_deny,
    ),
    def(
        "sluice.IpBlockAnalyzer",
        "SLC0003: ipBlocks overlapping the pod or service CIDR",
        sluice::ip_block_overlaps_cluster,
    ),
    def(
        "sluice.NamedPortAnalyzer",
        "SLC0004: named ports in ingress rules that no selected pod declares",
        sluice::named_ports,
    ),
    def(
        "sluice.ServiceBackendAnalyzer",
        "SLC0005/SLC0006: Services selecting no pods or targeting undeclared ports",
        sluice::service_backends,
    ),
    def(
        "sluice.EgressDnsAnalyzer",
        "SLC0007: egress isolation without a DNS (port 53) allowance",
        sluice::egress_without_dns,
    ),
    def(
        "sluice.MeshDenyAnalyzer",
        "SLC0008: NetworkPolicies allowing what an AuthorizationPolicy DENY denies",
        sluice::network_policy_allows_mesh_denied,
    ),
    def(
        "sluice.MeshAllowAnalyzer",
        "SLC0009: AuthorizationPolicy ALLOW rules that NetworkPolicies block",
        sluice::mesh_allowed_blocked,
    ),
];
