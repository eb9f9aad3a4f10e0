//! Unit tests of the routing table, its sorted key stores and their cell index.

use super::cell_index::{xor_permute, CellIndex};
use super::*;

fn peer(number: u32) -> Vec<u8> {
    let mut id = b"peer-".to_vec();
    id.extend_from_slice(&number.to_be_bytes());
    id
}

fn table(bucket_size: i64, replacement_size: i64) -> RoutingTable {
    RoutingTable::new(
        b"local",
        Config {
            bucket_size,
            replacement_size,
            pending_timeout: 10.0,
        },
    )
    .unwrap()
}

fn update(table: &mut RoutingTable, id: &[u8], now: f64) -> Update {
    table.update_with(id, now, || id.into()).unwrap()
}

fn brute_closest(table: &RoutingTable, key: &Key, n: usize) -> Vec<Vec<u8>> {
    let target = words(key);
    let mut all: Vec<(Words, Vec<u8>)> = table
        .peers()
        .into_iter()
        .map(|peer| (xor(&peer_words(peer), &target), peer.to_vec()))
        .collect();
    all.sort_unstable();
    all.into_iter().take(n).map(|(_, peer)| peer).collect()
}

fn as_vecs<P: AsRef<[u8]>>(peers: Vec<&P>) -> Vec<Vec<u8>> {
    peers
        .into_iter()
        .map(|peer| peer.as_ref().to_vec())
        .collect()
}

#[test]
fn kad_key_is_sha256() {
    let key = kad_key(b"abc");
    assert_eq!(
        key[..4],
        [0xba, 0x78, 0x16, 0xbf],
        "SHA-256(\"abc\") starts ba7816bf"
    );
}

