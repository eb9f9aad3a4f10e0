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

use crate::Error;
use std::collections::HashMap;

pub const VERSION: u8 = 0;
pub const HEADER_SIZE: usize = 12;

pub const TYPE_DATA: u8 = 0x0;
pub const TYPE_WINDOW_UPDATE: u8 = 0x1;
pub const TYPE_PING: u8 = 0x2;
pub const TYPE_GO_AWAY: u8 = 0x3;

pub const FLAG_SYN: u16 = 0x1;
pub const FLAG_ACK: u16 = 0x2;
pub const FLAG_FIN: u16 = 0x4;
pub const FLAG_RST: u16 = 0x8;

pub const GO_AWAY_NORMAL: u32 = 0x0;
pub const GO_AWAY_PROTOCOL_ERROR: u32 = 0x1;
pub const GO_AWAY_INTERNAL_ERROR: u32 = 0x2;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    LocalClosed,  // we sent FIN; the peer may still send
    RemoteClosed, // the peer sent FIN; we may still send
    Closed,       // both sent FIN: released
    Reset,        // either sent RST: released
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    SendData,
    SendFin,
    SendRst,
    ReceiveData,
    ReceiveFin,
    ReceiveRst,
}

/// The whole stream lifecycle (the pure twin's `TRANSITIONS`). `None` is a protocol
/// error: `LocalProtocol` for our inputs, a stream reset for the peer's.
fn transition(state: State, input: Input) -> Option<State> {
    use Input::*;
    use State::*;
    match (state, input) {
        (Open, SendData) => Some(Open),
        (RemoteClosed, SendData) => Some(RemoteClosed),
        (Open, ReceiveData) => Some(Open),
        (LocalClosed, ReceiveData) => Some(LocalClosed),
        (Open, SendFin) => Some(LocalClosed),
        (RemoteClosed, SendFin) => Some(Closed),
        (Open, ReceiveFin) => Some(RemoteClosed),
        (LocalClosed, ReceiveFin) => Some(Closed),
        (Open | LocalClosed | RemoteClosed, SendRst | ReceiveRst) => Some(Reset),
        _ => None,
    }
}

fn can_send_data(state: State) -> bool {
    transition(state, Input::SendData).is_some()
}

fn can_receive_data(state: State) -> bool {
    transition(state, Input::ReceiveData).is_some()
}

#[derive(Debug)]
struct Stream {
    state: State,
    outbound: bool,
    awaiting_ack: bool,
    send_window: u64,
    /// Credit the peer still has, the window we aim to keep granted, and bytes handed
    /// to the application but not yet consumed: receive_window + unconsumed never
    /// exceeds receive_target.
    receive_window: u64,
    receive_target: u64,
    unconsumed: u64,
    peer_stalled: bool,
}

impl Stream {
    fn new(outbound: bool, receive_window: u64) -> Self {
        Self {
            state: State::Open,
            outbound,
            awaiting_ack: outbound,
            send_window: u64::from(DEFAULT_WINDOW),
            receive_window,
            receive_target: receive_window,
            unconsumed: 0,
            peer_stalled: false,
        }
    }
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

    // --- receiving ---------------------------------------------------------------------

    /// Parse every whole frame of the carried-over partial frame plus `data`.
    /// On success the events are in `events()`; on a protocol violation GoAway is
    /// queued, the connection is dead and the events of this call are dropped.
    pub fn receive_data(&mut self, data: &[u8]) -> Result<(), Error> {
        self.compact_input();
        self.input.extend_from_slice(data);
        self.receive_appended()
    }

    /// Drop the bytes of the previous call's events; `input_mut` may then append.
    pub fn compact_input(&mut self) {
        if self.parsed > 0 {
            self.input.drain(..self.parsed);
            self.parsed = 0;
        }
        self.events.clear();
    }

    /// The input buffer, for a decryptor that appends plaintext to it directly
    /// (between `compact_input` and `receive_appended`).
    pub fn input_mut(&mut self) -> &mut Vec<u8> {
        &mut self.input
    }

    /// Parse what was appended to the input buffer since `compact_input`.
    pub fn receive_appended(&mut self) -> Result<(), Error> {
        if self.failed {
            return Err(local(FAILED_MESSAGE.to_string()));
        }
        self.events
            .extend(self.unreported_closes.drain(..).map(Event::StreamClosed));
        match self.parse_frames() {
            Ok(()) => Ok(()),
            Err(error) => {
                self.events.clear();
                if let Error::RemoteProtocol { code, .. } = &error {
                    self.fail(code.unwrap_or(GO_AWAY_PROTOCOL_ERROR));
                }
                Err(error)
            }
        }
    }

