//! The CNI protocol around the commands: read `CNI_COMMAND` and the other
//! variables, the config on stdin, run the command, write the result or the
//! spec's error JSON on stdout.
//!
//! rscni-plugin's `Plugin::run` would do this, but it decodes the config in
//! one step (so a missing `type` is code 6 rather than 7), answers errors
//! in its own version rather than the config's, and reads the process
//! environment directly; its types (rscni-types) are used throughout.

use std::io::{Read, Write};

use rscni_types::{types::Cmd, version::SpecVersion};
use tracing::{error, info_span};

use crate::{
    commands,
    config::{self, PluginConfig},
    env::{self, ContainerEnv},
    error::{CniError, error_json},
    logging, result,
};

/// Runs one invocation; `true` on success. `get` reads an environment
/// variable.
pub fn run(
    get: &impl Fn(&str) -> Option<String>,
    stdin: &mut impl Read,
    stdout: &mut impl Write,
) -> bool {
    let mut input = Vec::new();
    let (output, ok) = match dispatch(get, stdin, &mut input) {
        Ok(out) => (out, true),
        Err(err) => {
            let version = config::declared_version(&input).unwrap_or(SpecVersion::CURRENT);
            (error_json(version, &err), false)
        }
    };
    let written = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush());
    ok && written.is_ok()
}

fn dispatch(
    get: &impl Fn(&str) -> Option<String>,
    stdin: &mut impl Read,
    input: &mut Vec<u8>,
) -> Result<String, CniError> {
    let cmd = env::command(get)?;
    if cmd == Cmd::Version {
        return Ok(commands::version::run());
    }
    stdin
        .read_to_end(input)
        .map_err(|e| CniError::IOFailure(format!("cannot read the config from stdin: {e}")))?;
    let container = match cmd {
        Cmd::Add | Cmd::Del | Cmd::Check => Some(ContainerEnv::read(cmd, get)?),
        _ => None,
    };
    let config = config::parse(input, cmd)?;
    logging::init(&config.log_file, &config.log_level);
    let span = info_span!(
        "cni",
        command = <&str>::from(cmd),
        container = container.as_ref().map(|c| c.container_id.to_string()),
        ifname = container.as_ref().map(|c| c.ifname.to_string()),
    );
    let _entered = span.enter();
    let outcome = execute(cmd, &config, container.as_ref());
    if let Err(e) = &outcome {
        error!(code = u32::from(e), error = %e, "failed");
    }
    outcome
}

fn execute(
    cmd: Cmd,
    config: &PluginConfig,
    container: Option<&ContainerEnv>,
) -> Result<String, CniError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CniError::IOFailure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        match (cmd, container) {
            (Cmd::Add, Some(env)) => {
                let res = commands::add::run(config, env).await?;
                result::render(config.version, res)
            }
            (Cmd::Del, Some(env)) => commands::del::run(config, env)
                .await
                .map(|()| String::new()),
            (Cmd::Check, Some(env)) => commands::check::run(config, env)
                .await
                .map(|()| String::new()),
            (Cmd::Status, _) => commands::status::run(config).await.map(|()| String::new()),
            (Cmd::Gc, _) => commands::gc::run(config).await.map(|()| String::new()),
            // VERSION returned earlier; container commands always carry env.
            _ => Ok(commands::version::run()),
        }
    })
}
