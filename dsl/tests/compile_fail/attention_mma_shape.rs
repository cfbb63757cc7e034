use tessera_dsl::gpu_template;

#[gpu_template(name = "attention", op = attention, label = "q{block_q}_kv{block_kv}_w{warps}_s{stages}")]
pub mod attention {
    params! { block_q in [64, 128], block_kv in [32, 64], warps in [4], stages in [2] }
    constraints! { block_q % (warps * 16) == 0 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        shared sq: q[block_q, head_dim];
        shared sk: k[block_kv, head_dim] x stages;
        shared sv: v[block_kv, head_dim] x stages;
        fragment s: acc[block_q, block_kv] warps [warps, 1];
        fragment acc: acc[block_q, head_dim] warps [warps, 1];
        load q -> sq;
        mainloop kv step block_kv stages stages {
            load k -> sk;
            load v -> sv;
            mma s = sq * sk;
            mask s;
            softmax s online acc;
            mma acc += s * sv;
        }
        normalize acc;
        epilogue acc -> o;
    }
}

fn main() {
    let _: &dyn tessera_dsl::Template = &attention::TEMPLATE;
}
