//! Chain verification: one account's blocks, in order, from its opening or a known head.
//!
//! Each block passes, in this order: decoding ([`parse_block`]), the account, the next
//! sequence number, the previous-hash link, the kind (known; OPEN exactly at sequence
//! 0; ISSUE only on the mint account), the current key (and a ROTATE_KEY payload of 32
//! bytes), the amount and balance arithmetic in u64 (overflow and negative balances are
//! refused), and last the ZIP-215 signature by `key` over the block hash. The verdict
//! counts the valid blocks before the first refused one and says why that one was
//! refused. Structure is checked block by block; the signatures of the structurally
//! valid prefix are then checked in batches (see [`super::ed25519`]).

use super::{ed25519, hash_block_body, kind, parse_block, BlockRef, Reason, Refusal};
use crate::Error;

/// Most blocks one call accepts (a caller syncing a longer chain continues from the head).
pub const MAX_BLOCKS: usize = 100_000;

/// The state after a valid block: what the next block must continue from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The account ID.
    pub account: [u8; 32],
    /// Sequence number of the last valid block.
    pub sequence: u64,
    /// Hash of the last valid block.
    pub hash: [u8; 32],
    /// Balance after the last valid block.
    pub balance: u64,
    /// The key that must sign the next block.
    pub key: [u8; 32],
}

/// The first refused block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its index in the given blocks.
    pub index: usize,
    /// Why it was refused.
    pub reason: Reason,
    /// The same message on both backends.
    pub message: String,
}

/// The outcome of [`verify_chain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Number of valid blocks from the start.
    pub valid_count: usize,
    /// The head after the last valid block (the start head if none; `None` if neither).
    pub head: Option<Head>,
    /// The first refused block, if any.
    pub failure: Option<Failure>,
}

/// Verify `blocks` as one account's chain, from its OPEN block or from `start`.
///
/// `mint_account` is the one account allowed ISSUE blocks. Only the number of blocks is
/// a caller error (`InvalidArgument`); everything wrong with the blocks is in the verdict.
pub fn verify_chain<B: AsRef<[u8]>>(
    blocks: &[B],
    mint_account: Option<&[u8; 32]>,
    start: Option<Head>,
) -> Result<Verdict, Error> {
    if blocks.len() > MAX_BLOCKS {
        return Err(Error::InvalidArgument(format!(
            "at most {MAX_BLOCKS} blocks per call"
        )));
    }
    let mut heads: Vec<Head> = Vec::with_capacity(blocks.len());
    let mut signatures: Vec<(&[u8; 32], &[u8; 64])> = Vec::with_capacity(blocks.len());
    let mut structural_failure = None;
    for (index, data) in blocks.iter().enumerate() {
        let previous_head = heads.last().copied().or(start);
        let outcome = parse_block(data.as_ref()).and_then(|block| {
            check_block(&block, previous_head.as_ref(), mint_account).map(|head| (block, head))
        });
        match outcome {
            Ok((block, head)) => {
                heads.push(head);
                signatures.push((block.key, block.signature));
            }
            Err((reason, message)) => {
                structural_failure = Some(Failure {
                    index,
                    reason,
                    message,
                });
                break;
            }
        }
    }

    let items: Vec<ed25519::Item<'_>> = signatures
        .iter()
        .zip(&heads)
        .map(|((public_key, signature), head)| ed25519::Item {
            public_key: &public_key[..],
            message: &head.hash,
            signature: &signature[..],
        })
        .collect();
    let failure = match ed25519::first_invalid(&items) {
        Some(index) => Some(Failure {
            index,
            reason: Reason::Signature,
            message: "signature does not verify under the block's key".to_owned(),
        }),
        None => structural_failure,
    };
    let valid_count = failure
        .as_ref()
        .map_or(heads.len(), |failure| failure.index);
    let head = match valid_count {
        0 => start,
        count => Some(heads[count - 1]),
    };
    Ok(Verdict {
        valid_count,
        head,
        failure,
    })
}

fn refuse<T>(reason: Reason, message: impl Into<String>) -> Result<T, Refusal> {
    Err((reason, message.into()))
}

