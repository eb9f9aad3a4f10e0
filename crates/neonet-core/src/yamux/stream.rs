//! One stream's lifecycle and windows: the states, the transition table (the pure
//! twin's `TRANSITIONS`) and the per-stream send and receive windows.

use super::DEFAULT_WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Open,
    LocalClosed,  // we sent FIN; the peer may still send
    RemoteClosed, // the peer sent FIN; we may still send
    Closed,       // both sent FIN: released
    Reset,        // either sent RST: released
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Input {
    SendData,
    SendFin,
    SendRst,
    ReceiveData,
    ReceiveFin,
    ReceiveRst,
}

/// The whole stream lifecycle (the pure twin's `TRANSITIONS`). `None` is a protocol
/// error: `LocalProtocol` for our inputs, a stream reset for the peer's.
pub(super) fn transition(state: State, input: Input) -> Option<State> {
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

pub(super) fn can_send_data(state: State) -> bool {
    transition(state, Input::SendData).is_some()
}

pub(super) fn can_receive_data(state: State) -> bool {
    transition(state, Input::ReceiveData).is_some()
}

#[derive(Debug)]
pub(super) struct Stream {
    pub(super) state: State,
    pub(super) outbound: bool,
    pub(super) awaiting_ack: bool,
    pub(super) send_window: u64,
    /// Credit the peer still has, the window we aim to keep granted, and bytes handed
    /// to the application but not yet consumed: receive_window + unconsumed never
    /// exceeds receive_target.
    pub(super) receive_window: u64,
    pub(super) receive_target: u64,
    pub(super) unconsumed: u64,
    pub(super) peer_stalled: bool,
}

impl Stream {
    pub(super) fn new(outbound: bool, receive_window: u64) -> Self {
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