    /// The events of the last successful receive call.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The payload bytes a `DataReceived` event names.
    pub fn payload(&self, start: usize, end: usize) -> &[u8] {
        &self.input[start..end]
    }

    fn parse_frames(&mut self) -> Result<(), Error> {
        let mut position = self.parsed;
        let end = self.input.len();
        let result = loop {
            if end - position < HEADER_SIZE {
                break Ok(());
            }
            let header = &self.input[position..position + HEADER_SIZE];
            let version = header[0];
            let frame_type = header[1];
            let flags = u16::from_be_bytes([header[2], header[3]]);
            let stream_id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let length = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
            if version != VERSION {
                break Err(violation(format!("unsupported yamux version {version}")));
            }
            match frame_type {
                TYPE_DATA => {
                    let payload_start = position + HEADER_SIZE;
                    let frame_end = payload_start + length as usize;
                    if flags == 0 {
                        if let Some(stream) = self.streams.get_mut(&stream_id) {
                            // Hot path: plain data on a known stream.
                            if u64::from(length) > stream.receive_window {
                                break Err(violation(format!(
                                    "data frame of {length} bytes exceeds the window"
                                )));
                            }
                            if frame_end > end {
                                break Ok(());
                            }
                            position = frame_end;
                            if length == 0 {
                                continue;
                            }
                            if !can_receive_data(stream.state) {
                                if let Err(error) = self.stream_violation(stream_id) {
                                    break Err(error);
                                }
                                continue;
                            }
                            stream.receive_window -= u64::from(length);
                            if stream.receive_window == 0 {
                                stream.peer_stalled = true;
                            }
                            stream.unconsumed += u64::from(length);
                            self.events.push(Event::DataReceived {
                                stream_id,
                                start: payload_start,
                                end: frame_end,
                            });
                            continue;
                        }
                    }
                    if u64::from(length) > self.data_limit(flags, stream_id) {
                        break Err(violation(format!(
                            "data frame of {length} bytes exceeds the window"
                        )));
                    }
                    if frame_end > end {
                        break Ok(());
                    }
                    if let Err(error) = self.on_stream_frame(
                        TYPE_DATA,
                        flags,
                        stream_id,
                        length,
                        payload_start,
                        frame_end,
                    ) {
                        break Err(error);
                    }
                    position = frame_end;
                }
                TYPE_WINDOW_UPDATE => {
                    let outcome = match self.streams.get(&stream_id) {
                        Some(_) if flags == 0 => {
                            if length > 0 {
                                self.grant(stream_id, length)
                            } else {
                                Ok(())
                            }
                        }
                        _ => {
                            self.on_stream_frame(TYPE_WINDOW_UPDATE, flags, stream_id, length, 0, 0)
                        }
                    };
                    if let Err(error) = outcome {
                        break Err(error);
                    }
                    position += HEADER_SIZE;
                }
                TYPE_PING => {
                    if let Err(error) = self.on_ping(flags, stream_id, length) {
                        break Err(error);
                    }
                    position += HEADER_SIZE;
                }
                TYPE_GO_AWAY => {
                    if stream_id != 0 {
                        break Err(violation("GoAway on a stream other than 0".to_string()));
                    }
                    self.go_away_received = true;
                    self.events.push(Event::GoAwayReceived(length));
                    position += HEADER_SIZE;
                }
                _ => break Err(violation(format!("unknown frame type {frame_type}"))),
            }
        };
        self.parsed = position;
        result
    }

    /// The largest data payload the peer may send in a frame with this header.
    fn data_limit(&self, flags: u16, stream_id: u32) -> u64 {
        if flags & FLAG_SYN != 0 {
            return self.config.initial_window;
        }
        match self.streams.get(&stream_id) {
            Some(stream) => stream.receive_window,
            // Released (in-flight data is discarded) or invalid (refused once complete).
            None => self.config.max_receive_window,
        }
    }

