//! The radix index of a large bucket's sorted keys ([`CellIndex`]), the cell of a key,
//! the XOR-order permutation of an occupancy word and the prefetch hint used while
//! reading cells.

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
pub(super) struct CellIndex {
    pub(super) bits: u32,
    pub(super) offsets: Vec<u32>,
    pub(super) occupied: Vec<u64>,
}

impl CellIndex {
    /// Cell bits for `len` keys under a `prefix`-bit shared prefix: the bit length of
    /// `len` plus one (2^bits in (2 len, 4 len]), at least 6 (one occupancy word), or
    /// None when the bucket is small or the cells would not fit in the first key word.
    pub(super) fn wanted_bits(len: usize, prefix: u32) -> Option<u32> {
        if len < CELL_INDEX_MIN {
            return None;
        }
        let bits = (usize::BITS - len.leading_zeros() + 1).clamp(6, MAX_CELL_BITS);
        (prefix + bits <= 64).then_some(bits)
    }

    pub(super) fn build(bits: u32, prefix: u32, heads: &[u64]) -> Self {
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

    pub(super) fn inserted(&mut self, cell: usize) {
        for offset in &mut self.offsets[cell + 1..] {
            *offset += 1;
        }
        self.occupied[cell / 64] |= 1 << (cell % 64);
    }

    pub(super) fn removed(&mut self, cell: usize) {
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
pub(super) fn prefetch<T>(value: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and reads nothing architecturally.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(value.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// The cell of a key (by its first word) under a `prefix`-bit shared prefix.
pub(super) fn cell_of(head: u64, prefix: u32, bits: u32) -> usize {
    ((head << prefix) >> (64 - bits)) as usize
}

/// `word` with bit `j` moved to bit `j ^ t` (t < 64): one masked swap per set bit of
/// `t`, so scanning the result's set bits upwards visits cells in XOR order from `t`.
pub(super) fn xor_permute(mut word: u64, t: u32) -> u64 {
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
