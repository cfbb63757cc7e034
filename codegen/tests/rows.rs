//! Generated row-wise kernels (layernorm, softmax) for CUDA sm_80 and HIP gfx90a: properties of
//! the source text and launch shape that must hold for every config, and the errors for
//! configs the lowering cannot serve.

#[path = "support/rows_ir.rs"]
mod rows_ir;

use rows_ir::{config, layernorm, layernorm_problem, softmax, softmax_problem, Shape};
use tessera_codegen::{emit, CodegenError, KernelSource};
use tessera_dsl::ir::{abi, Arg, BinOp, ReduceOp, RowExpr, RowFn, Stmt};
use tessera_dsl::{DType, KernelBuilder, KernelIr, OpKind, Target};

const SHAPES: [Shape; 7] = [
    (1, 32, 2),
    (4, 32, 8),
    (1, 128, 8),
    (4, 128, 2),
    (2, 256, 4),
    (1, 1024, 8),
    (1, 1024, 2),
];
const EXTENTS: [u64; 3] = [768, 1000, 4096];

struct Kind {
    softmax: bool,
    fused: bool,
}

const KINDS: [Kind; 4] = [
    Kind {
        softmax: false,
        fused: false,
    },
    Kind {
        softmax: false,
        fused: true,
    },
    Kind {
        softmax: true,
        fused: false,
    },
    Kind {
        softmax: true,
        fused: true,
    },
];

fn build(k: &Kind, shape: Shape, cols: u64) -> KernelIr {
    if k.softmax {
        softmax(
            shape,
            &softmax_problem(64, cols, DType::F16, k.fused.then_some(4)),
        )
    } else {
        layernorm(
            shape,
            &layernorm_problem(64, cols, DType::BF16, k.fused, k.fused),
        )
    }
}

fn warp(t: Target) -> u32 {
    if t == Target::Gfx90a {
        64
    } else {
        32
    }
}

fn shuffle(t: Target) -> &'static str {
    if t == Target::Gfx90a {
        "__shfl_xor("
    } else {
        "__shfl_xor_sync("
    }
}

/// The parameter list's lines, in order, from the op's launch ABI.
fn abi_lines(ir: &KernelIr) -> Vec<String> {
    abi(ir.op, &ir.variant)
        .iter()
        .map(|a| match a {
            Arg::Ptr {
                name,
                written: true,
                ..
            } => format!("unsigned short* __restrict__ {name}"),
            Arg::Ptr { name, .. } => format!("const unsigned short* __restrict__ {name}"),
            Arg::I32(n) => format!("int {n}"),
            Arg::F32(n) => format!("float {n}"),
            other => panic!("unexpected argument {other:?}"),
        })
        .collect()
}

fn check_kernel(ir: &KernelIr, k: &Kind, shape: Shape, target: Target, s: &KernelSource) {
    let (r, t, v) = (shape.0 as u32, shape.1 as u32, shape.2 as u32);
    let w = warp(target);
    let text = &s.source;
    let at = |what: &str| format!("{} ({target}): {what}", ir.name);
    assert_eq!(
        emit(ir, target).expect("again"),
        *s,
        "{}",
        at("not deterministic")
    );
    assert_eq!(
        (s.threads, s.tile_m, s.smem_bytes),
        (r * t, r, 0),
        "{}",
        at("launch")
    );
    assert_eq!(s.tile_n, ir.variant.extent);
    assert!(
        text.contains(&format!("__launch_bounds__({}", r * t)) && text.contains(&ir.name),
        "{}",
        at("head")
    );
    // the ABI, in order
    let mut from = 0;
    for line in abi_lines(ir) {
        let i = text[from..].find(&line).unwrap_or_else(|| {
            panic!(
                "{}",
                at(&format!("parameter `{line}` missing or out of order"))
            )
        });
        from += i + line.len();
    }
    // reductions: a butterfly over the row's lanes of a warp, plus an exchange across warps
    let reductions = 2;
    let lanes = t.min(w);
    let warps_per_row = (t / w).max(1);
    let steps = lanes.ilog2() + warps_per_row.ilog2();
    assert_eq!(
        text.matches(shuffle(target)).count() as u32,
        reductions * steps,
        "{}",
        at("shuffles")
    );
    assert!(
        !text.contains(&format!("{}a, {lanes})", shuffle(target))),
        "{}",
        at("a shuffle leaves the row")
    );
    assert_eq!(
        text.contains("tsr_red"),
        t > w,
        "{}",
        at("cross-warp exchange")
    );
    assert_eq!(
        text.matches("__syncthreads()").count() as u32,
        if t > w { reductions } else { 0 },
        "{}",
        at("barriers")
    );
    // one pass: x read once, y written once, each access `vector` elements wide
    assert_eq!(
        text.matches("= x + row_base + col0;").count(),
        1,
        "{}",
        at("x reads")
    );
    assert_eq!(
        text.matches("= y + row_base + col0;").count(),
        1,
        "{}",
        at("y writes")
    );
    let access = match (v, target) {
        (8, Target::Gfx90a) => "tsr_u32x4",
        (8, _) => "uint4",
        (4, Target::Gfx90a) => "tsr_u32x2",
        (4, _) => "uint2",
        _ => "unsigned",
    };
    assert!(
        text.contains(&format!(
            "const {access} v0 = *(const {access}*)(p0 + c * {}",
            t * v
        )),
        "{}",
        at("vector loads")
    );
    assert!(
        text.contains(&format!("*({access}*)(p + c * {}", t * v)),
        "{}",
        at("vector stores")
    );
    assert!(
        text.contains("row_ok && col0 + c *"),
        "{}",
        at("predicates")
    );
    // fusions and math
    if k.softmax {
        assert!(
            text.contains("__expf(") && text.contains("fmaxf("),
            "{}",
            at("softmax math")
        );
        assert_eq!(text.contains("mask_base"), k.fused, "{}", at("mask"));
    } else {
        assert!(text.contains("rsqrtf("), "{}", at("rsqrt"));
        assert!(text.contains("gamma + col0") && text.contains("beta + col0"));
        assert_eq!(
            text.contains("= residual + row_base"),
            k.fused,
            "{}",
            at("residual")
        );
        assert_eq!(text.contains("= bias + col0"), k.fused, "{}", at("bias"));
    }
}

