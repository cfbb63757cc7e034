//! Stream-K work decomposition of the sm_90a GEMM's persistent grid.
//!
//! A persistent grid of one block per multiprocessor walks whole output tiles; when the tiles
//! leave the last wave mostly empty (104 tiles on 132 SMs, or 208), blocks idle while the rest
//! finish. Stream-K (Osama et al., PPoPP 2023; CUTLASS's `StreamK` tile scheduler) spreads
//! the K iterations of the tiles that would make the partial wave, plus one full wave, evenly
//! over every block; the rest run data-parallel, one whole tile per block per wave.
//!
//! Block `b` of `G` takes iterations `[b·I/G, (b+1)·I/G)` of the stream-K region's `I =
//! sk_tiles × k_tiles` (tile-major), so a tile can be cut between consecutive blocks. Its
//! **owner** is the block that ran its first K iteration (a segment with `kb == 0` that ends
//! before `k_tiles`): that is the last segment of the owner's range, so by the time it gets
//! there the **contributors** (the following blocks, for whom that tile is their first
//! segment) are long done. A contributor leaves its f32 accumulators in its own slot of a
//! module-global workspace (each block has at most one contributing segment) and raises the
//! slot's flag (release); the owner waits for each contributor's flag (acquire), adds the
//! partials in block order (deterministic), clears the flag for the next launch and runs the
//! epilogue. Whole segments (`kb == 0`, `ke == k_tiles`) run the epilogue directly.
//!
//! The choice is made by the kernel at run time from the tile count and `gridDim` (CUTLASS's
//! heuristic mode): stream-K only when the data-parallel waves would be less than
//! [`WAVE_EFFICIENCY`] full, the K range has at least [`MIN_K_TILES`] steps, and the grid fits
//! the workspace's [`SLOTS`], and there are at least as many K steps to share as blocks (a
//! block with none would leave an owner waiting). [`Decomposition`] is the same arithmetic on the host, for the
//! property tests; [`DEVICE_FN`] is its device form, emitted into every sm_90a GEMM.
//!
//! It assumes the grid's blocks are all resident at once (one block per SM at most, which
//! [`crate::TileSchedule::StreamK`] launches) and that launches of one module do not overlap
//! (one stream), since the workspace belongs to the module.

/// Blocks (per launch, all batches) the workspace has slots for; a larger grid runs
/// data-parallel.
pub const SLOTS: u32 = 160;
/// Fewest K steps per tile for which a tile is worth cutting.
pub const MIN_K_TILES: u32 = 4;
/// Stream-K only when the data-parallel waves are less full than this (percent).
pub const WAVE_EFFICIENCY: u32 = 90;

