//! The transport phase of a libp2p Noise channel: framing and ChaCha20-Poly1305.
//!
//! Implements libp2p/specs noise/README.md "Wire Format" and "Encryption and I/O" over
//! the Noise Protocol Framework rev 34, sections 5.1 (CipherState, the reserved nonce
//! 2^64 - 1) and 12.3 (the ChaChaPoly nonce: 32 zero bits, then the counter
//! little-endian). Every transport message travels behind a 2-byte big-endian length
//! and is an AEAD ciphertext of at most 65519 plaintext bytes plus its 16-byte tag.
//! The handshake that produces the two keys stays in Python (`neonet.proto.noise`).
//!
//! Twin of `neonet.core.noise_transport.NoiseTransport`: same framing, same limits,
//! same errors and error texts.

use crate::Error;
use ring::aead::{Aad, LessSafeKey, Nonce, Tag, UnboundKey, CHACHA20_POLY1305};
use std::mem::MaybeUninit;

/// The AEAD tag at the end of every transport message.
pub const TAG_SIZE: usize = 16;
/// The largest Noise message (its length must fit the 2-byte prefix).
pub const MAX_MESSAGE_SIZE: usize = 65535;
/// The most plaintext one transport message carries.
pub const MAX_PLAINTEXT_SIZE: usize = MAX_MESSAGE_SIZE - TAG_SIZE;
/// Noise 5.1: nonce 2^64 - 1 is reserved, so 2^64 - 2 is the last one a key uses.
pub const MAX_NONCE: u64 = u64::MAX - 1;
const LENGTH_SIZE: usize = 2;

const SEND_NONCE_EXHAUSTED: &str =
    "Noise send nonce exhausted (2**64 - 1 messages): the connection must close";
const SEND_NONCE_WOULD_EXHAUST: &str = "Noise send nonce exhausted: the connection must close";
const RECEIVE_NONCE_EXHAUSTED: &str =
    "Noise receive nonce exhausted (2**64 - 1 messages): the connection must close";
const AUTHENTICATION_FAILED: &str = "a Noise transport message failed authentication";
const CHANNEL_FAILED: &str = "the Noise channel already failed";
const HANDED_OVER: &str = "the Noise transport was handed over to another owner";

/// One direction's key and nonce (a Noise CipherState with the key set).
struct CipherState {
    key: LessSafeKey,
    nonce: u64,
}

impl CipherState {
    fn new(key: &[u8], nonce: u64) -> Result<Self, Error> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key).map_err(|_| {
            Error::InvalidArgument("a Noise transport key must be 32 bytes".to_string())
        })?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            nonce,
        })
    }

    fn nonce(&self) -> Nonce {
        let mut bytes = [0u8; 12];
        bytes[4..].copy_from_slice(&self.nonce.to_le_bytes());
        Nonce::assume_unique_for_key(bytes)
    }
}

/// Why the channel refuses further use, if it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refusal {
    None,
    Failed,
    HandedOver,
}

/// The established Noise channel: `encrypt` outgoing bytes, `receive_data` incoming ones.
pub struct NoiseTransport {
    sender: CipherState,
    receiver: CipherState,
    /// Received bytes not yet decrypted: at most one incomplete frame, except right
    /// after the handshake, when it holds whatever arrived with message 3.
    pending: Vec<u8>,
    refusal: Refusal,
}

/// The size of `plaintext_size` bytes once framed and encrypted.
pub fn encrypted_size(plaintext_size: usize) -> usize {
    let frames = plaintext_size.div_ceil(MAX_PLAINTEXT_SIZE);
    plaintext_size + frames * (LENGTH_SIZE + TAG_SIZE)
}

impl NoiseTransport {
    /// A channel from the handshake's two keys; `received` are bytes that arrived
    /// behind the last handshake message (decrypted by the first `receive_data`).
    /// The nonces start where given (0 after a handshake).
    pub fn new(
        send_key: &[u8],
        receive_key: &[u8],
        received: &[u8],
        send_nonce: u64,
        receive_nonce: u64,
    ) -> Result<Self, Error> {
        Ok(Self {
            sender: CipherState::new(send_key, send_nonce)?,
            receiver: CipherState::new(receive_key, receive_nonce)?,
            pending: received.to_vec(),
            refusal: Refusal::None,
        })
    }

