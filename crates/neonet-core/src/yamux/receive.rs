//! The receive path of [`YamuxConnection`], a second impl block: the input buffer,
//! frame parsing (with the hot path for plain data), inbound streams and their id gaps,
//! the replies the peer provokes, and failing the connection on a violation.

use super::stream::{can_receive_data, can_send_data, transition, Input, State, Stream};
use super::*;

impl YamuxConnection {
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
    pub(super) fn was_used(&self, id: i64) -> bool {
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

    pub(super) fn release(&mut self, stream_id: u32, reason: Input) {
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

    pub(super) fn queue_frame(&mut self, frame_type: u8, flags: u16, stream_id: u32, length: u32) {
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
}
