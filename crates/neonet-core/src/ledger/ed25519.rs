//! Ed25519 verification under the ZIP-215 rules, one signature or a batch with a verdict each.
//!
//! ZIP-215 (<https://zips.z.cash/zip-0215>) fixes what a valid signature is, so that
//! single and batch verification agree on every input: `S` must be canonical (`S < L`);
//! the encodings of `A` (public key) and `R` may be non-canonical and the points may
//! have small order; the check is the cofactored equation `[8][S]B = [8]R + [8][k]A`
//! with `k = SHA-512(R_bytes || A_bytes || M) mod L` over the bytes as given.
//! `ed25519-zebra` implements exactly these rules (single and batch); this module adds
//! per-item verdicts: items are verified in chunks with a random linear combination, and
//! a chunk that fails is re-checked item by item, so each verdict is the single verdict.
//!
//! The batch coefficients are 128-bit values from a BLAKE3 stream keyed with 32 bytes
//! from the operating system. The verdicts do not depend on them (a forged batch passes
//! with probability 2^-128); if the OS cannot provide randomness, every item is checked
//! on its own.

use ed25519_zebra::batch;
use ed25519_zebra::{Signature, VerificationKey, VerificationKeyBytes};
use rand_core::{CryptoRng, OsRng, RngCore};

/// Most items one `verify_batch` call of the Python API accepts (ValueError above). The
/// bound is set by the pure twin, whose exact ZIP-215 check of a crafted signature
/// costs 2-3 ms: 4096 of them stay around ten seconds.
pub const MAX_BATCH: usize = 4096;
/// Items per random linear combination. Large enough that the multi-scalar
/// multiplication is efficient, small enough that one bad signature costs at most this
/// many single verifications.
pub const CHUNK: usize = 256;

/// One signature to check: public key, message, signature (any lengths; wrong lengths fail).
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The signer's public key, 32 bytes when well formed.
    pub public_key: &'a [u8],
    /// The signed message.
    pub message: &'a [u8],
    /// The signature `R || S`, 64 bytes when well formed.
    pub signature: &'a [u8],
}

/// Verify one signature under ZIP-215.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Some((key_bytes, signature)) = parse(public_key, signature) else {
        return false;
    };
    VerificationKey::try_from(key_bytes)
        .and_then(|key| key.verify(&signature, message))
        .is_ok()
}

fn parse(public_key: &[u8], signature: &[u8]) -> Option<(VerificationKeyBytes, Signature)> {
    let key_bytes = VerificationKeyBytes::try_from(public_key).ok()?;
    let signature: &[u8; 64] = signature.try_into().ok()?;
    Some((key_bytes, Signature::from_bytes(signature)))
}

/// Verify many signatures; `verdicts[i]` is what [`verify`] says about `items[i]`.
pub fn verify_batch(items: &[Item<'_>]) -> Vec<bool> {
    let mut verdicts = vec![false; items.len()];
    let mut rng = CoefficientRng::from_os();
    for (chunk_index, chunk) in items.chunks(CHUNK).enumerate() {
        let offset = chunk_index * CHUNK;
        let prepared: Vec<(usize, batch::Item)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(index, item)| prepare(item).map(|prepared| (offset + index, prepared)))
            .collect();
        if batch_holds(&prepared, rng.as_mut()) {
            for (index, _) in &prepared {
                verdicts[*index] = true;
            }
        } else {
            for (index, item) in prepared {
                verdicts[index] = item.verify_single().is_ok();
            }
        }
    }
    verdicts
}