    /// A Data or Window Update frame, in the general case (flags or unknown stream).
    fn on_stream_frame(
        &mut self,
        frame_type: u8,
        flags: u16,
        stream_id: u32,
        length: u32,
        payload_start: usize,
        payload_end: usize,
    ) -> Result<(), Error> {
        if stream_id == 0 {
            return Err(violation("data or window update on stream 0".to_string()));
        }
        if flags & FLAG_SYN != 0 {
            if !self.accept_inbound(stream_id, flags)? {
                return Ok(());
            }
        } else if !self.streams.contains_key(&stream_id) {
            self.check_was_used(stream_id)?;
            return Ok(()); // a released stream: whatever was in flight is dropped
        }
        if flags & FLAG_RST != 0 {
            self.release(stream_id, Input::ReceiveRst);
            self.events.push(Event::StreamReset(stream_id));
            self.events.push(Event::StreamClosed(stream_id));
            return Ok(());
        }
        let stream = self.streams.get_mut(&stream_id).expect("checked above");
        if flags & FLAG_ACK != 0 && stream.awaiting_ack {
            stream.awaiting_ack = false;
            self.ack_backlog -= 1;
            self.events.push(Event::StreamAcknowledged(stream_id));
        }
        if frame_type == TYPE_DATA {
            if length > 0 {
                if !can_receive_data(stream.state) {
                    return self.stream_violation(stream_id);
                }
                // parse_frames already checked length against the window.
                stream.receive_window -= u64::from(length);
                if stream.receive_window == 0 {
                    stream.peer_stalled = true;
                }
                stream.unconsumed += u64::from(length);
                self.events.push(Event::DataReceived {
                    stream_id,
                    start: payload_start,
                    end: payload_end,
                });
            }
        } else if length > 0 {
            self.grant(stream_id, length)?;
        }
        if flags & FLAG_FIN != 0 {
            let stream = self.streams.get_mut(&stream_id).expect("still live");
            match transition(stream.state, Input::ReceiveFin) {
                None => return self.stream_violation(stream_id),
                Some(new_state) => {
                    self.events.push(Event::StreamEnded(stream_id));
                    if new_state == State::Closed {
                        self.release(stream_id, Input::ReceiveFin);
                        self.events.push(Event::StreamClosed(stream_id));
                    } else {
                        stream.state = new_state;
                    }
                }
            }
        }
        Ok(())
    }

    /// The peer's window update: more send window for a live stream.
    fn grant(&mut self, stream_id: u32, delta: u32) -> Result<(), Error> {
        let stream = self.streams.get_mut(&stream_id).expect("caller checked");
        let window = stream.send_window + u64::from(delta);
        if window > MAX_U32 {
            return Err(violation("send window grew beyond 2**32 - 1".to_string()));
        }
        stream.send_window = window;
        if can_send_data(stream.state) {
            self.events.push(Event::SendWindowIncreased(stream_id));
        }
        Ok(())
    }

    /// Handle a SYN: validate the id, then accept (ACK) or refuse (RST) the stream.
    /// True if a stream was opened.
    fn accept_inbound(&mut self, stream_id: u32, flags: u16) -> Result<bool, Error> {
        if stream_id & 1 == self.own_parity {
            return Err(violation(format!(
                "SYN for stream {stream_id}, which has our parity"
            )));
        }
        if self.streams.contains_key(&stream_id) {
            return Err(violation(format!(
                "SYN for stream {stream_id}, which is open"
            )));
        }
        let id = i64::from(stream_id);
        if id > self.highest_inbound_id {
            self.remember_gap(self.highest_inbound_id + 2, id - 2);
            self.highest_inbound_id = id;
        } else if !self.fill_gap(id) {
            return Err(violation(format!("SYN reuses stream id {stream_id}")));
        }
        if flags & FLAG_RST != 0 {
            return Ok(false);
        }
        if self.go_away_sent || self.slots_held() >= self.config.max_streams {
            self.queue_reply(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)?;
            return Ok(false);
        }
        self.streams
            .insert(stream_id, Stream::new(false, self.config.initial_window));
        self.events.push(Event::StreamOpened(stream_id));
        self.queue_reply(TYPE_WINDOW_UPDATE, FLAG_ACK, stream_id, self.extra_window)?;
        self.mergeable = Some(Mergeable {
            output_len: self.output.len(),
            stream_id,
            frame_type: TYPE_WINDOW_UPDATE,
            flags: FLAG_ACK,
            length: self.extra_window,
        });
        Ok(true)
    }

    /// The peer skipped ids `start..=end`; they lie above every known gap.
    fn remember_gap(&mut self, start: i64, end: i64) {
        if start > end {
            return;
        }
        self.gap_starts.push(start);
        self.gap_ends.push(end);
        if self.gap_starts.len() > self.config.max_streams {
            // Bounded memory: forget the oldest gap (its late SYN will count as reuse).
            self.gap_starts.remove(0);
            self.gap_ends.remove(0);
        }
    }

