//! The time-bounded seen-message cache (GossipSub v1.0 "Message Cache": `seen`).
//!
//! First-seen semantics: an ID is remembered from its first `add` for `ttl` seconds; at
//! most `capacity` IDs are kept and a new ID in a full cache evicts the oldest one. `now`
//! may never go back. Same behaviour as `neonet.core.gossip.SeenCache`.
//!
//! Layout: IDs expire and are evicted in insertion order, so they live back to back in one
//! byte stream (a 4-byte length, then the ID; no allocation per ID), and an open-addressing
//! table of (hash, stream position) slots with linear probing and backward-shift deletion
//! finds them. A lookup touches one slot line and one stream line.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::gossip::check_count;
use crate::Error;

const EMPTY: u64 = u64::MAX;
const LENGTH_PREFIX: usize = 4;
/// Batch calls prefetch the table slot this many IDs ahead (hides memory latency).
const AHEAD: usize = 8;

/// Asks the CPU to pull `item`'s cache line in; only a hint.
#[inline(always)]
fn prefetch<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no visible effect; SSE is part of the
    // x86_64 baseline, and the pointer comes from a live reference.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((item as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    hash: u64,
    position: u64, // absolute stream position of the record; EMPTY when free
}

const FREE: Slot = Slot {
    hash: 0,
    position: EMPTY,
};

#[derive(Clone, Copy, Debug)]
struct Entry {
    hash: u64,
    expires: f64,
}

/// Message IDs seen in the last `ttl` seconds, at most `capacity` of them.
#[derive(Debug)]
pub struct SeenCache {
    ttl: f64,
    capacity: usize,
    now: f64,
    hasher: DefaultHashBuilder,
    entries: VecDeque<Entry>, // oldest first; entry i's record follows entry i-1's
    head: u64,                // stream position of the oldest record
    bytes: Vec<u8>,           // the stream from position `base` on
    base: u64,
    slots: Vec<Slot>, // power-of-two length, at most half full
}

impl SeenCache {
    /// An empty cache; `ttl` must be a positive number of seconds, `capacity` >= 1.
    pub fn new(ttl: f64, capacity: u64) -> Result<Self, Error> {
        if !(ttl.is_finite() && ttl > 0.0) {
            return Err(Error::InvalidArgument(
                "ttl must be a positive number of seconds".into(),
            ));
        }
        let capacity = check_count("capacity", capacity, 1)?;
        Ok(Self {
            ttl,
            capacity,
            now: f64::MIN, // below every finite time; -inf is refused
            hasher: DefaultHashBuilder::default(),
            entries: VecDeque::new(),
            head: 0,
            bytes: Vec::new(),
            base: 0,
            slots: vec![FREE; 16],
        })
    }

    /// Seconds an ID is remembered.
    pub fn ttl(&self) -> f64 {
        self.ttl
    }

