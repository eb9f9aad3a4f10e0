//! The table's lookups: [`RoutingTable::closest`] and its variants, which visit the
//! buckets in XOR order from the target and ask each bucket's `SortedKeys` for its
//! nearest keys; with the per-thread scratch buffer of sort items they share.

use super::words::{bit, leading_zeros, set_bits, xor, Words};
use super::{check_count, check_key, Found, RoutingTable, BUCKET_COUNT};
use crate::Error;

impl<P: AsRef<[u8]>> RoutingTable<P> {
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
}

/// Most sort items the per-thread scratch buffer keeps between lookups (32 KiB).
const SCRATCH_KEPT: usize = 4096;

thread_local! {
    /// Sort items of `closest`, reused across calls on one thread (no allocation per
    /// lookup; `closest_many` runs on one thread too).
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}
