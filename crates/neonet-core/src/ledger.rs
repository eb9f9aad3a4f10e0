//! NeoBankof ledger blocks: canonical encoding, hashing, chain checks, Ed25519 (ZIP-215).
//!
//! The block format is specified in `docs/ledger.md` (ARCHITECTURE.md, "NeoBankof"). A
//! signed block is the canonical CBOR array `[body, signature]` with
//! `body = [1, account, sequence, previous, kind, amount, balance, key, payload]`; its
//! hash is BLAKE3 in derive-key mode with the context [`BLOCK_HASH_CONTEXT`] over the
//! body's canonical encoding, and the signature is Ed25519 by `key` over that hash.
//!
//! The pure-Python twin is `neonet.core.ledger`: same rules, same reason codes and
//! messages, checked by differential tests.

pub mod cbor;
pub mod chain;
pub mod ed25519;

use std::sync::OnceLock;

use blake3::hazmat::HasherExt;
use cbor::Value;

/// The BLAKE3 derive-key context string of block hashes.
pub const BLOCK_HASH_CONTEXT: &str = "NeoNet 2026 bank block v1";
/// The only block format version.
pub const BLOCK_VERSION: u64 = 1;
/// Largest payload a block may carry, in bytes.
pub const MAX_PAYLOAD: usize = 1024;
/// Largest encoded signed block accepted, in bytes (a full payload fits with room).
pub const MAX_BLOCK_SIZE: usize = 2048;

/// Block kinds (`kind` field); any other number is an invalid block.
pub mod kind {
    /// The opening block, sequence 0.
    pub const OPEN: u64 = 0;
    /// Credit that creates money; only on the mint account.
    pub const ISSUE: u64 = 1;
    /// Debit towards another account.
    pub const TRANSFER: u64 = 2;
    /// Credit of a transfer from another account.
    pub const RECEIVE: u64 = 3;
    /// Debit into an offline purse.
    pub const OPEN_PURSE: u64 = 4;
    /// Credit of money received offline.
    pub const REDEEM: u64 = 5;
    /// Key rotation: amount 0, payload is the new key.
    pub const ROTATE_KEY: u64 = 6;
    /// Credit of a payee's claim on a frozen account (the bank checks the payload).
    pub const CLAIM: u64 = 7;
    /// Credit of an expired purse's remainder back to its owner.
    pub const REFUND: u64 = 8;
    /// The highest known kind.
    pub const LAST: u64 = REFUND;
}

/// Why a block was refused: the numeric codes of `neonet.core.ledger.RejectReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reason {
    /// Oversized, or not canonical CBOR.
    Decode = 1,
    /// Canonical CBOR, but not a version-1 signed block with well-formed fields.
    Malformed = 2,
    /// The account differs from the chain's.
    Account = 3,
    /// The sequence number is not the next one.
    Sequence = 4,
    /// `previous` is not the preceding block's hash.
    Previous = 5,
    /// Unknown kind, or a kind not allowed here.
    Kind = 6,
    /// Not the account's current key, or a bad key rotation.
    Key = 7,
    /// Wrong amount or balance, overflow or a negative balance.
    Balance = 8,
    /// The signature does not verify under ZIP-215.
    Signature = 9,
}

/// A decoded signed block, borrowing from the encoded bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef<'a> {
    /// The account ID (its first public key).
    pub account: &'a [u8; 32],
    /// Position in the account's chain; 0 is the opening block.
    pub sequence: u64,
    /// Hash of the preceding block (zeros at sequence 0).
    pub previous: &'a [u8; 32],
    /// One of [`kind`] (unchecked here).
    pub kind: u64,
    /// Amount credited or debited.
    pub amount: u64,
    /// Balance after this block.
    pub balance: u64,
    /// The key that signs this block.
    pub key: &'a [u8; 32],
    /// Opaque payload (the new key for `ROTATE_KEY`).
    pub payload: &'a [u8],
    /// Ed25519 signature over the block hash.
    pub signature: &'a [u8; 64],
    /// The canonical encoding of the body: the bytes that are hashed.
    pub body: &'a [u8],
}

