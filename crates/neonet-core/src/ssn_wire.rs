//! The SSN signal path's messages, parsed and built byte by byte.
//!
//! SIGNAL, SIGNAL_SENT and INCOMING of `/neonet/ssn/client/1.0.0` and FORWARD and
//! FORWARDED of `/neonet/ssn/federation/1.0.0`: canonical CBOR arrays (RFC 8949
//! §4.2.1) of a fixed layout, framed by an unsigned varint length. Anything else, and
//! anything not accepted here, is left to the protocols' general decoders (Python).
//!
//! Twin of `neonet.core.ssn_wire` (pure Python); both satisfy
//! `parse(body) is None or parse(body) == fields of decode_message(body)` and
//! `encode_*(..) == frame(encode_message(..))`, checked by a differential test.

use crate::Error;

/// Protocol limits (client_protocol.MAX_FRAME, MAX_ID_LENGTH, MAX_REQUEST_ID).
pub const MAX_BLOB: usize = 64 << 10;
pub const MAX_ID_LENGTH: usize = 128;
pub const MAX_REQUEST_ID: u64 = (1 << 63) - 1;
const IDENTITY_CODE: u64 = 0x00;
const SHA256_CODE: u64 = 0x12;
const MAX_MULTIHASH_LENGTH: u64 = 2048 + 8;

/// A parsed signal-path message; the slices borrow from the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// Client SIGNAL `[1, 5, rid, to, payload]`.
    Signal {
        rid: u64,
        to: &'a [u8],
        payload: &'a [u8],
    },
    /// Client SIGNAL_SENT `[1, 6, rid, status]`.
    SignalSent { rid: u64, status: u8 },
    /// Client INCOMING `[1, 8, 0, sender, payload]`.
    Incoming { sender: &'a [u8], payload: &'a [u8] },
    /// Federation FORWARD `[1, 2, rid, sender, to, payload]`.
    Forward {
        rid: u64,
        sender: &'a [u8],
        to: &'a [u8],
        payload: &'a [u8],
    },
    /// Federation FORWARDED `[1, 5, rid, status]`.
    Forwarded { rid: u64, status: u8 },
}

struct Reader<'a> {
    body: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let byte = *self.body.get(self.offset)?;
        self.offset += 1;
        Some(byte)
    }

    fn big_endian(&mut self, size: usize) -> Option<u64> {
        let bytes = self.body.get(self.offset..self.offset + size)?;
        self.offset += size;
        Some(
            bytes
                .iter()
                .fold(0u64, |value, &byte| value << 8 | u64::from(byte)),
        )
    }

    /// The argument of a head whose major type was already checked (shortest form only).
    fn argument(&mut self, additional: u8) -> Option<u64> {
        let (value, minimum) = match additional {
            0..=0x17 => return Some(u64::from(additional)),
            0x18 => (self.big_endian(1)?, 0x18),
            0x19 => (self.big_endian(2)?, 0x100),
            0x1a => (self.big_endian(4)?, 0x1_0000),
            0x1b => (self.big_endian(8)?, 0x1_0000_0000),
            _ => return None,
        };
        (value >= minimum).then_some(value)
    }

    fn uint(&mut self) -> Option<u64> {
        let head = self.byte()?;
        if head >> 5 != 0 {
            return None;
        }
        self.argument(head & 0x1f)
    }

    fn blob(&mut self, limit: usize) -> Option<&'a [u8]> {
        let head = self.byte()?;
        if head >> 5 != 2 {
            return None;
        }
        let length = usize::try_from(self.argument(head & 0x1f)?).ok()?;
        if length > limit {
            return None;
        }
        let blob = self.body.get(self.offset..self.offset + length)?;
        self.offset += length;
        Some(blob)
    }

    fn at_end(&self) -> bool {
        self.offset == self.body.len()
    }
}

