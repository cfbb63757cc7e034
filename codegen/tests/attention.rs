//! Fused-attention code generation for sm_80, sm_90a and gfx90a over representative configs:
//! determinism, the launch ABI, and the structure of the generated kernels.

use tessera_codegen::{emit, CodegenError};
use tessera_dsl::ir::abi;
use tessera_dsl::template::variant_for;
use tessera_dsl::{
    AttentionPipeline, AttentionProblem, AttentionSchedule, AttentionTile, Config, DType,
    KernelBuilder, KernelIr, Mask, OpKind, Problem, Target,
};

/// (block_q, block_kv, warps, stages)
type Point = (u32, u32, u32, u32);

fn config(p: Point, head_dim: u64, mask: Mask, dtype: DType) -> Config {
    let (bq, bkv, warps, stages) = p;
    let mut problem = AttentionProblem::new(2, 3, 257, head_dim);
    problem.seq_kv = 389;
    problem.mask = mask;
    problem.dtype = dtype;
    Config {
        template: "attention".into(),
        params: vec![
            ("block_q".into(), bq.into()),
            ("block_kv".into(), bkv.into()),
            ("warps".into(), warps.into()),
            ("stages".into(), stages.into()),
        ],
        label: format!("q{bq}_kv{bkv}_w{warps}_s{stages}"),
        variant: variant_for(DType::F32, &Problem::Attention(problem)),
    }
}

/// The IR the attention template builds (mirrors library/src/attention.rs).
fn build(c: &Config) -> KernelIr {
    build_scheduled(c, 0)
}

/// [`build`] with the template's `persistent` knob (`mainloop ... schedule persistent`).
fn build_scheduled(c: &Config, schedule: i64) -> KernelIr {
    let v = |n: &str| c.get(n).expect("param");
    let (bq, bkv, warps, stages) = (v("block_q"), v("block_kv"), v("warps"), v("stages"));
    let hd = i64::from(c.variant.extent);
    let mut b = KernelBuilder::new(c, OpKind::Attention);
    b.shared("sq", "q", bq, hd, 1).unwrap();
    b.shared("sk", "k", bkv, hd, stages).unwrap();
    b.shared("sv", "v", bkv, hd, stages).unwrap();
    b.fragment("s", DType::F32, bq, bkv, warps, 1).unwrap();
    b.fragment("acc", DType::F32, bq, hd, warps, 1).unwrap();
    b.load("q", "sq").unwrap();
    b.schedule(schedule).unwrap();
    b.begin_mainloop(bkv, stages).unwrap();
    b.load("k", "sk").unwrap();
    b.load("v", "sv").unwrap();
    b.mma_with("s", "sq", "sk", true, true).unwrap();
    b.mask("s").unwrap();
    b.online_softmax("s", "acc").unwrap();
    b.mma_with("acc", "s", "sv", false, false).unwrap();
    b.end_mainloop().unwrap();
    b.normalize("acc").unwrap();
    b.epilogue("acc", "o").unwrap();
    b.finish().unwrap()
}

/// Every point of the template's space (`block_q % (warps * 16) == 0`).
fn space() -> Vec<Point> {
    let mut out = Vec::new();
    for bq in [64, 128] {
        for bkv in [32, 64, 128] {
            for warps in [4, 8] {
                for stages in [2, 3] {
                    if bq % (warps * 16) == 0 {
                        out.push((bq, bkv, warps, stages));
                    }
                }
            }
        }
    }
    out
}

const TARGETS: [Target; 3] = [Target::Sm80, Target::Sm90a, Target::Gfx90a];

