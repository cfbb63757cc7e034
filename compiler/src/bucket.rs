//! Shape buckets. A plan is compiled for every (batch, seq) pair of the requested lists
//! (padded buckets: an input of `batch` sequences of up to `seq` tokens runs padded to the
//! smallest one that holds it; the attention mask hides the padding) and, unless turned off,
//! for token-count buckets under each of them (packed buckets: only the real tokens, back to
//! back, `tokens` rows for every GEMM and layernorm, attention over `cu_seqlens`).
//! [`choose`] and [`choose_packed`] are the run-time choices, as pure functions; which of the
//! two kinds a batch runs in is the executor's (`executor::Padding`).

use serde::{Deserialize, Serialize};

/// Packed buckets are multiples of this many tokens (a GEMM's M tile), or the whole
/// `batch · seq`.
pub const TOKEN_GRANULE: u64 = 128;

/// Packed buckets compiled under each padded bucket when the caller does not say.
pub const DEFAULT_PACKED_STEPS: u64 = 8;

/// Packed fill buckets every this many tokens when the caller does not say ([`packed_fill`]).
pub const DEFAULT_PACKED_GRANULE: u64 = TOKEN_GRANULE;

/// One compiled shape: `batch` sequences of `seq` tokens, padded; or, with `packed_tokens`,
/// up to `batch` sequences of up to [`Bucket::longest`] tokens, `packed_tokens` in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bucket {
    pub batch: u64,
    pub seq: u64,
    /// The token capacity of a packed bucket; `None` for a padded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed_tokens: Option<u64>,
}

impl Bucket {
    pub fn padded(batch: u64, seq: u64) -> Bucket {
        Bucket {
            batch,
            seq,
            packed_tokens: None,
        }
    }

    pub fn packed(batch: u64, seq: u64, tokens: u64) -> Bucket {
        Bucket {
            batch,
            seq,
            packed_tokens: Some(tokens),
        }
    }

    pub fn is_packed(&self) -> bool {
        self.packed_tokens.is_some()
    }

    /// Rows of every token-major activation: `batch · seq`, or the packed capacity.
    pub fn tokens(&self) -> u64 {
        self.packed_tokens.unwrap_or(self.batch * self.seq)
    }

    /// The longest sequence the bucket takes: `seq`; packed, also no more than what leaves
    /// one token for each other sequence (the attention kernel's launch bound).
    pub fn longest(&self) -> u64 {
        match self.packed_tokens {
            None => self.seq,
            Some(t) => self.seq.min(t.saturating_sub(self.batch.saturating_sub(1))),
        }
    }

    /// A padded bucket that holds `batch` sequences padded to `seq`.
    pub fn fits(&self, batch: u64, seq: u64) -> bool {
        !self.is_packed() && batch <= self.batch && seq <= self.seq
    }

    /// A packed bucket that holds sequences of these lengths.
    pub fn admits(&self, lens: &[u64]) -> bool {
        let total: u64 = lens.iter().sum();
        self.is_packed()
            && lens.len() as u64 <= self.batch
            && lens.iter().all(|&l| l <= self.longest())
            && total <= self.tokens()
    }

