//! The memory plan: every activation, input and output of a bucket's launch list gets an
//! offset in one arena. Lifetimes are step intervals over the launch order; placement is
//! greedy by size with best fit (Pisarchyk & Lee, as AITemplate plans): largest first, each in
//! the smallest gap between already placed, time-overlapping records that holds it, else past
//! the last of them. Offsets are aligned to [`ALIGN`] bytes.
//!
//! Buckets run one at a time, so all of them share the arena: its size is the largest
//! bucket's. This module knows step intervals and byte counts only, nothing of graphs.

use serde::{Deserialize, Serialize};

/// Alignment of every arena offset (and of every weight in the weights file).
pub const ALIGN: u64 = 256;

/// A buffer needed from step `first` through step `last` (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifetime {
    pub first: usize,
    pub last: usize,
    pub bytes: u64,
}

impl Lifetime {
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// Offsets (one per record, in input order) and the arena they need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub offsets: Vec<u64>,
    pub arena_bytes: u64,
}

pub fn align_up(n: u64, align: u64) -> u64 {
    n.div_ceil(align) * align
}

/// What the records would need with no reuse: every one its own aligned slot.
pub fn naive_bytes(records: &[Lifetime]) -> u64 {
    records.iter().map(|r| align_up(r.bytes, ALIGN)).sum()
}

/// Place `records` in one arena (greedy by size, best fit).
pub fn place(records: &[Lifetime]) -> Placement {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(records[i].bytes), i));
    let mut offsets = vec![0u64; records.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut arena = 0u64;
    for i in order {
        let r = records[i];
        let size = align_up(r.bytes, ALIGN);
        // occupied ranges of the records alive at the same time, by offset
        let mut busy: Vec<(u64, u64)> = placed
            .iter()
            .filter(|&&p| records[p].overlaps(&r))
            .map(|&p| (offsets[p], offsets[p] + align_up(records[p].bytes, ALIGN)))
            .collect();
        busy.sort_unstable();
        let mut best: Option<(u64, u64)> = None; // (gap size, offset)
        let mut cursor = 0u64;
        for &(start, end) in &busy {
            if start >= cursor + size {
                let gap = start - cursor;
                if best.is_none_or(|(g, _)| gap < g) {
                    best = Some((gap, cursor));
                }
            }
            cursor = cursor.max(end);
        }
        let offset = best.map_or(cursor, |(_, o)| o);
        offsets[i] = offset;
        arena = arena.max(offset + size);
        placed.push(i);
    }
    Placement {
        offsets,
        arena_bytes: arena,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn disjoint_lifetimes_share_memory() {
        let r = [
            Lifetime {
                first: 0,
                last: 1,
                bytes: 1000,
            },
            Lifetime {
                first: 1,
                last: 2,
                bytes: 500,
            },
            Lifetime {
                first: 2,
                last: 3,
                bytes: 1000,
            },
        ];
        let p = place(&r);
        assert_eq!(
            p.offsets[0], p.offsets[2],
            "the first and last reuse one slot"
        );
        assert_ne!(p.offsets[0], p.offsets[1]);
        assert_eq!(p.arena_bytes, 1024 + 512);
        assert_eq!(naive_bytes(&r), 1024 + 512 + 1024);
    }

    #[test]
    fn best_fit_takes_the_smallest_gap() {
        // a big and a small slot become free; a small record goes to the small gap
        let r = [
            Lifetime {
                first: 0,
                last: 9,
                bytes: 4096,
            }, // keeps the top busy
            Lifetime {
                first: 0,
                last: 1,
                bytes: 2048,
            },
            Lifetime {
                first: 0,
                last: 9,
                bytes: 1024,
            },
            Lifetime {
                first: 0,
                last: 1,
                bytes: 256,
            },
            Lifetime {
                first: 0,
                last: 9,
                bytes: 256,
            },
            Lifetime {
                first: 5,
                last: 6,
                bytes: 256,
            },
        ];
        let p = place(&r);
        assert_eq!(
            p.offsets[5], p.offsets[3],
            "fits the 256-byte gap, not the 2048-byte one"
        );
    }

    proptest! {
        #[test]
        fn live_records_never_overlap_and_reuse_never_grows(
            raw in prop::collection::vec((0usize..30, 0usize..10, 1u64..100_000), 1..40)
        ) {
            let records: Vec<Lifetime> = raw
                .iter()
                .map(|&(first, len, bytes)| Lifetime { first, last: first + len, bytes })
                .collect();
            let p = place(&records);
            for (i, a) in records.iter().enumerate() {
                prop_assert_eq!(p.offsets[i] % ALIGN, 0);
                prop_assert!(p.offsets[i] + a.bytes <= p.arena_bytes);
                for (j, b) in records.iter().enumerate().skip(i + 1) {
                    if a.overlaps(b) {
                        let disjoint = p.offsets[i] + a.bytes <= p.offsets[j]
                            || p.offsets[j] + b.bytes <= p.offsets[i];
                        prop_assert!(disjoint, "records {} and {} overlap", i, j);
                    }
                }
            }
            prop_assert!(p.arena_bytes <= naive_bytes(&records));
        }
    }
}
