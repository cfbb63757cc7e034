//! The thread ↔ element mapping of a row-wise kernel, shared by the emitter and its tests.
//!
//! A block holds `rows` rows; row `r` of the block is spread over `threads` consecutive
//! threads (`tid / threads` is the row in the block, `tid % threads` the thread's *lane* in the
//! row). Each thread holds `chunks` vectors of `vector` contiguous elements; element `j` of
//! chunk `c` is column `(c·threads + lane)·vector + j`. For a fixed chunk the lanes of a row
//! therefore read one contiguous run of `threads·vector` elements: every warp access is whole
//! 16-byte (or 8-, 4-byte) lines, and the row needs one pass over global memory.

use tessera_dsl::ir::RowTile;

/// Geometry of one row-wise kernel on one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowShape {
    /// Rows per block.
    pub rows: u32,
    /// Threads per row (a power of two).
    pub threads: u32,
    /// Elements per vector access.
    pub vector: u32,
    /// Vectors each thread holds.
    pub chunks: u32,
    /// Threads per warp (wavefront) of the device.
    pub warp: u32,
}

impl RowShape {
    pub fn new(tile: &RowTile, extent: u32, warp: u32) -> RowShape {
        RowShape {
            rows: tile.rows,
            threads: tile.threads,
            vector: tile.vector,
            chunks: tile.chunks(extent),
            warp,
        }
    }

    /// Threads per block.
    pub fn block_threads(&self) -> u32 {
        self.rows * self.threads
    }

    /// The column of element `j` of chunk `chunk` held by `lane`.
    pub fn column(&self, chunk: u32, lane: u32, j: u32) -> u32 {
        (chunk * self.threads + lane) * self.vector + j
    }

    /// Lanes of one row inside one warp: the width of the shuffle butterfly.
    pub fn shuffle_width(&self) -> u32 {
        self.threads.min(self.warp)
    }

    /// Warps one row spans (1 when a row fits in a warp, sub-warp rows included).
    pub fn warps_per_row(&self) -> u32 {
        (self.threads / self.warp).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column below `extent` is held by exactly one (chunk, lane, j), and no column at or
    /// past the chunks' end is produced — for every shape the templates can ask for and
    /// row lengths that are and are not multiples of `threads·vector`.
    #[test]
    fn every_column_is_covered_exactly_once() {
        for threads in [32, 64, 128, 256, 512, 1024] {
            for vector in [2, 4, 8] {
                for extent in (vector..=4096)
                    .step_by(vector as usize * 37)
                    .chain([768, 1000, 4096])
                {
                    let tile = RowTile {
                        name: "h".into(),
                        rows: 1,
                        threads,
                        vector,
                    };
                    let s = RowShape::new(&tile, extent, 32);
                    let mut seen = vec![0u32; (s.chunks * threads * vector) as usize];
                    for c in 0..s.chunks {
                        for lane in 0..threads {
                            for j in 0..vector {
                                let col = s.column(c, lane, j) as usize;
                                assert!(col < seen.len(), "column {col} out of the chunks");
                                seen[col] += 1;
                            }
                        }
                    }
                    assert!(
                        seen.iter().all(|&n| n == 1),
                        "t{threads} v{vector} e{extent}"
                    );
                    assert!(s.chunks * threads * vector >= extent);
                    assert!((s.chunks - 1) * threads * vector < extent);
                }
            }
        }
    }

    #[test]
    fn reductions_span_warps_only_for_wide_rows() {
        let tile = |threads| RowTile {
            name: "h".into(),
            rows: 2,
            threads,
            vector: 8,
        };
        let cuda = RowShape::new(&tile(128), 1024, 32);
        assert_eq!((cuda.shuffle_width(), cuda.warps_per_row()), (32, 4));
        let sub = RowShape::new(&tile(32), 1024, 64);
        assert_eq!((sub.shuffle_width(), sub.warps_per_row()), (32, 1));
        assert_eq!(sub.chunks, 4);
    }
}