/// A minimal unsigned varint of at most 9 bytes at `offset`: (value, offset after).
fn uvarint(data: &[u8], offset: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, &byte) in data.iter().enumerate().skip(offset).take(9) {
        value |= u64::from(byte & 0x7f) << (7 * (index - offset));
        if byte & 0x80 == 0 {
            if byte == 0 && index != offset {
                return None;
            }
            return Some((value, index + 1));
        }
    }
    None
}

/// What `neonet.core.peer_id.PeerId(raw)` accepts, for IDs of 1 to 128 bytes.
pub fn is_peer_id(raw: &[u8]) -> bool {
    if raw.is_empty() || raw.len() > MAX_ID_LENGTH {
        return false;
    }
    let Some((code, offset)) = uvarint(raw, 0) else {
        return false;
    };
    let Some((length, offset)) = uvarint(raw, offset) else {
        return false;
    };
    if (raw.len() - offset) as u64 != length {
        return false;
    }
    match code {
        SHA256_CODE => length == 32,
        IDENTITY_CODE => length <= MAX_MULTIHASH_LENGTH,
        _ => false,
    }
}

/// The signal-path message in `body` (a frame body), or None for any other message
/// and anything not accepted here.
pub fn parse(body: &[u8], federation: bool) -> Option<Message<'_>> {
    if body.len() < 4 || body.len() > MAX_BLOB || body[1] != 0x01 {
        return None;
    }
    let (head, kind) = (body[0], body[2]);
    let mut reader = Reader { body, offset: 3 };
    let rid = reader.uint()?;
    if rid > MAX_REQUEST_ID {
        return None;
    }
    let message = match (federation, head, kind) {
        (true, 0x86, 2) => {
            let sender = reader.blob(MAX_ID_LENGTH)?;
            let to = reader.blob(MAX_ID_LENGTH)?;
            let payload = reader.blob(MAX_BLOB)?;
            if !(is_peer_id(sender) && is_peer_id(to)) {
                return None;
            }
            Message::Forward {
                rid,
                sender,
                to,
                payload,
            }
        }
        (true, 0x84, 5) | (false, 0x84, 6) => {
            let status = reader.byte()?;
            if status > 1 {
                return None;
            }
            if federation {
                Message::Forwarded { rid, status }
            } else {
                Message::SignalSent { rid, status }
            }
        }
        (false, 0x85, 5 | 8) => {
            let peer = reader.blob(MAX_ID_LENGTH)?;
            let payload = reader.blob(MAX_BLOB)?;
            if !is_peer_id(peer) {
                return None;
            }
            if kind == 5 {
                Message::Signal {
                    rid,
                    to: peer,
                    payload,
                }
            } else if rid == 0 {
                Message::Incoming {
                    sender: peer,
                    payload,
                }
            } else {
                return None;
            }
        }
        _ => return None,
    };
    reader.at_end().then_some(message)
}

/// Split a byte stream into uvarint-length-prefixed frames: the (start, end) of each
/// whole frame body in `data` and how many bytes they used (the rest waits for more).
/// The errors and their texts are `neonet.proto.ssn.client_protocol.FrameDecoder`'s.
pub fn split_frames(data: &[u8], max_frame: u64) -> Result<(Vec<(usize, usize)>, usize), Error> {
    let mut frames = Vec::new();
    let mut offset = 0;
    loop {
        let rest = &data[offset..];
        let Some(last) = rest.iter().take(9).position(|&byte| byte & 0x80 == 0) else {
            if rest.len() >= 9 {
                return Err(Error::Decode("varint longer than 9 bytes".into()));
            }
            return Ok((frames, offset));
        };
        if rest[last] == 0 && last != 0 {
            return Err(Error::Decode("non-minimal varint".into()));
        }
        let length = rest[..=last]
            .iter()
            .rev()
            .fold(0u64, |value, &byte| value << 7 | u64::from(byte & 0x7f));
        if length > max_frame {
            return Err(Error::Decode(format!(
                "frame of {length} bytes exceeds {max_frame}"
            )));
        }
        let start = offset + last + 1;
        if ((data.len() - start) as u64) < length {
            return Ok((frames, offset));
        }
        let end = start + length as usize;
        frames.push((start, end));
        offset = end;
    }
}

