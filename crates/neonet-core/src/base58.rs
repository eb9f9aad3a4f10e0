//! base58btc (Bitcoin alphabet), the text form of libp2p peer IDs.
//!
//! Same limits and error texts as the pure-Python twin `neonet.core.base58`.

use crate::Error;

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// Inputs longer than this are refused so hostile input cannot cost quadratic time.
pub const MAX_INPUT: usize = 1024;

const fn build_index() -> [i8; 128] {
    let mut index = [-1i8; 128];
    let mut position = 0;
    while position < 58 {
        index[ALPHABET[position] as usize] = position as i8;
        position += 1;
    }
    index
}

const INDEX: [i8; 128] = build_index();

/// Encode bytes as base58btc text.
pub fn encode(data: &[u8]) -> Result<String, Error> {
    if data.len() > MAX_INPUT {
        return Err(Error::InvalidArgument(format!(
            "base58 input longer than {MAX_INPUT} bytes"
        )));
    }
    let zeros = data.iter().take_while(|&&byte| byte == 0).count();
    // Little-endian base-58 digits of the big-endian number in `data`.
    let mut digits: Vec<u8> = Vec::with_capacity(data.len() * 138 / 100 + 1);
    for &byte in &data[zeros..] {
        let mut carry = u32::from(byte);
        for digit in digits.iter_mut() {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|&digit| ALPHABET[digit as usize] as char),
    );
    Ok(text)
}

/// Decode base58btc text to bytes.
pub fn decode(text: &str) -> Result<Vec<u8>, Error> {
    if text.len() > MAX_INPUT * 2 {
        return Err(Error::Decode(format!(
            "base58 text longer than {} characters",
            MAX_INPUT * 2
        )));
    }
    let zeros = text.bytes().take_while(|&byte| byte == b'1').count();
    // Little-endian base-256 bytes of the number.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for (position, character) in text.chars().enumerate() {
        let value = if (character as u32) < 128 {
            INDEX[character as usize]
        } else {
            -1
        };
        if value < 0 {
            return Err(Error::Decode(format!(
                "invalid base58 character U+{:04X} at position {position}",
                character as u32
            )));
        }
        let mut carry = value as u32;
        for byte in bytes.iter_mut() {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    // The leading '1's were folded into the number as zeros; strip and re-add them.
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    let mut out = vec![0u8; zeros];
    out.extend(bytes.iter().rev());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(encode(b"").unwrap(), "");
        assert_eq!(encode(b"hello world").unwrap(), "StV1DL6CwTryKyV");
        assert_eq!(encode(&[0, 0, 1]).unwrap(), "112");
        assert_eq!(decode("StV1DL6CwTryKyV").unwrap(), b"hello world");
        assert_eq!(decode("112").unwrap(), vec![0, 0, 1]);
        assert_eq!(decode("1").unwrap(), vec![0]);
    }

    #[test]
    fn round_trip_many() {
        for length in 0..64usize {
            let data: Vec<u8> = (0..length).map(|index| (index * 37 % 256) as u8).collect();
            assert_eq!(decode(&encode(&data).unwrap()).unwrap(), data);
            let mut zeros = vec![0u8; 3];
            zeros.extend(&data);
            assert_eq!(decode(&encode(&zeros).unwrap()).unwrap(), zeros);
        }
    }

    #[test]
    fn rejects_bad_characters_and_oversize() {
        assert!(matches!(decode("0OIl"), Err(Error::Decode(_))));
        assert!(matches!(decode("é"), Err(Error::Decode(_))));
        assert!(matches!(
            encode(&[1u8; MAX_INPUT + 1]),
            Err(Error::InvalidArgument(_))
        ));
    }
}