    /// The index of the gap range holding `id`.
    fn gap_index(&self, id: i64) -> Option<usize> {
        let after = self.gap_starts.partition_point(|&start| start <= id);
        if after == 0 {
            return None;
        }
        let index = after - 1;
        (id <= self.gap_ends[index]).then_some(index)
    }

    /// A late SYN: take `id` out of the gaps; false if it was not in one.
    fn fill_gap(&mut self, id: i64) -> bool {
        let Some(index) = self.gap_index(id) else {
            return false;
        };
        let (start, end) = (self.gap_starts[index], self.gap_ends[index]);
        if start == end {
            self.gap_starts.remove(index);
            self.gap_ends.remove(index);
        } else if id == start {
            self.gap_starts[index] = start + 2;
        } else if id == end {
            self.gap_ends[index] = end - 2;
        } else {
            self.gap_ends[index] = id - 2;
            self.gap_starts.insert(index + 1, id + 2);
            self.gap_ends.insert(index + 1, end);
            if self.gap_starts.len() > self.config.max_streams {
                self.gap_starts.remove(0);
                self.gap_ends.remove(0);
            }
        }
        true
    }

    /// Whether `id` (not live now) belonged to a stream that once existed.
    fn was_used(&self, id: i64) -> bool {
        if id & 1 == i64::from(self.own_parity) {
            return 0 < id && (id as u64) < self.next_outbound_id;
        }
        0 < id && id <= self.highest_inbound_id && self.gap_index(id).is_none()
    }

    fn check_was_used(&self, stream_id: u32) -> Result<(), Error> {
        if !self.was_used(i64::from(stream_id)) {
            return Err(violation(format!(
                "frame for stream {stream_id}, which was never opened"
            )));
        }
        Ok(())
    }

    fn on_ping(&mut self, flags: u16, stream_id: u32, opaque: u32) -> Result<(), Error> {
        if stream_id != 0 {
            return Err(violation("ping on a stream other than 0".to_string()));
        }
        if flags & FLAG_SYN != 0 {
            self.queue_reply(TYPE_PING, FLAG_ACK, 0, opaque)
        } else {
            self.events.push(Event::PongReceived(opaque));
            Ok(())
        }
    }

    /// The peer broke a stream's rules (data or FIN after its FIN): reset that stream.
    fn stream_violation(&mut self, stream_id: u32) -> Result<(), Error> {
        self.queue_reply(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0)?;
        self.release(stream_id, Input::SendRst);
        self.events.push(Event::StreamReset(stream_id));
        self.events.push(Event::StreamClosed(stream_id));
        Ok(())
    }

    fn release(&mut self, stream_id: u32, reason: Input) {
        let stream = self.streams.remove(&stream_id).expect("live stream");
        debug_assert!(transition(stream.state, reason).is_some());
        if stream.outbound {
            self.outbound_streams -= 1;
            if stream.awaiting_ack {
                self.ack_backlog -= 1;
            }
        }
    }

    /// Queue a frame the peer provoked, refusing to let such frames pile up unread.
    fn queue_reply(
        &mut self,
        frame_type: u8,
        flags: u16,
        stream_id: u32,
        length: u32,
    ) -> Result<(), Error> {
        self.queued_replies += 1;
        if self.queued_replies > MAX_QUEUED_REPLIES {
            return Err(violation(format!(
                "peer provoked more than {MAX_QUEUED_REPLIES} unsent replies"
            )));
        }
        self.queue_frame(frame_type, flags, stream_id, length);
        Ok(())
    }

    fn queue_frame(&mut self, frame_type: u8, flags: u16, stream_id: u32, length: u32) {
        let mut header = [0u8; HEADER_SIZE];
        header[0] = VERSION;
        header[1] = frame_type;
        header[2..4].copy_from_slice(&flags.to_be_bytes());
        header[4..8].copy_from_slice(&stream_id.to_be_bytes());
        header[8..12].copy_from_slice(&length.to_be_bytes());
        self.output.extend_from_slice(&header);
    }

    fn fail(&mut self, code: u32) {
        self.failed = true;
        // A dead connection keeps no partial frame (nor the payloads of dropped events).
        self.input.clear();
        self.parsed = 0;
        self.queue_frame(TYPE_GO_AWAY, 0, 0, code);
    }

