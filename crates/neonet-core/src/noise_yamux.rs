//! A whole connection's data path in one engine: yamux (libp2p/specs yamux/README.md)
//! inside the Noise transport (noise/README.md "Wire Format", "Encryption and I/O").
//!
//! Fed whole socket reads: every Noise frame in the read is decrypted straight into
//! the yamux input buffer and every yamux frame parsed there, so one call turns a
//! read into the events of every stream. On output, everything yamux queued is framed
//! and encrypted in one pass into the caller's buffer.
//!
//! Twin of `neonet.core.yamux.NoiseYamuxConnection`, which is the composition of the
//! two pure engines: `receive_data(d) = yamux.receive_data(noise.receive_data(d))` and
//! `data_to_send() = noise.encrypt(yamux.data_to_send())`, errors included.

use crate::noise_transport::{encrypted_size, NoiseTransport};
use crate::yamux::YamuxConnection;
use crate::Error;
use std::mem::MaybeUninit;

/// Yamux over an established Noise channel.
pub struct NoiseYamuxConnection {
    pub noise: NoiseTransport,
    pub yamux: YamuxConnection,
}

impl NoiseYamuxConnection {
    pub fn new(noise: NoiseTransport, yamux: YamuxConnection) -> Self {
        Self { noise, yamux }
    }

    /// Decrypt and parse `ciphertext`; the events are in `self.yamux.events()`.
    pub fn receive_data(&mut self, ciphertext: &[u8]) -> Result<(), Error> {
        self.yamux.compact_input();
        self.noise
            .receive_data(ciphertext, self.yamux.input_mut())?;
        self.yamux.receive_appended()
    }

    /// Parse bytes that are already plaintext (read past a negotiation, say).
    pub fn receive_plaintext(&mut self, data: &[u8]) -> Result<(), Error> {
        self.yamux.receive_data(data)
    }

    /// The size of the encrypted output `take_output_into` writes.
    pub fn output_size(&self) -> usize {
        encrypted_size(self.yamux.pending_output().len())
    }

    /// Frame and encrypt everything yamux queued into `out` (exactly `output_size`
    /// bytes, initialized or not: every byte is written). The queued output is taken
    /// even if encryption is refused (the pure composition loses it the same way).
    pub fn take_output_into(&mut self, out: &mut [MaybeUninit<u8>]) -> Result<(), Error> {
        let result = self.noise.encrypt_into(self.yamux.pending_output(), out);
        self.yamux.clear_output();
        result
    }

    /// Check that the queued output may be encrypted now.
    pub fn check_output(&self) -> Result<(), Error> {
        self.noise.check_encrypt(self.yamux.pending_output().len())
    }

    /// Drop the queued output (after `check_output` refused it).
    pub fn discard_output(&mut self) {
        self.yamux.clear_output();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yamux::{Config, Event};

    fn endpoint(is_client: bool) -> NoiseYamuxConnection {
        let (send, receive) = if is_client {
            ([1u8; 32], [2u8; 32])
        } else {
            ([2u8; 32], [1u8; 32])
        };
        NoiseYamuxConnection::new(
            NoiseTransport::new(&send, &receive, b"", 0, 0).unwrap(),
            YamuxConnection::new(is_client, Config::default()).unwrap(),
        )
    }

    fn take(connection: &mut NoiseYamuxConnection) -> Vec<u8> {
        let size = connection.output_size();
        let mut out = Vec::with_capacity(size);
        connection
            .take_output_into(&mut out.spare_capacity_mut()[..size])
            .unwrap();
        // SAFETY: take_output_into wrote all `size` bytes.
        unsafe { out.set_len(size) };
        out
    }

    #[test]
    fn bulk_in_any_chunking() {
        let mut client = endpoint(true);
        client.yamux.open_stream().unwrap();
        let payload: Vec<u8> = (0..200_000usize).map(|index| index as u8).collect();
        let sent = client.yamux.send_data(1, &payload).unwrap();
        assert_eq!(sent, 200_000);
        let wire = take(&mut client);
        for chunk in [1usize, 1000, 65537, 300_000] {
            let mut server = endpoint(false);
            let mut received = Vec::new();
            let mut opened = 0;
            for piece in wire.chunks(chunk) {
                server.receive_data(piece).unwrap();
                for event in server.yamux.events() {
                    match *event {
                        Event::DataReceived { start, end, .. } => {
                            received.extend_from_slice(server.yamux.payload(start, end))
                        }
                        Event::StreamOpened(1) => opened += 1,
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            assert_eq!(opened, 1);
            assert_eq!(received, payload, "chunk {chunk}");
        }
    }

    #[test]
    fn tampered_ciphertext_is_a_remote_error_without_go_away() {
        let mut client = endpoint(true);
        client.yamux.ping(7).unwrap();
        let mut wire = take(&mut client);
        wire[3] ^= 0x40;
        let mut server = endpoint(false);
        let error = server.receive_data(&wire).unwrap_err();
        assert!(matches!(error, Error::RemoteProtocol { code: None, .. }));
        assert!(!server.yamux.has_output());
    }

    #[test]
    fn random_frames_inside_valid_noise_never_panic() {
        let mut state = 0x0123_4567_89ab_cdefu64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let mut sender = endpoint(round % 2 == 1).noise;
            let mut receiver = endpoint(round % 2 == 0);
            let mut wire = Vec::new();
            for _ in 0..4 {
                let length = (next() % 64) as usize;
                let mut plaintext: Vec<u8> = (0..length).map(|_| next() as u8).collect();
                if plaintext.len() >= 12 {
                    plaintext[0] = 0;
                    plaintext[1] %= 4;
                }
                sender.encrypt(&plaintext, &mut wire).unwrap();
            }
            for piece in wire.chunks(1 + (next() % 50) as usize) {
                if receiver.receive_data(piece).is_err() {
                    break;
                }
                let size = receiver.output_size();
                let mut out = Vec::with_capacity(size);
                receiver
                    .take_output_into(&mut out.spare_capacity_mut()[..size])
                    .unwrap();
            }
        }
    }

    #[test]
    fn yamux_violation_inside_valid_noise_queues_an_encrypted_go_away() {
        let mut client = endpoint(true);
        let mut server = endpoint(false);
        let mut wire = Vec::new();
        client
            .noise
            .encrypt(&[0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut wire)
            .unwrap();
        let error = server.receive_data(&wire).unwrap_err();
        assert_eq!(error.to_string(), "unknown frame type 7");
        let go_away = take(&mut server);
        client.receive_data(&go_away).unwrap();
        assert_eq!(client.yamux.events(), &[Event::GoAwayReceived(1)]);
    }
}
