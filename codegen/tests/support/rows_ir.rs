//! Row-wise kernel IR built with `KernelBuilder` exactly as the layernorm and softmax templates
//! write it (shared by codegen/tests/rows.rs and tests/tests/rows_toolchains.rs).

#![allow(dead_code)]

use tessera_dsl::ir::{BinOp, ReduceOp, RowExpr, RowFn};
use tessera_dsl::template::variant_for;
use tessera_dsl::{
    Config, DType, KernelBuilder, KernelIr, LayernormProblem, OpKind, Problem, SoftmaxProblem,
};

/// (rows per block, threads per row, vector).
pub type Shape = (i64, i64, i64);

pub fn config(template: &str, (r, t, v): Shape, problem: &Problem) -> Config {
    Config {
        template: template.into(),
        params: vec![
            ("rows_per_block".into(), r),
            ("threads_per_row".into(), t),
            ("vector".into(), v),
        ],
        label: format!("r{r}_t{t}_v{v}"),
        variant: variant_for(DType::F32, problem),
    }
}

fn bin(op: BinOp, a: RowExpr, b: RowExpr) -> RowExpr {
    RowExpr::bin(op, a, b)
}

fn name(b: &KernelBuilder, n: &str) -> RowExpr {
    b.name_expr(n).expect("name resolves")
}

pub fn layernorm_problem(
    rows: u64,
    cols: u64,
    dtype: DType,
    residual: bool,
    bias: bool,
) -> Problem {
    Problem::Layernorm(LayernormProblem {
        rows,
        cols,
        dtype,
        residual,
        bias,
    })
}

pub fn softmax_problem(rows: u64, cols: u64, dtype: DType, mask_period: Option<u64>) -> Problem {
    Problem::Softmax(SoftmaxProblem {
        rows,
        cols,
        dtype,
        mask_period,
    })
}

/// The layernorm template's kernel.
pub fn layernorm(shape: Shape, problem: &Problem) -> KernelIr {
    let c = config("layernorm", shape, problem);
    let mut b = KernelBuilder::new(&c, OpKind::Layernorm);
    b.rows("h", "x", shape.0, shape.1, shape.2).expect("rows");
    for fused in ["residual", "bias"] {
        if b.present(fused) {
            let e = bin(BinOp::Add, name(&b, "h"), name(&b, fused));
            b.map("h", e).expect("map");
        }
    }
    b.row_reduce("total", ReduceOp::Sum, name(&b, "h"))
        .expect("reduce");
    let mean = bin(BinOp::Div, name(&b, "total"), name(&b, "cols"));
    b.row_let("mean", mean).expect("let");
    let centred = bin(BinOp::Sub, name(&b, "h"), name(&b, "mean"));
    b.map("h", centred).expect("map");
    let sq = bin(BinOp::Mul, name(&b, "h"), name(&b, "h"));
    b.row_reduce("squares", ReduceOp::Sum, sq).expect("reduce");
    let var = bin(
        BinOp::Add,
        bin(BinOp::Div, name(&b, "squares"), name(&b, "cols")),
        name(&b, "eps"),
    );
    b.row_let("rstd", RowExpr::Call(RowFn::Rsqrt, Box::new(var)))
        .expect("let");
    let affine = bin(
        BinOp::Add,
        bin(
            BinOp::Mul,
            bin(BinOp::Mul, name(&b, "h"), name(&b, "rstd")),
            name(&b, "gamma"),
        ),
        name(&b, "beta"),
    );
    b.map("h", affine).expect("map");
    b.row_store("h", "y").expect("store");
    b.finish().expect("finish")
}

/// The softmax template's kernel.
pub fn softmax(shape: Shape, problem: &Problem) -> KernelIr {
    let c = config("softmax", shape, problem);
    let mut b = KernelBuilder::new(&c, OpKind::Softmax);
    b.rows("s", "x", shape.0, shape.1, shape.2).expect("rows");
    let scaled = bin(BinOp::Mul, name(&b, "s"), name(&b, "scale"));
    b.map("s", scaled).expect("map");
    if b.present("mask") {
        let e = bin(BinOp::Add, name(&b, "s"), name(&b, "mask"));
        b.map("s", e).expect("map");
    }
    b.row_reduce("top", ReduceOp::Max, name(&b, "s"))
        .expect("reduce");
    let shifted = bin(BinOp::Sub, name(&b, "s"), name(&b, "top"));
    b.map("s", RowExpr::Call(RowFn::Exp, Box::new(shifted)))
        .expect("map");
    b.row_reduce("total", ReduceOp::Sum, name(&b, "s"))
        .expect("reduce");
    let norm = bin(BinOp::Div, name(&b, "s"), name(&b, "total"));
    b.map("s", norm).expect("map");
    b.row_store("s", "y").expect("store");
    b.finish().expect("finish")
}