/// The device form of [`Decomposition`]: `tsr_sk_plan` and `tsr_sk_segment`.
pub const DEVICE_FN: &str = r#"// stream-K: the tiles of the partial wave (plus one full wave) split by K iterations over
// every block, the rest whole, one per block per wave (hopper/stream_k.rs)
struct tsr_sk { int sk_tiles, sk_segs, segs, sk_first, sk_begin, sk_end; };
struct tsr_seg { int pid, kb, ke, pos; };
static __device__ __forceinline__ tsr_sk tsr_sk_plan(int tiles, int k_tiles) {
  tsr_sk w;
  const int G = gridDim.x, b = blockIdx.x;
  const int waves = (tiles + G - 1) / G;
  int sk = 0;
  if (k_tiles >= TSR_SK_MIN_K && k_tiles < (1 << 20) && gridDim.x * gridDim.z <= TSR_SK_SLOTS && (long long)tiles * 100 < (long long)waves * G * TSR_SK_EFFICIENCY)
    sk = tiles < G ? tiles : G + tiles % G;
  if (sk * k_tiles < G) sk = 0;  // every block needs a K step
  const long long iters = (long long)sk * k_tiles;  // < 2^31: sk < 2 G
  w.sk_tiles = sk;
  w.sk_begin = (int)(iters * b / G);
  w.sk_end = (int)(iters * (b + 1) / G);
  w.sk_first = w.sk_begin / k_tiles;
  w.sk_segs = w.sk_begin < w.sk_end ? (w.sk_end - 1) / k_tiles - w.sk_first + 1 : 0;
  const int dp_first = sk + b;
  w.segs = w.sk_segs + (dp_first < tiles ? (tiles - dp_first + G - 1) / G : 0);
  return w;
}
// segment s of this block: its tile, K steps [kb, ke) and ring position
static __device__ __forceinline__ tsr_seg tsr_sk_segment(const tsr_sk& w, int s, int k_tiles) {
  tsr_seg g;
  if (s < w.sk_segs) {
    g.pid = w.sk_first + s;
    const int t0 = g.pid * k_tiles;
    g.kb = s == 0 ? w.sk_begin - t0 : 0;
    g.ke = min(k_tiles, w.sk_end - t0);
    g.pos = t0 + g.kb - w.sk_begin;
  } else {
    const int j = s - w.sk_segs;
    g.pid = w.sk_tiles + (int)blockIdx.x + j * (int)gridDim.x;
    g.kb = 0;
    g.ke = k_tiles;
    g.pos = w.sk_end - w.sk_begin + j * k_tiles;
  }
  return g;
}
// the last block that holds a K iteration of stream-K tile `pid` (its contributors are the
// blocks after this one up to it)
static __device__ __forceinline__ int tsr_sk_last(const tsr_sk& w, int pid, int k_tiles) {
  return (int)(((long long)(pid + 1) * k_tiles * gridDim.x - 1) / ((long long)w.sk_tiles * k_tiles));
}
static __device__ __forceinline__ void tsr_sk_raise(unsigned* flag) {
  asm volatile("fence.acq_rel.gpu;\n\tst.relaxed.gpu.global.u32 [%0], 1;" :: "l"(flag) : "memory");
}
static __device__ __forceinline__ void tsr_sk_await(const unsigned* flag) {
  unsigned v;
  do { asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(flag) : "memory"); } while (v == 0);
}"#;

/// The `#define`s [`DEVICE_FN`] reads, from the constants above; a kernel without a
/// workspace (`slots` 0) always runs data-parallel.
pub fn defines(slots: u32) -> String {
    format!(
        "#define TSR_SK_SLOTS {slots}\n#define TSR_SK_MIN_K {MIN_K_TILES}\n#define TSR_SK_EFFICIENCY {WAVE_EFFICIENCY}"
    )
}

/// One block's share of the work, as the device computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decomposition {
    pub tiles: u64,
    pub k_tiles: u64,
    /// Tiles in the stream-K region (tiles `0..sk_tiles`); 0: all data-parallel.
    pub sk_tiles: u64,
    pub grid: u64,
}

/// A run of consecutive K steps of one tile that one block computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub tile: u64,
    pub kb: u64,
    pub ke: u64,
    /// Ring position of its first K step (K steps the block ran before it).
    pub pos: u64,
}

impl Segment {
    /// Runs the tile's first K step without finishing it: adds the others' partials.
    pub fn owns_partials(&self, k_tiles: u64) -> bool {
        self.kb == 0 && self.ke < k_tiles
    }

    /// Leaves its partials for the owner (does not run the epilogue).
    pub fn contributes(&self) -> bool {
        self.kb > 0
    }
}

impl Decomposition {
    /// The plan for `tiles` output tiles of `k_tiles` K steps on a grid of `grid` blocks along x
    /// (`blocks` in all, with the batches along z).
    pub fn new(tiles: u64, k_tiles: u64, grid: u64, blocks: u64) -> Decomposition {
        let g = grid.max(1);
        let waves = tiles.div_ceil(g);
        let sk_tiles = if k_tiles >= u64::from(MIN_K_TILES)
            && k_tiles < 1 << 20
            && blocks <= u64::from(SLOTS)
            && tiles * 100 < waves * g * u64::from(WAVE_EFFICIENCY)
        {
            if tiles < g {
                tiles
            } else {
                g + tiles % g
            }
        } else {
            0
        };
        // every block needs at least one K step: an empty range would never raise its flag
        let sk_tiles = if sk_tiles * k_tiles < g { 0 } else { sk_tiles };
        Decomposition {
            tiles,
            k_tiles,
            sk_tiles,
            grid: g,
        }
    }

    fn range(&self, block: u64) -> (u64, u64) {
        let iters = self.sk_tiles * self.k_tiles;
        (iters * block / self.grid, iters * (block + 1) / self.grid)
    }

