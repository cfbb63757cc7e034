//! The softmax template: per row, `s = x · scale (+ mask[(row / mask_period) · cols + col])`,
//! then `y = exp(s − max(s)) / Σ exp(s − max(s))`, all in f32 over the `cols` elements of the
//! row. A block handles `rows_per_block` rows, each spread over `threads_per_row` threads that
//! access `vector` contiguous elements at a time; the row stays in registers.

use tessera_dsl::gpu_template;

/// Scaled softmax with an optional additive mask: one register-resident row per thread group.
#[gpu_template(name = "softmax", op = softmax, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod softmax {
    params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
    constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows s: x[rows_per_block] threads threads_per_row vector vector;
        s = s * scale;
        when mask { s = s + mask; }
        reduce top = max(s);
        s = exp(s - top);
        reduce total = sum(s);
        s = s / total;
        store s -> y;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject};

    /// A thread keeps its share of the row in registers: more than
    /// [`crate::layernorm::MAX_ROW_VALUES`] f32 values would spill.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        crate::layernorm::check_row_values(config)
    }
}

#[cfg(test)]
mod tests {
    use super::softmax::TEMPLATE;
    use tessera_dsl::ir::{BinOp, Operand, ReduceOp, RowExpr, RowFn, Stmt};
    use tessera_dsl::{Problem, RejectKind, SoftmaxProblem, Target, Template};

    fn problem(mask_period: Option<u64>, cols: u64) -> Problem {
        let mut p = SoftmaxProblem::new(384, cols);
        p.mask_period = mask_period;
        Problem::Softmax(p)
    }

    fn s() -> RowExpr {
        RowExpr::Tile("s".into())
    }

    #[test]
    fn the_mask_adds_one_map() {
        let masked = TEMPLATE
            .config(&[4, 64, 2], &problem(Some(12), 384))
            .unwrap();
        let ir = TEMPLATE.build(&masked).unwrap();
        assert_eq!(
            ir.body,
            [
                Stmt::Rows(tessera_dsl::ir::RowTile {
                    name: "s".into(),
                    rows: 4,
                    threads: 64,
                    vector: 2
                }),
                Stmt::RowLoad {
                    dst: "s".into(),
                    src: Operand::X
                },
                Stmt::Map {
                    dst: "s".into(),
                    expr: RowExpr::bin(BinOp::Mul, s(), RowExpr::Arg("scale".into()))
                },
                Stmt::Map {
                    dst: "s".into(),
                    expr: RowExpr::bin(BinOp::Add, s(), RowExpr::At(Operand::Mask))
                },
                Stmt::RowReduce {
                    dst: "top".into(),
                    op: ReduceOp::Max,
                    expr: s()
                },
                Stmt::Map {
                    dst: "s".into(),
                    expr: RowExpr::Call(
                        RowFn::Exp,
                        Box::new(RowExpr::bin(BinOp::Sub, s(), RowExpr::Row("top".into())))
                    )
                },
                Stmt::RowReduce {
                    dst: "total".into(),
                    op: ReduceOp::Sum,
                    expr: s()
                },
                Stmt::Map {
                    dst: "s".into(),
                    expr: RowExpr::bin(BinOp::Div, s(), RowExpr::Row("total".into()))
                },
                Stmt::RowStore {
                    src: "s".into(),
                    dst: Operand::Y
                },
            ]
        );
        let plain = TEMPLATE.config(&[4, 64, 2], &problem(None, 384)).unwrap();
        let plain = TEMPLATE.build(&plain).unwrap();
        let mut expected = ir.body.clone();
        expected.remove(3);
        assert_eq!(plain.body, expected);
    }

    #[test]
    fn long_rows_on_few_threads_are_rejected() {
        let caps = Target::Sm80.nominal_caps();
        let p = problem(None, 4096);
        // 4096 / (32 · 2) = 64 vectors of 2: 128 values.
        let config = TEMPLATE.config(&[2, 32, 2], &p).unwrap();
        assert_eq!(
            TEMPLATE.check(&config, &p, &caps).unwrap_err().kind,
            RejectKind::Resources
        );
        // 4096 / (128 · 4) = 8 vectors of 4: 32 values.
        let config = TEMPLATE.config(&[2, 128, 4], &p).unwrap();
        TEMPLATE.check(&config, &p, &caps).unwrap();
    }

    #[test]
    fn vectors_wider_than_the_rows_alignment_are_rejected() {
        let caps = Target::Sm90a.nominal_caps();
        let p = problem(None, 2050); // 2-element aligned rows
        let wide = TEMPLATE.config(&[1, 256, 4], &p).unwrap();
        let r = TEMPLATE.validate(&wide, &p, &caps).unwrap_err();
        assert_eq!(r.kind, RejectKind::Shape);
        assert!(r.reason.contains("vector 4 exceeds"), "{r}");
        let narrow = TEMPLATE.config(&[1, 256, 2], &p).unwrap();
        TEMPLATE.validate(&narrow, &p, &caps).unwrap();
    }
}
