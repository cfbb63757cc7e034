//! The fused attention template: per (batch, head), `O = softmax(scale · Q·Kᵀ) · V` with
//! fp32 accumulation and fp32 softmax statistics, never writing the scores to memory. A block
//! owns `block_q` queries: it loads their Q block once, then walks the keys `block_kv` at a
//! time (`stages` K/V blocks in flight), computing the scores, masking keys past `seq_kv`
//! (and causal or padding positions), updating the online softmax and accumulating `P·V`;
//! finally it divides by the running sum and stores O for the queries below `seq_q`.

use tessera_dsl::gpu_template;

/// Fused multi-head attention (online softmax) on tensor cores, with causal or padding masks.
#[gpu_template(name = "attention", op = attention, label = "q{block_q}_kv{block_kv}_w{warps}_s{stages}")]
pub mod attention {
    params! { block_q in [64, 128], block_kv in [32, 64, 128], warps in [4, 8], stages in [2, 3] }
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
            mma s = sq * sk^T;
            mask s;
            softmax s online acc;
            mma acc += s * sv;
        }
        normalize acc;
        epilogue acc -> o;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject, RejectKind, Template};

    /// f32 accumulators (scores and output) one thread may hold: with operands, addresses and
    /// softmax statistics on top, more than this overflows ~160 registers and spills.
    pub const MAX_ACC_PER_THREAD: u32 = 128;

    /// Reject configs whose score and output fragments need more than
    /// [`MAX_ACC_PER_THREAD`] f32 registers per thread on this device's warp size.
    fn check(config: &Config, _problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject> {
        let ir = TEMPLATE
            .build(config)
            .map_err(|e| Reject::new(RejectKind::Unsupported, e.to_string()))?;
        let acc = ir.acc_per_thread(caps.warp_size.max(1));
        if acc > MAX_ACC_PER_THREAD {
            return Err(Reject::new(
                RejectKind::Resources,
                format!(
                    "the score and output fragments need {acc} f32 registers per thread \
                     (limit {MAX_ACC_PER_THREAD}); use more warps or smaller blocks"
                ),
            ));
        }
        Ok(())
    }
}
