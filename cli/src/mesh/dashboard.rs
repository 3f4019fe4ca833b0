//! `sluice dashboard`: the local mesh's web UI from this machine. The
//! dashboard runs in sluice-control inside the management namespace
//! (loopback, no authentication); `up` starts a loopback-only forwarder
//! to it, whose URL this prints. `--listen` forwards in the foreground
//! on an address of your choice instead (same forwarder code).

use std::{net::SocketAddr, process::ExitCode};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{
    control::{ControlState, DASHBOARD_ADDR},
    forward,
    layout::{Layout, netns_path},
    process,
};

pub const LONG_ABOUT: &str = "Print the URL of the local mesh's dashboard (the management \
    plane's web UI), or forward it to an address of this machine's loopback.

The mesh's sluice-control serves the dashboard without authentication inside its \
management namespace; `sluice mesh up` starts a forwarder on 127.0.0.1 (a free port). \
Every page carries an \"authentication disabled\" banner. See docs/dashboard.md.

Examples:
  sluice dashboard                           # the default mesh's URL
  sluice dashboard --mesh dev                # the mesh `sluice mesh up --name dev`
  sluice dashboard --listen 127.0.0.1:8090   # forward on a fixed port until Ctrl-C";

#[derive(Args, Debug)]
pub struct DashboardArgs {
    /// The local mesh (`sluice mesh up --name NAME`; `default` for the
    /// unnamed one).
    #[arg(long, value_name = "NAME", default_value = super::layout::DEFAULT_NAME)]
    mesh: String,
    /// Forward the dashboard on this loopback address (in the foreground,
    /// until interrupted) instead of printing the mesh's forwarder URL.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub fn run(args: DashboardArgs) -> ExitCode {
    match run_inner(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: &DashboardArgs) -> Result<()> {
    let layout = Layout::new(&args.mesh)?;
    let state = ControlState::load(&layout)?.with_context(|| {
        format!(
            "mesh {:?} has no management plane: it is not up, or was started with \
             --no-control-plane",
            args.mesh
        )
    })?;
    if let Some(listen) = args.listen {
        if !listen.ip().is_loopback() {
            bail!(
                "--listen {listen} is not a loopback address: the mesh's dashboard has no \
                 authentication"
            );
        }
        let listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("cannot listen on {listen}"))?;
        println!(
            "dashboard of mesh {:?} at http://{}/ (Ctrl-C to stop)",
            args.mesh,
            listener.local_addr()?
        );
        return forward::serve(
            listener,
            &netns_path(&layout.mgmt_netns()),
            DASHBOARD_ADDR.parse().expect("a socket address"),
        );
    }
    match (&state.dashboard_url, &state.dashboard_forwarder) {
        (Some(url), Some(p)) if process::is_alive(p.pid, p.start_time) => {
            println!("{url}/");
            Ok(())
        }
        _ => bail!(
            "the dashboard forwarder of mesh {:?} is not running (a mesh from before the \
             dashboard?): use `sluice dashboard --listen 127.0.0.1:8090`",
            args.mesh
        ),
    }
}