    /// Most IDs kept at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// IDs currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no ID is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn record(&self, position: u64) -> &[u8] {
        let start = (position - self.base) as usize;
        let mut length = [0u8; LENGTH_PREFIX];
        length.copy_from_slice(&self.bytes[start..start + LENGTH_PREFIX]);
        let start = start + LENGTH_PREFIX;
        &self.bytes[start..start + u32::from_le_bytes(length) as usize]
    }

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// `Ok(slot)` holding `id`, or `Err(slot)`: the free slot where it would go.
    fn find_slot(&self, id: &[u8], hash: u64) -> Result<usize, usize> {
        let mask = self.mask();
        let mut index = hash as usize & mask;
        loop {
            let slot = self.slots[index];
            if slot.position == EMPTY {
                return Err(index);
            }
            if slot.hash == hash && self.record(slot.position) == id {
                return Ok(index);
            }
            index = (index + 1) & mask;
        }
    }

    fn hash(&self, id: &[u8]) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Whether `id` is remembered (as of the latest `now`).
    pub fn contains(&self, id: &[u8]) -> bool {
        self.find_slot(id, self.hash(id)).is_ok()
    }

    fn remove_slot(&mut self, mut hole: usize) {
        // Backward-shift deletion keeps every probe run free of holes.
        let mask = self.mask();
        let mut next = hole;
        loop {
            next = (next + 1) & mask;
            let slot = self.slots[next];
            if slot.position == EMPTY {
                break;
            }
            let home = slot.hash as usize & mask;
            if (next.wrapping_sub(home) & mask) >= (next.wrapping_sub(hole) & mask) {
                self.slots[hole] = slot;
                hole = next;
            }
        }
        self.slots[hole] = FREE;
    }

    fn prefetch_slot(&self, hash: u64) {
        prefetch(&self.slots[hash as usize & self.mask()]);
    }

    fn pop_oldest(&mut self) {
        let Some(entry) = self.entries.pop_front() else {
            return;
        };
        if let Some(later) = self.entries.get(AHEAD) {
            self.prefetch_slot(later.hash);
        }
        let position = self.head;
        let mask = self.mask();
        let mut index = entry.hash as usize & mask;
        while self.slots[index].position != position {
            index = (index + 1) & mask;
        }
        self.remove_slot(index);
        self.head += (LENGTH_PREFIX + self.record(position).len()) as u64;
        if self.entries.is_empty() {
            self.bytes.clear();
            self.base = self.head;
        } else {
            // Drop the dead prefix once it is most of the stream (amortised O(1) per byte).
            let dead = (self.head - self.base) as usize;
            if dead >= 1 << 16 && dead * 2 >= self.bytes.len() {
                self.bytes.drain(..dead);
                self.base = self.head;
            }
        }
    }

    fn grow(&mut self) {
        let size = self.slots.len() * 2;
        self.slots = vec![FREE; size];
        let mask = size - 1;
        let mut position = self.head;
        for index in 0..self.entries.len() {
            let hash = self.entries[index].hash;
            let mut slot = hash as usize & mask;
            while self.slots[slot].position != EMPTY {
                slot = (slot + 1) & mask;
            }
            self.slots[slot] = Slot { hash, position };
            position += (LENGTH_PREFIX + self.record(position).len()) as u64;
        }
    }

    /// Moves the clock to `now` and forgets IDs that expired; returns how many.
    pub fn expire(&mut self, now: f64) -> Result<usize, Error> {
        if !(now >= self.now && now.is_finite()) {
            return Err(Error::InvalidArgument(
                "now must be finite and never go backwards".into(),
            ));
        }
        self.now = now;
        let mut removed = 0;
        while self
            .entries
            .front()
            .is_some_and(|entry| entry.expires <= now)
        {
            self.pop_oldest();
            removed += 1;
        }
        Ok(removed)
    }

    fn insert_new(&mut self, id: &[u8], hash: u64, expires: f64) -> bool {
        let Err(mut free) = self.find_slot(id, hash) else {
            return false;
        };
        let full = self.entries.len() >= self.capacity;
        if full {
            self.pop_oldest();
        }
        let grow = (self.entries.len() + 1) * 2 > self.slots.len();
        if grow {
            self.grow();
        }
        if full || grow {
            // The table moved under the probe: find the free slot again.
            let Err(slot) = self.find_slot(id, hash) else {
                unreachable!("the ID was absent a moment ago");
            };
            free = slot;
        }
        let position = self.base + self.bytes.len() as u64;
        self.bytes
            .extend_from_slice(&(id.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(id);
        self.slots[free] = Slot { hash, position };
        self.entries.push_back(Entry { hash, expires });
        true
    }

    fn check_id(id: &[u8]) -> Result<(), Error> {
        if id.len() > u32::MAX as usize {
            return Err(Error::InvalidArgument("message ID too long".into()));
        }
        Ok(())
    }

    /// Remembers `id` at `now`; true when it is new.
    pub fn add(&mut self, id: &[u8], now: f64) -> Result<bool, Error> {
        Self::check_id(id)?;
        if now != self.now {
            self.expire(now)?;
        }
        let hash = self.hash(id);
        Ok(self.insert_new(id, hash, now + self.ttl))
    }

    /// `add` for each ID in order, all at `now`; appends one bool per ID to `out`.
    pub fn add_many<'a, I>(&mut self, ids: I, now: f64, out: &mut Vec<bool>) -> Result<(), Error>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        if now != self.now {
            self.expire(now)?;
        }
        let expires = now + self.ttl;
        let ids: Vec<&[u8]> = ids.into_iter().collect();
        out.reserve(ids.len());
        let mut ahead = Lookahead::new(self, &ids);
        for (index, &id) in ids.iter().enumerate() {
            Self::check_id(id)?;
            let hash = ahead.next(self, &ids, index);
            out.push(self.insert_new(id, hash, expires));
        }
        Ok(())
    }

    /// `contains` for each ID; appends one bool per ID to `out`.
    pub fn contains_many<'a, I>(&self, ids: I, out: &mut Vec<bool>)
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let ids: Vec<&[u8]> = ids.into_iter().collect();
        out.reserve(ids.len());
        let mut ahead = Lookahead::new(self, &ids);
        for (index, &id) in ids.iter().enumerate() {
            let hash = ahead.next(self, &ids, index);
            out.push(self.find_slot(id, hash).is_ok());
        }
    }
}

/// Hashes of the next `AHEAD` IDs of a batch, whose slots (and, half-way, records) are
/// prefetched while earlier IDs are processed.
struct Lookahead {
    hashes: [u64; AHEAD],
}

impl Lookahead {
    fn new(cache: &SeenCache, ids: &[&[u8]]) -> Self {
        let mut hashes = [0; AHEAD];
        for (hash, id) in hashes.iter_mut().zip(ids) {
            *hash = cache.hash(id);
            cache.prefetch_slot(*hash);
        }
        Self { hashes }
    }

