//! The last N flows, and a broadcast channel for followers. A follower
//! that falls behind misses flows (it is told how many) rather than
//! slowing the reader down.

use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard},
};

use sluice_api::agent::v1::Flow;
use tokio::sync::broadcast;

/// Default number of flows kept.
pub const DEFAULT_FLOW_BUFFER: usize = 8_192;

pub struct FlowBuffer {
    flows: Mutex<VecDeque<Flow>>,
    capacity: usize,
    live: broadcast::Sender<Flow>,
}

impl FlowBuffer {
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(capacity.max(1));
        Self {
            flows: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity: capacity.max(1),
            live,
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Flow>> {
        self.flows.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, flow: Flow) {
        let mut flows = self.lock();
        if flows.len() == self.capacity {
            flows.pop_front();
        }
        flows.push_back(flow.clone());
        // No follower is fine.
        let _ = self.live.send(flow);
    }

    /// The buffered flows (oldest first) and a receiver for what comes
    /// after them, taken together so nothing falls in between.
    pub fn snapshot_and_follow(&self) -> (Vec<Flow>, broadcast::Receiver<Flow>) {
        let flows = self.lock();
        let receiver = self.live.subscribe();
        (flows.iter().cloned().collect(), receiver)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(n: u64) -> Flow {
        Flow {
            time_ns: n,
            ..Flow::default()
        }
    }

    #[test]
    fn keeps_only_the_newest_flows() {
        let buffer = FlowBuffer::new(3);
        for n in 0..5 {
            buffer.push(flow(n));
        }
        let (flows, _) = buffer.snapshot_and_follow();
        assert_eq!(
            flows.iter().map(|f| f.time_ns).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn followers_get_what_comes_after_the_snapshot() {
        let buffer = FlowBuffer::new(8);
        buffer.push(flow(1));
        let (before, mut live) = buffer.snapshot_and_follow();
        buffer.push(flow(2));
        assert_eq!(before.len(), 1);
        assert_eq!(live.try_recv().unwrap().time_ns, 2);
    }
}