/// A refused block: the reason and the message both backends give.
pub type Refusal = (Reason, String);

fn malformed(message: &str) -> Refusal {
    (Reason::Malformed, message.to_owned())
}

/// Decode a signed block; the refusal is a `Decode` or `Malformed` reason.
pub fn parse_block(data: &[u8]) -> Result<BlockRef<'_>, Refusal> {
    if data.len() > MAX_BLOCK_SIZE {
        return Err((
            Reason::Decode,
            format!(
                "block of {} bytes exceeds {MAX_BLOCK_SIZE} bytes",
                data.len()
            ),
        ));
    }
    let value = cbor::decode(data)
        .map_err(|_| (Reason::Decode, "block is not canonical CBOR".to_owned()))?;
    let Value::Array(outer) = &value else {
        return Err(malformed(
            "a signed block must be the array [body, signature]",
        ));
    };
    let [Value::Array(fields), signature] = outer.as_slice() else {
        return Err(malformed(
            "a signed block must be the array [body, signature]",
        ));
    };
    let [version, account, sequence, previous, kind, amount, balance, key, payload] =
        fields.as_slice()
    else {
        return Err(malformed("a block body must be an array of 9 fields"));
    };
    if *version != Value::Unsigned(BLOCK_VERSION) {
        return Err(malformed("block version must be 1"));
    }
    let account = bytes32(account, "account must be 32 bytes")?;
    let sequence = unsigned(sequence, "sequence must be an unsigned integer")?;
    let previous = bytes32(previous, "previous must be 32 bytes")?;
    let kind = unsigned(kind, "kind must be an unsigned integer")?;
    let amount = unsigned(amount, "amount must be an unsigned integer")?;
    let balance = unsigned(balance, "balance must be an unsigned integer")?;
    let key = bytes32(key, "key must be 32 bytes")?;
    let Value::Bytes(payload) = payload else {
        return Err(malformed("payload must be bytes"));
    };
    let payload = borrowed(payload);
    if payload.len() > MAX_PAYLOAD {
        return Err(malformed("payload exceeds 1024 bytes"));
    }
    let signature: &[u8; 64] = match signature {
        Value::Bytes(bytes) => borrowed(bytes).try_into().ok(),
        _ => None,
    }
    .ok_or_else(|| malformed("signature must be 64 bytes"))?;
    // Canonical form: one byte of array head, the body, then 0x58 0x40 and 64 bytes.
    let body = &data[1..data.len() - 66];
    Ok(BlockRef {
        account,
        sequence,
        previous,
        kind,
        amount,
        balance,
        key,
        payload,
        signature,
        body,
    })
}

fn borrowed<'a>(bytes: &std::borrow::Cow<'a, [u8]>) -> &'a [u8] {
    match bytes {
        std::borrow::Cow::Borrowed(slice) => slice,
        // The decoder only ever borrows.
        std::borrow::Cow::Owned(_) => unreachable!("decoded byte strings borrow the input"),
    }
}

fn bytes32<'a>(value: &Value<'a>, message: &str) -> Result<&'a [u8; 32], Refusal> {
    match value {
        Value::Bytes(bytes) => borrowed(bytes).try_into().ok(),
        _ => None,
    }
    .ok_or_else(|| malformed(message))
}

fn unsigned(value: &Value<'_>, message: &str) -> Result<u64, Refusal> {
    match value {
        Value::Unsigned(number) => Ok(*number),
        _ => Err(malformed(message)),
    }
}