#[test]
fn emits_every_config_deterministically_with_the_abi() {
    let (mut emitted, mut hopper) = (0, 0);
    for target in TARGETS {
        for p in space() {
            for hd in [64, 128] {
                for mask in [Mask::None, Mask::Causal, Mask::Padding] {
                    for dt in [DType::F16, DType::BF16] {
                        let ir = build(&config(p, hd, mask, dt));
                        let a = match emit(&ir, target) {
                            Ok(a) => a,
                            // only register-budget rejections are allowed
                            Err(CodegenError::Unsupported(m)) if m.contains("budget") => continue,
                            Err(e) => panic!("{} ({target}): {e}", ir.name),
                        };
                        let b = emit(&ir, target).unwrap();
                        assert_eq!(a, b, "{} is not deterministic", ir.name);
                        assert_eq!(a.tile_m, p.0);
                        let ws = if target == Target::Gfx90a { 64 } else { 32 };
                        let mut params: Vec<&str> = abi(OpKind::Attention, &ir.variant)
                            .iter()
                            .map(|x| x.name())
                            .collect();
                        let tile = AttentionTile {
                            block_q: p.0,
                            block_kv: p.1,
                            head_dim: hd as u32,
                            warps: p.2,
                            stages: p.3,
                            schedule: AttentionSchedule::TilePerBlock,
                            split_kv: 1,
                            group_heads: false,
                        };
                        match AttentionPipeline::select(target, &tile, &ir.variant) {
                            AttentionPipeline::Warpspecialized(plan) => {
                                // a producer warpgroup beside the consumers; Q, K, V maps
                                assert_eq!(a.threads, plan.threads());
                                assert_eq!(a.threads, (p.2 / 4 + 1) * 128);
                                params.extend(["tmap_q", "tmap_k", "tmap_v"]);
                                hopper += 1;
                            }
                            AttentionPipeline::Multistage => assert_eq!(a.threads, p.2 * ws),
                        }
                        let head = a.source.split(&format!("{}(", ir.name)).nth(1).unwrap();
                        let list = head.split(')').next().unwrap();
                        let got: Vec<&str> = list
                            .split(',')
                            .map(|x| x.split_whitespace().last().unwrap())
                            .collect();
                        assert_eq!(got, params, "{}", ir.name);
                        emitted += 1;
                    }
                }
            }
        }
    }
    assert!(emitted >= 200, "only {emitted} kernels emitted");
    assert!(
        hopper >= 40,
        "only {hopper} sm_90a kernels on the wgmma pipeline"
    );
}

fn source(p: Point, hd: u64, mask: Mask, dt: DType, target: Target) -> String {
    emit(&build(&config(p, hd, mask, dt)), target)
        .expect("emit")
        .source
}

#[test]
fn cuda_structure_matches_the_tile_math() {
    // 64 queries / 4 warps = 16 rows a warp; 32 keys; head_dim 64
    let s = source((64, 32, 4, 2), 64, Mask::None, DType::F16, Target::Sm80);
    // one mma line pair per n8 atom pair: S (j over 32/16 key pairs) and O (j over 64/16)
    assert_eq!(s.matches("tsr_mma_f16(f_s[i][2 * j]").count(), 1);
    assert_eq!(s.matches("tsr_mma_f16(f_acc[i][2 * j]").count(), 1);
    assert!(
        s.contains("for (int kk = 0; kk < 4; ++kk)"),
        "head_dim/16 k-steps"
    );
    assert!(
        s.contains("for (int kk = 0; kk < 2; ++kk)"),
        "block_kv/16 P.V k-steps"
    );
    assert!(
        s.contains("for (int j = 0; j < 2; ++j)"),
        "block_kv/16 K loads"
    );
    assert!(
        s.contains("tsr_ldmatrix_x4_trans(vb"),
        "V through ldmatrix.trans"
    );
    assert!(s.contains("tsr_ldmatrix_x4(kb"), "K through ldmatrix");
    assert!(
        s.contains("unsigned qf[4][1][4];"),
        "Q resident: 4 k-steps x 1 m16 tile"
    );
    assert!(s.contains("tsr_pack_f16x2(f_s[i][2 * kk][0], f_s[i][2 * kk][1])"));
    assert!(s.contains("cp.async.wait_group 0"));
    assert!(s.contains("__shfl_xor_sync(0xffffffffu, mx[r], 2)"));
    assert!(
        !s.contains("kv_lens[b]"),
        "no padding read without the padding mask"
    );
    assert!(
        !s.contains("q0 + 64);"),
        "no causal bound without the causal mask"
    );
    let bf = source(
        (128, 32, 8, 3),
        128,
        Mask::Padding,
        DType::BF16,
        Target::Sm80,
    );
    assert!(bf.contains("tsr_mma_bf16(") && !bf.contains("tsr_mma_f16(f_"));
    assert!(bf.contains("tsr_pack_bf16x2("));
    assert!(bf.contains("kv_end = min(kv_end, kv_lens[b]);"));
    assert!(
        bf.contains("cp.async.wait_group 1"),
        "3 stages keep one block in flight"
    );
    assert!(
        bf.contains("for (int kk = 0; kk < 8; ++kk)"),
        "head_dim 128: 8 k-steps"
    );
}

