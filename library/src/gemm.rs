//! The GEMM template: `D = epilogue(alpha·A·B)` with A row-major, B row- or column-major,
//! f16/bf16 inputs, f32 accumulation and f16/bf16/f32 output; any M, N, K whose contiguous
//! dimensions meet the config's alignment (edges are predicated).

use tessera_dsl::gpu_template;

/// GEMM with a fused epilogue on tensor cores: multi-stage pipelined mainloop over K.
#[gpu_template(name = "gemm", op = gemm, label = "{tile_m}x{tile_n}x{tile_k}_w{warps_m}x{warps_n}_s{stages}")]
pub mod gemm {
    params! {
        tile_m in [64, 128, 256],
        tile_n in [64, 128, 256],
        tile_k in [32, 64],
        warps_m in [1, 2, 4],
        warps_n in [1, 2, 4],
        stages in [2, 3, 4],
    }
    constraints! {
        tile_m % (warps_m * 16) == 0,
        tile_n % (warps_n * 16) == 0,
        warps_m * warps_n == 4 || warps_m * warps_n == 8,
        tile_m * tile_n <= 128 * 32 * warps_m * warps_n,
        tile_m / warps_m >= 32 && tile_n / warps_n >= 32,
        tile_m / warps_m + tile_n / warps_n <= 128,
        warps_m >= 2 && warps_n >= 2,
        tile_k == 32 || (tile_m / warps_m) * (tile_n / warps_n) <= 2048,
    }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }
    kernel! {
        shared sa: a[tile_m, tile_k] x stages;
        shared sb: b[tile_k, tile_n] x stages;
        fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
        mainloop k step tile_k stages stages {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb;
        }
        epilogue acc -> d;
    }

    use tessera_dsl::{Config, DeviceCaps, EpilogueOp, Problem, Reject, RejectKind};

    /// An epilogue that reads both C and a residual keeps two extra operands per accumulator
    /// live; with a 64×64 warp tile (128 f32 accumulators per thread) that overflows the
    /// register file, so such configs are rejected rather than left to spill.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        let v = |n: &str| config.get(n).unwrap_or(1);
        let warp_tile = (v("tile_m") / v("warps_m")) * (v("tile_n") / v("warps_n"));
        let epi = &config.variant.epilogue;
        if warp_tile > 2048
            && epi.contains(&EpilogueOp::BetaC)
            && epi.contains(&EpilogueOp::Residual)
        {
            return Err(Reject::new(
                RejectKind::Resources,
                "an epilogue reading C and a residual needs a warp tile of at most 2048 elements (64x64 spills)",
            ));
        }
        Ok(())
    }
}
