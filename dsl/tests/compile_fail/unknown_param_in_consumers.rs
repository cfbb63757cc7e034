use tessera_dsl::gpu_template;

#[gpu_template(name = "gemm", op = gemm)]
pub mod gemm {
    params! {
        tile_m in [64, 128],
        tile_n in [64, 128],
        tile_k in [32, 64],
        warps_m in [1, 2],
        warps_n in [1, 2],
        stages in [2, 3],
        kv_consumers in [1, 2],
    }
    constraints! {
        tile_m % (warps_m * 16) == 0,
        tile_n % (warps_n * 16) == 0,
    }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, f32] }
    kernel! {
        shared sa: a[tile_m, tile_k] x stages;
        shared sb: b[tile_k, tile_n] x stages;
        fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
        mainloop k step tile_k stages stages consumers kv_consumer {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb;
        }
        epilogue acc -> d;
    }
}

fn main() {
    // Code naming the template compiles against the fallback stub: no cascading errors.
    let _: &dyn tessera_dsl::Template = &gemm::TEMPLATE;
    let _ = gemm::Gemm;
}