    /// Messages encrypted so far (the next send nonce).
    pub fn messages_sent(&self) -> u64 {
        self.sender.nonce
    }

    /// Messages decrypted so far (the next receive nonce).
    pub fn messages_received(&self) -> u64 {
        self.receiver.nonce
    }

    /// Received bytes not yet decrypted.
    pub fn buffered(&self) -> usize {
        self.pending.len()
    }

    /// Move the whole channel state into a new value; this one then refuses all use.
    pub fn take(&mut self) -> Result<NoiseTransport, Error> {
        self.check_usable_for_sending()?;
        // The placeholders are never used: every entry point checks `refusal` first.
        let taken = NoiseTransport {
            sender: std::mem::replace(&mut self.sender, CipherState::new(&[0u8; 32], 0)?),
            receiver: std::mem::replace(&mut self.receiver, CipherState::new(&[0u8; 32], 0)?),
            pending: std::mem::take(&mut self.pending),
            refusal: self.refusal,
        };
        self.refusal = Refusal::HandedOver;
        Ok(taken)
    }

    fn check_usable_for_sending(&self) -> Result<(), Error> {
        if self.refusal == Refusal::HandedOver {
            return Err(Error::LocalProtocol(HANDED_OVER.to_string()));
        }
        Ok(())
    }

    /// Check that `plaintext_size` bytes may be encrypted now (no nonce is used).
    pub fn check_encrypt(&self, plaintext_size: usize) -> Result<(), Error> {
        if plaintext_size == 0 {
            return Ok(());
        }
        self.check_usable_for_sending()?;
        if plaintext_size <= MAX_PLAINTEXT_SIZE {
            if self.sender.nonce > MAX_NONCE {
                return Err(Error::LocalProtocol(SEND_NONCE_EXHAUSTED.to_string()));
            }
            return Ok(());
        }
        // Refuse the whole write rather than spend nonces on frames never returned.
        let frames = plaintext_size.div_ceil(MAX_PLAINTEXT_SIZE) as u128;
        if u128::from(self.sender.nonce) + frames - 1 > u128::from(MAX_NONCE) {
            return Err(Error::LocalProtocol(SEND_NONCE_WOULD_EXHAUST.to_string()));
        }
        Ok(())
    }

    /// Frame and encrypt `plaintext` into `out`, which must be exactly
    /// `encrypted_size(plaintext.len())` bytes long and need not be initialized (every
    /// byte is written). Checks first, so an error leaves the nonce untouched.
    pub fn encrypt_into(
        &mut self,
        plaintext: &[u8],
        out: &mut [MaybeUninit<u8>],
    ) -> Result<(), Error> {
        self.check_encrypt(plaintext.len())?;
        if out.len() != encrypted_size(plaintext.len()) {
            return Err(Error::InvalidArgument(
                "encrypt_into needs an output of exactly encrypted_size bytes".to_string(),
            ));
        }
        // Lay out every frame (length, plaintext, room for the tag), then seal in place.
        let mut position = 0;
        for chunk in plaintext.chunks(MAX_PLAINTEXT_SIZE) {
            let message_size = (chunk.len() + TAG_SIZE) as u16;
            write_slice(&mut out[position..], &message_size.to_be_bytes());
            write_slice(&mut out[position + LENGTH_SIZE..], chunk);
            write_slice(
                &mut out[position + LENGTH_SIZE + chunk.len()..],
                &[0u8; TAG_SIZE],
            );
            position += LENGTH_SIZE + chunk.len() + TAG_SIZE;
        }
        // SAFETY: the loop above wrote every byte of `out` (the frames tile it exactly),
        // and `MaybeUninit<u8>` has the layout of `u8`.
        let out = unsafe { &mut *(out as *mut [MaybeUninit<u8>] as *mut [u8]) };
        let mut position = 0;
        for chunk in plaintext.chunks(MAX_PLAINTEXT_SIZE) {
            let body_start = position + LENGTH_SIZE;
            let body_end = body_start + chunk.len() + TAG_SIZE;
            self.seal_in_place(&mut out[body_start..body_end]);
            position = body_end;
        }
        Ok(())
    }

