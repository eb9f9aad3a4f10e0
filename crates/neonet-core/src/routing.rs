//! The Kademlia routing table (libp2p kad-dht spec, "Distance" and "Kademlia routing
//! table"; Kademlia paper section 2.2).
//!
//! A peer's key is the SHA-256 of its peer ID bytes and distance is XOR. Bucket `L`
//! (0..=255) holds up to k peers whose key shares exactly `L` leading bits with the
//! local key, in least-recently-seen order; the local peer is never stored. A full
//! bucket caches the candidate in a bounded replacement cache and asks the caller to
//! check its least-recently-seen peer (one pending check per bucket, lapsing after
//! `pending_timeout`); a dead peer is replaced by the most recent replacement.
//!
//! Layout: entries live in one slab and each bucket threads its own through an
//! intrusive doubly linked list (O(1) move-to-back at any bucket size). Each bucket
//! also keeps its keys sorted, with the peers beside them, so `closest` visits
//! buckets in XOR order from the target. A bucket of 64 keys or more also keeps a
//! radix index of its sorted keys by the key bits after its shared prefix (cells of
//! about a quarter of a key each, see `CellIndex`): XOR distance orders cells by
//! `cell ^ target's cell`, so a lookup reads the cells in that order (occupancy
//! bitmaps, 64 cells a word) and sorts only the keys that share a cell; no binary
//! search and no comparison sort of a candidate range. Buckets without that index
//! binary-search the target's position and grow a range around it by shared-prefix
//! length. Either way a few dozen keys are looked at, whatever the bucket size. Keys
//! are four big-endian `u64` words: XOR and comparison are four word operations. Sort
//! items pack the top 44 bits of a distance with the key's index, so plain integer
//! sorts order them. Lookups hand their peers to a [`Found`] sink as they find them
//! (the Python glue fills the result list in place).
//!
//! The table is generic over the stored peer type `P` (anything that is its own peer
//! ID bytes): the Python glue stores the caller's `bytes` objects so lookups hand them
//! back without copying. Same results and errors as the pure-Python twin
//! `neonet.core.routing`.
//!
//! Files: this one holds the public API (constants, [`Config`], [`Update`],
//! [`Found`], [`RoutingTable`] and its bucket upkeep); `routing/lookup.rs` the
//! lookups (`closest*` and the walk over buckets in XOR order);
//! `routing/sorted_keys.rs` a bucket's sorted key store and its nearest-keys walk;
//! `routing/cell_index.rs` the radix index of large buckets; `routing/words.rs`
//! keys as four `u64` words; `routing/tests.rs` the unit tests.

mod cell_index;
mod lookup;
mod sorted_keys;
mod words;

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::Error;
use sorted_keys::SortedKeys;
use words::{bit, key_of_words, leading_zeros, peer_words, words, xor, Words};

/// Length of a Kademlia key (SHA-256 output).
pub const KEY_LENGTH: usize = 32;
/// One bucket per shared-prefix length 0..=255.
pub const BUCKET_COUNT: usize = 256;
/// Longest accepted peer ID (libp2p peer IDs are at most 42 bytes today).
pub const MAX_PEER_ID_LENGTH: usize = 128;
/// Largest accepted `bucket_size` (k).
pub const MAX_BUCKET_SIZE: usize = 1 << 20;
/// Largest accepted `replacement_size` (the cache is searched linearly).
pub const MAX_REPLACEMENT_SIZE: usize = 1024;
/// k, as the spec recommends.
pub const DEFAULT_BUCKET_SIZE: usize = 20;
/// Replacement candidates kept per bucket by default.
pub const DEFAULT_REPLACEMENT_SIZE: usize = 10;
/// Seconds a liveness check stays pending by default.
pub const DEFAULT_PENDING_TIMEOUT: f64 = 30.0;

/// A 32-byte Kademlia key.
pub type Key = [u8; KEY_LENGTH];

const NONE: u32 = u32::MAX;