    // --- commands --------------------------------------------------------------------

    /// Whether frames are queued for the peer.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Everything queued for the peer; `clear_output` once it is taken.
    pub fn pending_output(&self) -> &[u8] {
        &self.output
    }

    /// The queued output was taken (`data_to_send`).
    pub fn clear_output(&mut self) {
        self.queued_replies = 0;
        self.mergeable = None;
        self.output.clear();
        if self.output.capacity() > KEPT_OUTPUT_CAPACITY {
            self.output.shrink_to(KEPT_OUTPUT_CAPACITY);
        }
    }

    fn check_alive(&self) -> Result<(), Error> {
        if self.failed {
            return Err(local(FAILED_MESSAGE.to_string()));
        }
        Ok(())
    }

    /// The live stream `stream_id` names, `None` if it was released, or an error if it
    /// never existed (or is no valid id).
    fn known_stream(&self, stream_id: i64) -> Result<Option<u32>, Error> {
        if (1..=MAX_U32 as i64).contains(&stream_id)
            && self.streams.contains_key(&(stream_id as u32))
        {
            return Ok(Some(stream_id as u32));
        }
        self.check_known(stream_id)?;
        Ok(None)
    }

    fn check_known(&self, stream_id: i64) -> Result<(), Error> {
        if stream_id <= 0 || stream_id > MAX_U32 as i64 {
            return Err(local(format!("invalid stream id {stream_id}")));
        }
        if !self.was_used(stream_id) {
            return Err(local(format!("stream {stream_id} was never opened")));
        }
        Ok(())
    }

    /// Open an outbound stream and queue its SYN; data may be sent before the ACK.
    pub fn open_stream(&mut self) -> Result<u32, Error> {
        self.check_alive()?;
        if self.go_away_received {
            return Err(local("the peer sent GoAway: no new streams".to_string()));
        }
        if self.go_away_sent {
            return Err(local("we sent GoAway: no new streams".to_string()));
        }
        if self.slots_held() >= self.config.max_streams {
            return Err(Error::LimitExceeded(format!(
                "{} streams are open",
                self.config.max_streams
            )));
        }
        if self.ack_backlog >= self.config.max_ack_backlog {
            return Err(Error::LimitExceeded(format!(
                "{} streams await the peer's ACK",
                self.ack_backlog
            )));
        }
        let id = self.next_outbound_id;
        if id > MAX_U32 {
            return Err(Error::LimitExceeded(
                "this connection has used up its stream ids".to_string(),
            ));
        }
        let stream_id = id as u32;
        self.next_outbound_id = id + 2;
        self.streams
            .insert(stream_id, Stream::new(true, self.config.initial_window));
        self.ack_backlog += 1;
        self.outbound_streams += 1;
        self.queue_frame(TYPE_WINDOW_UPDATE, FLAG_SYN, stream_id, self.extra_window);
        self.mergeable = Some(Mergeable {
            output_len: self.output.len(),
            stream_id,
            frame_type: TYPE_WINDOW_UPDATE,
            flags: FLAG_SYN,
            length: self.extra_window,
        });
        Ok(stream_id)
    }

    /// Queue as much of `data` as the send window allows; return how many bytes.
    pub fn send_data(&mut self, stream_id: i64, data: &[u8]) -> Result<usize, Error> {
        self.check_alive()?;
        let Some(stream_id) = self.known_stream(stream_id)? else {
            return Err(local(format!("stream {stream_id} is closed")));
        };
        let stream = self.streams.get_mut(&stream_id).expect("live");
        if !can_send_data(stream.state) {
            return Err(local(format!("stream {stream_id} is closed for writing")));
        }
        let amount = (data.len() as u64).min(stream.send_window) as usize;
        if amount == 0 {
            return Ok(0);
        }
        stream.send_window -= amount as u64;
        let mut flags = 0;
        if let Some(mergeable) = self.mergeable {
            if mergeable.output_len == self.output.len()
                && mergeable.stream_id == stream_id
                && mergeable.frame_type == TYPE_WINDOW_UPDATE
                && mergeable.length == 0
            {
                // Our SYN or ACK is still queued and carries no window: send it on the data.
                flags = mergeable.flags;
                self.output.truncate(self.output.len() - HEADER_SIZE);
            }
        }
        let max_payload = self.config.max_frame_payload.min(usize::MAX as u64) as usize;
        let frames = amount.div_ceil(max_payload);
        self.output.reserve(amount + frames * HEADER_SIZE);
        let mut last = (flags, 0u32);
        for chunk in data[..amount].chunks(max_payload) {
            self.queue_frame(TYPE_DATA, flags, stream_id, chunk.len() as u32);
            self.output.extend_from_slice(chunk);
            last = (flags, chunk.len() as u32);
            flags = 0;
        }
        self.mergeable = Some(Mergeable {
            output_len: self.output.len(),
            stream_id,
            frame_type: TYPE_DATA,
            flags: last.0,
            length: last.1,
        });
        Ok(amount)
    }

