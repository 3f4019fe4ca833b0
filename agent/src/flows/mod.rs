//! Flow visibility: events from the datapath's ring buffer, decoded into
//! flows with names (pods, identity labels, policy rules, drop reasons),
//! kept in a bounded buffer and fanned out to followers.
//!
//! - [`decode`]: a raw event → an API flow (pure, given the lookups);
//! - [`buffer`]: the bounded buffer and the follower channel;
//! - [`filter`]: which flows a request wants (pure);
//! - [`reader`]: the task draining the ring buffer.

pub mod buffer;
pub mod decode;
pub mod filter;
pub mod reader;
