use tessera_dsl::gpu_template;

#[gpu_template(name = "gemm", op = gemm)]
pub mod gemm {
    params! { tile_m in [64, 128], tile_n in [64, 128], stages in [2, 3] }
    dtypes! { input: [f16], acc: f32, output: [f16] }
    kernel! {
        shared sa: a[tile_m, 32] x stages;
        shared sb: b[32, tile_n] x stages;
        fragment acc: acc[tile_m, tile_n] warps [2, 2];
        rows h: a[2] threads 128 vector 4;
        mainloop k step 32 stages stages {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb;
        }
        epilogue acc -> d;
    }
}

fn main() {
    let _: &dyn tessera_dsl::Template = &gemm::TEMPLATE;
}