/// Encode a block body canonically (`payload` must be at most [`MAX_PAYLOAD`] bytes).
#[allow(clippy::too_many_arguments)]
pub fn encode_body(
    account: &[u8; 32],
    sequence: u64,
    previous: &[u8; 32],
    kind: u64,
    amount: u64,
    balance: u64,
    key: &[u8; 32],
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(140 + payload.len());
    cbor::write_head(&mut out, 4, 9);
    cbor::write_head(&mut out, 0, BLOCK_VERSION);
    cbor::write_head(&mut out, 2, 32);
    out.extend_from_slice(account);
    cbor::write_head(&mut out, 0, sequence);
    cbor::write_head(&mut out, 2, 32);
    out.extend_from_slice(previous);
    cbor::write_head(&mut out, 0, kind);
    cbor::write_head(&mut out, 0, amount);
    cbor::write_head(&mut out, 0, balance);
    cbor::write_head(&mut out, 2, 32);
    out.extend_from_slice(key);
    cbor::write_head(&mut out, 2, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// Encode the signed block `[body, signature]` from an encoded body.
pub fn encode_signed(body: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 67);
    cbor::write_head(&mut out, 4, 2);
    out.extend_from_slice(body);
    cbor::write_head(&mut out, 2, 64);
    out.extend_from_slice(signature);
    out
}

/// The block hash: BLAKE3 derive-key with [`BLOCK_HASH_CONTEXT`] over the encoded body.
pub fn hash_block_body(body: &[u8]) -> [u8; 32] {
    // The context key is the same for every block; derive it once.
    static CONTEXT_KEY: OnceLock<blake3::hazmat::ContextKey> = OnceLock::new();
    let context_key =
        CONTEXT_KEY.get_or_init(|| blake3::hazmat::hash_derive_key_context(BLOCK_HASH_CONTEXT));
    let mut hasher = blake3::Hasher::new_from_context_key(context_key);
    hasher.update(body);
    *hasher.finalize().as_bytes()
}

/// The BLAKE3 derive-key context of a vote message (`docs/bank.md`, "Committee, votes,
/// certificates"): what a validator signs for one block, and a leaf of a vote tree.
pub const VOTE_CONTEXT: &str = "NeoNet 2026 bank vote v1";
/// The BLAKE3 derive-key context of the inner nodes of a batch vote tree.
pub const VOTE_TREE_CONTEXT: &str = "NeoNet 2026 bank vote tree v2";
/// Most siblings on a vote path (a batch of up to 2^16 votes).
pub const MAX_VOTE_PATH: usize = 16;

fn derive_key_hasher(
    context: &'static str,
    cell: &'static OnceLock<blake3::hazmat::ContextKey>,
) -> blake3::Hasher {
    let context_key = cell.get_or_init(|| blake3::hazmat::hash_derive_key_context(context));
    blake3::Hasher::new_from_context_key(context_key)
}

/// A block's vote message: BLAKE3 derive-key [`VOTE_CONTEXT`] over `committee_id || block_hash`.
pub fn vote_message(committee_id: &[u8], block_hash: &[u8; 32]) -> [u8; 32] {
    static KEY: OnceLock<blake3::hazmat::ContextKey> = OnceLock::new();
    let mut hasher = derive_key_hasher(VOTE_CONTEXT, &KEY);
    hasher.update(committee_id);
    hasher.update(block_hash);
    *hasher.finalize().as_bytes()
}

/// The root a leaf and its path lead to in a batch vote tree: `path` is the siblings
/// (32 bytes each) bottom up; bit k of `sides` set means the k-th sibling is on the left.
/// `None` if `path` is not a whole number of nodes or longer than [`MAX_VOTE_PATH`].
pub fn vote_root(leaf: &[u8; 32], sides: u64, path: &[u8]) -> Option<[u8; 32]> {
    static KEY: OnceLock<blake3::hazmat::ContextKey> = OnceLock::new();
    if path.len() % 32 != 0 || path.len() > 32 * MAX_VOTE_PATH {
        return None;
    }
    let mut node = *leaf;
    for (k, sibling) in path.chunks_exact(32).enumerate() {
        let mut hasher = derive_key_hasher(VOTE_TREE_CONTEXT, &KEY);
        if sides >> k & 1 == 1 {
            hasher.update(sibling);
            hasher.update(&node);
        } else {
            hasher.update(&node);
            hasher.update(sibling);
        }
        node = *hasher.finalize().as_bytes();
    }
    Some(node)
}

/// The root of the batch vote tree over `leaves` (vote messages, in batch order) and,
/// with `with_paths`, each leaf's `(sides, path)` for [`vote_root`] (`docs/bank.md`,
/// "Batch votes"). Each level pairs nodes 0-1, 2-3, ...; a last node without a partner
/// moves up unchanged; one leaf is its own root, with an empty path. `None` without
/// leaves or with more than 2^[`MAX_VOTE_PATH`].
pub fn vote_tree(leaves: &[[u8; 32]], with_paths: bool) -> Option<VoteTree> {
    static KEY: OnceLock<blake3::hazmat::ContextKey> = OnceLock::new();
    if leaves.is_empty() || leaves.len() > 1 << MAX_VOTE_PATH {
        return None;
    }
    let mut levels: Vec<Vec<[u8; 32]>> = vec![leaves.to_vec()];
    loop {
        let level = &levels[levels.len() - 1];
        if level.len() == 1 {
            break;
        }
        let mut above = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            if let [left, right] = pair {
                let mut hasher = derive_key_hasher(VOTE_TREE_CONTEXT, &KEY);
                hasher.update(left);
                hasher.update(right);
                above.push(*hasher.finalize().as_bytes());
            } else {
                above.push(pair[0]);
            }
        }
        levels.push(above);
    }
    let root = levels[levels.len() - 1][0];
    let mut paths = Vec::new();
    if with_paths {
        let below = &levels[..levels.len() - 1];
        paths.reserve(leaves.len());
        for leaf in 0..leaves.len() {
            let (mut position, mut sides, mut depth) = (leaf, 0u64, 0usize);
            let mut path = Vec::with_capacity(32 * below.len());
            for nodes in below {
                let sibling = position ^ 1;
                if sibling < nodes.len() {
                    if position & 1 == 1 {
                        sides |= 1 << depth;
                    }
                    path.extend_from_slice(&nodes[sibling]);
                    depth += 1;
                }
                position >>= 1;
            }
            paths.push((sides, path));
        }
    }
    Some((root, paths))
}