    /// Bytes we may send now (0 once the stream is closed for writing or released).
    pub fn send_window(&self, stream_id: i64) -> Result<u64, Error> {
        let Some(stream_id) = self.known_stream(stream_id)? else {
            return Ok(0);
        };
        let stream = &self.streams[&stream_id];
        Ok(if can_send_data(stream.state) {
            stream.send_window
        } else {
            0
        })
    }

    /// Whether `stream_id` is live (opened and not yet released).
    pub fn stream_is_open(&self, stream_id: i64) -> bool {
        (1..=MAX_U32 as i64).contains(&stream_id) && self.streams.contains_key(&(stream_id as u32))
    }

    /// The application took `amount` received bytes: give the peer credit when due.
    pub fn consume(&mut self, stream_id: i64, amount: i64) -> Result<(), Error> {
        self.check_alive()?;
        let Some(stream_id) = self.known_stream(stream_id)? else {
            return Ok(()); // released: the peer sends nothing more, credit is moot
        };
        let max_receive_window = self.config.max_receive_window;
        let stream = self.streams.get_mut(&stream_id).expect("live");
        if amount < 0 || amount as u64 > stream.unconsumed {
            return Err(local(format!(
                "consume({amount}) but {} bytes are unconsumed on {stream_id}",
                stream.unconsumed
            )));
        }
        stream.unconsumed -= amount as u64;
        if !can_receive_data(stream.state) {
            return Ok(()); // the peer finished sending: no window updates needed
        }
        let mut target = stream.receive_target;
        let mut credit = target - stream.receive_window - stream.unconsumed;
        if credit < target >> 1 {
            return Ok(());
        }
        if stream.peer_stalled {
            stream.peer_stalled = false;
            if target < max_receive_window {
                target = (target * 2).min(max_receive_window);
                stream.receive_target = target;
                credit = target - stream.receive_window - stream.unconsumed;
            }
        }
        stream.receive_window += credit;
        self.queue_frame(TYPE_WINDOW_UPDATE, 0, stream_id, credit as u32);
        Ok(())
    }

    /// Send FIN: our write side is done. A released stream is left alone.
    pub fn close_stream(&mut self, stream_id: i64) -> Result<(), Error> {
        self.check_alive()?;
        let Some(stream_id) = self.known_stream(stream_id)? else {
            return Ok(());
        };
        let state = self.streams[&stream_id].state;
        let Some(new_state) = transition(state, Input::SendFin) else {
            return Err(local(format!(
                "stream {stream_id} is already closed for writing"
            )));
        };
        // FIN always travels on its own Window Update frame, as go-yamux sends it.
        self.queue_frame(TYPE_WINDOW_UPDATE, FLAG_FIN, stream_id, 0);
        if self
            .mergeable
            .is_some_and(|mergeable| mergeable.stream_id == stream_id)
        {
            self.mergeable = None;
        }
        if new_state == State::Closed {
            self.release(stream_id, Input::SendFin);
            self.unreported_closes.push(stream_id);
        } else {
            self.streams.get_mut(&stream_id).expect("live").state = new_state;
        }
        Ok(())
    }

    /// Send RST: abort both directions. A released stream is left alone.
    pub fn reset_stream(&mut self, stream_id: i64) -> Result<(), Error> {
        self.check_alive()?;
        let Some(stream_id) = self.known_stream(stream_id)? else {
            return Ok(());
        };
        self.queue_frame(TYPE_WINDOW_UPDATE, FLAG_RST, stream_id, 0);
        self.release(stream_id, Input::SendRst);
        self.unreported_closes.push(stream_id);
        Ok(())
    }

    /// Queue a ping; the peer's answer arrives as `PongReceived(opaque)`.
    pub fn ping(&mut self, opaque: i64) -> Result<(), Error> {
        self.check_alive()?;
        if !(0..=MAX_U32 as i64).contains(&opaque) {
            return Err(local("ping opaque value must fit in 32 bits".to_string()));
        }
        self.queue_frame(TYPE_PING, FLAG_SYN, 0, opaque as u32);
        Ok(())
    }

