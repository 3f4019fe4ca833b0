//! `sluice-operator`: see the library docs.
use clap::Parser;
use sluice_operator::{config::Config, run::run};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // `sluice-operator relay …` runs the relay role; anything else is the
    // controllers' flags.
    if std::env::args().nth(1).as_deref() == Some("relay") {
        let args = sluice_operator::relay::RelayArgs::parse_from(std::env::args().skip(1));
        return sluice_operator::relay::run(args).await;
    }
    run(Config::parse()).await
}