/// A vote tree's root and, per leaf, its `(sides, path)` (empty when not asked for).
pub type VoteTree = ([u8; 32], Vec<(u64, Vec<u8>)>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_tree_paths_fold_to_its_root() {
        assert!(vote_tree(&[], true).is_none());
        assert!(vote_tree(&vec![[0u8; 32]; (1 << MAX_VOTE_PATH) + 1], false).is_none());
        let one = [3u8; 32];
        assert_eq!(vote_tree(&[one], true), Some((one, vec![(0, Vec::new())])));
        for count in [2usize, 3, 5, 8, 13] {
            let leaves: Vec<[u8; 32]> = (0..count).map(|i| [i as u8; 32]).collect();
            let (root, paths) = vote_tree(&leaves, true).unwrap();
            assert_eq!(paths.len(), count);
            for (leaf, (sides, path)) in leaves.iter().zip(&paths) {
                assert_eq!(vote_root(leaf, *sides, path), Some(root));
            }
            assert_eq!(vote_tree(&leaves, false), Some((root, Vec::new())));
        }
        let mut pair = [1u8; 32].to_vec();
        pair.extend_from_slice(&[2u8; 32]);
        let (root, _) = vote_tree(&[[1u8; 32], [2u8; 32]], false).unwrap();
        assert_eq!(root, blake3::derive_key(VOTE_TREE_CONTEXT, &pair));
    }

    #[test]
    fn vote_roots_fold_the_path() {
        let leaf = [7u8; 32];
        assert_eq!(vote_root(&leaf, 0, &[]), Some(leaf));
        let sibling = [9u8; 32];
        let mut pair = leaf.to_vec();
        pair.extend_from_slice(&sibling);
        assert_eq!(
            vote_root(&leaf, 0, &sibling),
            Some(blake3::derive_key(VOTE_TREE_CONTEXT, &pair))
        );
        let mut swapped = sibling.to_vec();
        swapped.extend_from_slice(&leaf);
        assert_eq!(
            vote_root(&leaf, 1, &sibling),
            Some(blake3::derive_key(VOTE_TREE_CONTEXT, &swapped))
        );
        assert_eq!(vote_root(&leaf, 0, &[0; 31]), None);
        assert_eq!(vote_root(&leaf, 0, &[0; 32 * 17]), None);
        let mut message = [1u8; 32].to_vec();
        message.extend_from_slice(&[2u8; 32]);
        assert_eq!(
            vote_message(&[1; 32], &[2; 32]),
            blake3::derive_key(VOTE_CONTEXT, &message)
        );
    }

    #[test]
    fn hash_uses_derive_key_mode() {
        let body = encode_body(&[1; 32], 0, &[0; 32], kind::OPEN, 0, 0, &[1; 32], b"");
        assert_eq!(
            hash_block_body(&body),
            blake3::derive_key(BLOCK_HASH_CONTEXT, &body)
        );
        assert_ne!(hash_block_body(&body), *blake3::hash(&body).as_bytes());
    }

    #[test]
    fn encode_and_parse_round_trip() {
        let body = encode_body(
            &[1; 32],
            7,
            &[2; 32],
            kind::TRANSFER,
            300,
            70_000,
            &[3; 32],
            b"memo",
        );
        let signed = encode_signed(&body, &[9; 64]);
        let block = parse_block(&signed).unwrap();
        assert_eq!(block.body, body.as_slice());
        assert_eq!(
            (block.sequence, block.kind, block.amount, block.balance),
            (7, 2, 300, 70_000)
        );
        assert_eq!(block.payload, b"memo");
        assert_eq!(block.signature, &[9; 64]);
        // The generic encoder agrees with the hand-assembled one.
        let value = cbor::decode(&signed).unwrap();
        assert_eq!(cbor::encode(&value).unwrap(), signed);
    }

    #[test]
    fn parse_refusals() {
        let body = encode_body(&[1; 32], 1, &[2; 32], kind::RECEIVE, 5, 5, &[1; 32], b"");
        let signed = encode_signed(&body, &[0; 64]);
        let mut truncated = signed.clone();
        truncated.pop();
        assert_eq!(parse_block(&truncated).unwrap_err().0, Reason::Decode);
        assert_eq!(
            parse_block(&[0x80]).unwrap_err().1,
            "a signed block must be the array [body, signature]"
        );
        let mut short_signature = encode_signed(&body, &[0; 64]);
        short_signature.truncate(short_signature.len() - 66);
        cbor::write_head(&mut short_signature, 2, 63);
        short_signature.extend_from_slice(&[0; 63]);
        assert_eq!(
            parse_block(&short_signature).unwrap_err().1,
            "signature must be 64 bytes"
        );
        let big = encode_signed(
            &encode_body(&[1; 32], 1, &[2; 32], 3, 5, 5, &[1; 32], &[0; 1025]),
            &[0; 64],
        );
        assert_eq!(
            parse_block(&big).unwrap_err().1,
            "payload exceeds 1024 bytes"
        );
        let mut version_two = signed.clone();
        version_two[2] = 0x02;
        assert_eq!(
            parse_block(&version_two).unwrap_err().1,
            "block version must be 1"
        );
        assert_eq!(parse_block(&vec![0u8; 2049]).unwrap_err().0, Reason::Decode);
    }
}