    /// Announce session termination; afterwards inbound SYNs are refused.
    pub fn go_away(&mut self, code: i64) -> Result<(), Error> {
        self.check_alive()?;
        if !(0..=MAX_U32 as i64).contains(&code) {
            return Err(local("GoAway code must fit in 32 bits".to_string()));
        }
        if self.go_away_sent {
            return Err(local("GoAway was already sent".to_string()));
        }
        self.go_away_sent = true;
        self.queue_frame(TYPE_GO_AWAY, 0, 0, code as u32);
        Ok(())
    }

    pub fn statistics(&self) -> Statistics {
        Statistics {
            open_streams: self.slots_held(),
            inbound_streams: self.streams.len() - self.outbound_streams,
            outbound_streams: self.outbound_streams,
            ack_backlog: self.ack_backlog,
            bytes_buffered: self.output.len(),
            partial_frame_bytes: self.input.len() - self.parsed,
        }
    }

    fn slots_held(&self) -> usize {
        self.streams.len() + self.unreported_closes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: u8, flags: u16, stream_id: u32, length: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![VERSION, frame_type];
        out.extend(flags.to_be_bytes());
        out.extend(stream_id.to_be_bytes());
        out.extend(length.to_be_bytes());
        out.extend(payload);
        out
    }

    fn take_output(connection: &mut YamuxConnection) -> Vec<u8> {
        let output = connection.pending_output().to_vec();
        connection.clear_output();
        output
    }

    /// Events with payloads resolved, for comparison.
    fn receive(connection: &mut YamuxConnection, data: &[u8]) -> Result<Vec<String>, Error> {
        connection.receive_data(data)?;
        Ok(connection
            .events()
            .iter()
            .map(|event| match *event {
                Event::DataReceived {
                    stream_id,
                    start,
                    end,
                } => format!(
                    "data {stream_id} {:?}",
                    String::from_utf8_lossy(connection.payload(start, end))
                ),
                other => format!("{other:?}"),
            })
            .collect())
    }

    fn pair() -> (YamuxConnection, YamuxConnection) {
        (
            YamuxConnection::new(true, Config::default()).unwrap(),
            YamuxConnection::new(false, Config::default()).unwrap(),
        )
    }

    #[test]
    fn open_send_echo_close() {
        let (mut client, mut server) = pair();
        let id = client.open_stream().unwrap();
        assert_eq!(id, 1);
        assert_eq!(client.send_data(1, b"hello").unwrap(), 5);
        let wire = take_output(&mut client);
        // The SYN rode on the data frame.
        assert_eq!(wire, frame(TYPE_DATA, FLAG_SYN, 1, 5, b"hello"));
        assert_eq!(
            receive(&mut server, &wire).unwrap(),
            vec!["StreamOpened(1)", "data 1 \"hello\""]
        );
        server.consume(1, 5).unwrap();
        server.send_data(1, b"hello").unwrap();
        server.close_stream(1).unwrap();
        let wire = take_output(&mut server);
        assert_eq!(
            receive(&mut client, &wire).unwrap(),
            vec![
                "StreamAcknowledged(1)",
                "data 1 \"hello\"",
                "StreamEnded(1)"
            ]
        );
        client.close_stream(1).unwrap();
        assert!(!client.stream_is_open(1));
        assert_eq!(client.statistics().open_streams, 1); // until the close is reported
        assert_eq!(receive(&mut client, b"").unwrap(), vec!["StreamClosed(1)"]);
        assert_eq!(client.statistics().open_streams, 0);
        let wire = take_output(&mut client);
        assert_eq!(
            receive(&mut server, &wire).unwrap(),
            vec!["StreamEnded(1)", "StreamClosed(1)"]
        );
    }

