//! Shape buckets: a plan is compiled for every (batch, seq) pair of the requested lists, and
//! at run time an input of `batch` sequences of up to `seq` tokens runs in the smallest bucket
//! that holds it (padded; the attention mask hides the padding). [`choose`] is that choice, as a
//! pure function.

use serde::{Deserialize, Serialize};

/// One compiled shape: `batch` sequences of `seq` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bucket {
    pub batch: u64,
    pub seq: u64,
}

impl Bucket {
    pub fn tokens(&self) -> u64 {
        self.batch * self.seq
    }

    pub fn fits(&self, batch: u64, seq: u64) -> bool {
        batch <= self.batch && seq <= self.seq
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {} × seq {}", self.batch, self.seq)
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
}

/// Every (batch, seq) pair of the two lists, sorted and without repeats. `max_seq` is the
/// model's position count.
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
        .flat_map(|&batch| seqs.iter().map(move |&seq| Bucket { batch, seq }))
        .collect();
    all.sort();
    all.dedup();
    Ok(all)
}

/// The bucket an input of `batch` × `seq` runs in: the fitting bucket with the fewest tokens
/// (then the smaller batch). An empty input or one larger than every bucket is an error.
pub fn choose(buckets: &[Bucket], batch: u64, seq: u64) -> Result<Bucket, BucketError> {
    if batch == 0 {
        return Err(BucketError::Zero { what: "batch size" });
    }
    if seq == 0 {
        return Err(BucketError::Zero {
            what: "sequence length",
        });
    }
    buckets
        .iter()
        .filter(|b| b.fits(batch, seq))
        .min_by_key(|b| (b.tokens(), b.batch, b.seq))
        .copied()
        .ok_or_else(|| BucketError::NoFit {
            batch,
            seq,
            max_batch: buckets.iter().map(|b| b.batch).max().unwrap_or(0),
            max_seq: buckets.iter().map(|b| b.seq).max().unwrap_or(0),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn picks_the_smallest_fitting_bucket() {
        let b = cross(&[1, 8, 32], &[128, 384], 512).unwrap();
        assert_eq!(b.len(), 6);
        assert_eq!(choose(&b, 1, 100).unwrap(), Bucket { batch: 1, seq: 128 });
        assert_eq!(choose(&b, 2, 129).unwrap(), Bucket { batch: 8, seq: 384 });
        assert_eq!(
            choose(&b, 32, 384).unwrap(),
            Bucket {
                batch: 32,
                seq: 384
            }
        );
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
}