    /// Block `block`'s segments, in the order it runs them.
    pub fn segments(&self, block: u64) -> Vec<Segment> {
        let (begin, end) = self.range(block);
        let mut out = Vec::new();
        let mut i = begin;
        while i < end {
            let tile = i / self.k_tiles;
            let kb = i - tile * self.k_tiles;
            let ke = self.k_tiles.min(end - tile * self.k_tiles);
            out.push(Segment {
                tile,
                kb,
                ke,
                pos: i - begin,
            });
            i = tile * self.k_tiles + ke;
        }
        let mut pos = end - begin;
        let mut tile = self.sk_tiles + block;
        while tile < self.tiles {
            out.push(Segment {
                tile,
                kb: 0,
                ke: self.k_tiles,
                pos,
            });
            pos += self.k_tiles;
            tile += self.grid;
        }
        out
    }

    /// The blocks whose partials the owner of stream-K tile `tile` adds (`tsr_sk_last`).
    pub fn contributors(&self, owner: u64, tile: u64) -> std::ops::RangeInclusive<u64> {
        let iters = self.sk_tiles * self.k_tiles;
        let last = ((tile + 1) * self.k_tiles * self.grid - 1) / iters;
        owner + 1..=last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn partial_waves_are_split_and_full_ones_are_not() {
        // 104 tiles on 132 SMs: all stream-K; 264 tiles: two full waves, data-parallel
        assert_eq!(Decomposition::new(104, 48, 132, 132).sk_tiles, 104);
        assert_eq!(Decomposition::new(264, 48, 132, 132).sk_tiles, 0);
        // 400 tiles: two waves whole, the last full wave and the 4 left over split
        assert_eq!(Decomposition::new(400, 12, 132, 132).sk_tiles, 136);
        // 125 of 132 is 95 % full; 2 K steps are too few to cut; 2 x 132 blocks have no slots
        assert_eq!(Decomposition::new(125, 48, 132, 132).sk_tiles, 0);
        assert_eq!(Decomposition::new(104, 2, 132, 132).sk_tiles, 0);
        assert_eq!(Decomposition::new(104, 48, 132, 264).sk_tiles, 0);
        // 1 tile of 4 steps cannot feed 6 blocks
        assert_eq!(Decomposition::new(1, 4, 6, 6).sk_tiles, 0);
    }

    proptest! {
        /// Every K step of every tile is computed exactly once; each block's segments follow
        /// one another on the ring; a block contributes at most once (its slot), only its
        /// first segment; each cut tile has one owner, and its contributors are exactly the
        /// other blocks holding its steps.
        #[test]
        fn segments_cover_every_step_once(tiles in 1u64..600, k_tiles in 1u64..80, grid in 1u64..160) {
            let d = Decomposition::new(tiles, k_tiles, grid, grid);
            let mut seen: BTreeMap<(u64, u64), u64> = BTreeMap::new();
            let mut holders: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            let mut owners: BTreeMap<u64, u64> = BTreeMap::new();
            for b in 0..d.grid {
                let segs = d.segments(b);
                let mut pos = 0;
                for (s, seg) in segs.iter().enumerate() {
                    prop_assert_eq!(seg.pos, pos);
                    prop_assert!(seg.kb < seg.ke && seg.ke <= k_tiles);
                    pos += seg.ke - seg.kb;
                    for k in seg.kb..seg.ke {
                        *seen.entry((seg.tile, k)).or_default() += 1;
                    }
                    holders.entry(seg.tile).or_default().push(b);
                    if seg.contributes() {
                        prop_assert_eq!(s, 0);
                        prop_assert!(seg.tile < d.sk_tiles);
                    }
                    if seg.owns_partials(k_tiles) {
                        prop_assert!(owners.insert(seg.tile, b).is_none());
                    }
                }
            }
            prop_assert_eq!(seen.len() as u64, tiles * k_tiles);
            prop_assert!(seen.values().all(|&n| n == 1));
            for (tile, blocks) in holders {
                if blocks.len() > 1 {
                    let owner = owners[&tile];
                    prop_assert_eq!(owner, blocks[0]);
                    let others: Vec<u64> = d.contributors(owner, tile).collect();
                    prop_assert_eq!(others, blocks[1..].to_vec());
                } else {
                    prop_assert!(!owners.contains_key(&tile));
                }
            }
        }
    }
}