/// Check one decoded block against the head it must continue (or, without one, as an
/// opening block), and return the new head.
pub fn check_block(
    block: &BlockRef<'_>,
    head: Option<&Head>,
    mint_account: Option<&[u8; 32]>,
) -> Result<Head, Refusal> {
    // Before the opening block, the account's state is: nothing, zero balance, and the
    // account ID itself as the key.
    let (account, expected_sequence, previous, balance, key) = match head {
        Some(head) => (
            head.account,
            u128::from(head.sequence) + 1,
            head.hash,
            head.balance,
            head.key,
        ),
        None => (*block.account, 0, [0u8; 32], 0, *block.account),
    };
    if *block.account != account {
        return refuse(
            Reason::Account,
            "account does not match the chain's account",
        );
    }
    if u128::from(block.sequence) != expected_sequence {
        return refuse(
            Reason::Sequence,
            format!("sequence {}, expected {expected_sequence}", block.sequence),
        );
    }
    if *block.previous != previous {
        return refuse(
            Reason::Previous,
            "previous does not match the preceding block's hash",
        );
    }

    if block.kind > kind::LAST {
        return refuse(Reason::Kind, format!("unknown block kind {}", block.kind));
    }
    if block.sequence == 0 && block.kind != kind::OPEN {
        return refuse(Reason::Kind, "sequence 0 must be an OPEN block");
    }
    if block.kind == kind::OPEN && block.sequence != 0 {
        return refuse(Reason::Kind, "OPEN is only allowed at sequence 0");
    }
    if block.kind == kind::ISSUE && mint_account != Some(&account) {
        return refuse(Reason::Kind, "ISSUE is only allowed on the mint account");
    }

    if *block.key != key {
        return refuse(Reason::Key, "key is not the account's current key");
    }
    let mut next_key = key;
    if block.kind == kind::ROTATE_KEY {
        next_key = block.payload.try_into().or_else(|_| {
            refuse(
                Reason::Key,
                "ROTATE_KEY payload must be the new 32-byte key",
            )
        })?;
    }

    let expected_balance = match block.kind {
        kind::OPEN | kind::ROTATE_KEY => {
            if block.amount != 0 {
                let name = if block.kind == kind::OPEN {
                    "OPEN"
                } else {
                    "ROTATE_KEY"
                };
                return refuse(Reason::Balance, format!("{name} must have amount 0"));
            }
            balance
        }
        kind::ISSUE | kind::RECEIVE | kind::REDEEM | kind::CLAIM | kind::REFUND => {
            match balance.checked_add(block.amount) {
                Some(sum) => sum,
                None => {
                    return refuse(
                        Reason::Balance,
                        format!(
                            "balance overflow: {balance} + {} exceeds 2^64-1",
                            block.amount
                        ),
                    )
                }
            }
        }
        _ => match balance.checked_sub(block.amount) {
            Some(difference) => difference,
            None => {
                return refuse(
                    Reason::Balance,
                    format!(
                        "insufficient balance: {balance} - {} is negative",
                        block.amount
                    ),
                )
            }
        },
    };
    if block.balance != expected_balance {
        return refuse(
            Reason::Balance,
            format!("balance {}, expected {expected_balance}", block.balance),
        );
    }

    Ok(Head {
        account,
        sequence: block.sequence,
        hash: hash_block_body(block.body),
        balance: block.balance,
        key: next_key,
    })
}

#[cfg(test)]
mod tests {
    use super::super::ed25519::tests::{sign, signing_key};
    use super::super::{encode_body, encode_signed};
    use super::*;
    use ed25519_zebra::SigningKey;

    struct Account {
        key: SigningKey,
        public: [u8; 32],
        account: [u8; 32],
        head: Option<Head>,
    }

    impl Account {
        fn new(seed: u8) -> Self {
            let key = signing_key(seed);
            let (public, _) = sign(&key, b"");
            Self {
                key,
                public,
                account: public,
                head: None,
            }
        }

        /// Append a correctly linked and signed block; `balance` is given explicitly.
        fn block(&mut self, kind: u64, amount: u64, balance: u64, payload: &[u8]) -> Vec<u8> {
            let (sequence, previous) = match &self.head {
                Some(head) => (head.sequence + 1, head.hash),
                None => (0, [0; 32]),
            };
            let body = encode_body(
                &self.account,
                sequence,
                &previous,
                kind,
                amount,
                balance,
                &self.public,
                payload,
            );
            let hash = hash_block_body(&body);
            let (_, signature) = sign(&self.key, &hash);
            self.head = Some(Head {
                account: self.account,
                sequence,
                hash,
                balance,
                key: self.public,
            });
            encode_signed(&body, &signature)
        }
    }