    /// The hash of `ids[index]`; also hashes and prefetches `ids[index + AHEAD]`.
    fn next(&mut self, cache: &SeenCache, ids: &[&[u8]], index: usize) -> u64 {
        let hash = self.hashes[index % AHEAD];
        if let Some(later) = ids.get(index + AHEAD) {
            let later = cache.hash(later);
            self.hashes[index % AHEAD] = later;
            cache.prefetch_slot(later);
        }
        if index + AHEAD / 2 < ids.len() {
            // Its slot line has had time to arrive: prefetch the record it points at.
            let sooner = self.hashes[(index + AHEAD / 2) % AHEAD];
            let slot = cache.slots[sooner as usize & cache.mask()];
            // Only a slot with the same hash can hold this ID (a new ID's home slot is
            // usually empty or another ID's: fetching that record would be wasted).
            if slot.position != EMPTY && slot.hash == sooner {
                prefetch(&cache.bytes[(slot.position - cache.base) as usize]);
            }
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(number: u32) -> Vec<u8> {
        format!("message-{number}").into_bytes()
    }

    #[test]
    fn add_reports_new_ids_once() {
        let mut cache = SeenCache::new(120.0, 100).unwrap();
        assert!(cache.add(b"a", 0.0).unwrap());
        assert!(!cache.add(b"a", 1.0).unwrap());
        assert!(cache.add(b"b", 1.0).unwrap());
        assert!(cache.contains(b"a") && cache.contains(b"b") && !cache.contains(b"c"));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn entries_expire_after_ttl_without_refresh() {
        let mut cache = SeenCache::new(10.0, 100).unwrap();
        cache.add(b"a", 0.0).unwrap();
        cache.add(b"a", 5.0).unwrap(); // first-seen: does not extend
        cache.add(b"b", 5.0).unwrap();
        assert_eq!(cache.expire(9.999).unwrap(), 0);
        assert_eq!(cache.expire(10.0).unwrap(), 1);
        assert!(!cache.contains(b"a") && cache.contains(b"b"));
        assert!(cache.add(b"a", 10.0).unwrap());
        assert_eq!(cache.expire(100.0).unwrap(), 2);
        assert!(cache.is_empty());
    }

    #[test]
    fn full_cache_evicts_the_oldest() {
        let mut cache = SeenCache::new(1000.0, 3).unwrap();
        for number in 0..5 {
            assert!(cache.add(&id(number), f64::from(number)).unwrap());
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.contains(&id(0)) && !cache.contains(&id(1)));
        assert!(cache.contains(&id(2)) && cache.contains(&id(4)));
    }

    #[test]
    fn batches_of_packed_ids_equal_single_adds() {
        // Fixed-length IDs back to back (the bindings' packed batches), through a full
        // cache (evictions and growth while a batch is being inserted) and duplicates.
        let mut packed = SeenCache::new(7.0, 40).unwrap();
        let mut single = SeenCache::new(7.0, 40).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for second in 0..30u32 {
            let mut buffer = Vec::new();
            for _ in 0..9 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buffer.extend_from_slice(&(state % 60).to_be_bytes()[5..]); // 3-byte IDs
            }
            let now = f64::from(second);
            let mut batch = Vec::new();
            packed
                .add_many(buffer.chunks_exact(3), now, &mut batch)
                .unwrap();
            let one_by_one: Vec<bool> = buffer
                .chunks_exact(3)
                .map(|id| single.add(id, now).unwrap())
                .collect();
            assert_eq!(batch, one_by_one);
            let mut present = Vec::new();
            packed.contains_many(buffer.chunks_exact(3), &mut present);
            let expected: Vec<bool> = buffer
                .chunks_exact(3)
                .map(|id| single.contains(id))
                .collect();
            assert_eq!(present, expected);
            assert_eq!(packed.len(), single.len());
        }
    }

    #[test]
    fn time_must_not_go_back_and_must_be_finite() {
        let mut cache = SeenCache::new(1.0, 10).unwrap();
        cache.add(b"a", 5.0).unwrap();
        assert!(matches!(
            cache.add(b"b", 4.0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            cache.expire(f64::NAN),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            cache.expire(f64::INFINITY),
            Err(Error::InvalidArgument(_))
        ));
        assert!(SeenCache::new(0.0, 1).is_err());
        assert!(SeenCache::new(1.0, 0).is_err());
    }

    #[test]
    fn many_ids_survive_buffer_compaction() {
        let mut cache = SeenCache::new(50.0, 10_000).unwrap();
        let mut out = Vec::new();
        for second in 0..200u32 {
            let ids: Vec<Vec<u8>> = (0..100).map(|n| id(second * 100 + n)).collect();
            out.clear();
            cache
                .add_many(ids.iter().map(Vec::as_slice), f64::from(second), &mut out)
                .unwrap();
            assert!(out.iter().all(|&new| new));
        }
        // 50 seconds of 100 IDs each are alive.
        assert_eq!(cache.len(), 5000);
        assert!(cache.contains(&id(199 * 100 + 5)) && cache.contains(&id(150 * 100)));
        assert!(!cache.contains(&id(149 * 100 + 99)));
        let probe = [id(19_999), id(0), id(15_000)];
        out.clear();
        cache.contains_many(probe.iter().map(Vec::as_slice), &mut out);
        assert_eq!(out, vec![true, false, true]);
    }
}
