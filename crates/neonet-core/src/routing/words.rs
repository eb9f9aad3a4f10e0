//! Kademlia keys as four big-endian `u64` words: XOR, comparison and shared-prefix
//! length in four word operations (used by the table, its lookups and the sorted
//! key stores).

use super::{kad_key, Key, BUCKET_COUNT, KEY_LENGTH};

/// A key as four big-endian words: array order is numeric order.
pub(super) type Words = [u64; 4];

pub(super) fn words(key: &Key) -> Words {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(key.chunks_exact(8)) {
        *word = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    out
}

pub(super) fn key_of_words(value: &Words) -> Key {
    let mut out = [0u8; KEY_LENGTH];
    for (chunk, word) in out.chunks_exact_mut(8).zip(value) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

pub(super) fn xor(a: &Words, b: &Words) -> Words {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

/// Leading zero bits of a 256-bit value (256 for zero).
pub(super) fn leading_zeros(value: &Words) -> usize {
    let mut total = 0;
    for word in value {
        if *word != 0 {
            return total + word.leading_zeros() as usize;
        }
        total += 64;
    }
    total
}

/// Bit `position` counted from the most significant bit (0..=255).
pub(super) fn bit(value: &Words, position: usize) -> bool {
    value[position / 64] >> (63 - position % 64) & 1 == 1
}

pub(super) fn peer_words(peer_id: &[u8]) -> Words {
    words(&kad_key(peer_id))
}

/// Indices of the set bits of `value` from `start` on, ascending.
pub(super) fn set_bits(value: &Words, start: usize) -> impl Iterator<Item = usize> + '_ {
    (start / 64..4)
        .flat_map(move |word| {
            let mut bits = value[word];
            if word == start / 64 {
                bits &= u64::MAX >> (start % 64);
            }
            std::iter::from_fn(move || {
                if bits == 0 {
                    return None;
                }
                let offset = bits.leading_zeros() as usize;
                bits &= !(1u64 << (63 - offset));
                Some(word * 64 + offset)
            })
        })
        .take_while(|&index| index < BUCKET_COUNT)
}

/// Shared-prefix length of `key` and `target` (the first word decides almost always).
pub(super) fn shared_prefix(key: &Words, target: &Words) -> usize {
    let head = key[0] ^ target[0];
    if head != 0 {
        head.leading_zeros() as usize
    } else {
        leading_zeros(&xor(key, target))
    }
}