#[test]
fn every_config_lowers_with_the_expected_structure() {
    let mut emitted = 0;
    for target in [Target::Sm80, Target::Gfx90a] {
        for k in &KINDS {
            for shape in SHAPES {
                for cols in EXTENTS {
                    let ir = build(k, shape, cols);
                    let threads = (shape.0 * shape.1) as u32;
                    match emit(&ir, target) {
                        Ok(s) => {
                            check_kernel(&ir, k, shape, target, &s);
                            emitted += 1;
                        }
                        // a 32-thread block is half a wavefront
                        Err(CodegenError::Unsupported(_))
                            if !threads.is_multiple_of(warp(target)) => {}
                        Err(e) => panic!("{} ({target}): {e}", ir.name),
                    }
                }
            }
        }
    }
    assert_eq!(emitted, 2 * 4 * 7 * 3 - 4 * 3, "kernels emitted");
}

#[test]
fn sub_warp_rows_on_a_wavefront_keep_shuffles_inside_the_row() {
    let ir = build(&KINDS[1], (2, 32, 8), 1024);
    let s = emit(&ir, Target::Gfx90a).expect("emit");
    // 32 lanes per row on a 64-wide wavefront: offsets 16..1, never 32
    assert!(s.source.contains("__shfl_xor(a, 16)") && !s.source.contains("__shfl_xor(a, 32)"));
    assert_eq!(s.threads, 64);
}

#[test]
fn vectors_wider_than_the_alignment_are_rejected() {
    // 770 columns are 2-element aligned: an 8-element vector would straddle rows
    let ir = build(&KINDS[0], (1, 128, 8), 770);
    assert!(matches!(
        emit(&ir, Target::Sm80),
        Err(CodegenError::Unsupported(m)) if m.contains("alignment")
    ));
    assert!(emit(&build(&KINDS[0], (1, 128, 2), 770), Target::Sm80).is_ok());
}

#[test]
fn threads_per_row_must_be_a_power_of_two() {
    let ir = build(&KINDS[2], (1, 96, 8), 768);
    assert!(matches!(
        emit(&ir, Target::Sm80),
        Err(CodegenError::Unsupported(m)) if m.contains("power of two")
    ));
}

#[test]
fn malformed_row_programs_are_errors() {
    let mut ir = build(&KINDS[0], (1, 128, 8), 1024);
    ir.body.insert(
        2,
        Stmt::RowLet {
            dst: "bad".into(),
            expr: RowExpr::Tile("h".into()),
        },
    );
    assert!(matches!(
        emit(&ir, Target::Sm80),
        Err(CodegenError::Malformed(_))
    ));
    let mut ir = build(&KINDS[0], (1, 128, 8), 1024);
    ir.body.push(Stmt::Map {
        dst: "nope".into(),
        expr: RowExpr::Lit(1.0),
    });
    assert!(matches!(
        emit(&ir, Target::Gfx90a),
        Err(CodegenError::Malformed(m)) if m.contains("nope")
    ));
}

/// A program no template has (RMS norm with a max-abs statistic): the generator serves it
/// without any change, because it lowers statements and expressions, not templates.
#[test]
fn new_combinations_need_no_generator_change() {
    let problem = layernorm_problem(64, 4096, DType::F16, true, false);
    let c = config("rmsnorm", (2, 256, 8), &problem);
    let mut b = KernelBuilder::new(&c, OpKind::Layernorm);
    let n = |b: &KernelBuilder, s: &str| b.name_expr(s).expect("name");
    b.rows("h", "x", 2, 256, 8).expect("rows");
    let e = RowExpr::bin(BinOp::Add, n(&b, "h"), n(&b, "residual"));
    b.map("h", e).expect("map");
    let sq = RowExpr::bin(BinOp::Mul, n(&b, "h"), n(&b, "h"));
    b.row_reduce("ss", ReduceOp::Sum, sq).expect("reduce");
    b.row_reduce("peak", ReduceOp::Max, n(&b, "h"))
        .expect("reduce");
    let ms = RowExpr::bin(BinOp::Div, n(&b, "ss"), n(&b, "cols"));
    let r = RowExpr::Call(
        RowFn::Rsqrt,
        Box::new(RowExpr::bin(BinOp::Add, ms, RowExpr::Lit(1e-6))),
    );
    b.row_let("r", r).expect("let");
    let out = RowExpr::bin(
        BinOp::Mul,
        RowExpr::bin(BinOp::Mul, n(&b, "h"), n(&b, "r")),
        RowExpr::bin(BinOp::Max, n(&b, "gamma"), n(&b, "peak")),
    );
    b.map("h", out).expect("map");
    b.row_store("h", "y").expect("store");
    let ir = b.finish().expect("ir");
    for target in [Target::Sm80, Target::Gfx90a] {
        let s = emit(&ir, target).expect("emit").source;
        assert!(s.contains("1e-6f"), "{s}");
        assert!(s.contains("tsr_red[1]") || target == Target::Gfx90a);
        assert!(s.contains("fmaxf(tsr_f16_to_f32"), "{s}");
        assert_eq!(s.matches("= gamma + col0").count(), 1);
    }
}
