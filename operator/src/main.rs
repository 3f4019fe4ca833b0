//! `sluice-operator`: see the library docs.
use clap::Parser;
use sluice_operator::{config::Config, run::run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    run(Config::parse()).await
}
