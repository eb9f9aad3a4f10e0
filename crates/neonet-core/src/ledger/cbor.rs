//! Canonical CBOR: the one encoding NeoNet signs and hashes (ARCHITECTURE.md, decision 2).
//!
//! The subset is RFC 8949 §4.2.1 ("core deterministic encoding") restricted further:
//! unsigned and negative integers within 64 bits (major types 0 and 1), byte strings,
//! UTF-8 text, arrays, `true`, `false` and `null`. Every head uses its shortest form and
//! every length is definite. Maps, tags, floats, other simple values and indefinite
//! lengths are refused, and so is anything after the top-level value, so a decoded value
//! re-encodes to exactly the input bytes. Input size and array nesting are bounded.
//!
//! The pure-Python twin is `neonet.core.cbor` (cbor2 plus the same checks); both accept
//! and refuse exactly the same byte strings and produce the same bytes.

use std::borrow::Cow;

use crate::Error;

/// Largest encoded value accepted or produced, in bytes.
pub const MAX_SIZE: usize = 1 << 20;
/// Deepest array nesting accepted or produced (a top-level array is depth 1).
pub const MAX_DEPTH: usize = 32;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_MAP: u8 = 5;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const FALSE: u8 = 20;
const TRUE: u8 = 21;
const NULL: u8 = 22;