/// The Kademlia key of a peer: SHA-256 of its peer ID bytes.
pub fn kad_key(peer_id: &[u8]) -> Key {
    Sha256::digest(peer_id).into()
}

fn check_peer_id(peer_id: &[u8]) -> Result<(), Error> {
    if peer_id.is_empty() || peer_id.len() > MAX_PEER_ID_LENGTH {
        return Err(Error::InvalidArgument(format!(
            "peer ID must be 1 to {MAX_PEER_ID_LENGTH} bytes long"
        )));
    }
    Ok(())
}

fn check_now(now: f64) -> Result<(), Error> {
    if !now.is_finite() {
        return Err(Error::InvalidArgument("now must be a finite number".into()));
    }
    Ok(())
}

fn check_index(index: i64) -> Result<usize, Error> {
    if !(0..BUCKET_COUNT as i64).contains(&index) {
        return Err(Error::InvalidArgument(format!(
            "bucket index must be in 0..{}",
            BUCKET_COUNT - 1
        )));
    }
    Ok(index as usize)
}

fn check_key(key: &[u8]) -> Result<Words, Error> {
    let key: &Key = key.try_into().map_err(|_| {
        Error::InvalidArgument(format!("a Kademlia key is {KEY_LENGTH} bytes long"))
    })?;
    Ok(words(key))
}

fn check_count(n: i64) -> Result<usize, Error> {
    usize::try_from(n).map_err(|_| Error::InvalidArgument("n must be >= 0".into()))
}

/// Where a lookup puts the peers it finds, nearest first (see
/// [`RoutingTable::closest_with`]).
pub trait Found<'a, P> {
    /// The next peer, nearer than all that follow.
    fn found(&mut self, peer: &'a P);
}

impl<'a, P> Found<'a, P> for Vec<&'a P> {
    fn found(&mut self, peer: &'a P) {
        self.push(peer);
    }
}

/// What [`RoutingTable::update_with`] did with a peer that was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// New peer, stored at the most-recently-seen end of its bucket.
    Added,
    /// Known peer, moved to the most-recently-seen end.
    Updated,
    /// Bucket full: the candidate is cached; check this (least-recently-seen) peer and
    /// answer with [`RoutingTable::resolve_pending`].
    Pending(Box<[u8]>),
    /// Bucket full: the candidate is cached; a check is already pending.
    Queued,
    /// Our own peer ID (or key): never stored.
    Refused,
}

/// Table limits, validated by [`RoutingTable::new`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// k: the most peers one bucket holds (1..=2^20).
    pub bucket_size: i64,
    /// The most candidates one bucket's replacement cache holds (0..=1024).
    pub replacement_size: i64,
    /// Seconds after which a pending check lapses (finite, >= 0).
    pub pending_timeout: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bucket_size: DEFAULT_BUCKET_SIZE as i64,
            replacement_size: DEFAULT_REPLACEMENT_SIZE as i64,
            pending_timeout: DEFAULT_PENDING_TIMEOUT,
        }
    }
}

/// A stored peer's place in its bucket's least-recently-seen list (the peer value
/// itself lives in the bucket's `SortedKeys`, next to its key).
struct Entry {
    key: Words,
    last_seen: f64,
    previous: u32,
    next: u32,
    bucket: u8,
}

struct Bucket<P> {
    /// Least-recently-seen end of the entry list.
    head: u32,
    /// Most-recently-seen end.
    tail: u32,
    /// The entries' keys, sorted, with their peers.
    sorted: SortedKeys<P>,
    /// Oldest first.
    replacements: VecDeque<(P, f64)>,
    /// The slot whose liveness check is out, and since when.
    pending: Option<(u32, f64)>,
    refreshed: f64,
}

impl<P> Bucket<P> {
    /// Bucket `index`: its keys share their first `index + 1` bits.
    fn new(index: usize) -> Self {
        Bucket {
            head: NONE,
            tail: NONE,
            sorted: SortedKeys::with_prefix(index as u32 + 1),
            replacements: VecDeque::new(),
            pending: None,
            refreshed: f64::NEG_INFINITY,
        }
    }