#[test]
fn causal_block_skipping_only_with_the_causal_mask() {
    for target in TARGETS {
        let c = source((128, 64, 8, 2), 64, Mask::Causal, DType::F16, target);
        assert!(c.contains("kv_end = min(kv_end, q0 + 128);"), "{target}");
        assert!(c.contains("> qi) "), "{target}: causal element test");
        // warps skip key blocks past their queries only where P stays in registers (no
        // block-wide barrier inside the warp's work, no warpgroup-wide wgmma)
        let warp_skip = c.contains("if (kv0 <= q0 + wr0 + 15)");
        assert_eq!(warp_skip, target == Target::Sm80, "{target}: warp skip");
        // with key blocks as long as the query block no block lies past a warp's queries
        let square = source((64, 64, 4, 2), 64, Mask::Causal, DType::F16, target);
        assert!(!square.contains("if (kv0 <= q0 + wr0"), "{target}");
        for mask in [Mask::None, Mask::Padding] {
            let n = source((128, 64, 8, 2), 64, mask, DType::F16, target);
            assert!(!n.contains("q0 + 128);"), "{target} {mask}");
            assert!(!n.contains("> qi"), "{target} {mask}");
        }
    }
}

#[test]
fn hopper_kernels_are_warp_specialized_tma_and_wgmma() {
    // 2 consumer warpgroups of 64 rows, 128-key blocks, head_dim 128 in two 64-wide panels
    let s = source(
        (128, 128, 8, 2),
        128,
        Mask::Causal,
        DType::F16,
        Target::Sm90a,
    );
    assert!(s.contains("setmaxnreg.dec.sync.aligned.u32 24"));
    assert!(s.contains("setmaxnreg.inc.sync.aligned.u32 240"));
    // Q once (2 panels), K and V per stage (2 panels each), each on its own barrier
    assert_eq!(s.matches("&tmap_q,").count(), 2);
    assert_eq!(s.matches("&tmap_k,").count(), 2);
    assert_eq!(s.matches("&tmap_v,").count(), 2);
    assert!(s.contains("tsr_mbar_expect_tx(q_full, 32768);"));
    assert!(s.contains("tsr_mbar_expect_tx(k_full + stage * 8, 32768);"));
    // S: head_dim/16 SS wgmmas 128 wide; O: block_kv/16 RS wgmmas head_dim wide, V N-major
    assert!(s.contains("for (int kk = 0; kk < 8; ++kk)"));
    assert!(s.contains("tsr_wgmma_m64n128(s_acc, da, db);"));
    assert!(s.contains("tsr_wgmma_rs_m64n128(o_acc, pa[kk], dv);"));
    assert!(s.contains(", p, 1, 1, 1; }"), "imm-trans-b = 1 for V");
    assert!(s.contains("tsr_pack_f16x2(s_acc[8 * kk + 2], s_acc[8 * kk + 3])"));
    assert!(s.contains("tsr_mbar_init(k_empty + s * 8, 2);"));
    assert!(s.contains("tsr_mbar_init(v_empty + s * 8, 2);"));
    // S of block kt is issued before P V of block kt - 1, whose P waits in registers
    let (s_at, pv_at) = (
        s.find("tsr_wgmma_m64n128(s_acc").unwrap(),
        s.find("tsr_wgmma_rs_m64n128(o_acc").unwrap(),
    );
    assert!(s_at < pv_at);
    assert!(s.contains("if (kt > 0) tsr_wgmma_wait<1>(); else tsr_wgmma_wait<0>();"));
    // pingpong between the two consumers
    assert!(s.contains("bar.sync %0, 256;"));
    assert!(s.contains("if (cw == 1 && kv_blocks > 0) asm volatile(\"bar.arrive 1, 256;\""));
    // the vendor-neutral mask, softmax and store are shared with the multistage kernel
    assert!(s.contains("kv_end = min(kv_end, q0 + 128);"));
    assert!(s.contains("__shfl_xor_sync(0xffffffffu, mx[r], 2)"));
    let body = s.split("__launch_bounds__").nth(1).expect("kernel");
    assert!(!body.contains("cp_async") && !body.contains("ldmatrix") && !body.contains("tsr_mma_"));
    let k = emit(
        &build(&config((128, 128, 8, 2), 128, Mask::Causal, DType::F16)),
        Target::Sm90a,
    )
    .unwrap();
    assert_eq!(k.tensor_maps.len(), 3);
    assert_eq!(k.smem_bytes, 32768 + 4 * 32768 + 72 + 1024);
    // head_dim 32: one 32-wide panel, 64-byte swizzle, bf16
    let b = source((64, 64, 4, 3), 32, Mask::None, DType::BF16, Target::Sm90a);
    assert!(b.contains("wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16"));
    // its S, O and P fit half the register file: two blocks an SM, no register reallocation
    assert!(b.contains("__launch_bounds__(256, 2)"));
    assert!(!b.contains("setmaxnreg"));
    let one = source((64, 128, 4, 2), 64, Mask::None, DType::F16, Target::Sm90a);
    assert!(one.contains("__launch_bounds__(256, 1)"));
    assert!(one.contains("setmaxnreg.inc.sync.aligned.u32 232"));
    assert_eq!(b.matches("&tmap_k,").count(), 1);
    assert!(
        !b.contains("bar.sync %0, 256;"),
        "one consumer: no pingpong"
    );
    assert!(b.contains("swizzle 64 B"));
}

