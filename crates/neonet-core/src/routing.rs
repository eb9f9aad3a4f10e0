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

use std::collections::{HashMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::Error;

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
/// Low bits of a packed sort item that hold an index into a bucket.
const INDEX_MASK: u64 = (MAX_BUCKET_SIZE as u64) - 1;

/// The Kademlia key of a peer: SHA-256 of its peer ID bytes.
pub fn kad_key(peer_id: &[u8]) -> Key {
    Sha256::digest(peer_id).into()
}

/// A key as four big-endian words: array order is numeric order.
type Words = [u64; 4];

fn words(key: &Key) -> Words {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(key.chunks_exact(8)) {
        *word = u64::from_be_bytes(chunk.try_into().expect("8-byte chunk"));
    }
    out
}

fn key_of_words(value: &Words) -> Key {
    let mut out = [0u8; KEY_LENGTH];
    for (chunk, word) in out.chunks_exact_mut(8).zip(value) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

fn xor(a: &Words, b: &Words) -> Words {
    [a[0] ^ b[0], a[1] ^ b[1], a[2] ^ b[2], a[3] ^ b[3]]
}

/// Leading zero bits of a 256-bit value (256 for zero).
fn leading_zeros(value: &Words) -> usize {
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
fn bit(value: &Words, position: usize) -> bool {
    value[position / 64] >> (63 - position % 64) & 1 == 1
}

fn peer_words(peer_id: &[u8]) -> Words {
    words(&kad_key(peer_id))
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

/// What [`RoutingTable::update`] did with a peer that was seen.
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

    /// Up to `n` stored peers nearest `key` (32 bytes) by XOR, nearest first.
    pub fn closest(&self, key: &[u8], n: i64) -> Result<Vec<&P>, Error> {
        let target = check_key(key)?;
        let count = check_count(n)?;
        let mut found = Vec::with_capacity(count.min(self.len()));
        self.closest_into(&target, count, &mut found);
        Ok(found)
    }

    /// [`closest`](Self::closest) into a caller's sink: `make` is called once the
    /// arguments are checked, with the number of peers that will be found
    /// (`min(n, len)`), and the peers go to the sink it returns, nearest first.
    pub fn closest_with<'a, O: Found<'a, P>>(
        &'a self,
        key: &[u8],
        n: i64,
        make: impl FnOnce(usize) -> O,
    ) -> Result<O, Error> {
        let target = check_key(key)?;
        let count = check_count(n)?;
        let mut out = make(count.min(self.len()));
        self.closest_into(&target, count, &mut out);
        Ok(out)
    }

    /// [`closest`](Self::closest) for each key, the answers back to back into one
    /// sink; returns how many peers each answer has (`min(n, len)`). Every argument
    /// is checked first (same errors as [`closest_many`](Self::closest_many)).
    pub fn closest_many_with<'a>(
        &'a self,
        keys: &[&[u8]],
        n: i64,
        out: &mut impl Found<'a, P>,
    ) -> Result<usize, Error> {
        let targets = keys
            .iter()
            .map(|key| check_key(key))
            .collect::<Result<Vec<_>, _>>()?;
        let count = check_count(n)?;
        for target in &targets {
            self.closest_into(target, count, out);
        }
        Ok(count.min(self.len()))
    }

    /// [`closest`](Self::closest) for each key; every argument is checked first.
    pub fn closest_many(&self, keys: &[&[u8]], n: i64) -> Result<Vec<Vec<&P>>, Error> {
        let targets = keys
            .iter()
            .map(|key| check_key(key))
            .collect::<Result<Vec<_>, _>>()?;
        let count = check_count(n)?;
        Ok(targets
            .iter()
            .map(|target| {
                let mut found = Vec::with_capacity(count.min(self.len()));
                self.closest_into(target, count, &mut found);
                found
            })
            .collect())
    }

    /// The `count` stored peers nearest `target`, nearest first.
    fn closest_into<'a>(&'a self, target: &Words, count: usize, out: &mut impl Found<'a, P>) {
        if count == 0 || self.is_empty() {
            return;
        }
        SCRATCH.with_borrow_mut(|scratch| {
            self.visit_buckets(target, count, out, scratch);
            // Keep what a k-sized lookup needs; a huge one must not pin its memory.
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
        });
    }

    /// Buckets in order of distance from the target (whole buckets never mix): its own
    /// bucket; then, deeper, a bucket whose distinguishing bit the target shares comes
    /// before everything deeper, the others after all of it (deepest first); then the
    /// shallower ones, deepest first.
    fn visit_buckets<'a>(
        &'a self,
        target: &Words,
        mut count: usize,
        out: &mut impl Found<'a, P>,
        scratch: &mut Vec<u64>,
    ) {
        let distance = xor(target, &self.local);
        let own = leading_zeros(&distance);
        let mut visit = |bucket: usize| -> bool {
            let sorted = &self.buckets[bucket].sorted;
            if sorted.len() >= count {
                sorted.nearest(target, count, out, scratch);
                return true;
            }
            sorted.take_range(0, sorted.len(), target, out, scratch);
            count -= sorted.len();
            false
        };
        if own < BUCKET_COUNT && bit(&self.occupied, own) && visit(own) {
            return;
        }
        let mut later = [0u8; BUCKET_COUNT];
        let mut later_count = 0;
        for bucket in set_bits(&self.occupied, own + 1) {
            if bit(&distance, bucket) {
                if visit(bucket) {
                    return;
                }
            } else {
                later[later_count] = bucket as u8;
                later_count += 1;
            }
        }
        for &bucket in later[..later_count].iter().rev() {
            if visit(bucket as usize) {
                return;
            }
        }
        for bucket in (0..own.min(BUCKET_COUNT)).rev() {
            if bit(&self.occupied, bucket) && visit(bucket) {
                return;
            }
        }
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

/// Most sort items the per-thread scratch buffer keeps between lookups (32 KiB).
const SCRATCH_KEPT: usize = 4096;

thread_local! {
    /// Sort items of `closest`, reused across calls on one thread (no allocation per
    /// lookup; `closest_many` runs on one thread too).
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Indices of the set bits of `value` from `start` on, ascending.
fn set_bits(value: &Words, start: usize) -> impl Iterator<Item = usize> + '_ {
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
fn shared_prefix(key: &Words, target: &Words) -> usize {
    let head = key[0] ^ target[0];
    if head != 0 {
        head.leading_zeros() as usize
    } else {
        leading_zeros(&xor(key, target))
    }
}

/// A bucket's keys in ascending order with their peers; `heads` repeats each key's
/// first word so that binary searches touch 8 bytes a step. During a batch of
/// updates new entries are appended unsorted after the first `sorted` and put in
/// place once by [`Self::settle`] (loading n peers costs O(n log n), not O(n^2)).
struct SortedKeys<P> {
    heads: Vec<u64>,
    keys: Vec<Words>,
    peers: Vec<P>,
    sorted: usize,
    /// Leading bits every key of the bucket shares (its index + 1): the cells below
    /// are cut from the bits after them.
    prefix: u32,
    /// The radix index of a large bucket (see [`CellIndex`]); kept in step with every
    /// insert and removal, rebuilt when the bucket's size moves out of its range.
    cells: Option<CellIndex>,
}

impl<P> Default for SortedKeys<P> {
    fn default() -> Self {
        Self::with_prefix(0)
    }
}

/// Buckets smaller than this have no [`CellIndex`] (the walk is as quick there).
const CELL_INDEX_MIN: usize = 64;
/// Most cell bits (2^22 cells: a bucket of 2^20 keys needs 21).
const MAX_CELL_BITS: u32 = 22;

/// A radix index of a bucket's sorted keys by `bits` key bits after the bucket's
/// shared prefix ("cells"): `offsets[c]..offsets[c + 1]` are the positions of cell
/// `c`'s keys, and bit `c % 64` of `occupied[c / 64]` is set when it holds any. There
/// are 2 to 8 cells per key (most hold none or one key; sparser cells measured
/// faster: fewer cells to sort, and the empty ones cost nothing to skip in the
/// occupancy words). A key's XOR distance to any target orders the
/// cells by `c ^ t` (`t`: the target's cell) before anything else, so the nearest
/// keys are the keys of the cells in that order, each cell's few keys sorted.
struct CellIndex {
    bits: u32,
    offsets: Vec<u32>,
    occupied: Vec<u64>,
}

impl CellIndex {
    /// Cell bits for `len` keys under a `prefix`-bit shared prefix: the bit length of
    /// `len` plus one (2^bits in (2 len, 4 len]), at least 6 (one occupancy word), or
    /// None when the bucket is small or the cells would not fit in the first key word.
    fn wanted_bits(len: usize, prefix: u32) -> Option<u32> {
        if len < CELL_INDEX_MIN {
            return None;
        }
        let bits = (usize::BITS - len.leading_zeros() + 1).clamp(6, MAX_CELL_BITS);
        (prefix + bits <= 64).then_some(bits)
    }

    fn build(bits: u32, prefix: u32, heads: &[u64]) -> Self {
        let cells = 1usize << bits;
        let mut offsets = vec![0u32; cells + 1];
        let mut occupied = vec![0u64; cells / 64];
        for &head in heads {
            let cell = cell_of(head, prefix, bits);
            offsets[cell + 1] += 1;
            occupied[cell / 64] |= 1 << (cell % 64);
        }
        for cell in 0..cells {
            offsets[cell + 1] += offsets[cell];
        }
        CellIndex {
            bits,
            offsets,
            occupied,
        }
    }

    fn inserted(&mut self, cell: usize) {
        for offset in &mut self.offsets[cell + 1..] {
            *offset += 1;
        }
        self.occupied[cell / 64] |= 1 << (cell % 64);
    }

    fn removed(&mut self, cell: usize) {
        for offset in &mut self.offsets[cell + 1..] {
            *offset -= 1;
        }
        if self.offsets[cell] == self.offsets[cell + 1] {
            self.occupied[cell / 64] &= !(1 << (cell % 64));
        }
    }
}

/// Ask for the cache line holding `value` (a hint; no effect where unsupported).
#[inline(always)]
fn prefetch<T>(value: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing architecturally.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(value.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The cell of a key (by its first word) under a `prefix`-bit shared prefix.
fn cell_of(head: u64, prefix: u32, bits: u32) -> usize {
    ((head << prefix) >> (64 - bits)) as usize
}

/// `word` with bit `j` moved to bit `j ^ t` (t < 64): one masked swap per set bit of
/// `t`, so scanning the result's set bits upwards visits cells in XOR order from `t`.
fn xor_permute(mut word: u64, t: u32) -> u64 {
    const MASKS: [u64; 6] = [
        0x5555_5555_5555_5555,
        0x3333_3333_3333_3333,
        0x0f0f_0f0f_0f0f_0f0f,
        0x00ff_00ff_00ff_00ff,
        0x0000_ffff_0000_ffff,
        0x0000_0000_ffff_ffff,
    ];
    for (step, mask) in MASKS.iter().enumerate() {
        let shift = 1u32 << step;
        let swapped = ((word & mask) << shift) | ((word >> shift) & mask);
        word = if t >> step & 1 == 1 { swapped } else { word };
    }
    word
}

impl<P> SortedKeys<P> {
    fn with_prefix(prefix: u32) -> Self {
        SortedKeys {
            heads: Vec::new(),
            keys: Vec::new(),
            peers: Vec::new(),
            sorted: 0,
            prefix,
            cells: None,
        }
    }

    /// Keep the cell index in step after one key (first word `head`) was inserted
    /// (`added`) or removed: update it in place while its size suits the bucket, else
    /// rebuild it (or drop it for a small bucket).
    fn reindex(&mut self, head: Option<(u64, bool)>) {
        let wanted = CellIndex::wanted_bits(self.len(), self.prefix);
        match (&mut self.cells, wanted, head) {
            // In place while 2^bits stays within (2 len, 8 len].
            (Some(cells), Some(bits), Some((head, added)))
                if cells.bits == bits || cells.bits == bits + 1 =>
            {
                let cell = cell_of(head, self.prefix, cells.bits);
                if added {
                    cells.inserted(cell);
                } else {
                    cells.removed(cell);
                }
            }
            (_, Some(bits), _) => {
                self.cells = Some(CellIndex::build(bits, self.prefix, &self.heads));
            }
            (_, None, _) => self.cells = None,
        }
    }

    fn len(&self) -> usize {
        self.keys.len()
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Position of `key` in the sorted entries.
    fn lower_bound(&self, key: &Words) -> usize {
        let start = self.heads[..self.sorted].partition_point(|&head| head < key[0]);
        if self.heads[start..self.sorted].first() != Some(&key[0]) {
            return start; // no first word equal to the key's: no 32-byte compares
        }
        start
            + self.keys[start..self.sorted]
                .iter()
                .take_while(|other| other[0] == key[0] && *other < key)
                .count()
    }

    fn insert(&mut self, key: Words, peer: P) {
        debug_assert_eq!(self.sorted, self.len(), "insert outside a batch");
        let position = self.lower_bound(&key);
        self.heads.insert(position, key[0]);
        self.keys.insert(position, key);
        self.peers.insert(position, peer);
        self.sorted += 1;
        self.reindex(Some((key[0], true)));
    }

    /// Add an entry unsorted (inside a batch); [`Self::settle`] sorts it in.
    fn append(&mut self, key: Words, peer: P) {
        self.heads.push(key[0]);
        self.keys.push(key);
        self.peers.push(peer);
    }

    /// Sort the entries appended by a batch into place: sort them, then merge.
    fn settle(&mut self) {
        if self.sorted == self.len() {
            return;
        }
        let mut added: Vec<(Words, P)> = self
            .keys
            .drain(self.sorted..)
            .zip(self.peers.drain(self.sorted..))
            .collect();
        added.sort_unstable_by_key(|entry| entry.0);
        let old_keys = std::mem::take(&mut self.keys);
        let old_peers = std::mem::take(&mut self.peers);
        let total = old_keys.len() + added.len();
        self.keys.reserve_exact(total);
        self.peers.reserve_exact(total);
        let mut old = old_keys.into_iter().zip(old_peers).peekable();
        let mut new = added.into_iter().peekable();
        loop {
            let take_old = match (old.peek(), new.peek()) {
                (Some(a), Some(b)) => a.0 < b.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let (key, peer) = if take_old { old.next() } else { new.next() }.expect("peeked");
            self.keys.push(key);
            self.peers.push(peer);
        }
        self.heads.clear();
        self.heads.extend(self.keys.iter().map(|key| key[0]));
        self.sorted = total;
        self.reindex(None);
    }

    fn remove(&mut self, key: &Words) -> P {
        debug_assert_eq!(self.sorted, self.len(), "remove outside a batch");
        let position = self.lower_bound(key);
        debug_assert_eq!(self.keys[position], *key);
        self.heads.remove(position);
        self.keys.remove(position);
        self.sorted -= 1;
        let peer = self.peers.remove(position);
        self.reindex(Some((key[0], false)));
        peer
    }

    /// The peer stored under `key` (which must be present; inside a batch it may still
    /// sit among the unsorted entries).
    fn peer(&self, key: &Words) -> &P {
        let position = self.lower_bound(key);
        if position < self.sorted && self.keys[position] == *key {
            return &self.peers[position];
        }
        let offset = self.keys[self.sorted..]
            .iter()
            .position(|other| other == key)
            .expect("stored key");
        &self.peers[self.sorted + offset]
    }

    /// Shared-prefix length of entry `index` with the target; -1 outside the keys.
    fn depth_at(&self, index: usize, target: &Words) -> i32 {
        match self.heads.get(index) {
            // The first words decide unless they are equal (`heads` is dense: 8 bytes
            // an entry instead of 32).
            Some(&head) if head != target[0] => (head ^ target[0]).leading_zeros() as i32,
            Some(_) => shared_prefix(&self.keys[index], target) as i32,
            None => -1,
        }
    }

    /// The sort item of entry `index`: the top 44 bits of the distance's first word
    /// with the index (< 2^20, see `MAX_BUCKET_SIZE`) in the low bits, so plain
    /// integer sorts order items by distance.
    fn item(&self, index: usize, target: &Words) -> u64 {
        ((self.heads[index] ^ target[0]) & !INDEX_MASK) | index as u64
    }

    /// Sort items nearest first. The packed distance bits decide unless two keys share
    /// their first 44 bits; only then are full distances compared.
    fn sort_items(&self, items: &mut [u64], target: &Words) {
        // The standard unstable sort (small slices: branch-free sorting networks) beats
        // a hand-written insertion sort over the subtree-by-subtree picks here.
        items.sort_unstable();
        if items
            .windows(2)
            .any(|pair| pair[0] & !INDEX_MASK == pair[1] & !INDEX_MASK)
        {
            items.sort_unstable_by_key(|&item| {
                xor(&self.keys[(item & INDEX_MASK) as usize], target)
            });
        }
    }

    /// Append the peers of entries `low..high`, nearest `target` first.
    fn take_range<'a>(
        &'a self,
        low: usize,
        high: usize,
        target: &Words,
        out: &mut impl Found<'a, P>,
        scratch: &mut Vec<u64>,
    ) {
        scratch.clear();
        scratch.extend((low..high).map(|index| self.item(index, target)));
        let items = &mut scratch[..];
        self.sort_items(items, target);
        for &item in items.iter() {
            out.found(&self.peers[(item & INDEX_MASK) as usize]);
        }
    }

    /// Append the peers of the `count` (<= len) entries nearest `target`, nearest first.
    ///
    /// Keys sharing at least `d` leading bits with the target form one run of the
    /// sorted keys around the target's position, and the shared-prefix length only
    /// falls walking away from that position on either side. Merging the two sides
    /// by shared-prefix length picks keys nearest-subtree first: all keys deeper than
    /// the last depth `d` reached belong to the answer, and the rest is the nearest
    /// of the keys sharing exactly `d` bits (one run on one side: the sibling
    /// subtree), usually a handful. An oversized run is narrowed by [`Self::descend`].
    fn nearest<'a>(
        &'a self,
        target: &Words,
        count: usize,
        out: &mut impl Found<'a, P>,
        scratch: &mut Vec<u64>,
    ) {
        let length = self.len();
        if length <= count {
            self.take_range(0, length, target, out, scratch);
            return;
        }
        if let Some(cells) = &self.cells {
            self.nearest_by_cells(cells, target, count, out, scratch);
            return;
        }
        let position = self.lower_bound(target);
        let (mut low, mut high) = (position, position);
        let mut left = if low > 0 {
            self.depth_at(low - 1, target)
        } else {
            -1
        };
        let mut right = self.depth_at(high, target);
        let mut items = std::mem::take(scratch);
        items.clear();
        let mut depth = i32::MAX;
        let mut deeper = 0; // how many picked items lie deeper than `depth`
        while items.len() < count {
            let (index, reached) = if left >= right {
                low -= 1;
                let reached = left;
                left = if low > 0 {
                    self.depth_at(low - 1, target)
                } else {
                    -1
                };
                (low, reached)
            } else {
                let reached = right;
                high += 1;
                right = self.depth_at(high, target);
                (high - 1, reached)
            };
            if reached < depth {
                depth = reached;
                deeper = items.len();
            }
            items.push(self.item(index, target));
        }
        // The rest of the run at `depth` (on one side only), when the picks did not
        // exhaust it.
        let limit = 4 * count + 64;
        while (left == depth || right == depth) && items.len() < limit {
            let index = if left == depth {
                low -= 1;
                left = if low > 0 {
                    self.depth_at(low - 1, target)
                } else {
                    -1
                };
                low
            } else {
                high += 1;
                right = self.depth_at(high, target);
                high - 1
            };
            items.push(self.item(index, target));
        }
        self.sort_items(&mut items[..deeper], target);
        for &item in &items[..deeper] {
            out.found(&self.peers[(item & INDEX_MASK) as usize]);
        }
        let wanted = count - deeper;
        if left == depth || right == depth {
            // Clustered keys: a long run; narrow it as a binary trie instead.
            let (run_low, run_high) = if left == depth {
                let run_high = items[deeper..].iter().map(|&item| item & INDEX_MASK).max();
                let run_high = run_high.map_or(position, |index| index as usize + 1);
                let before = self.keys[..low]
                    .partition_point(|key| (shared_prefix(key, target) as i32) < depth);
                (before, run_high)
            } else {
                let run_low = items[deeper..].iter().map(|&item| item & INDEX_MASK).min();
                let run_low = run_low.map_or(position, |index| index as usize);
                (run_low, high + self.run_length(high, target, depth))
            };
            *scratch = items;
            self.descend(run_low, run_high, target, wanted, out, scratch);
            return;
        }
        let rest = &mut items[deeper..];
        if rest.len() > wanted && wanted > 0 {
            // Only the nearest `wanted` of the run are needed: select them, sort those,
            // unless packed distances tie across the cut (then full distances decide).
            rest.select_nth_unstable(wanted - 1);
            let cut = rest[wanted - 1] & !INDEX_MASK;
            if rest[wanted..].iter().any(|&item| item & !INDEX_MASK == cut) {
                self.sort_items(rest, target);
            } else {
                self.sort_items(&mut rest[..wanted], target);
            }
        } else {
            self.sort_items(rest, target);
        }
        for &item in &rest[..wanted] {
            out.found(&self.peers[(item & INDEX_MASK) as usize]);
        }
        *scratch = items;
    }

    /// [`Self::nearest`] through the cell index: the cells in XOR order from the
    /// target's (64 at a time: an occupancy word permuted so that its set bits come
    /// in that order), each cell's keys nearest first, until `count` are found.
    fn nearest_by_cells<'a>(
        &'a self,
        cells: &CellIndex,
        target: &Words,
        mut count: usize,
        out: &mut impl Found<'a, P>,
        scratch: &mut Vec<u64>,
    ) {
        let own = cell_of(target[0], self.prefix, cells.bits);
        let (own_block, own_low) = (own / 64, (own % 64) as u32);
        // The answer lies in the target's block of 64 cells and, about as often as
        // not, its sibling block (2^bits is 2 to 4 times the keys: a block holds
        // 16 to 32): ask for their offsets and peers at once rather than one cache
        // miss after another as the scan reaches them (a table gone cold after other
        // work costs ~0.1 us more per lookup; this takes back a good part of that).
        let pair = (own_block & !1) * 64;
        let offsets = &cells.offsets[pair..=(pair + 128).min(cells.offsets.len() - 1)];
        for line in offsets.chunks(16) {
            prefetch(line.as_ptr());
        }
        let first = offsets[0] as usize;
        let last = (offsets[offsets.len() - 1] as usize).min(first + 96);
        let peers = self.peers[first..last].as_ptr().cast::<u8>();
        for offset in (0..(last - first) * size_of::<P>()).step_by(64) {
            prefetch(peers.wrapping_add(offset));
        }
        for head in self.heads[first..last].iter().step_by(8) {
            prefetch(head);
        }
        for step in 0..cells.occupied.len() {
            let block = own_block ^ step;
            let mut word = xor_permute(cells.occupied[block], own_low);
            while word != 0 {
                let cell = block * 64 + (word.trailing_zeros() ^ own_low) as usize;
                word &= word - 1;
                let low = cells.offsets[cell] as usize;
                let high = cells.offsets[cell + 1] as usize;
                let size = high - low;
                if size == 1 {
                    out.found(&self.peers[low]);
                } else if size > count {
                    self.descend(low, high, target, count, out, scratch);
                    return;
                } else {
                    let first = self.heads[low] ^ target[0];
                    let second = self.heads[low + 1] ^ target[0];
                    if size == 2 && first != second {
                        let (near, far) = if first < second {
                            (low, low + 1)
                        } else {
                            (low + 1, low)
                        };
                        out.found(&self.peers[near]);
                        out.found(&self.peers[far]);
                    } else {
                        self.take_range(low, high, target, out, scratch);
                    }
                }
                count -= size;
                if count == 0 {
                    return;
                }
            }
        }
    }

    /// How many keys from `start` on share at least `depth` bits with the target
    /// (galloping: the run is usually short).
    fn run_length(&self, start: usize, target: &Words, depth: i32) -> usize {
        let mut span = 8;
        loop {
            let end = (start + span).min(self.len());
            let run = self.keys[start..end]
                .partition_point(|key| shared_prefix(key, target) as i32 >= depth);
            if start + run < end || end == self.len() {
                return run;
            }
            span *= 4;
        }
    }

    /// Append the `count` entries of `low..high` nearest `target`, walking the binary
    /// trie of the sorted keys: the keys of a range share every bit above the highest
    /// bit where its first and last differ; the part matching the target at that bit
    /// is nearer than the rest. Take the near part whole when it holds too few keys,
    /// else narrow to it.
    fn descend<'a>(
        &'a self,
        mut low: usize,
        mut high: usize,
        target: &Words,
        mut count: usize,
        out: &mut impl Found<'a, P>,
        scratch: &mut Vec<u64>,
    ) {
        while high - low > count {
            let split_bit = leading_zeros(&xor(&self.keys[low], &self.keys[high - 1]));
            let middle = low + self.keys[low..high].partition_point(|key| !bit(key, split_bit));
            let (near, far) = if bit(target, split_bit) {
                ((middle, high), (low, middle))
            } else {
                ((low, middle), (middle, high))
            };
            let size = near.1 - near.0;
            if size >= count {
                (low, high) = near;
            } else {
                self.take_range(near.0, near.1, target, out, scratch);
                count -= size;
                (low, high) = far;
            }
        }
        self.take_range(low, high, target, out, scratch);
    }
}

#[cfg(test)]
mod tests {
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
        let single_outcomes: Vec<Update> =
            ids.iter().map(|id| update(&mut single, id, 2.0)).collect();
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
                    let mut expected: Vec<Words> =
                        keys.iter().map(|key| xor(key, &target)).collect();
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
}
