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
}