    #[test]
    fn a_valid_chain_with_rotation() {
        let mut alice = Account::new(1);
        let mut blocks = vec![
            alice.block(kind::OPEN, 0, 0, b""),
            alice.block(kind::RECEIVE, 500, 500, b"from bob"),
            alice.block(kind::TRANSFER, 200, 300, b""),
        ];
        let new_key = signing_key(2);
        let (new_public, _) = sign(&new_key, b"");
        blocks.push(alice.block(kind::ROTATE_KEY, 0, 300, &new_public));
        alice.key = new_key;
        alice.public = new_public;
        blocks.push(alice.block(kind::OPEN_PURSE, 100, 200, b""));
        blocks.push(alice.block(kind::REDEEM, 50, 250, b""));

        let verdict = verify_chain(&blocks, None, None).unwrap();
        assert_eq!(verdict.failure, None);
        assert_eq!(verdict.valid_count, 6);
        let head = verdict.head.unwrap();
        assert_eq!(
            (head.sequence, head.balance, head.key),
            (5, 250, new_public)
        );
        assert_eq!(head, alice.head.unwrap());

        // Continuing from a head in the middle gives the same end.
        let middle = verify_chain(&blocks[..2], None, None).unwrap().head;
        let rest = verify_chain(&blocks[2..], None, middle).unwrap();
        assert_eq!((rest.valid_count, rest.head), (4, Some(head)));

        // No blocks: the start is the head.
        let empty: [&[u8]; 0] = [];
        let nothing = verify_chain(&empty, None, middle).unwrap();
        assert_eq!(
            (nothing.valid_count, nothing.head, nothing.failure),
            (0, middle, None)
        );
    }

    fn failure(blocks: &[Vec<u8>], mint: Option<&[u8; 32]>) -> (usize, Reason, String) {
        let verdict = verify_chain(blocks, mint, None).unwrap();
        let failure = verdict.failure.unwrap();
        assert_eq!(verdict.valid_count, failure.index);
        (failure.index, failure.reason, failure.message)
    }

    #[test]
    fn refusals_name_the_first_bad_block() {
        let mut mint = Account::new(3);
        let open = mint.block(kind::OPEN, 0, 0, b"");
        let issue = mint.block(kind::ISSUE, u64::MAX, u64::MAX, b"");
        let blocks = vec![open.clone(), issue.clone()];
        assert_eq!(
            verify_chain(&blocks, Some(&mint.account), None)
                .unwrap()
                .valid_count,
            2
        );
        assert_eq!(
            failure(&blocks, None),
            (
                1,
                Reason::Kind,
                "ISSUE is only allowed on the mint account".into()
            )
        );
        let overflow = mint.block(kind::ISSUE, 1, 0, b"");
        let blocks = vec![open.clone(), issue.clone(), overflow];
        let verdict = verify_chain(&blocks, Some(&mint.account), None).unwrap();
        assert_eq!(
            verdict.failure.unwrap().message,
            format!("balance overflow: {} + 1 exceeds 2^64-1", u64::MAX)
        );

        let mut bob = Account::new(4);
        let open = bob.block(kind::OPEN, 0, 0, b"");
        let overdraw = bob.block(kind::TRANSFER, 1, 0, b"");
        assert_eq!(
            failure(&[open.clone(), overdraw], None),
            (
                1,
                Reason::Balance,
                "insufficient balance: 0 - 1 is negative".into()
            )
        );

        let mut carol = Account::new(5);
        let not_open = carol.block(kind::RECEIVE, 1, 1, b"");
        assert_eq!(failure(&[not_open], None).1, Reason::Kind);

        // A bad signature comes before a structural failure later in the chain.
        let mut dave = Account::new(6);
        let mut blocks = vec![
            dave.block(kind::OPEN, 0, 0, b""),
            dave.block(kind::RECEIVE, 10, 10, b""),
            dave.block(kind::RECEIVE, 10, 20, b""),
        ];
        let last = blocks[1].len() - 1;
        blocks[1][last] ^= 0x01;
        blocks.push(b"junk".to_vec());
        assert_eq!(
            failure(&blocks, None),
            (
                1,
                Reason::Signature,
                "signature does not verify under the block's key".into()
            )
        );
        blocks[1][last] ^= 0x01;
        assert_eq!(
            failure(&blocks, None),
            (3, Reason::Decode, "block is not canonical CBOR".into())
        );
        let verdict = verify_chain(&blocks, None, None).unwrap();
        assert_eq!(verdict.head, dave.head);
    }

    #[test]
    fn too_many_blocks_is_a_caller_error() {
        let blocks = vec![Vec::<u8>::new(); MAX_BLOCKS + 1];
        assert!(matches!(
            verify_chain(&blocks, None, None),
            Err(Error::InvalidArgument(_))
        ));
    }
}
