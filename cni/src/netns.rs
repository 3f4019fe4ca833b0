//! Running netlink work inside a pod's network namespace.
//!
//! `setns` changes the namespace of the calling thread only, and a netlink
//! socket talks to the namespace it was created in. So the work runs on a
//! dedicated thread that enters the namespace first and then opens its own
//! netlink connection; the thread ends afterwards, so no thread of ours is
//! ever left in the wrong namespace.

use std::{fs::File, future::Future, path::Path};

use nix::sched::{CloneFlags, setns};
use rtnetlink::Handle;
use tokio::sync::oneshot;

use crate::error::{CniError, kernel_refused};

/// Opens `CNI_NETNS`. A path that does not exist is the runtime's input
/// error (code 4), not a kernel failure.
pub fn open(path: &Path) -> Result<File, CniError> {
    File::open(path).map_err(|e| {
        CniError::InvalidEnvValue(format!(
            "CNI_NETNS={}: cannot open the network namespace: {e}",
            path.display()
        ))
    })
}

/// Runs `work` with a netlink handle inside the namespace `netns`.
pub async fn run_in<F, Fut, T>(netns: &File, work: F) -> Result<T, CniError>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, CniError>>,
    T: Send + 'static,
{
    let netns = netns
        .try_clone()
        .map_err(|e| kernel_refused(format!("cannot duplicate the netns handle: {e}")))?;
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-cni-netns".to_owned())
        .spawn(move || {
            let _ = tx.send(enter_and_run(&netns, work));
        })
        .map_err(|e| kernel_refused(format!("cannot start the netns thread: {e}")))?;
    rx.await
        .map_err(|_| kernel_refused("the netns thread panicked"))?
}

fn enter_and_run<F, Fut, T>(netns: &File, work: F) -> Result<T, CniError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, CniError>>,
{
    setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| kernel_refused(format!("cannot enter the pod's network namespace: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| kernel_refused(format!("cannot start a runtime in the netns: {e}")))?;
    runtime.block_on(async move {
        let handle = crate::netlink::connect()?;
        work(handle).await
    })
}