    #[test]
    fn byte_by_byte_delivery_matches_whole() {
        let (mut client, _) = pair();
        client.open_stream().unwrap();
        client.send_data(1, &[7u8; 1000]).unwrap();
        client.ping(42).unwrap();
        client.close_stream(1).unwrap();
        let wire = take_output(&mut client);
        let mut whole = YamuxConnection::new(false, Config::default()).unwrap();
        let expected = receive(&mut whole, &wire).unwrap();
        let mut pieces = YamuxConnection::new(false, Config::default()).unwrap();
        let mut got = Vec::new();
        let mut data = Vec::new();
        for byte in &wire {
            pieces.receive_data(std::slice::from_ref(byte)).unwrap();
            for event in pieces.events() {
                match *event {
                    Event::DataReceived { start, end, .. } => {
                        data.extend_from_slice(pieces.payload(start, end))
                    }
                    other => got.push(format!("{other:?}")),
                }
            }
        }
        assert_eq!(data, vec![7u8; 1000]);
        assert_eq!(
            got,
            expected
                .into_iter()
                .filter(|event| !event.starts_with("data"))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn violations_queue_go_away_and_kill_the_connection() {
        let (_, mut server) = pair();
        let error = receive(&mut server, &frame(9, 0, 1, 0, b"")).unwrap_err();
        assert_eq!(
            error,
            Error::RemoteProtocol {
                message: "unknown frame type 9".to_string(),
                code: Some(1)
            }
        );
        assert_eq!(
            take_output(&mut server),
            frame(TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR, b"")
        );
        assert_eq!(
            receive(&mut server, b"").unwrap_err(),
            Error::LocalProtocol(FAILED_MESSAGE.to_string())
        );
        assert!(server.open_stream().is_err());
    }

    #[test]
    fn oversized_data_is_refused_at_its_header() {
        let (_, mut server) = pair();
        let header = frame(TYPE_DATA, FLAG_SYN, 1, DEFAULT_WINDOW + 1, b"");
        let error = receive(&mut server, &header).unwrap_err();
        assert!(error.to_string().contains("exceeds the window"));
    }

    #[test]
    fn out_of_order_syns_and_reuse() {
        let (_, mut server) = pair();
        assert_eq!(
            receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 5, 0, b"")).unwrap(),
            vec!["StreamOpened(5)"]
        );
        assert_eq!(
            receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b"")).unwrap(),
            vec!["StreamOpened(1)"]
        );
        let error = receive(&mut server, &frame(TYPE_WINDOW_UPDATE, FLAG_SYN, 1, 0, b""));
        assert!(error.unwrap_err().to_string().contains("which is open"));
    }

    #[test]
    fn window_auto_tuning_doubles_after_a_stall() {
        let (mut client, mut server) = pair();
        client.open_stream().unwrap();
        let sent = client.send_data(1, &vec![0u8; 300 * 1024]).unwrap();
        assert_eq!(sent, DEFAULT_WINDOW as usize);
        let wire = take_output(&mut client);
        server.receive_data(&wire).unwrap();
        server.consume(1, i64::from(DEFAULT_WINDOW)).unwrap();
        let update = take_output(&mut server);
        // ACK (merged nowhere: the server sent no data), then the doubled credit.
        let last = &update[update.len() - HEADER_SIZE..];
        assert_eq!(last[1], TYPE_WINDOW_UPDATE);
        assert_eq!(
            u32::from_be_bytes(last[8..12].try_into().unwrap()),
            2 * DEFAULT_WINDOW
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..3000 {
            let mut connection = YamuxConnection::new(round % 2 == 0, Config::default()).unwrap();
            for _ in 0..8 {
                let length = (next() % 40) as usize;
                let mut data: Vec<u8> = (0..length).map(|_| next() as u8).collect();
                // Mostly valid versions and types, so deeper states are reached.
                if data.len() > 2 {
                    data[0] = (next() % 8 == 0) as u8;
                    data[1] %= 5;
                }
                if connection.receive_data(&data).is_err() {
                    break;
                }
                if next() % 3 == 0 {
                    connection.clear_output();
                }
            }
        }
    }

    #[test]
    fn stream_ids_run_out() {
        let config = Config {
            max_ack_backlog: 1000,
            ..Config::default()
        };
        let mut client = YamuxConnection::new(true, config).unwrap();
        client.next_outbound_id = 0xFFFF_FFFD; // skip ahead rather than open two billion
        assert_eq!(client.open_stream().unwrap(), 0xFFFF_FFFD);
        assert_eq!(client.open_stream().unwrap(), 0xFFFF_FFFF);
        assert_eq!(
            client.open_stream().unwrap_err(),
            Error::LimitExceeded("this connection has used up its stream ids".to_string())
        );
    }

    #[test]
    fn config_is_validated() {
        let config = Config {
            initial_window: 1,
            ..Config::default()
        };
        assert!(matches!(
            YamuxConnection::new(true, config),
            Err(Error::InvalidArgument(_))
        ));
    }
}