    /// Frame and encrypt `plaintext`, appending to `out`.
    pub fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.check_encrypt(plaintext.len())?;
        let size = encrypted_size(plaintext.len());
        out.reserve(size);
        let start = out.len();
        self.encrypt_into(plaintext, &mut out.spare_capacity_mut()[..size])?;
        // SAFETY: encrypt_into initialized these `size` bytes of spare capacity.
        unsafe { out.set_len(start + size) };
        Ok(())
    }

    /// Encrypt `body[..len - 16]` in place and write the tag into the last 16 bytes.
    /// The caller has checked the nonce.
    fn seal_in_place(&mut self, body: &mut [u8]) {
        let split = body.len() - TAG_SIZE;
        let (message, tag_space) = body.split_at_mut(split);
        let tag = self
            .sender
            .key
            .seal_in_place_separate_tag(self.sender.nonce(), Aad::empty(), message)
            .expect("ChaCha20-Poly1305 seals any message below 256 GiB");
        tag_space.copy_from_slice(tag.as_ref());
        self.sender.nonce += 1;
    }

    /// Decrypt every whole frame of the pending bytes plus `data`, appending the
    /// plaintext to `out`; keep an incomplete frame for next time.
    ///
    /// A message that fails authentication or is shorter than its tag is a
    /// `RemoteProtocol` error; the channel is then dead, and `out` is left as it was.
    pub fn receive_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match self.refusal {
            Refusal::None => {}
            Refusal::Failed => return Err(Error::LocalProtocol(CHANNEL_FAILED.to_string())),
            Refusal::HandedOver => return Err(Error::LocalProtocol(HANDED_OVER.to_string())),
        }
        let start = out.len();
        let result = self.receive_frames(data, out);
        if result.is_err() {
            self.refusal = Refusal::Failed;
            out.truncate(start);
        }
        result
    }

    fn receive_frames(&mut self, mut data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            let result = self.drain_pending(&mut pending, &mut data, out);
            self.pending = pending;
            result?;
            if !self.pending.is_empty() {
                return Ok(()); // the incomplete frame took all of `data`
            }
        }
        let mut position = 0;
        while data.len() - position >= LENGTH_SIZE {
            let frame_end = position
                + LENGTH_SIZE
                + usize::from(u16::from_be_bytes([data[position], data[position + 1]]));
            if frame_end > data.len() {
                break;
            }
            self.open(&data[position + LENGTH_SIZE..frame_end], out)?;
            position = frame_end;
        }
        self.pending.extend_from_slice(&data[position..]);
        Ok(())
    }

    /// Decrypt the whole frames held in `pending`, then top up its incomplete frame from
    /// `data` with only the bytes it lacks (advancing `data`), decrypting it once whole.
    /// Leaves `pending` holding the still-incomplete frame, if any.
    fn drain_pending(
        &mut self,
        pending: &mut Vec<u8>,
        data: &mut &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let mut position = 0;
        while pending.len() - position >= LENGTH_SIZE {
            let frame_end = position
                + LENGTH_SIZE
                + usize::from(u16::from_be_bytes([
                    pending[position],
                    pending[position + 1],
                ]));
            if frame_end > pending.len() {
                break;
            }
            self.open(&pending[position + LENGTH_SIZE..frame_end], out)?;
            position = frame_end;
        }
        pending.drain(..position);
        if pending.is_empty() {
            return Ok(());
        }
        if pending.len() < LENGTH_SIZE {
            let take = (LENGTH_SIZE - pending.len()).min(data.len());
            pending.extend_from_slice(&data[..take]);
            *data = &data[take..];
            if pending.len() < LENGTH_SIZE {
                return Ok(());
            }
        }
        let frame_end = LENGTH_SIZE + usize::from(u16::from_be_bytes([pending[0], pending[1]]));
        let take = (frame_end - pending.len()).min(data.len());
        pending.extend_from_slice(&data[..take]);
        *data = &data[take..];
        if pending.len() < frame_end {
            return Ok(());
        }
        self.open(&pending[LENGTH_SIZE..frame_end], out)?;
        pending.clear();
        Ok(())
    }

    /// Decrypt one transport message (without its length prefix), appending to `out`.
    fn open(&mut self, ciphertext: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if ciphertext.len() < TAG_SIZE {
            // A literal zero-length frame included: every transport message carries a tag
            // (an empty message is a 16-byte frame), and go/rust/js all refuse these too.
            return Err(remote(format!(
                "Noise transport message of {} bytes is shorter than its tag",
                ciphertext.len()
            )));
        }
        if self.receiver.nonce > MAX_NONCE {
            return Err(remote(RECEIVE_NONCE_EXHAUSTED.to_string()));
        }
        let split = ciphertext.len() - TAG_SIZE;
        let mut tag = [0u8; TAG_SIZE];
        tag.copy_from_slice(&ciphertext[split..]);
        let start = out.len();
        out.extend_from_slice(&ciphertext[..split]);
        let opened = self.receiver.key.open_in_place_separate_tag(
            self.receiver.nonce(),
            Aad::empty(),
            Tag::from(tag),
            &mut out[start..],
            0..,
        );
        if opened.is_err() {
            out.truncate(start);
            return Err(remote(AUTHENTICATION_FAILED.to_string()));
        }
        self.receiver.nonce += 1;
        Ok(())
    }
}