#[test]
fn persistent_hopper_kernels_walk_the_tiles() {
    let c = config((128, 128, 8, 2), 128, Mask::Causal, DType::F16);
    let per_block = emit(&build(&c), Target::Sm90a).unwrap();
    let k = emit(&build_scheduled(&c, 1), Target::Sm90a).unwrap();
    let s = &k.source;
    // the tiles a block walks, Q released after each tile's last scores, the ring running on
    assert!(
        s.contains("for (int tile = first_tile, it = 0; tile < tiles; tile += tile_step, ++it)")
    );
    assert!(s.contains("const int first_tile = blockIdx.x, tile_step = gridDim.x;"));
    assert!(s.contains("tsr_mbar_init(q_empty, 2);"));
    assert!(s.contains("tsr_mbar_wait(q_empty, (it & 1) ^ 1);"));
    assert!(s.contains("tsr_mbar_wait(q_full, it & 1);"));
    assert!(s.contains("if (kt + 1 == kv_blocks && tid % 128 == 0) tsr_mbar_arrive(q_empty);"));
    assert!(s.contains("const int kvh = t_h / (heads / kv_heads);"));
    assert!(
        s.contains("&tmap_k, 64, kt * 128, bkvh32,"),
        "K read by kv head"
    );
    // the same warpgroups, registers and pingpong as the one-tile-per-block kernel
    assert!(s.contains("__launch_bounds__(384, 1)"));
    assert!(s.contains("setmaxnreg.inc.sync.aligned.u32 240"));
    assert!(s.contains("bar.sync %0, 256;"));
    assert!(!per_block.source.contains("q_empty") && !per_block.source.contains("first_tile"));
    // one more barrier (Q empty)
    assert_eq!(k.smem_bytes, per_block.smem_bytes + 8);
    assert_eq!(k.smem_bytes, 32768 + 4 * 32768 + 80 + 1024);
    // grid: at most one block per SM over the (query block, head, batch) tiles
    let many = Problem::Attention(AttentionProblem::new(32, 12, 384, 128));
    assert_eq!(k.grid(&many, 132), [132, 1, 1]);
    let few = Problem::Attention(AttentionProblem::new(1, 2, 100, 128));
    assert_eq!(k.grid(&few, 132), [2, 1, 1]);
    assert_eq!(per_block.grid(&many, 132), [3, 12, 32]);
    // one consumer, one block an SM: persistent too
    let one = config((64, 128, 4, 2), 64, Mask::None, DType::F16);
    let o = emit(&build_scheduled(&one, 1), Target::Sm90a).unwrap();
    assert!(o.source.contains("__launch_bounds__(256, 1)"));
    assert!(o.source.contains("tsr_mbar_init(q_empty, 1);"));
    assert_eq!(o.grid(&many, 132), [132, 1, 1]);
    // two blocks an SM, or no warp-specialized pipeline: no persistent kernel, and why
    let two = config((64, 64, 4, 3), 32, Mask::None, DType::BF16);
    for (c, target, why) in [
        (&two, Target::Sm90a, "two blocks per SM"),
        (&c, Target::Sm80, "sm_80 has no warp-specialized pipeline"),
    ] {
        match emit(&build_scheduled(c, 1), target) {
            Err(CodegenError::Unsupported(m)) => {
                assert!(m.contains("persistent") && m.contains(why), "{m}")
            }
            other => panic!("{target}: {other:?}"),
        }
    }
}

