//! Memory layouts of global tiles: row- or column-major with a leading dimension.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The order of a matrix in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Rows are contiguous (`ld` = elements between rows).
    Row,
    /// Columns are contiguous (`ld` = elements between columns).
    Col,
}

impl Layout {
    /// One letter, as in a GEMM's layout code `rcr` (A, B, D).
    pub fn letter(self) -> char {
        match self {
            Layout::Row => 'r',
            Layout::Col => 'c',
        }
    }

    pub fn from_letter(c: char) -> Option<Layout> {
        match c {
            'r' => Some(Layout::Row),
            'c' => Some(Layout::Col),
            _ => None,
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Row => "row",
            Layout::Col => "col",
        })
    }
}

/// The largest vector width (in elements, one of 8, 4, 2, 1) such that every value in `dims`
/// is a multiple of it: a kernel can then move `width` elements in one aligned access.
pub fn max_alignment(dims: &[u64]) -> u32 {
    [8u32, 4, 2]
        .into_iter()
        .find(|&w| dims.iter().all(|d| d % u64::from(w) == 0))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn alignment_examples() {
        assert_eq!(max_alignment(&[768, 3072]), 8);
        assert_eq!(max_alignment(&[1000, 12]), 4);
        assert_eq!(max_alignment(&[1002]), 2);
        assert_eq!(max_alignment(&[999]), 1);
    }

    proptest! {
        #[test]
        fn alignment_divides_every_dim(dims in proptest::collection::vec(1u64..100_000, 1..4)) {
            let a = max_alignment(&dims);
            for d in &dims {
                prop_assert_eq!(d % u64::from(a), 0);
            }
            // and it is the largest such width
            if a < 8 {
                let next = a * 2;
                prop_assert!(dims.iter().any(|d| d % u64::from(next) != 0));
            }
        }
    }
}