/// Copy `source` to the start of `destination` (which may be uninitialized).
pub fn write_slice(destination: &mut [MaybeUninit<u8>], source: &[u8]) {
    let destination = &mut destination[..source.len()];
    // SAFETY: both ranges are `source.len()` bytes long and cannot overlap (one is
    // borrowed mutably, the other shared); `MaybeUninit<u8>` has the layout of `u8`.
    unsafe {
        std::ptr::copy_nonoverlapping(
            source.as_ptr(),
            destination.as_mut_ptr().cast::<u8>(),
            source.len(),
        );
    }
}

fn remote(message: String) -> Error {
    Error::RemoteProtocol {
        message,
        code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (NoiseTransport, NoiseTransport) {
        let a = [1u8; 32];
        let b = [2u8; 32];
        (
            NoiseTransport::new(&a, &b, b"", 0, 0).unwrap(),
            NoiseTransport::new(&b, &a, b"", 0, 0).unwrap(),
        )
    }

    fn encrypt(transport: &mut NoiseTransport, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        transport.encrypt(plaintext, &mut out).unwrap();
        out
    }

    fn receive(transport: &mut NoiseTransport, data: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        transport.receive_data(data, &mut out).map(|()| out)
    }

    #[test]
    fn round_trip_sizes_and_frames() {
        for size in [
            0usize,
            1,
            100,
            MAX_PLAINTEXT_SIZE,
            MAX_PLAINTEXT_SIZE + 1,
            3 * MAX_PLAINTEXT_SIZE + 7,
        ] {
            let (mut client, mut server) = pair();
            let plaintext: Vec<u8> = (0..size).map(|index| (index % 251) as u8).collect();
            let wire = encrypt(&mut client, &plaintext);
            assert_eq!(wire.len(), encrypted_size(size));
            assert_eq!(
                client.messages_sent(),
                size.div_ceil(MAX_PLAINTEXT_SIZE) as u64
            );
            assert_eq!(receive(&mut server, &wire).unwrap(), plaintext);
            assert_eq!(server.buffered(), 0);
        }
    }

    #[test]
    fn any_chunking_gives_the_same_plaintext() {
        let (mut client, _) = pair();
        let plaintext: Vec<u8> = (0..200_000usize).map(|index| (index * 7) as u8).collect();
        let wire = encrypt(&mut client, &plaintext);
        for chunk in [1usize, 2, 3, 17, 65537, 65538, 100_000] {
            let (_, mut server) = pair();
            let mut received = Vec::new();
            for piece in wire.chunks(chunk) {
                server.receive_data(piece, &mut received).unwrap();
            }
            assert_eq!(received, plaintext, "chunk {chunk}");
        }
    }

    #[test]
    fn carried_bytes_are_decrypted_first() {
        let (mut client, _) = pair();
        let wire = [encrypt(&mut client, b"one"), encrypt(&mut client, b"two")].concat();
        let mut server = NoiseTransport::new(&[2u8; 32], &[1u8; 32], &wire[..30], 0, 0).unwrap();
        assert_eq!(server.buffered(), 30);
        assert_eq!(receive(&mut server, b"").unwrap(), b"one");
        assert_eq!(receive(&mut server, &wire[30..]).unwrap(), b"two");
    }

    #[test]
    fn tampering_fails_and_the_channel_stays_dead() {
        let (mut client, mut server) = pair();
        let mut wire = encrypt(&mut client, b"hello");
        wire[5] ^= 1;
        let error = receive(&mut server, &wire).unwrap_err();
        assert_eq!(error.to_string(), AUTHENTICATION_FAILED);
        assert!(matches!(error, Error::RemoteProtocol { code: None, .. }));
        assert_eq!(
            receive(&mut server, b"").unwrap_err(),
            Error::LocalProtocol(CHANNEL_FAILED.to_string())
        );
    }

    #[test]
    fn short_frames_are_refused() {
        for length in [0u8, 1, 15] {
            let (_, mut server) = pair();
            let mut wire = vec![0, length];
            wire.extend(std::iter::repeat_n(0u8, usize::from(length)));
            assert!(matches!(
                receive(&mut server, &wire),
                Err(Error::RemoteProtocol { .. })
            ));
        }
    }

    #[test]
    fn nonce_limits() {
        let (mut client, mut server) = pair();
        client.sender.nonce = MAX_NONCE;
        server.receiver.nonce = MAX_NONCE;
        let wire = encrypt(&mut client, b"last");
        assert_eq!(receive(&mut server, &wire).unwrap(), b"last");
        let mut out = Vec::new();
        assert_eq!(
            client.encrypt(b"x", &mut out).unwrap_err(),
            Error::LocalProtocol(SEND_NONCE_EXHAUSTED.to_string())
        );
        client.sender.nonce = MAX_NONCE - 1;
        assert_eq!(
            client
                .encrypt(&vec![0u8; 3 * MAX_PLAINTEXT_SIZE], &mut out)
                .unwrap_err(),
            Error::LocalProtocol(SEND_NONCE_WOULD_EXHAUST.to_string())
        );
        assert_eq!(client.messages_sent(), MAX_NONCE - 1);
        assert!(out.is_empty());
        let error = receive(
            &mut server,
            &[0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(error.unwrap_err().to_string(), RECEIVE_NONCE_EXHAUSTED);
    }

    #[test]
    fn take_moves_the_state() {
        let (mut client, mut server) = pair();
        let wire = encrypt(&mut client, b"abc");
        receive(&mut server, &wire[..4]).unwrap();
        let mut taken = server.take().unwrap();
        assert_eq!(taken.buffered(), 4);
        assert_eq!(receive(&mut taken, &wire[4..]).unwrap(), b"abc");
        assert_eq!(
            receive(&mut server, b"").unwrap_err(),
            Error::LocalProtocol(HANDED_OVER.to_string())
        );
        let mut out = Vec::new();
        assert!(server.encrypt(b"x", &mut out).is_err());
        assert!(server.take().is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            let (_, mut server) = pair();
            let length = (round * 13) % 300;
            let data: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            for piece in data.chunks(1 + round % 7) {
                if receive(&mut server, piece).is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn bad_key_length_is_an_invalid_argument() {
        assert!(matches!(
            NoiseTransport::new(&[0u8; 31], &[0u8; 32], b"", 0, 0),
            Err(Error::InvalidArgument(_))
        ));
    }
}
