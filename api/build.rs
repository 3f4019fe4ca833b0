//! Generates the gRPC code from `proto/` (needs `protoc`, from Debian's
//! protobuf-compiler, which `make setup` installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().compile_protos(
        &[
            "proto/sluice/agent/v1/agent.proto",
            "proto/sluice/relay/v1/relay.proto",
            "proto/sluice/insights/v1/insights.proto",
        ],
        &["proto"],
    )?;
    Ok(())
}