#[test]
fn hip_uses_mfma_and_lds_for_p() {
    let s = source((64, 64, 4, 2), 64, Mask::Causal, DType::F16, Target::Gfx90a);
    assert!(s.contains("__builtin_amdgcn_mfma_f32_16x16x16f16("));
    assert!(s.contains("s_p_w["), "P goes through LDS");
    assert!(s.contains("__shfl_xor(mx[r], 8)"));
    assert!(!s.contains("ldmatrix") && !s.contains("cp.async"));
    let b = source((64, 64, 4, 2), 64, Mask::None, DType::BF16, Target::Gfx90a);
    assert!(b.contains("__builtin_amdgcn_mfma_f32_16x16x16bf16_1k("));
}

#[test]
fn smem_accounts_for_every_tile() {
    let k = emit(
        &build(&config((64, 64, 4, 3), 64, Mask::None, DType::F16)),
        Target::Sm80,
    )
    .unwrap();
    // Q 64x72 + K, V 3 x 64x72, 16-bit
    assert_eq!(k.smem_bytes, 2 * 64 * 72 * (1 + 3 + 3));
    let h = emit(
        &build(&config((64, 64, 4, 2), 64, Mask::None, DType::F16)),
        Target::Gfx90a,
    )
    .unwrap();
    // + P scratch: 4 waves x 16 rows x 72
    assert_eq!(h.smem_bytes, 2 * 64 * 72 * 5 + 2 * 4 * 16 * 72);
}

#[test]
fn rejects_ir_it_cannot_lower() {
    let c = config((64, 64, 4, 2), 64, Mask::None, DType::F16);
    let mut ir = build(&c);
    // drop the mask statement: keys past seq_kv would take part
    if let Some(tessera_dsl::ir::Stmt::Mainloop { body, .. }) = ir
        .body
        .iter_mut()
        .find(|s| matches!(s, tessera_dsl::ir::Stmt::Mainloop { .. }))
    {
        body.remove(1);
    }
    assert!(matches!(
        emit(&ir, Target::Sm80),
        Err(CodegenError::Malformed(_))
    ));
    let mut one_stage = build(&config((64, 64, 4, 2), 64, Mask::None, DType::F16));
    for s in &mut one_stage.shared {
        if s.name != "sq" {
            s.stages = 1;
        }
    }
    assert!(emit(&one_stage, Target::Sm80).is_err());
}

/// `TESSERA_DUMP_ATTN=dir cargo test -p tessera-codegen --test attention dump` writes samples.
#[test]
fn dump() {
    let Some(dir) = std::env::var_os("TESSERA_DUMP_ATTN") else {
        return;
    };
    for (t, ext) in [(Target::Sm80, "cu"), (Target::Gfx90a, "hip")] {
        let k = emit(
            &build(&config((64, 64, 4, 2), 64, Mask::Causal, DType::F16)),
            t,
        )
        .unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{}.{ext}", k.name)),
            k.source,
        )
        .unwrap();
    }
}