fn push_head(out: &mut Vec<u8>, major: u8, value: u64) {
    match value {
        0..=0x17 => out.push(major | value as u8),
        0x18..=0xff => out.extend_from_slice(&[major | 0x18, value as u8]),
        0x100..=0xffff => {
            out.push(major | 0x19);
            out.extend_from_slice(&(value as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(major | 0x1a);
            out.extend_from_slice(&(value as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 0x1b);
            out.extend_from_slice(&value.to_be_bytes());
        }
    }
}

fn push_blob(out: &mut Vec<u8>, blob: &[u8]) {
    push_head(out, 0x40, blob.len() as u64);
    out.extend_from_slice(blob);
}

fn check(rid: u64, blobs: &[&[u8]]) -> Result<(), Error> {
    if rid > MAX_REQUEST_ID {
        return Err(Error::InvalidArgument("request ID out of range".into()));
    }
    if blobs.iter().any(|blob| blob.len() > MAX_BLOB) {
        return Err(Error::InvalidArgument("byte string too long".into()));
    }
    Ok(())
}

/// The frame (varint length, then `body`'s bytes).
fn framed(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 3);
    let mut length = body.len() as u64;
    while length >= 0x80 {
        out.push((length as u8 & 0x7f) | 0x80);
        length >>= 7;
    }
    out.push(length as u8);
    out.extend_from_slice(&body);
    out
}

/// The frame of client SIGNAL `[1, 5, rid, to, payload]`.
pub fn encode_signal(rid: u64, to: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    check(rid, &[to, payload])?;
    let mut body = Vec::with_capacity(to.len() + payload.len() + 16);
    body.extend_from_slice(&[0x85, 0x01, 0x05]);
    push_head(&mut body, 0, rid);
    push_blob(&mut body, to);
    push_blob(&mut body, payload);
    Ok(framed(body))
}

/// The frame of client INCOMING `[1, 8, 0, sender, payload]`.
pub fn encode_incoming(sender: &[u8], payload: &[u8]) -> Result<Vec<u8>, Error> {
    check(0, &[sender, payload])?;
    let mut body = Vec::with_capacity(sender.len() + payload.len() + 16);
    body.extend_from_slice(&[0x85, 0x01, 0x08, 0x00]);
    push_blob(&mut body, sender);
    push_blob(&mut body, payload);
    Ok(framed(body))
}

/// The frame of federation FORWARD `[1, 2, rid, sender, to, payload]`.
pub fn encode_forward(
    rid: u64,
    sender: &[u8],
    to: &[u8],
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    check(rid, &[sender, to, payload])?;
    let mut body = Vec::with_capacity(sender.len() + to.len() + payload.len() + 20);
    body.extend_from_slice(&[0x86, 0x01, 0x02]);
    push_head(&mut body, 0, rid);
    push_blob(&mut body, sender);
    push_blob(&mut body, to);
    push_blob(&mut body, payload);
    Ok(framed(body))
}

/// The frame of client SIGNAL_SENT `[1, 6, rid, status]` or, `federation`, FORWARDED
/// `[1, 5, rid, status]`.
pub fn encode_status(federation: bool, rid: u64, status: u8) -> Result<Vec<u8>, Error> {
    check(rid, &[])?;
    if status > 1 {
        return Err(Error::InvalidArgument("unknown signal status".into()));
    }
    let mut body = Vec::with_capacity(14);
    body.extend_from_slice(&[0x84, 0x01, if federation { 0x05 } else { 0x06 }]);
    push_head(&mut body, 0, rid);
    body.push(status);
    Ok(framed(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Vec<u8> {
        let mut raw = vec![0x00, 36];
        raw.extend_from_slice(&[8; 36]);
        raw
    }

    #[test]
    fn every_message_round_trips() {
        let (to, from) = (peer(), peer());
        for rid in [
            0u64,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            1 << 32,
            MAX_REQUEST_ID,
        ] {
            let frame = encode_signal(rid, &to, b"offer").unwrap();
            assert_eq!(usize::from(frame[0]), frame.len() - 1);
            assert_eq!(
                parse(&frame[1..], false),
                Some(Message::Signal {
                    rid,
                    to: &to,
                    payload: b"offer"
                })
            );
            assert_eq!(parse(&frame[1..], true), None);
            let frame = encode_forward(rid, &from, &to, b"x").unwrap();
            assert_eq!(
                parse(&frame[1..], true),
                Some(Message::Forward {
                    rid,
                    sender: &from,
                    to: &to,
                    payload: b"x"
                })
            );
            for status in [0, 1] {
                let frame = encode_status(true, rid, status).unwrap();
                assert_eq!(
                    parse(&frame[1..], true),
                    Some(Message::Forwarded { rid, status })
                );
                let frame = encode_status(false, rid, status).unwrap();
                assert_eq!(
                    parse(&frame[1..], false),
                    Some(Message::SignalSent { rid, status })
                );
            }
        }
        let frame = encode_incoming(&from, &[7; 300]).unwrap();
        assert_eq!(&frame[..2], &[0xdb, 0x02]); // a two-byte length prefix (347)
        assert_eq!(
            parse(&frame[2..], false),
            Some(Message::Incoming {
                sender: &from,
                payload: &[7; 300]
            })
        );
    }

    #[test]
    fn refuses_what_the_general_decoder_would_question() {
        let to = peer();
        let frame = encode_signal(5, &to, b"offer").unwrap();
        let body = &frame[1..];
        assert!(parse(&body[..body.len() - 1], false).is_none()); // truncated
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(parse(&longer, false).is_none()); // trailing bytes
        let mut wide = vec![0x85, 0x01, 0x05, 0x18, 0x05]; // rid 5 in two bytes
        wide.extend_from_slice(&body[4..]);
        assert!(parse(&wide, false).is_none());
        let mut bad_peer = body.to_vec();
        bad_peer[5] = 0x01; // multihash code 1
        assert!(parse(&bad_peer, false).is_none());
        assert!(parse(&[0x84, 0x01, 0x06, 0x01, 0x02], false).is_none()); // status 2
        assert!(parse(&[0x84, 0x02, 0x06, 0x01, 0x00], false).is_none()); // version 2
        assert!(encode_status(false, 1, 2).is_err());
        assert!(encode_signal(MAX_REQUEST_ID + 1, &to, b"").is_err());
    }

    #[test]
    fn frames_split_in_any_chunking() {
        let mut stream = encode_signal(1, &peer(), &[5; 200]).unwrap();
        stream.extend(encode_status(false, 2, 0).unwrap());
        let (frames, used) = split_frames(&stream, 65_536).unwrap();
        assert_eq!(used, stream.len());
        assert_eq!(frames.len(), 2);
        assert_eq!(
            parse(&stream[frames[1].0..frames[1].1], false),
            Some(Message::SignalSent { rid: 2, status: 0 })
        );
        let (frames, used) = split_frames(&stream[..stream.len() - 1], 65_536).unwrap();
        assert_eq!((frames.len(), used), (1, frames[0].1));
        assert_eq!(split_frames(&[0x80], 10).unwrap(), (vec![], 0));
        assert!(split_frames(&[0x80, 0x00], 10).is_err()); // non-minimal
        assert!(split_frames(&[0xff; 9], 10).is_err()); // longer than 9 bytes
        assert!(split_frames(&[11], 10).is_err()); // over the frame limit
    }

    #[test]
    fn peer_ids() {
        assert!(is_peer_id(&peer()));
        let mut sha = vec![0x12, 32];
        sha.extend_from_slice(&[1; 32]);
        assert!(is_peer_id(&sha));
        assert!(!is_peer_id(&sha[..33]));
        assert!(!is_peer_id(&[]));
        assert!(!is_peer_id(&[0x00, 0x80, 0x00])); // non-minimal varint
    }
}