    /// The lengths a packed bucket is tuned, timed and warmed up with: one sequence of
    /// [`Bucket::longest`] and the rest of the tokens spread evenly over the other sequences
    /// (each at least 1, at most the longest); a padded bucket's are all `seq`.
    pub fn representative_lens(&self) -> Vec<u64> {
        let n = self.batch as usize;
        let Some(t) = self.packed_tokens else {
            return vec![self.seq; n];
        };
        let longest = self.longest().max(1);
        let mut lens = vec![longest];
        let others = self.batch.saturating_sub(1);
        let rest = t.saturating_sub(longest);
        if let (Some(each), Some(extra)) = (rest.checked_div(others), rest.checked_rem(others)) {
            lens.extend((0..others).map(|i| (each + u64::from(i < extra)).clamp(1, longest)));
        }
        lens
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.packed_tokens {
            None => write!(f, "batch {} × seq {}", self.batch, self.seq),
            Some(t) => write!(
                f,
                "packed {t} tokens (≤ {} sequences of ≤ {})",
                self.batch,
                self.longest()
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("no buckets: give at least one batch size and one sequence length")]
    Empty,
    #[error("{what} must be positive")]
    Zero { what: &'static str },
    #[error("sequence length {seq} is longer than the model's {max} positions")]
    TooLong { seq: u64, max: u64 },
    #[error("input of batch {batch} × seq {seq} does not fit the largest bucket (batch {max_batch}, seq {max_seq}); compile with larger --batch/--seq")]
    NoFit {
        batch: u64,
        seq: u64,
        max_batch: u64,
        max_seq: u64,
    },
    #[error("a packed-bucket granule of {granule} tokens: give a multiple of 128 (a GEMM's M tile), or 0 for none")]
    Granule { granule: u64 },
    #[error("no packed bucket holds {count} sequences of {total} tokens, the longest {longest} (the plan's packed buckets: {have}); compile with larger --batch/--seq, or run it padded")]
    NoPackedFit {
        count: u64,
        total: u64,
        longest: u64,
        have: String,
    },
}

/// Every (batch, seq) pair of the two lists, padded, sorted and without repeats. `max_seq` is
/// the model's position count.
pub fn cross(batches: &[u64], seqs: &[u64], max_seq: u64) -> Result<Vec<Bucket>, BucketError> {
    if batches.is_empty() || seqs.is_empty() {
        return Err(BucketError::Empty);
    }
    if batches.contains(&0) {
        return Err(BucketError::Zero { what: "batch size" });
    }
    if seqs.contains(&0) {
        return Err(BucketError::Zero {
            what: "sequence length",
        });
    }
    if let Some(&seq) = seqs.iter().find(|&&s| s > max_seq) {
        return Err(BucketError::TooLong { seq, max: max_seq });
    }
    let mut all: Vec<Bucket> = batches
        .iter()
        .flat_map(|&batch| seqs.iter().map(move |&seq| Bucket::padded(batch, seq)))
        .collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// The packed buckets under each padded one: `steps` token counts `k · batch · seq / steps`
/// (k = 1..=steps) rounded up to [`TOKEN_GRANULE`] (never past `batch · seq`), each with its
/// `seq` narrowed to [`Bucket::longest`] (so buckets that hold the same batches are one, e.g.
/// 128 tokens of one sequence under both 1 × 128 and 1 × 384), without repeats; a count below
/// `batch` (no room for one token per sequence) is skipped. `steps` 0: none.
pub fn packed_under(padded: &[Bucket], steps: u64) -> Vec<Bucket> {
    let mut all: Vec<Bucket> = padded
        .iter()
        .filter(|b| !b.is_packed())
        .flat_map(|b| anchors_of(b, steps))
        .collect();
    all.sort();
    all.dedup();
    all
}

/// The packed bucket of `tokens` under padded bucket `b`, its bound narrowed to what those
/// tokens can hold; `None` below one token per sequence.
fn narrowed(b: &Bucket, tokens: u64) -> Option<Bucket> {
    (tokens >= b.batch).then(|| {
        let longest = Bucket::packed(b.batch, b.seq, tokens).longest();
        Bucket::packed(b.batch, longest, tokens)
    })
}

/// [`packed_under`] for one padded bucket, in token order.
fn anchors_of(b: &Bucket, steps: u64) -> Vec<Bucket> {
    let full = b.batch * b.seq;
    let mut out: Vec<Bucket> = (1..=steps)
        .filter_map(|k| {
            let t = (k * full)
                .div_ceil(steps)
                .next_multiple_of(TOKEN_GRANULE)
                .min(full);
            narrowed(b, t)
        })
        .collect();
    out.dedup();
    out
}

/// A packed bucket between two tuned ones, and the tuned (anchor) bucket whose kernels'
/// configs its kernels take: see [`packed_fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub bucket: Bucket,
    pub donor: Bucket,
}

/// Fill buckets: under each padded bucket, a packed bucket at every multiple of `granule`
/// tokens below `batch · seq` that [`packed_under`] (with the same `steps`) does not already
/// make, each paired with its donor: the anchor under the same padded bucket with the fewest
/// tokens at or above its own. A fill bucket's problems differ from its donor's by the token
/// count (and the attention's representative lengths) alone, so the compiler gives them the
/// donor's tuned configs instead of tuning them: finer buckets, no more tuning. Sorted, without
/// repeats and without any bucket that is an anchor (the first donor is kept). `granule` 0 or
/// `steps` 0: none; otherwise `granule` must be a multiple of [`TOKEN_GRANULE`].
pub fn packed_fill(padded: &[Bucket], steps: u64, granule: u64) -> Result<Vec<Fill>, BucketError> {
    if granule == 0 || steps == 0 {
        return Ok(Vec::new());
    }
    if !granule.is_multiple_of(TOKEN_GRANULE) {
        return Err(BucketError::Granule { granule });
    }
    let anchors = packed_under(padded, steps);
    let mut fills: Vec<Fill> = Vec::new();
    for b in padded.iter().filter(|b| !b.is_packed()) {
        let own = anchors_of(b, steps);
        let full = b.batch * b.seq;
        for t in (granule..full).step_by(granule as usize) {
            let Some(bucket) = narrowed(b, t) else {
                continue;
            };
            if anchors.contains(&bucket) || fills.iter().any(|f| f.bucket == bucket) {
                continue;
            }
            let donor = own
                .iter()
                .find(|a| a.tokens() >= t)
                .copied()
                .unwrap_or(Bucket::packed(b.batch, b.seq, full));
            fills.push(Fill { bucket, donor });
        }
    }
    fills.sort_by_key(|f| f.bucket);
    Ok(fills)
}

/// The padded bucket an input of `batch` × `seq` runs in: the fitting bucket with the fewest
/// tokens (then the smaller batch). An empty input or one larger than every bucket is an error.
pub fn choose(buckets: &[Bucket], batch: u64, seq: u64) -> Result<Bucket, BucketError> {
    if batch == 0 {
        return Err(BucketError::Zero { what: "batch size" });
    }
    if seq == 0 {
        return Err(BucketError::Zero {
            what: "sequence length",
        });
    }
    let padded = || buckets.iter().filter(|b| !b.is_packed());
    padded()
        .filter(|b| b.fits(batch, seq))
        .min_by_key(|b| (b.tokens(), b.batch, b.seq))
        .copied()
        .ok_or_else(|| BucketError::NoFit {
            batch,
            seq,
            max_batch: padded().map(|b| b.batch).max().unwrap_or(0),
            max_seq: padded().map(|b| b.seq).max().unwrap_or(0),
        })
}

/// The packed bucket sequences of these lengths run in: the admitting bucket with the fewest
/// tokens (then the fewest sequences, then the shortest bound).
pub fn choose_packed(buckets: &[Bucket], lens: &[u64]) -> Result<Bucket, BucketError> {
    if lens.is_empty() {
        return Err(BucketError::Zero { what: "batch size" });
    }
    if lens.contains(&0) {
        return Err(BucketError::Zero {
            what: "sequence length",
        });
    }
    buckets
        .iter()
        .filter(|b| b.admits(lens))
        .min_by_key(|b| (b.tokens(), b.batch, b.seq))
        .copied()
        .ok_or_else(|| {
            let have: Vec<String> = buckets
                .iter()
                .filter(|b| b.is_packed())
                .map(|b| format!("{}/{}/{}", b.tokens(), b.batch, b.longest()))
                .collect();
            BucketError::NoPackedFit {
                count: lens.len() as u64,
                total: lens.iter().sum(),
                longest: lens.iter().copied().max().unwrap_or(0),
                have: if have.is_empty() {
                    "none".into()
                } else {
                    format!("tokens/sequences/longest {}", have.join(", "))
                },
            }
        })
}

/// How much faster than the padded bucket the packed one must have measured for `--padding
/// auto` to take it. The load-time timings are medians of a few replays (a few per cent apart
/// between runs), and with little padding both buckets do the same work: on the H200 at
/// 250b75c, batch 8 without padding, auto took the packed 3072-token bucket on its load-time
/// timings though it replayed at 1.392 ms against the padded plan's 1.364 (2 % slower). Near a
/// tie the padded bucket, which needs no gather or scatter, is the safer side.
pub const AUTO_PACKED_MARGIN: f64 = 0.03;

/// `--padding auto`'s rule: of the padded and the packed bucket that fit a batch (each with its
/// replay time measured at load, if any), the packed one when it measured at least
/// [`AUTO_PACKED_MARGIN`] faster or when the padded one was not measured, else the padded one;
/// the only one when one kind does not fit.
pub fn faster(
    padded: Option<(Bucket, Option<f64>)>,
    packed: Option<(Bucket, Option<f64>)>,
) -> Option<Bucket> {
    match (padded, packed) {
        (Some((a, Some(ta))), Some((_, Some(tp)))) if tp > ta * (1.0 - AUTO_PACKED_MARGIN) => {
            Some(a)
        }
        (Some((a, Some(_))), Some((_, None))) => Some(a),
        (_, Some((p, _))) => Some(p),
        (Some((a, _)), None) => Some(a),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_smallest_fitting_bucket() {
        let b = cross(&[1, 8, 32], &[128, 384], 512).unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(choose(&b, 1, 100).unwrap(), Bucket::padded(1, 128));
        assert_eq!(choose(&b, 2, 129).unwrap(), Bucket::padded(8, 384));
        assert_eq!(choose(&b, 32, 384).unwrap(), Bucket::padded(32, 384));
        let e = choose(&b, 33, 10).unwrap_err().to_string();
        assert!(
            e.contains("batch 33") && e.contains("(batch 32, seq 384)"),
            "{e}"
        );
        assert!(choose(&b, 1, 385).is_err());
        assert!(choose(&b, 0, 1).is_err());
        assert_eq!(
            cross(&[1], &[1024], 512).unwrap_err(),
            BucketError::TooLong {
                seq: 1024,
                max: 512
            }
        );
        assert_eq!(cross(&[], &[1], 512).unwrap_err(), BucketError::Empty);
    }

    proptest! {
        #[test]
        fn choice_fits_and_nothing_smaller_fits(
            batches in prop::collection::vec(1u64..64, 1..5),
            seqs in prop::collection::vec(1u64..512, 1..5),
            batch in 1u64..80,
            seq in 1u64..600,
        ) {
            let buckets = cross(&batches, &seqs, 512).unwrap();
            let fits_some = buckets.iter().any(|b| b.fits(batch, seq));
            match choose(&buckets, batch, seq) {
                Ok(chosen) => {
                    prop_assert!(fits_some && chosen.fits(batch, seq) && buckets.contains(&chosen));
                    for b in buckets.iter().filter(|b| b.fits(batch, seq)) {
                        prop_assert!(chosen.tokens() <= b.tokens());
                    }
                    // on a full cross product the smallest fit is minimal in both dimensions
                    prop_assert!(buckets.iter().filter(|b| b.fits(batch, seq)).all(|b| chosen.batch <= b.batch && chosen.seq <= b.seq));
                }
                Err(e) => {
                    prop_assert!(!fits_some);
                    let is_no_fit = matches!(e, BucketError::NoFit { .. });
                    prop_assert!(is_no_fit);
                }
            }
        }
    }

    #[test]
    fn packed_buckets_step_in_granules_and_admit_by_tokens() {
        let padded = cross(&[8, 32], &[384], 512).unwrap();
        let packed = packed_under(&padded, 8);
        let b32: Vec<u64> = packed
            .iter()
            .filter(|b| b.batch == 32)
            .map(Bucket::tokens)
            .collect();
        assert_eq!(b32, [1536, 3072, 4608, 6144, 7680, 9216, 10752, 12288]);
        let b8: Vec<u64> = packed
            .iter()
            .filter(|b| b.batch == 8)
            .map(Bucket::tokens)
            .collect();
        assert_eq!(b8, [384, 768, 1152, 1536, 1920, 2304, 2688, 3072]);
        // the smallest 8-sequence bucket leaves a token for each of the other 7
        let small = Bucket::packed(8, 384, 384);
        assert_eq!(small.longest(), 377);
        assert!(
            packed.contains(&Bucket::packed(8, 377, 384)),
            "narrowed to its longest"
        );
        // one sequence of 128 tokens under 1 × 128 and under 1 × 384: one bucket
        let one = packed_under(&cross(&[1], &[128, 384], 512).unwrap(), 8);
        assert_eq!(
            one,
            [
                Bucket::packed(1, 128, 128),
                Bucket::packed(1, 256, 256),
                Bucket::packed(1, 384, 384)
            ]
        );
        assert!(small.admits(&[377, 1, 1, 1, 1, 1, 1, 1]));
        assert!(!small.admits(&[378]), "longer than the launch bound");
        assert!(!small.admits(&[100; 4]), "400 tokens");
        assert!(
            !padded[0].admits(&[1]),
            "a padded bucket admits nothing packed"
        );
        let all: Vec<Bucket> = padded.iter().chain(&packed).copied().collect();
        assert_eq!(
            choose_packed(&all, &[300, 5, 1]).unwrap(),
            Bucket::packed(8, 377, 384)
        );
        assert_eq!(
            choose_packed(&all, &[384; 9]).unwrap(),
            Bucket::packed(32, 384, 4608)
        );
        let e = choose_packed(&all, &[384; 33]).unwrap_err().to_string();
        assert!(e.contains("33 sequences of 12672 tokens"), "{e}");
        // a padded choice never lands in a packed bucket
        assert_eq!(choose(&all, 2, 10).unwrap(), Bucket::padded(8, 384));
        assert!(packed_under(&padded, 0).is_empty());
        // tiny buckets: a token count under the batch is skipped, the whole batch kept
        let tiny = packed_under(&[Bucket::padded(4, 2)], 8);
        assert_eq!(tiny, [Bucket::packed(4, 2, 8)]);
        assert_eq!(
            Bucket::packed(32, 384, 6144).to_string(),
            "packed 6144 tokens (≤ 32 sequences of ≤ 384)"
        );
    }

    #[test]
    fn fill_buckets_sit_between_anchors_and_borrow_from_the_next_one_up() {
        let padded = cross(&[8], &[384], 512).unwrap();
        let fills = packed_fill(&padded, 8, 128).unwrap();
        let tokens: Vec<u64> = fills.iter().map(|f| f.bucket.tokens()).collect();
        assert_eq!(
            tokens,
            [
                128, 256, 512, 640, 896, 1024, 1280, 1408, 1664, 1792, 2048, 2176, 2432, 2560,
                2816, 2944
            ]
        );
        let f = fills.iter().find(|f| f.bucket.tokens() == 1664).unwrap();
        assert_eq!(f.donor, Bucket::packed(8, 384, 1920));
        let first = fills[0];
        assert_eq!(first.bucket, Bucket::packed(8, 121, 128));
        assert_eq!(first.donor, Bucket::packed(8, 377, 384));
        assert!(packed_fill(&padded, 8, 0).unwrap().is_empty());
        assert!(packed_fill(&padded, 0, 128).unwrap().is_empty());
        assert_eq!(
            packed_fill(&padded, 8, 100).unwrap_err(),
            BucketError::Granule { granule: 100 }
        );
        // granule 384 under steps of 384 tokens: nothing to fill
        assert!(packed_fill(&padded, 8, 384).unwrap().is_empty());
    }

    #[test]
    fn auto_takes_the_faster_measured_bucket() {
        let (a, p) = (Bucket::padded(8, 384), Bucket::packed(8, 384, 1920));
        assert_eq!(faster(Some((a, Some(1.4))), Some((p, Some(1.0)))), Some(p));
        assert_eq!(faster(Some((a, Some(1.4))), Some((p, Some(1.5)))), Some(a));
        // a tie, and packed faster by less than the margin: padded
        assert_eq!(faster(Some((a, Some(1.0))), Some((p, Some(1.0)))), Some(a));
        assert_eq!(faster(Some((a, Some(1.0))), Some((p, Some(0.98)))), Some(a));
        // by more than the margin: packed
        assert_eq!(faster(Some((a, Some(1.0))), Some((p, Some(0.96)))), Some(p));
        assert_eq!(faster(Some((a, None)), Some((p, Some(9.0)))), Some(p));
        assert_eq!(faster(Some((a, Some(9.0))), Some((p, None))), Some(a));
        assert_eq!(faster(Some((a, Some(9.0))), None), Some(a));
        assert_eq!(faster(None, Some((p, None))), Some(p));
        assert_eq!(faster(None, None), None);
    }

    proptest! {
        #[test]
        fn anchors_and_fills_cover_every_granule_once(
            batches in prop::collection::vec(1u64..40, 1..4),
            seqs in prop::collection::vec(1u64..512, 1..3),
            steps in 1u64..10,
            g in 1u64..4,
        ) {
            let granule = g * TOKEN_GRANULE;
            let padded = cross(&batches, &seqs, 512).unwrap();
            let anchors = packed_under(&padded, steps);
            let fills = packed_fill(&padded, steps, granule).unwrap();
            for (i, f) in fills.iter().enumerate() {
                prop_assert!(!anchors.contains(&f.bucket), "{} is an anchor", f.bucket);
                prop_assert!(fills[..i].iter().all(|e| e.bucket != f.bucket));
                prop_assert!(f.bucket.tokens().is_multiple_of(granule));
                prop_assert!(anchors.contains(&f.donor), "donor {} is tuned", f.donor);
                prop_assert_eq!(f.donor.batch, f.bucket.batch);
                prop_assert!(f.donor.tokens() > f.bucket.tokens());
                prop_assert!(f.donor.longest() >= f.bucket.longest());
            }
            // every multiple of the granule that holds one token per sequence is a bucket
            for b in &padded {
                for t in (granule..b.tokens()).step_by(granule as usize) {
                    if t < b.batch {
                        continue;
                    }
                    let want = Bucket::packed(b.batch, Bucket::packed(b.batch, b.seq, t).longest(), t);
                    prop_assert!(
                        anchors.contains(&want) || fills.iter().any(|f| f.bucket == want),
                        "{} missing", want
                    );
                }
            }
        }

        #[test]
        fn representative_lengths_fill_a_packed_bucket(
            batch in 1u64..64,
            seq in 1u64..512,
            steps in 1u64..12,
        ) {
            for b in packed_under(&[Bucket::padded(batch, seq)], steps) {
                let lens = b.representative_lens();
                prop_assert_eq!(lens.len() as u64, b.batch);
                prop_assert!(b.admits(&lens), "{b}: {lens:?}");
                prop_assert_eq!(lens.iter().copied().max(), Some(b.longest()));
                prop_assert!(lens.iter().all(|&l| l >= 1));
                prop_assert_eq!(choose_packed(&[b], &lens), Ok(b));
            }
        }
    }
}