#[test]
fn refuses_own_peer_and_bad_arguments() {
    let mut table = table(20, 10);
    assert_eq!(update(&mut table, b"local", 0.0), Update::Refused);
    assert!(table.is_empty());
    assert!(matches!(
        table.update_with(b"", 0.0, || Box::from(&b""[..])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        table.update_with(b"x", f64::NAN, || Box::from(&b"x"[..])),
        Err(Error::InvalidArgument(_))
    ));
    assert!(table.closest(&[0u8; 31], 3).is_err());
    assert!(table.closest(&[0u8; 32], -1).is_err());
    assert!(table.bucket_index(&table.local_key()).is_err());
    for bad in [0, MAX_BUCKET_SIZE as i64 + 1] {
        let config = Config {
            bucket_size: bad,
            ..Config::default()
        };
        assert!(RoutingTable::<Box<[u8]>>::new(b"local", config).is_err());
    }
}

#[test]
fn buckets_hold_shared_prefix_lengths_and_closest_is_exact() {
    let mut table = table(20, 10);
    for number in 0..3000 {
        update(&mut table, &peer(number), f64::from(number));
    }
    let sizes = table.bucket_sizes();
    assert!(sizes.iter().all(|&size| size <= 20));
    assert_eq!(sizes.iter().sum::<usize>(), table.len());
    for (index, size) in sizes.iter().enumerate() {
        for peer in table.bucket_peers(index as i64).unwrap() {
            assert_eq!(table.bucket_index(&kad_key(peer)).unwrap(), index);
        }
        assert_eq!(table.bucket_peers(index as i64).unwrap().len(), *size);
    }
    for number in 0..60u32 {
        let key = kad_key(&number.to_le_bytes());
        let all = brute_closest(&table, &key, usize::MAX);
        for n in [0, 1, 5, 20, 33, 1000] {
            let found = as_vecs(table.closest(&key, n as i64).unwrap());
            assert_eq!(found, all[..n.min(all.len())]);
        }
    }
    let local = table.local_key();
    assert_eq!(
        as_vecs(table.closest(&local, 25).unwrap()),
        brute_closest(&table, &local, 25)
    );
}

#[test]
fn large_buckets_closest_matches_brute_force() {
    let mut table = table(100_000, 0);
    let peers: Vec<Box<[u8]>> = (0..5000).map(|number| peer(number).into()).collect();
    table.update_many(peers, 1.0).unwrap();
    assert_eq!(table.len(), 5000);
    let keys: Vec<Key> = (0..40u32).map(|n| kad_key(&n.to_be_bytes())).collect();
    let key_refs: Vec<&[u8]> = keys.iter().map(|key| &key[..]).collect();
    let many = table.closest_many(&key_refs, 20).unwrap();
    let mut flat = Vec::new();
    assert_eq!(
        table.closest_many_with(&key_refs, 20, &mut flat).unwrap(),
        20
    );
    assert_eq!(flat, many.concat());
    let mut untouched = Vec::new();
    let bad: Vec<&[u8]> = vec![&keys[0][..], &keys[1][..31]];
    assert!(table.closest_many_with(&bad, 20, &mut untouched).is_err());
    assert!(table
        .closest_many_with(&key_refs, -1, &mut untouched)
        .is_err());
    assert!(untouched.is_empty());
    for (key, found) in keys.iter().zip(many) {
        let all = brute_closest(&table, key, 300);
        assert_eq!(as_vecs(found), all[..20]);
        assert_eq!(as_vecs(table.closest(key, 300).unwrap()), all);
    }
}

#[test]
fn update_many_equals_updates_in_order() {
    let ids: Vec<Vec<u8>> = (0..400).chain(0..50).map(peer).collect();
    let mut batch = table(3, 2);
    let mut single = table(3, 2);
    let batch_outcomes = batch
        .update_many(ids.iter().map(|id| id.clone().into()).collect(), 2.0)
        .unwrap();
    let single_outcomes: Vec<Update> = ids.iter().map(|id| update(&mut single, id, 2.0)).collect();
    assert_eq!(batch_outcomes, single_outcomes);
    assert!(batch_outcomes
        .iter()
        .any(|outcome| matches!(outcome, Update::Pending(_))));
    assert_eq!(as_vecs(batch.peers()), as_vecs(single.peers()));
    for index in 0..BUCKET_COUNT as i64 {
        assert_eq!(
            as_vecs(batch.replacements(index).unwrap()),
            as_vecs(single.replacements(index).unwrap())
        );
    }
    let key = kad_key(b"somewhere");
    assert_eq!(
        as_vecs(batch.closest(&key, 30).unwrap()),
        brute_closest(&batch, &key, 30)
    );
    assert!(matches!(
        batch.update_many(vec![Box::from(&b"ok"[..]), Box::from(&b""[..])], 3.0),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(as_vecs(batch.peers()), as_vecs(single.peers()));
}

/// Peers of one bucket (index 0: the first key bit differs from ours).
fn peers_in_bucket(table: &RoutingTable, bucket: usize, count: usize) -> Vec<Vec<u8>> {
    (0..)
        .map(peer)
        .filter(|id| table.bucket_index(&kad_key(id)).unwrap() == bucket)
        .take(count)
        .collect()
}

#[test]
fn full_bucket_pends_one_check_and_replaces_dead_peer() {
    let mut table = table(3, 2);
    let ids = peers_in_bucket(&table, 0, 7);
    for (time, id) in ids[..3].iter().enumerate() {
        assert_eq!(update(&mut table, id, time as f64), Update::Added);
    }
    // Seen again: moves to the most-recently-seen end.
    assert_eq!(update(&mut table, &ids[0], 3.0), Update::Updated);
    let order = as_vecs(table.bucket_peers(0).unwrap());
    assert_eq!(order, vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]);
    // Full: first candidate asks for a check of the least recently seen.
    assert_eq!(
        update(&mut table, &ids[3], 4.0),
        Update::Pending(ids[1].clone().into())
    );
    assert_eq!(update(&mut table, &ids[4], 5.0), Update::Queued);
    assert_eq!(update(&mut table, &ids[5], 6.0), Update::Queued);
    // The replacement cache keeps the two most recent.
    let cached = as_vecs(table.replacements(0).unwrap());
    assert_eq!(cached, vec![ids[4].clone(), ids[5].clone()]);
    assert_eq!(
        table.pending(0).unwrap().map(|p| p.to_vec()),
        Some(ids[1].clone())
    );
    // Dead: the most recent replacement takes its place at the MRS end.
    assert!(table.resolve_pending(&ids[1], false, 7.0).unwrap());
    assert!(!table.resolve_pending(&ids[1], false, 7.0).unwrap());
    let order = as_vecs(table.bucket_peers(0).unwrap());
    assert_eq!(order, vec![ids[2].clone(), ids[0].clone(), ids[5].clone()]);
    assert_eq!(table.last_seen(&ids[5]), Some(6.0));
    // Alive: moves to the MRS end, and the next candidate may ask again.
    assert_eq!(
        update(&mut table, &ids[6], 8.0),
        Update::Pending(ids[2].clone().into())
    );
    assert!(table.resolve_pending(&ids[2], true, 9.0).unwrap());
    assert_eq!(table.pending(0).unwrap(), None);
    let order = as_vecs(table.bucket_peers(0).unwrap());
    assert_eq!(order, vec![ids[0].clone(), ids[5].clone(), ids[2].clone()]);
}

#[test]
fn pending_check_lapses_and_remove_promotes() {
    let mut table = table(1, 3);
    let ids = peers_in_bucket(&table, 0, 4);
    update(&mut table, &ids[0], 0.0);
    assert_eq!(
        update(&mut table, &ids[1], 1.0),
        Update::Pending(ids[0].clone().into())
    );
    assert_eq!(update(&mut table, &ids[2], 10.9), Update::Queued);
    // After pending_timeout (10 s) a new check may start.
    assert_eq!(
        update(&mut table, &ids[3], 11.0),
        Update::Pending(ids[0].clone().into())
    );
    // Removing a replacement, then the stored peer: the newest replacement moves in.
    assert!(table.remove(&ids[2]).unwrap());
    assert!(!table.remove(&ids[2]).unwrap());
    assert!(table.remove(&ids[0]).unwrap());
    assert_eq!(
        as_vecs(table.bucket_peers(0).unwrap()),
        vec![ids[3].clone()]
    );
    assert_eq!(table.pending(0).unwrap(), None);
    assert!(table.remove(&ids[3]).unwrap());
    assert!(table.remove(&ids[1]).unwrap());
    assert!(table.is_empty());
    assert_eq!(table.stale_buckets(0.0, 1.0).unwrap(), vec![0]);
}

#[test]
fn refresh_bookkeeping() {
    let mut table = table(20, 10);
    for number in 0..200 {
        update(&mut table, &peer(number), 0.0);
    }
    let deepest = (0..BUCKET_COUNT)
        .rev()
        .find(|&index| table.bucket_sizes()[index] > 0)
        .unwrap();
    let all: Vec<usize> = (0..deepest + 2).collect();
    assert_eq!(table.stale_buckets(100.0, 60.0).unwrap(), all);
    table.mark_refreshed(0, 50.0).unwrap();
    let key = table.random_key_for_bucket(3, &[0xa5; 32]).unwrap();
    assert_eq!(table.bucket_index(&key).unwrap(), 3);
    table.mark_refreshed_key(&key, 90.0).unwrap();
    let stale = table.stale_buckets(100.0, 60.0).unwrap();
    assert!(!stale.contains(&0) && !stale.contains(&3) && stale.contains(&1));
    let later = table.stale_buckets(111.0, 60.0).unwrap();
    assert!(later.contains(&0) && !later.contains(&3));
    for index in [0, 1, 63, 64, 127, 200, 255] {
        for fill in [0u8, 0xff, 0x3c] {
            let key = table.random_key_for_bucket(index, &[fill; 32]).unwrap();
            assert_eq!(table.bucket_index(&key).unwrap(), index as usize);
        }
    }
    assert!(table.random_key_for_bucket(256, &[0; 32]).is_err());
    assert!(table.random_key_for_bucket(0, &[0; 31]).is_err());
}

/// Crafted keys (not SHA-256 outputs) with long shared prefixes and clusters, to
/// reach the long-run fallback of `SortedKeys::nearest`.
#[test]
fn sorted_keys_nearest_on_clustered_keys() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for shape in 0..4 {
        let mut sorted = SortedKeys::default();
        let mut keys: Vec<Words> = Vec::new();
        for slot in 0..1500u32 {
            let noise = next();
            let key = match shape {
                // Same first word: the full-key paths decide.
                0 => [7, noise >> 40, next(), next()],
                // One big cluster and a few outliers.
                1 if slot % 50 == 0 => [next(), next(), 0, 0],
                1 => [1 << 63, noise & 0xffff, next(), 0],
                // Keys differing only in the last word's low bits.
                2 => [0, 0, 0, noise & 0xf_ffff],
                _ => [noise, next(), next(), next()],
            };
            if keys.contains(&key) {
                continue;
            }
            keys.push(key);
            sorted.insert(key, slot);
        }
        let slot_key: HashMap<u32, Words> = sorted
            .peers
            .iter()
            .copied()
            .zip(sorted.keys.iter().copied())
            .collect();
        for round in 0..30 {
            let target = match round % 3 {
                0 => [next(), next(), next(), next()],
                1 => keys[(next() % keys.len() as u64) as usize],
                _ => [1 << 63, next() & 0xffff, next(), next()],
            };
            for count in [1, 2, 7, 20, 100, 400] {
                let mut found = Vec::new();
                sorted.nearest(&target, count, &mut found, &mut Vec::new());
                let mut expected: Vec<Words> = keys.iter().map(|key| xor(key, &target)).collect();
                expected.sort();
                expected.truncate(count);
                let got: Vec<Words> = found
                    .iter()
                    .map(|slot| xor(&slot_key[*slot], &target))
                    .collect();
                assert_eq!(got, expected, "shape {shape} count {count}");
            }
        }
    }
}

/// The cell index as a fresh build from the keys would make it.
fn assert_cells_in_step<P>(sorted: &SortedKeys<P>) {
    match (
        &sorted.cells,
        CellIndex::wanted_bits(sorted.len(), sorted.prefix),
    ) {
        (None, wanted) => assert_eq!(wanted, None, "a large bucket lost its index"),
        (Some(cells), wanted) => {
            let wanted = wanted.expect("a small bucket kept its index");
            assert!(cells.bits == wanted || cells.bits == wanted + 1);
            let fresh = CellIndex::build(cells.bits, sorted.prefix, &sorted.heads);
            assert_eq!(cells.offsets, fresh.offsets);
            assert_eq!(cells.occupied, fresh.occupied);
        }
    }
}

/// Single inserts and removals keep the cell index equal to a rebuild, through
/// growth past several rebuild sizes and shrinking below the index threshold;
/// closest stays exact all along.
#[test]
fn cell_index_follows_inserts_and_removals() {
    let mut table = table(100_000, 0);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut stored: Vec<Vec<u8>> = Vec::new();
    let check = |table: &RoutingTable, round: u64| {
        for bucket in &table.buckets {
            assert_cells_in_step(&bucket.sorted);
        }
        let key = kad_key(&round.to_le_bytes());
        for n in [1, 2, 3, 20, 77] {
            assert_eq!(
                as_vecs(table.closest(&key, n).unwrap()),
                brute_closest(table, &key, n as usize)
            );
        }
    };
    // Grow to 1200 one by one, then shrink to 30 with some re-adds.
    for number in 0..1200u32 {
        let id = peer(number);
        assert_eq!(update(&mut table, &id, 0.0), Update::Added);
        stored.push(id);
        if number % 50 == 0 {
            check(&table, next());
        }
    }
    assert!(table.buckets[0].sorted.cells.is_some());
    let mut round = 0;
    while stored.len() > 30 {
        let victim = stored.swap_remove((next() % stored.len() as u64) as usize);
        assert!(table.remove(&victim).unwrap());
        if round % 7 == 0 {
            let id = peer(5000 + round);
            assert_eq!(update(&mut table, &id, 1.0), Update::Added);
            stored.push(id);
        }
        if round % 40 == 0 {
            check(&table, next());
        }
        round += 1;
    }
    check(&table, next());
    assert!(table
        .buckets
        .iter()
        .all(|bucket| bucket.sorted.cells.is_none()));
    // A bulk load builds the index once, in step too.
    let bulk: Vec<Box<[u8]>> = (20_000..23_000).map(|n| peer(n).into()).collect();
    table.update_many(bulk, 2.0).unwrap();
    check(&table, next());
}

/// A bucket whose shared prefix leaves too few bits of the first word gets no
/// cell index and is served by the walk.
#[test]
fn no_cell_index_past_the_first_word() {
    let mut sorted = SortedKeys::with_prefix(60);
    for low in 0..200u64 {
        sorted.insert([0, low, 0, 0], low as u32);
    }
    assert!(sorted.cells.is_none());
    let mut shallow = SortedKeys::with_prefix(1);
    for low in 0..200u64 {
        shallow.insert([low << 50, 0, 0, 0], low as u32);
    }
    assert!(shallow.cells.is_some());
    let target = [0, 77, 0, 0];
    let mut found = Vec::new();
    sorted.nearest(&target, 5, &mut found, &mut Vec::new());
    let expected: Vec<u32> = vec![77, 76, 79, 78, 73];
    assert_eq!(found.into_iter().copied().collect::<Vec<_>>(), expected);
}

#[test]
fn xor_permute_moves_bit_j_to_j_xor_t() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for t in 0..64u32 {
        state = state.rotate_left(7).wrapping_mul(0x2545_f491_4f6c_dd1d) ^ u64::from(t);
        let permuted = xor_permute(state, t);
        for j in 0..64u32 {
            assert_eq!(permuted >> j & 1, state >> (j ^ t) & 1);
        }
    }
}