/// A config for `problem` at point `p` (the template's label and parameters).
fn config_of(p: Point, problem: AttentionProblem) -> Config {
    let mut c = config(p, problem.head_dim, problem.mask, problem.dtype);
    c.variant = variant_for(DType::F32, &Problem::Attention(problem));
    c
}

#[test]
fn grouped_kv_heads_move_only_the_kv_bases() {
    let mut g = AttentionProblem::new(2, 8, 100, 64);
    g.kv_heads = 2;
    for target in TARGETS {
        let s = emit(&build(&config_of((64, 64, 4, 2), g.clone())), target)
            .unwrap()
            .source;
        assert!(s.contains("const int kvh = blockIdx.y / (heads / kv_heads);"));
        assert!(s.contains("const long long bkvh = (long long)b * kv_heads + kvh;"));
        assert!(s.contains("k += bkvh * seq_kv * 64;") && s.contains("v += bkvh * seq_kv * 64;"));
        assert!(
            s.contains("q += bh * seq_q * 64;"),
            "{target}: Q keeps its head"
        );
        assert!(!s.contains("cu_seqlens_q["), "{target}: not packed");
    }
    // kv_heads is a runtime argument: the kernel (and its name) is the one of plain attention
    let plain = AttentionProblem::new(2, 8, 100, 64);
    assert_eq!(
        build(&config_of((64, 64, 4, 2), g)).name,
        build(&config_of((64, 64, 4, 2), plain)).name
    );
}

#[test]
fn packed_batches_read_offsets_and_exit_past_the_sequence() {
    let mut p = AttentionProblem::new(1, 4, 1, 128).with_packing(tessera_dsl::Packing {
        lens_q: vec![1, 77, 197],
        lens_kv: vec![5, 100, 197],
    });
    p.kv_heads = 2;
    p.mask = Mask::Causal;
    p.check().unwrap();
    for target in TARGETS {
        let ir = build(&config_of((64, 32, 4, 2), p.clone()));
        assert!(ir.name.contains("_thd_d128_causal"), "{}", ir.name);
        let s = emit(&ir, target).unwrap().source;
        for line in [
            "const int tq0 = cu_seqlens_q[b];",
            "seq_q = cu_seqlens_q[b + 1] - tq0;",
            "seq_kv = cu_seqlens_kv[b + 1] - tk0;",
            "if (q0 >= seq_q) return;",
            "const int ldq = heads * 128;",
            "const int ldkv = kv_heads * 128;",
            "k += ((long long)tk0 * kv_heads + kvh) * 128;",
            "const long long di = (long long)qi * heads * 128 +",
            "kv_end = min(kv_end, q0 + 64);",
        ] {
            assert!(s.contains(line), "{target}: no `{line}`");
        }
        assert!(!s.contains("bh * seq_q"), "{target}: no padded base");
        let exit = s.find("if (q0 >= seq_q) return;").expect("an early return");
        if target == Target::Sm90a {
            // the TMA + wgmma pipeline: rows from the sequence's first tokens of the (K/V)
            // head, the early return before the barriers are set up
            for line in [
                "const int bh32 = (int)blockIdx.y, bkvh32 = kvh;",
                "&tmap_q, 0, tq0 + q0, bh32, q_full);",
                "&tmap_k, 64, tk0 + kt * 32, bkvh32,",
                "&tmap_v, 64, tk0 + kt * 32, bkvh32,",
            ] {
                assert!(s.contains(line), "{target}: no `{line}`");
            }
            let sync = s.find("__syncthreads();").expect("a block barrier");
            assert!(exit < sync, "{target}");
            continue;
        }
        // the early return comes before the first barrier and the first copy
        let copy = s.find("const int r0 = tid /").expect("a copy");
        assert!(exit < copy, "{target}");
        assert!(s.contains("* ldq + c;") && s.contains("* ldkv + c;"));
    }
    let mut padded = p.clone();
    padded.mask = Mask::Padding;
    let c = config_of((64, 32, 4, 2), padded);
    assert!(matches!(
        emit(&build(&c), Target::Sm80),
        Err(CodegenError::Unsupported(m)) if m.contains("no key padding")
    ));
}