    fn len(&self) -> usize {
        self.sorted.len()
    }
}

/// A Kademlia routing table of 256 k-buckets around a local peer.
pub struct RoutingTable<P = Box<[u8]>> {
    local_peer_id: Box<[u8]>,
    local: Words,
    bucket_size: usize,
    replacement_size: usize,
    pending_timeout: f64,
    buckets: Vec<Bucket<P>>,
    /// Bit i (of word i / 64, from the top) set when bucket i is non-empty.
    occupied: Words,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    index: HashMap<Box<[u8]>, u32>,
    /// Inside `update_many`: new keys are appended unsorted, then settled once.
    batching: bool,
}

impl<P: AsRef<[u8]>> RoutingTable<P> {
    /// An empty table around `local_peer_id`.
    pub fn new(local_peer_id: &[u8], config: Config) -> Result<Self, Error> {
        check_peer_id(local_peer_id)?;
        if !(1..=MAX_BUCKET_SIZE as i64).contains(&config.bucket_size) {
            return Err(Error::InvalidArgument(format!(
                "bucket_size must be in 1..{MAX_BUCKET_SIZE}"
            )));
        }
        if !(0..=MAX_REPLACEMENT_SIZE as i64).contains(&config.replacement_size) {
            return Err(Error::InvalidArgument(format!(
                "replacement_size must be in 0..{MAX_REPLACEMENT_SIZE}"
            )));
        }
        if !(config.pending_timeout.is_finite() && config.pending_timeout >= 0.0) {
            return Err(Error::InvalidArgument(
                "pending_timeout must be a finite number >= 0".into(),
            ));
        }
        Ok(RoutingTable {
            local_peer_id: local_peer_id.into(),
            local: peer_words(local_peer_id),
            bucket_size: config.bucket_size as usize,
            replacement_size: config.replacement_size as usize,
            pending_timeout: config.pending_timeout,
            buckets: (0..BUCKET_COUNT).map(Bucket::new).collect(),
            occupied: [0; 4],
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            batching: false,
        })
    }

    /// Our own peer ID.
    pub fn local_peer_id(&self) -> &[u8] {
        &self.local_peer_id
    }

    /// Our own key.
    pub fn local_key(&self) -> Key {
        key_of_words(&self.local)
    }

    /// k.
    pub fn bucket_size(&self) -> usize {
        self.bucket_size
    }

    /// Replacement cache bound per bucket.
    pub fn replacement_size(&self) -> usize {
        self.replacement_size
    }

    /// Seconds after which a pending check lapses.
    pub fn pending_timeout(&self) -> f64 {
        self.pending_timeout
    }

    /// Number of stored peers.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no peer is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether `peer_id` is stored (replacements do not count).
    pub fn contains(&self, peer_id: &[u8]) -> bool {
        self.index.contains_key(peer_id)
    }

    fn bucket_of(&self, key: &Words) -> Option<usize> {
        let shared = leading_zeros(&xor(key, &self.local));
        (shared < BUCKET_COUNT).then_some(shared)
    }

    fn peer_of(&self, slot: u32) -> &P {
        let entry = self.entry(slot);
        self.buckets[entry.bucket as usize].sorted.peer(&entry.key)
    }

