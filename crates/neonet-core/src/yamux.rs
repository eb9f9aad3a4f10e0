//! The sans-I/O yamux engine (`/yamux/1.0.0`), twin of `neonet.core.yamux.YamuxConnection`.
//!
//! Implements libp2p/specs yamux/README.md (the hashicorp yamux framing, flow control and
//! session termination, plus the libp2p ACK-backlog recommendation). The behaviour at
//! every edge the spec leaves open is the pure twin's, documented in its module
//! docstring; this module follows it rule for rule, with the same error texts, so the
//! two backends are interchangeable (the differential tests feed both the same bytes
//! and commands and require equal events, output and errors).
//!
//! Received bytes are appended to one input buffer and parsed in place; the payload of
//! a `DataReceived` event is a range of that buffer (`payload`), valid until the next
//! receive call, so the binding copies each payload once, straight into its Python
//! object. Output frames accumulate in one buffer (`pending_output`).
//!
//! Files: this one holds the limits, [`Config`], [`Event`], [`Statistics`] and the
//! [`YamuxConnection`] state with its constructor; `yamux/frame.rs` the wire-format
//! constants (version, header size, frame types, flags, GoAway codes); `yamux/stream.rs`
//! the per-stream lifecycle (states, transitions) and windows; `yamux/receive.rs` the
//! receive path (frame parsing, inbound streams, id gaps, replies) and
//! `yamux/commands.rs` the application's commands and output, each in an impl block
//! of its own; `yamux/tests.rs` the unit tests.

mod commands;
mod frame;
mod receive;
mod stream;
#[cfg(test)]
mod tests;

use crate::Error;
pub use frame::{
    FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN, GO_AWAY_INTERNAL_ERROR, GO_AWAY_NORMAL,
    GO_AWAY_PROTOCOL_ERROR, HEADER_SIZE, TYPE_DATA, TYPE_GO_AWAY, TYPE_PING, TYPE_WINDOW_UPDATE,
    VERSION,
};
use std::collections::HashMap;
use stream::Stream;

/// The spec's initial window, assumed by both sides.
pub const DEFAULT_WINDOW: u32 = 256 * 1024;
pub const MAX_U32: u64 = u32::MAX as u64;
/// Frames the peer makes us send (ACKs, pongs, RSTs) that may pile up between two
/// `clear_output` calls before the peer counts as flooding us.
pub const MAX_QUEUED_REPLIES: usize = 16384;

const FAILED_MESSAGE: &str = "the connection failed with a protocol error and is closed";
/// Output capacity kept between calls; a bigger buffer (after a bulk write) is released.
const KEPT_OUTPUT_CAPACITY: usize = 1 << 20;

/// Limits and windows of one connection; the defaults follow the spec and go-yamux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub initial_window: u64,
    pub max_receive_window: u64,
    pub max_streams: usize,
    pub max_ack_backlog: usize,
    pub max_frame_payload: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            initial_window: 256 * 1024,
            max_receive_window: 16 * 1024 * 1024,
            max_streams: 1024,
            max_ack_backlog: 256,
            max_frame_payload: 64 * 1024,
        }
    }
}

impl Config {
    /// The checks of `YamuxConfig.__post_init__`, with its texts.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |message: &str| Err(Error::InvalidArgument(message.to_string()));
        if !(u64::from(DEFAULT_WINDOW)..=MAX_U32).contains(&self.initial_window) {
            return invalid("initial_window must be in [262144, 2**32 - 1]");
        }
        if !(self.initial_window..=MAX_U32).contains(&self.max_receive_window) {
            return invalid("max_receive_window must be in [initial_window, 2**32 - 1]");
        }
        if self.max_streams < 1 || self.max_ack_backlog < 1 {
            return invalid("max_streams and max_ack_backlog must be at least 1");
        }
        if !(1..=MAX_U32).contains(&self.max_frame_payload) {
            return invalid("max_frame_payload must be in [1, 2**32 - 1]");
        }
        Ok(())
    }
}

/// What `receive_data` reports, in order. `DataReceived` names a range of the input
/// buffer (see `YamuxConnection::payload`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    StreamOpened(u32),
    StreamAcknowledged(u32),
    DataReceived {
        stream_id: u32,
        start: usize,
        end: usize,
    },
    StreamEnded(u32),
    StreamReset(u32),
    SendWindowIncreased(u32),
    PongReceived(u32),
    GoAwayReceived(u32),
    StreamClosed(u32),
}

/// A snapshot of the connection's counters (`YamuxStatistics` in Python).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statistics {
    pub open_streams: usize,
    pub inbound_streams: usize,
    pub outbound_streams: usize,
    pub ack_backlog: usize,
    pub bytes_buffered: usize,
    pub partial_frame_bytes: usize,
}

/// The last queued frame, if later flags may still be merged into it.
#[derive(Debug, Clone, Copy)]
struct Mergeable {
    output_len: usize,
    stream_id: u32,
    frame_type: u8,
    flags: u16,
    length: u32,
}

fn violation(message: String) -> Error {
    Error::RemoteProtocol {
        message,
        code: Some(GO_AWAY_PROTOCOL_ERROR),
    }
}

fn local(message: String) -> Error {
    Error::LocalProtocol(message)
}

/// One side of a yamux session, as a sans-I/O state machine.
pub struct YamuxConnection {
    config: Config,
    own_parity: u32,
    extra_window: u32,
    streams: HashMap<u32, Stream>,
    next_outbound_id: u64,
    /// The peer's highest stream id so far; starts two below its first id.
    highest_inbound_id: i64,
    outbound_streams: usize,
    /// Peer ids below `highest_inbound_id` whose SYN has not arrived yet, as sorted
    /// disjoint ranges [start, end] of ids of the peer's parity; at most `max_streams`.
    gap_starts: Vec<i64>,
    gap_ends: Vec<i64>,
    ack_backlog: usize,
    output: Vec<u8>,
    mergeable: Option<Mergeable>,
    queued_replies: usize,
    /// Received bytes: parsed frames (whose payloads the current events name) up to
    /// `parsed`, then at most one incomplete frame.
    input: Vec<u8>,
    parsed: usize,
    events: Vec<Event>,
    /// StreamClosed for streams our own commands released, reported next time.
    unreported_closes: Vec<u32>,
    failed: bool,
    go_away_sent: bool,
    go_away_received: bool,
}

impl YamuxConnection {
    pub fn new(is_client: bool, config: Config) -> Result<Self, Error> {
        config.validate()?;
        let extra_window = (config.initial_window - u64::from(DEFAULT_WINDOW)) as u32;
        Ok(Self {
            config,
            own_parity: u32::from(is_client),
            extra_window,
            streams: HashMap::new(),
            next_outbound_id: if is_client { 1 } else { 2 },
            highest_inbound_id: if is_client { 0 } else { -1 },
            outbound_streams: 0,
            gap_starts: Vec::new(),
            gap_ends: Vec::new(),
            ack_backlog: 0,
            output: Vec::new(),
            mergeable: None,
            queued_replies: 0,
            input: Vec::new(),
            parsed: 0,
            events: Vec::new(),
            unreported_closes: Vec::new(),
            failed: false,
            go_away_sent: false,
            go_away_received: false,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}
