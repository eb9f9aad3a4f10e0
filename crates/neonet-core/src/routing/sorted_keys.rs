//! A bucket's keys kept sorted with their peers ([`SortedKeys`]): insertion, batched
//! loading, removal, and the walk that finds a bucket's keys nearest a target (through
//! the [`CellIndex`] of a large bucket, else around the target's sorted position).

use super::cell_index::{cell_of, prefetch, xor_permute, CellIndex};
use super::words::{bit, leading_zeros, shared_prefix, xor, Words};
use super::{Found, MAX_BUCKET_SIZE};

/// Low bits of a packed sort item that hold an index into a bucket.
const INDEX_MASK: u64 = (MAX_BUCKET_SIZE as u64) - 1;

/// A bucket's keys in ascending order with their peers; `heads` repeats each key's
/// first word so that binary searches touch 8 bytes a step. During a batch of
/// updates new entries are appended unsorted after the first `sorted` and put in
/// place once by [`Self::settle`] (loading n peers costs O(n log n), not O(n^2)).
pub(super) struct SortedKeys<P> {
    pub(super) heads: Vec<u64>,
    pub(super) keys: Vec<Words>,
    pub(super) peers: Vec<P>,
    sorted: usize,
    /// Leading bits every key of the bucket shares (its index + 1): the cells below
    /// are cut from the bits after them.
    pub(super) prefix: u32,
    /// The radix index of a large bucket (see [`CellIndex`]); kept in step with every
    /// insert and removal, rebuilt when the bucket's size moves out of its range.
    pub(super) cells: Option<CellIndex>,
}

impl<P> Default for SortedKeys<P> {
    fn default() -> Self {
        Self::with_prefix(0)
    }
}

impl<P> SortedKeys<P> {
    pub(super) fn with_prefix(prefix: u32) -> Self {
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

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn is_empty(&self) -> bool {
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

    pub(super) fn insert(&mut self, key: Words, peer: P) {
        debug_assert_eq!(self.sorted, self.len(), "insert outside a batch");
        let position = self.lower_bound(&key);
        self.heads.insert(position, key[0]);
        self.keys.insert(position, key);
        self.peers.insert(position, peer);
        self.sorted += 1;
        self.reindex(Some((key[0], true)));
    }

    /// Add an entry unsorted (inside a batch); [`Self::settle`] sorts it in.
    pub(super) fn append(&mut self, key: Words, peer: P) {
        self.heads.push(key[0]);
        self.keys.push(key);
        self.peers.push(peer);
    }

    /// Sort the entries appended by a batch into place: sort them, then merge.
    pub(super) fn settle(&mut self) {
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

    pub(super) fn remove(&mut self, key: &Words) -> P {
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
    pub(super) fn peer(&self, key: &Words) -> &P {
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
    pub(super) fn take_range<'a>(
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
    pub(super) fn nearest<'a>(
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