    fn entry(&self, slot: u32) -> &Entry {
        self.slots[slot as usize].as_ref().expect("live slot")
    }

    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        self.slots[slot as usize].as_mut().expect("live slot")
    }

    fn unlink(&mut self, slot: u32) {
        let (previous, next, bucket) = {
            let entry = self.entry(slot);
            (entry.previous, entry.next, entry.bucket as usize)
        };
        if previous == NONE {
            self.buckets[bucket].head = next;
        } else {
            self.entry_mut(previous).next = next;
        }
        if next == NONE {
            self.buckets[bucket].tail = previous;
        } else {
            self.entry_mut(next).previous = previous;
        }
    }

    fn link_at_tail(&mut self, slot: u32) {
        let bucket = self.entry(slot).bucket as usize;
        let tail = self.buckets[bucket].tail;
        {
            let entry = self.entry_mut(slot);
            entry.previous = tail;
            entry.next = NONE;
        }
        if tail == NONE {
            self.buckets[bucket].head = slot;
        } else {
            self.entry_mut(tail).next = slot;
        }
        self.buckets[bucket].tail = slot;
    }

    fn touch(&mut self, slot: u32, now: f64) {
        let bucket = self.entry(slot).bucket as usize;
        if self.buckets[bucket].tail != slot {
            self.unlink(slot);
            self.link_at_tail(slot);
        }
        self.entry_mut(slot).last_seen = now;
    }

    fn set_occupied(&mut self, bucket: usize, occupied: bool) {
        let mask = 1u64 << (63 - bucket % 64);
        if occupied {
            self.occupied[bucket / 64] |= mask;
        } else {
            self.occupied[bucket / 64] &= !mask;
        }
    }

    fn store(&mut self, bucket: usize, peer: P, key: Words, last_seen: f64) {
        let peer_id: Box<[u8]> = peer.as_ref().into();
        let entry = Entry {
            key,
            last_seen,
            previous: NONE,
            next: NONE,
            bucket: bucket as u8,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        self.link_at_tail(slot);
        let sorted = &mut self.buckets[bucket].sorted;
        if self.batching {
            sorted.append(key, peer);
        } else {
            sorted.insert(key, peer);
        }
        if sorted.len() == 1 {
            self.set_occupied(bucket, true);
        }
        self.index.insert(peer_id, slot);
    }

    /// Drop a stored peer and promote the bucket's most recent replacement.
    fn evict(&mut self, slot: u32) {
        self.unlink(slot);
        let entry = self.slots[slot as usize].take().expect("live slot");
        self.free.push(slot);
        let bucket_index = entry.bucket as usize;
        let bucket = &mut self.buckets[bucket_index];
        let peer = bucket.sorted.remove(&entry.key);
        self.index.remove(peer.as_ref());
        if matches!(bucket.pending, Some((pending, _)) if pending == slot) {
            bucket.pending = None;
        }
        if let Some((replacement, seen)) = bucket.replacements.pop_back() {
            let key = peer_words(replacement.as_ref());
            self.store(bucket_index, replacement, key, seen);
        } else if bucket.sorted.is_empty() {
            self.set_occupied(bucket_index, false);
        }
    }

    /// Record that a peer was seen at `now`. `make` builds the stored value; it is only
    /// called when the peer is not stored yet.
    pub fn update_with(
        &mut self,
        peer_id: &[u8],
        now: f64,
        make: impl FnOnce() -> P,
    ) -> Result<Update, Error> {
        check_now(now)?;
        if let Some(&slot) = self.index.get(peer_id) {
            self.seen(slot, now);
            return Ok(Update::Updated);
        }
        check_peer_id(peer_id)?;
        Ok(self.insert_new(peer_id, now, make))
    }

    fn seen(&mut self, slot: u32, now: f64) {
        self.touch(slot, now);
        let bucket_index = self.entry(slot).bucket as usize;
        let bucket = &mut self.buckets[bucket_index];
        if matches!(bucket.pending, Some((pending, _)) if pending == slot) {
            bucket.pending = None;
        }
    }

    fn insert_new(&mut self, peer_id: &[u8], now: f64, make: impl FnOnce() -> P) -> Update {
        let key = peer_words(peer_id);
        let Some(bucket_index) = self.bucket_of(&key) else {
            return Update::Refused;
        };
        if self.buckets[bucket_index].len() < self.bucket_size {
            self.store(bucket_index, make(), key, now);
            return Update::Added;
        }
        let replacement_size = self.replacement_size;
        let pending_timeout = self.pending_timeout;
        let bucket = &mut self.buckets[bucket_index];
        if replacement_size > 0 {
            let known = bucket
                .replacements
                .iter()
                .position(|(peer, _)| peer.as_ref() == peer_id);
            let candidate = match known {
                Some(position) => bucket.replacements.remove(position).expect("in range"),
                None => {
                    if bucket.replacements.len() >= replacement_size {
                        bucket.replacements.pop_front();
                    }
                    (make(), now)
                }
            };
            bucket.replacements.push_back((candidate.0, now));
        }
        match bucket.pending {
            Some((_, since)) if now - since < pending_timeout => Update::Queued,
            _ => {
                let oldest = bucket.head;
                bucket.pending = Some((oldest, now));
                Update::Pending(self.peer_of(oldest).as_ref().into())
            }
        }
    }

    /// [`update_with`](Self::update_with) for each peer in order; every argument is
    /// checked before anything changes.
    pub fn update_many(&mut self, peers: Vec<P>, now: f64) -> Result<Vec<Update>, Error> {
        check_now(now)?;
        for peer in &peers {
            check_peer_id(peer.as_ref())?;
        }
        let mut outcomes = Vec::with_capacity(peers.len());
        self.batching = true;
        for peer in peers {
            let outcome = match self.index.get(peer.as_ref()) {
                Some(&slot) => {
                    self.seen(slot, now);
                    Update::Updated
                }
                None => {
                    let peer_id: Box<[u8]> = peer.as_ref().into();
                    self.insert_new(&peer_id, now, || peer)
                }
            };
            outcomes.push(outcome);
        }
        self.batching = false;
        for bucket in &mut self.buckets {
            bucket.sorted.settle();
        }
        Ok(outcomes)
    }

    /// Answer the liveness check of `peer_id`; false if none is pending for it. Alive:
    /// the peer moves to the most-recently-seen end. Dead: it is removed and the most
    /// recent replacement takes its place.
    pub fn resolve_pending(
        &mut self,
        peer_id: &[u8],
        alive: bool,
        now: f64,
    ) -> Result<bool, Error> {
        check_now(now)?;
        check_peer_id(peer_id)?;
        let Some(&slot) = self.index.get(peer_id) else {
            return Ok(false);
        };
        let bucket_index = self.entry(slot).bucket as usize;
        let bucket = &mut self.buckets[bucket_index];
        if !matches!(bucket.pending, Some((pending, _)) if pending == slot) {
            return Ok(false);
        }
        bucket.pending = None;
        if alive {
            self.touch(slot, now);
        } else {
            self.evict(slot);
        }
        Ok(true)
    }

    /// Forget `peer_id` (a stored peer or a replacement); true if it was known. A
    /// stored peer's place goes to the bucket's most recent replacement.
    pub fn remove(&mut self, peer_id: &[u8]) -> Result<bool, Error> {
        check_peer_id(peer_id)?;
        if let Some(&slot) = self.index.get(peer_id) {
            self.evict(slot);
            return Ok(true);
        }
        let Some(bucket_index) = self.bucket_of(&peer_words(peer_id)) else {
            return Ok(false);
        };
        let replacements = &mut self.buckets[bucket_index].replacements;
        match replacements
            .iter()
            .position(|(peer, _)| peer.as_ref() == peer_id)
        {
            Some(position) => {
                replacements.remove(position);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn occupied_indices(&self) -> impl Iterator<Item = usize> + '_ {
        (0..BUCKET_COUNT).filter(|&index| bit(&self.occupied, index))
    }

    fn bucket_list(&self, bucket: usize) -> impl Iterator<Item = &P> + '_ {
        let mut slot = self.buckets[bucket].head;
        std::iter::from_fn(move || {
            if slot == NONE {
                return None;
            }
            let peer = self.peer_of(slot);
            slot = self.entry(slot).next;
            Some(peer)
        })
    }

    /// Every stored peer: bucket 0 to 255, each least-recently-seen first.
    pub fn peers(&self) -> Vec<&P> {
        let mut found = Vec::with_capacity(self.len());
        for bucket in self.occupied_indices() {
            found.extend(self.bucket_list(bucket));
        }
        found
    }

    /// How many peers each of the 256 buckets holds.
    pub fn bucket_sizes(&self) -> Vec<usize> {
        self.buckets.iter().map(Bucket::len).collect()
    }

    /// The peers of a bucket, least-recently-seen first.
    pub fn bucket_peers(&self, index: i64) -> Result<Vec<&P>, Error> {
        Ok(self.bucket_list(check_index(index)?).collect())
    }

    /// The replacement cache of a bucket, oldest first.
    pub fn replacements(&self, index: i64) -> Result<Vec<&P>, Error> {
        let bucket = &self.buckets[check_index(index)?];
        Ok(bucket.replacements.iter().map(|(peer, _)| peer).collect())
    }

    /// The peer of a bucket whose liveness check is pending, if any.
    pub fn pending(&self, index: i64) -> Result<Option<&P>, Error> {
        let bucket = &self.buckets[check_index(index)?];
        Ok(bucket.pending.map(|(slot, _)| self.peer_of(slot)))
    }

    /// When a stored peer was last seen.
    pub fn last_seen(&self, peer_id: &[u8]) -> Option<f64> {
        self.index
            .get(peer_id)
            .map(|&slot| self.entry(slot).last_seen)
    }

    /// The bucket a 32-byte key falls in (its shared-prefix length with ours).
    pub fn bucket_index(&self, key: &[u8]) -> Result<usize, Error> {
        self.bucket_of(&check_key(key)?)
            .ok_or_else(|| Error::InvalidArgument("the local key belongs to no bucket".into()))
    }

    /// Record that a lookup refreshed bucket `index` at `now`.
    pub fn mark_refreshed(&mut self, index: i64, now: f64) -> Result<(), Error> {
        check_now(now)?;
        let index = check_index(index)?;
        self.buckets[index].refreshed = now;
        Ok(())
    }

    /// Record that a lookup refreshed the bucket holding `key` at `now`.
    pub fn mark_refreshed_key(&mut self, key: &[u8], now: f64) -> Result<(), Error> {
        check_now(now)?;
        let index = self.bucket_index(key)?;
        self.buckets[index].refreshed = now;
        Ok(())
    }

    /// Buckets not refreshed for `interval` seconds, up to one past the deepest
    /// non-empty bucket; never-refreshed buckets are stale.
    pub fn stale_buckets(&self, now: f64, interval: f64) -> Result<Vec<usize>, Error> {
        check_now(now)?;
        if !(interval.is_finite() && interval >= 0.0) {
            return Err(Error::InvalidArgument(
                "interval must be a finite number >= 0".into(),
            ));
        }
        let deepest = (0..BUCKET_COUNT)
            .rev()
            .find(|&index| bit(&self.occupied, index));
        let limit = deepest.map_or(1, |index| (index + 2).min(BUCKET_COUNT));
        Ok((0..limit)
            .filter(|&index| now - self.buckets[index].refreshed >= interval)
            .collect())
    }

    /// A lookup target in bucket `index`: our key's first `index` bits, the next bit
    /// flipped, the rest from the 32 `random_bytes`.
    pub fn random_key_for_bucket(&self, index: i64, random_bytes: &[u8]) -> Result<Key, Error> {
        let index = check_index(index)?;
        let random: &Key = random_bytes.try_into().map_err(|_| {
            Error::InvalidArgument(format!("random_bytes must be {KEY_LENGTH} bytes long"))
        })?;
        let random = words(random);
        let mut out = [0u64; 4];
        for (position, word) in out.iter_mut().enumerate() {
            let start = position * 64;
            // Bits [start, start + 64) of the key: ours before `index`, random after.
            let ours_mask = if index <= start {
                0
            } else if index >= start + 64 {
                u64::MAX
            } else {
                u64::MAX << (64 - (index - start))
            };
            *word = (self.local[position] & ours_mask) | (random[position] & !ours_mask);
        }
        out[index / 64] &= !(1u64 << (63 - index % 64));
        out[index / 64] |= !self.local[index / 64] & (1u64 << (63 - index % 64));
        Ok(key_of_words(&out))
    }
}

#[cfg(test)]
mod tests;
