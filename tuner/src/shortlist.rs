//! The built-in shortlist: GEMM configs that are usually near the best on sm_80-style paths,
//! for quick benchmarks before (or instead of) a full sweep. Every point is checked against the
//! template's space, so a changed space cannot smuggle in a config it no longer allows.

use tessera_dsl::{Problem, Template};

/// (tile_m, tile_n, tile_k, warps_m, warps_n, stages, mfma, split_k, tma_store, multicast)
const GEMM_POINTS: &[[i64; 10]] = &[
    [128, 128, 32, 2, 2, 4, 16, 1, 0, 1],
    [128, 128, 32, 2, 2, 3, 16, 1, 0, 1],
    [128, 256, 32, 2, 4, 3, 16, 1, 0, 1],
    [128, 256, 32, 2, 4, 4, 16, 1, 0, 1],
    [256, 128, 32, 4, 2, 3, 16, 1, 0, 1],
    [256, 128, 32, 4, 2, 4, 16, 1, 0, 1],
    [128, 128, 32, 2, 4, 4, 16, 1, 0, 1],
    [128, 128, 64, 2, 4, 3, 16, 1, 0, 1],
    [128, 128, 64, 4, 2, 3, 16, 1, 0, 1],
    [64, 256, 32, 2, 4, 4, 16, 1, 0, 1],
    [256, 64, 32, 4, 2, 4, 16, 1, 0, 1],
    [64, 128, 32, 2, 2, 4, 16, 1, 0, 1],
    [128, 64, 32, 2, 2, 4, 16, 1, 0, 1],
    [64, 128, 64, 2, 2, 3, 16, 1, 0, 1],
    [128, 64, 64, 2, 2, 3, 16, 1, 0, 1],
    [64, 64, 64, 2, 2, 4, 16, 1, 0, 1],
    [64, 64, 32, 2, 2, 4, 16, 1, 0, 1],
    // sm_90a warp-specialized shapes (64-deep K steps, 128B swizzle)
    [128, 256, 64, 2, 4, 3, 16, 1, 0, 1],
    [128, 256, 64, 2, 4, 4, 16, 1, 0, 1],
    [256, 128, 64, 4, 2, 3, 16, 1, 0, 1],
    [128, 128, 64, 2, 2, 4, 16, 1, 0, 1],
    [128, 64, 64, 2, 2, 4, 16, 1, 0, 1],
    // pingpong: two consumer warpgroups, each a whole tile
    [128, 128, 64, 2, 4, 4, 16, 1, 0, 1],
    [64, 256, 64, 2, 4, 4, 16, 1, 0, 1],
    [64, 128, 64, 2, 4, 4, 16, 1, 0, 1],
    // sm_90a deep rings for memory-bound (decode) shapes: more weight bytes in flight per SM
    [64, 64, 64, 2, 2, 8, 16, 1, 0, 1],
    [64, 128, 64, 2, 2, 6, 16, 1, 0, 1],
    [64, 128, 64, 2, 2, 8, 16, 1, 0, 1],
    [128, 64, 64, 2, 2, 8, 16, 1, 0, 1],
    [64, 128, 64, 2, 4, 8, 16, 1, 0, 1],
    [128, 128, 64, 2, 4, 6, 16, 1, 0, 1],
    // sm_90a 192-wide tiles: whole waves for N = 768 / 2304 / 3072 on 132 SMs
    [128, 192, 64, 2, 4, 3, 16, 1, 0, 1],
    [128, 192, 64, 2, 4, 4, 16, 1, 0, 1],
    // sm_90a 96- and 160-wide tiles: fuller waves for the 384-row BERT GEMMs on 132 SMs
    // (384x3072: 120 tiles of 64x160 against 72 of 128x128; 384x2304: 144 of 64x96)
    [64, 160, 64, 2, 2, 4, 16, 1, 0, 1],
    [64, 160, 64, 2, 2, 6, 16, 1, 0, 1],
    [128, 96, 64, 2, 2, 6, 16, 1, 0, 1],
    [128, 96, 64, 4, 2, 4, 16, 1, 0, 1],
    [128, 96, 64, 4, 2, 6, 16, 1, 0, 1],
    [64, 96, 64, 2, 2, 6, 16, 1, 0, 1],
    [64, 96, 64, 2, 2, 8, 16, 1, 0, 1],
    // sm_90a deep K steps for decode (M <= 128): each weight row read in 256/512-byte runs
    [64, 64, 128, 2, 2, 6, 16, 1, 0, 1],
    [64, 64, 256, 2, 2, 3, 16, 1, 0, 1],
    [64, 128, 128, 2, 2, 4, 16, 1, 0, 1],
    [64, 128, 256, 2, 2, 2, 16, 1, 0, 1],
    [128, 64, 128, 2, 2, 4, 16, 1, 0, 1],
    [128, 64, 256, 2, 2, 2, 16, 1, 0, 1],
    // sm_90a split-K: a cluster of 2 or 4 blocks per tile, one share of K each, the partials
    // combined through distributed shared memory; for long K and at most a quarter of the SMs'
    // worth of tiles (128x768x3072: 24 tiles of 64x64 split 4 ways)
    [64, 64, 64, 2, 2, 8, 16, 4, 0, 1],
    [64, 64, 64, 2, 2, 8, 16, 2, 0, 1],
    [64, 64, 128, 2, 2, 6, 16, 2, 0, 1],
    [64, 128, 64, 2, 2, 8, 16, 2, 0, 1],
    [64, 128, 64, 2, 2, 8, 16, 4, 0, 1],
    [64, 192, 64, 2, 2, 6, 16, 4, 0, 1],
    [128, 128, 64, 2, 2, 4, 16, 2, 0, 1],
    [128, 128, 64, 2, 2, 4, 16, 4, 0, 1],
    // sm_90a TMA store: the output tile leaves by bulk tensor copies while the block's next
    // mainloop runs (whole 64-column panels); timed beside the same tiles' own stores, it won
    // where blocks walk several tiles (12288-row BERT GEMMs, 4096^3) and lost for one tile
    // per block (384-row GEMMs, decode) on the H200
    [128, 256, 64, 2, 4, 3, 16, 1, 1, 1],
    [128, 192, 64, 2, 4, 3, 16, 1, 1, 1],
    [128, 192, 64, 2, 4, 4, 16, 1, 1, 1],
    [128, 128, 64, 2, 4, 4, 16, 1, 1, 1],
    [128, 128, 64, 2, 2, 4, 16, 1, 1, 1],
    [64, 64, 64, 2, 2, 8, 16, 1, 1, 1],
    [128, 64, 64, 2, 2, 8, 16, 1, 1, 1],
    [64, 64, 128, 2, 2, 6, 16, 1, 1, 1],
    [64, 128, 128, 2, 2, 4, 16, 1, 1, 1],
    // sm_90a B multicast: 2-block clusters along M share each B stage (B crosses L2 once per
    // pair); within -2..+1 % of the plain twins on the H200 where blocks walk several tiles
    [128, 256, 64, 2, 4, 3, 16, 1, 1, 2],
    [128, 256, 64, 2, 4, 3, 16, 1, 0, 2],
    [128, 192, 64, 2, 4, 4, 16, 1, 1, 2],
];

/// The shortlisted points of `template`'s space (in space order), for a problem.
pub fn points(template: &dyn Template, _problem: &Problem) -> Vec<Vec<i64>> {
    let space = template.space();
    let names = space.param_names();
    let order = [
        "tile_m",
        "tile_n",
        "tile_k",
        "warps_m",
        "warps_n",
        "stages",
        "mfma",
        "split_k",
        "tma_store",
        "multicast",
    ];
    if names != order {
        return Vec::new();
    }
    let all = space.enumerate();
    GEMM_POINTS
        .iter()
        .map(|p| p.to_vec())
        .filter(|p| all.contains(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::GemmProblem;

    /// A knob added to the GEMM space (or reordered) must be added here too: otherwise the
    /// shortlist silently drops every point and the benchmark has nothing to time.
    #[test]
    fn every_shortlisted_point_is_a_point_of_the_gemm_space() {
        tessera_library::templates();
        let t = tessera_dsl::find("gemm").expect("the gemm template is registered");
        let p = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
        assert_eq!(points(t, &p).len(), GEMM_POINTS.len());
    }
}