/// The index of the first item that does not verify, or `None` if all do.
///
/// Same verdicts as [`verify_batch`], but a failed chunk is re-checked only up to its
/// first bad item (what a chain check needs).
pub fn first_invalid(items: &[Item<'_>]) -> Option<usize> {
    let mut rng = CoefficientRng::from_os();
    for (chunk_index, chunk) in items.chunks(CHUNK).enumerate() {
        let offset = chunk_index * CHUNK;
        let mut prepared = Vec::with_capacity(chunk.len());
        for (index, item) in chunk.iter().enumerate() {
            match prepare(item) {
                Some(item) => prepared.push((offset + index, item)),
                // Malformed lengths cannot verify; later items of this chunk do not matter.
                None => {
                    return first_bad_single(&prepared).or(Some(offset + index));
                }
            }
        }
        if !batch_holds(&prepared, rng.as_mut()) {
            return first_bad_single(&prepared);
        }
    }
    None
}

fn first_bad_single(prepared: &[(usize, batch::Item)]) -> Option<usize> {
    prepared
        .iter()
        .find(|(_, item)| item.clone().verify_single().is_err())
        .map(|(index, _)| *index)
}

fn prepare(item: &Item<'_>) -> Option<batch::Item> {
    let (key_bytes, signature) = parse(item.public_key, item.signature)?;
    Some(batch::Item::from((key_bytes, signature, item.message)))
}

/// Whether the random linear combination of all prepared items holds (false without an RNG).
fn batch_holds(prepared: &[(usize, batch::Item)], rng: Option<&mut CoefficientRng>) -> bool {
    let Some(rng) = rng else {
        return false;
    };
    if prepared.is_empty() {
        return true;
    }
    let mut verifier = batch::Verifier::new();
    for (_, item) in prepared {
        verifier.queue(item.clone());
    }
    verifier.verify(rng).is_ok()
}

/// A BLAKE3 output stream keyed from the OS: one system call per batch, not per item.
struct CoefficientRng(blake3::OutputReader);

impl CoefficientRng {
    fn from_os() -> Option<Self> {
        let mut seed = [0u8; 32];
        OsRng.try_fill_bytes(&mut seed).ok()?;
        Some(Self(blake3::Hasher::new_keyed(&seed).finalize_xof()))
    }
}

impl RngCore for CoefficientRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.0.fill(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.0.fill(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, destination: &mut [u8]) {
        self.0.fill(destination);
    }

    fn try_fill_bytes(&mut self, destination: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.fill(destination);
        Ok(())
    }
}

impl CryptoRng for CoefficientRng {}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use curve25519_dalek::constants::EIGHT_TORSION;
    use ed25519_zebra::SigningKey;

    pub(crate) fn signing_key(seed: u8) -> SigningKey {
        SigningKey::from([seed; 32])
    }

    pub(crate) fn sign(key: &SigningKey, message: &[u8]) -> ([u8; 32], [u8; 64]) {
        let public: VerificationKeyBytes = key.into();
        (public.into(), key.sign(message).to_bytes())
    }

    const P_LOW: [u8; 32] = {
        // p = 2^255 - 19, little-endian.
        let mut bytes = [0xffu8; 32];
        bytes[0] = 0xed;
        bytes[31] = 0x7f;
        bytes
    };

    fn add_p(encoding: &[u8; 32]) -> Option<[u8; 32]> {
        // y + p as a 255-bit number, keeping the sign bit; None if it does not fit.
        let sign = encoding[31] & 0x80;
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for index in 0..32 {
            let limb = if index == 31 {
                encoding[31] & 0x7f
            } else {
                encoding[index]
            };
            let sum = u16::from(limb) + u16::from(P_LOW[index]) + carry;
            out[index] = sum as u8;
            carry = sum >> 8;
        }
        if carry != 0 || out[31] & 0x80 != 0 {
            return None;
        }
        out[31] |= sign;
        Some(out)
    }

    /// Every encoding (canonical or not) of each of the 8 small-order points: 14 in all.
    pub(crate) fn small_order_encodings() -> Vec<[u8; 32]> {
        let mut encodings = Vec::new();
        for point in EIGHT_TORSION.iter() {
            let canonical = point.compress().to_bytes();
            let mut candidates = vec![canonical];
            candidates.extend(add_p(&canonical));
            let flipped: Vec<[u8; 32]> = candidates
                .iter()
                .map(|encoding| {
                    let mut other = *encoding;
                    other[31] ^= 0x80;
                    other
                })
                .collect();
            candidates.extend(flipped);
            for candidate in candidates {
                let decoded = curve25519_dalek::edwards::CompressedEdwardsY(candidate).decompress();
                if decoded == Some(*point) && !encodings.contains(&candidate) {
                    encodings.push(candidate);
                }
            }
        }
        encodings
    }

    #[test]
    fn small_order_cases_all_verify_singly_and_in_batch() {
        let encodings = small_order_encodings();
        assert_eq!(encodings.len(), 14);
        let message = b"Zcash";
        let mut signatures = Vec::new();
        for public_key in &encodings {
            for r in &encodings {
                let mut signature = [0u8; 64];
                signature[..32].copy_from_slice(r);
                signatures.push((*public_key, signature));
            }
        }
        assert_eq!(signatures.len(), 196);
        let items: Vec<Item<'_>> = signatures
            .iter()
            .map(|(public_key, signature)| Item {
                public_key,
                message,
                signature,
            })
            .collect();
        for item in &items {
            assert!(verify(item.public_key, item.message, item.signature));
        }
        assert!(verify_batch(&items).iter().all(|&verdict| verdict));
        assert_eq!(first_invalid(&items), None);
    }

    #[test]
    fn batch_verdicts_match_single_verdicts() {
        let key = signing_key(7);
        let other = signing_key(8);
        let mut owned = Vec::new();
        for index in 0..300u32 {
            let message = index.to_le_bytes().to_vec();
            let signer = if index % 3 == 0 { &other } else { &key };
            let (public_key, mut signature) = sign(signer, &message);
            match index % 97 {
                5 => signature[10] ^= 1,    // bad R
                6 => signature[40] ^= 1,    // bad S
                7 => signature[63] |= 0x10, // S >= L
                _ => {}
            }
            owned.push((public_key.to_vec(), message, signature.to_vec()));
        }
        owned.push((vec![1u8; 31], b"short key".to_vec(), vec![0u8; 64]));
        owned.push((vec![1u8; 32], b"short signature".to_vec(), vec![0u8; 63]));
        let items: Vec<Item<'_>> = owned
            .iter()
            .map(|(public_key, message, signature)| Item {
                public_key,
                message,
                signature,
            })
            .collect();
        let singles: Vec<bool> = items
            .iter()
            .map(|item| verify(item.public_key, item.message, item.signature))
            .collect();
        assert_eq!(verify_batch(&items), singles);
        assert_eq!(singles.iter().filter(|&&verdict| !verdict).count(), 14);
        assert_eq!(first_invalid(&items), singles.iter().position(|&ok| !ok));
        assert_eq!(first_invalid(&items[..5]), None);
        assert!(verify_batch(&[]).is_empty());
    }

    #[test]
    fn s_must_be_canonical() {
        // L + S for a valid S is rejected although it is congruent.
        let key = signing_key(9);
        let (public_key, signature) = sign(&key, b"m");
        let mut s = [0u8; 32];
        s.copy_from_slice(&signature[32..]);
        let order = crate::ledger::cbor::tests::hex_decode(
            "edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010",
        );
        let mut carry = 0u16;
        for index in 0..32 {
            let sum = u16::from(s[index]) + u16::from(order[index]) + carry;
            s[index] = sum as u8;
            carry = sum >> 8;
        }
        assert_eq!(carry, 0);
        let mut forged = signature;
        forged[32..].copy_from_slice(&s);
        assert!(verify(&public_key, b"m", &signature));
        assert!(!verify(&public_key, b"m", &forged));
    }
}
