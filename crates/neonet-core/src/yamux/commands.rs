//! The application's commands on [`YamuxConnection`], a third impl block: output,
//! opening, sending, consuming (window credit), closing and resetting streams, ping,
//! GoAway and statistics.

use super::stream::{can_receive_data, can_send_data, transition, Input, State, Stream};
use super::*;

impl YamuxConnection {
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

    pub(super) fn slots_held(&self) -> usize {
        self.streams.len() + self.unreported_closes.len()
    }
}