/// A value of the canonical subset; byte and text strings borrow from the input when decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer in `0..=u64::MAX` (major type 0).
    Unsigned(u64),
    /// The integer `-1 - n` (major type 1), so `-2^64..=-1`.
    Negative(u64),
    /// A byte string.
    Bytes(Cow<'a, [u8]>),
    /// A UTF-8 text string.
    Text(Cow<'a, str>),
    /// A definite-length array.
    Array(Vec<Value<'a>>),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// Append a shortest-form head (major type and argument) to `out`.
pub(crate) fn write_head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    if argument < 24 {
        out.push(major | argument as u8);
    } else if argument <= u64::from(u8::MAX) {
        out.push(major | 24);
        out.push(argument as u8);
    } else if argument <= u64::from(u16::MAX) {
        out.push(major | 25);
        out.extend_from_slice(&(argument as u16).to_be_bytes());
    } else if argument <= u64::from(u32::MAX) {
        out.push(major | 26);
        out.extend_from_slice(&(argument as u32).to_be_bytes());
    } else {
        out.push(major | 27);
        out.extend_from_slice(&argument.to_be_bytes());
    }
}

/// Encode a value canonically; `InvalidArgument` if it nests too deep or exceeds [`MAX_SIZE`].
pub fn encode(value: &Value<'_>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    encode_into(value, &mut out, 0)?;
    if out.len() > MAX_SIZE {
        return Err(Error::InvalidArgument(format!(
            "encoded CBOR exceeds {MAX_SIZE} bytes"
        )));
    }
    Ok(out)
}

fn encode_into(value: &Value<'_>, out: &mut Vec<u8>, depth: usize) -> Result<(), Error> {
    match value {
        Value::Unsigned(number) => write_head(out, MAJOR_UNSIGNED, *number),
        Value::Negative(number) => write_head(out, MAJOR_NEGATIVE, *number),
        Value::Bytes(bytes) => {
            write_head(out, MAJOR_BYTES, bytes.len() as u64);
            out.extend_from_slice(bytes);
        }
        Value::Text(text) => {
            write_head(out, MAJOR_TEXT, text.len() as u64);
            out.extend_from_slice(text.as_bytes());
        }
        Value::Array(items) => {
            if depth >= MAX_DEPTH {
                return Err(Error::InvalidArgument(too_deep()));
            }
            write_head(out, MAJOR_ARRAY, items.len() as u64);
            for item in items {
                encode_into(item, out, depth + 1)?;
            }
        }
        Value::Bool(false) => out.push((MAJOR_SIMPLE << 5) | FALSE),
        Value::Bool(true) => out.push((MAJOR_SIMPLE << 5) | TRUE),
        Value::Null => out.push((MAJOR_SIMPLE << 5) | NULL),
    }
    Ok(())
}

pub(crate) fn too_deep() -> String {
    format!("CBOR arrays nested deeper than {MAX_DEPTH}")
}

/// Decode one canonical value that spans all of `data`; `Error::Decode` on anything else.
pub fn decode(data: &[u8]) -> Result<Value<'_>, Error> {
    if data.len() > MAX_SIZE {
        return Err(Error::Decode(format!(
            "CBOR input of {} bytes exceeds {MAX_SIZE}",
            data.len()
        )));
    }
    let mut reader = Reader { data, position: 0 };
    let value = reader.value(0)?;
    if reader.position != data.len() {
        return Err(Error::Decode("trailing bytes after the CBOR value".into()));
    }
    Ok(value)
}

struct Reader<'a> {
    data: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], Error> {
        let remaining = self.data.len() - self.position;
        if count > remaining {
            return Err(Error::Decode("truncated CBOR".into()));
        }
        let slice = &self.data[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }

    /// Read a head: (major type, additional information, argument), shortest form enforced.
    fn head(&mut self) -> Result<(u8, u8, u64), Error> {
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1f);
        let (argument, minimum) = match info {
            0..=23 => return Ok((major, info, u64::from(info))),
            24 => (u64::from(self.take(1)?[0]), 24),
            25 => (u64::from(u16::from_be_bytes(self.fixed()?)), 1 << 8),
            26 => (u64::from(u32::from_be_bytes(self.fixed()?)), 1 << 16),
            27 => (u64::from_be_bytes(self.fixed()?), 1 << 32),
            31 => {
                return Err(Error::Decode(
                    "indefinite-length CBOR is not allowed".into(),
                ))
            }
            _ => return Err(Error::Decode("reserved CBOR additional information".into())),
        };
        // Simple values and floats keep their own meaning of info 24..27: refused below.
        if major != MAJOR_SIMPLE && argument < minimum {
            return Err(Error::Decode(
                "CBOR head is not in its shortest form".into(),
            ));
        }
        Ok((major, info, argument))
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut bytes = [0u8; N];
        bytes.copy_from_slice(self.take(N)?);
        Ok(bytes)
    }

    fn length(&mut self, argument: u64) -> Result<usize, Error> {
        // Each item or byte needs at least one input byte; refusing larger claims up front
        // keeps a forged length from reserving memory.
        match usize::try_from(argument) {
            Ok(length) if length <= self.data.len() - self.position => Ok(length),
            _ => Err(Error::Decode("truncated CBOR".into())),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, Error> {
        let (major, info, argument) = self.head()?;
        match major {
            MAJOR_UNSIGNED => Ok(Value::Unsigned(argument)),
            MAJOR_NEGATIVE => Ok(Value::Negative(argument)),
            MAJOR_BYTES => {
                let length = self.length(argument)?;
                Ok(Value::Bytes(Cow::Borrowed(self.take(length)?)))
            }
            MAJOR_TEXT => {
                let length = self.length(argument)?;
                let text = std::str::from_utf8(self.take(length)?)
                    .map_err(|_| Error::Decode("CBOR text is not valid UTF-8".into()))?;
                Ok(Value::Text(Cow::Borrowed(text)))
            }
            MAJOR_ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(Error::Decode(too_deep()));
                }
                let length = self.length(argument)?;
                let mut items = Vec::with_capacity(length);
                for _ in 0..length {
                    items.push(self.value(depth + 1)?);
                }
                Ok(Value::Array(items))
            }
            MAJOR_MAP => Err(Error::Decode("CBOR maps are not allowed".into())),
            MAJOR_TAG => Err(Error::Decode("CBOR tags are not allowed".into())),
            _ => match info {
                FALSE => Ok(Value::Bool(false)),
                TRUE => Ok(Value::Bool(true)),
                NULL => Ok(Value::Null),
                _ => Err(Error::Decode(
                    "CBOR floats and simple values other than true, false and null are not allowed"
                        .into(),
                )),
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn bytes(data: &[u8]) -> Value<'_> {
        Value::Bytes(Cow::Borrowed(data))
    }

    #[test]
    fn known_encodings() {
        let cases: Vec<(Value<'_>, &str)> = vec![
            (Value::Unsigned(0), "00"),
            (Value::Unsigned(23), "17"),
            (Value::Unsigned(24), "1818"),
            (Value::Unsigned(255), "18ff"),
            (Value::Unsigned(256), "190100"),
            (Value::Unsigned(65_536), "1a00010000"),
            (Value::Unsigned(u64::MAX), "1bffffffffffffffff"),
            (Value::Negative(0), "20"),
            (Value::Negative(u64::MAX), "3bffffffffffffffff"),
            (bytes(b""), "40"),
            (bytes(b"\x01\x02"), "420102"),
            (Value::Text(Cow::Borrowed("a")), "6161"),
            (Value::Array(vec![]), "80"),
            (
                Value::Array(vec![Value::Unsigned(1), Value::Array(vec![Value::Null])]),
                "8201 81f6",
            ),
            (Value::Bool(false), "f4"),
            (Value::Bool(true), "f5"),
        ];
        for (value, hex) in cases {
            let expected = hex_decode(&hex.replace(' ', ""));
            assert_eq!(encode(&value).unwrap(), expected, "{value:?}");
            assert_eq!(decode(&expected).unwrap(), value);
        }
    }

    #[test]
    fn refuses_everything_outside_the_subset() {
        let refused = [
            "",                   // nothing
            "1801",               // non-shortest integer
            "190017",             // non-shortest
            "1a000000ff",         // non-shortest
            "1b00000000ffffffff", // non-shortest
            "5801ff",             // non-shortest byte-string length
            "9f01ff",             // indefinite array
            "5f41ff",             // indefinite bytes
            "a10102",             // map
            "c24101",             // tag (bignum)
            "f7",                 // undefined
            "f90000",             // half float
            "fb0000000000000000", // double
            "f820",               // simple value 32
            "f0",                 // simple value 16
            "1c",                 // reserved info
            "0102",               // trailing bytes
            "62ff",               // truncated text
            "62fffe",             // invalid UTF-8
            "63eda080",           // a UTF-16 surrogate in UTF-8
            "9bffffffffffffffff", // absurd array length
            "5b0000001000000000", // absurd byte length
        ];
        for hex in refused {
            let data = hex_decode(hex);
            assert!(matches!(decode(&data), Err(Error::Decode(_))), "{hex}");
        }
    }

    #[test]
    fn depth_and_size_limits() {
        let mut nested = vec![0x81u8; MAX_DEPTH];
        nested.push(0x00);
        assert!(decode(&nested).is_ok());
        let mut deeper = vec![0x81u8; MAX_DEPTH + 1];
        deeper.push(0x00);
        assert!(matches!(decode(&deeper), Err(Error::Decode(_))));

        let mut value = Value::Unsigned(0);
        for _ in 0..MAX_DEPTH {
            value = Value::Array(vec![value]);
        }
        assert_eq!(encode(&value).unwrap(), nested);
        let too_deep = Value::Array(vec![value]);
        assert!(matches!(encode(&too_deep), Err(Error::InvalidArgument(_))));

        let big = vec![0u8; MAX_SIZE];
        assert!(matches!(
            encode(&Value::Bytes(Cow::Owned(big))),
            Err(Error::InvalidArgument(_))
        ));
        let mut oversized = vec![0x5a, 0x00, 0x10, 0x00, 0x00];
        oversized.extend(vec![0u8; MAX_SIZE]);
        assert!(matches!(decode(&oversized), Err(Error::Decode(_))));
    }

    pub(crate) fn hex_decode(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap())
            .collect()
    }
}
