//! GossipSub decision layer: mesh and fan-out bookkeeping, seen-cache, message cache.
//!
//! The Rust twin of `neonet.core.gossip` (same results and errors for the same calls;
//! that module's docstring documents the algorithms, the deterministic random source and
//! the heartbeat order, which this module follows step by step). Plain data structures
//! for the GossipSub router: no I/O, no protobufs; time (`now`, seconds) and randomness
//! (`seed`) are arguments.
//!
//! Spec: libp2p/specs `pubsub/gossipsub` v1.0 (router state, JOIN/LEAVE, message
//! processing, heartbeat, message cache) and v1.1 (explicit peers, PRUNE backoff, flood
//! publishing, adaptive gossip, outbound quotas, score thresholds, opportunistic
//! grafting, spam protection).

pub mod mcache;
pub mod mesh;
pub mod rng;
pub mod seen;

pub use mcache::MessageCache;
pub use mesh::{GossipParams, GraftVerdict, Heartbeat, MeshState, PeerHandle, PeerProtocol};
pub use rng::SplitMix64;
pub use seen::SeenCache;

use crate::Error;

/// Upper bound (exclusive) of every count parameter, shared with the Python twin.
pub const MAX_COUNT: u64 = 1 << 32;

pub(crate) fn check_count(name: &str, value: u64, minimum: u64) -> Result<usize, Error> {
    if value < minimum || value >= MAX_COUNT {
        return Err(Error::InvalidArgument(format!(
            "{name} out of range [{minimum}, 2**32)"
        )));
    }
    Ok(value as usize)
}

pub(crate) fn check_time(now: f64) -> Result<(), Error> {
    if now.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "now must be a finite number of seconds".into(),
        ))
    }
}
