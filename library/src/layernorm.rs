//! The layernorm template: per row, `h = x (+ residual) (+ bias)`, then
//! `y = (h − mean(h)) · rsqrt(var(h) + eps) · gamma + beta` with the population variance, all
//! in f32 over the `cols` elements of the row. A block handles `rows_per_block` rows, each
//! spread over `threads_per_row` threads that access `vector` contiguous elements at a time;
//! the row stays in registers between the two reductions.

use tessera_dsl::{gpu_template, Config, Reject, RejectKind};

/// Layernorm with an optional fused residual and bias: one register-resident row per thread group.
#[gpu_template(name = "layernorm", op = layernorm, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod layernorm {
    params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
    constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows h: x[rows_per_block] threads threads_per_row vector vector;
        when residual { h = h + residual; }
        when bias { h = h + bias; }
        reduce total = sum(h);
        let mean = total / cols;
        h = h - mean;
        reduce squares = sum(h * h);
        let rstd = rsqrt(squares / cols + eps);
        h = h * rstd * gamma + beta;
        store h -> y;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject};

    /// A thread keeps its share of the row in registers: more than
    /// [`crate::layernorm::MAX_ROW_VALUES`] f32 values would spill.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        crate::layernorm::check_row_values(config)
    }
}

/// f32 values of the row one thread may hold in registers before it spills.
pub const MAX_ROW_VALUES: i64 = 64;

/// Registers a thread has when `threads` share an SM's 64K-register file (at most 255).
fn registers_per_thread(threads: i64) -> i64 {
    (65536 / threads.max(1)).min(255)
}

/// Reject, as [`RejectKind::Resources`], configs where a thread would hold more values of the
/// row (`ceil(cols / (threads_per_row·vector))·vector`) than it can keep in registers:
/// [`MAX_ROW_VALUES`], and at most half its registers less 8 for addresses and statistics when
/// a large block shrinks the per-thread share (1024 threads get 64 registers, so 24 values).
pub fn check_row_values(config: &Config) -> Result<(), Reject> {
    let (Some(threads), Some(vector)) = (config.get("threads_per_row"), config.get("vector"))
    else {
        return Err(Reject::new(
            RejectKind::OutsideSpace,
            "a row-wise config needs `threads_per_row` and `vector`",
        ));
    };
    let block = threads * config.get("rows_per_block").unwrap_or(1);
    let limit = MAX_ROW_VALUES.min(registers_per_thread(block) / 2 - 8);
    let per_step = (threads * vector).max(1);
    let cols = i64::from(config.variant.extent);
    let values = (cols + per_step - 1) / per_step * vector;
    if values > limit {
        return Err(Reject::new(
            RejectKind::Resources,
            format!(
                "each thread would hold {values} f32 values of the {cols}-element row (limit \
                 {limit} with {block} threads per block); use more threads per row or fewer rows \
                 per block"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::layernorm::TEMPLATE;
    use tessera_dsl::ir::{BinOp, Operand, ReduceOp, RowExpr, RowFn, RowTile, Stmt};
    use tessera_dsl::{LayernormProblem, Problem, RejectKind, Target, Template};

    fn problem(residual: bool, bias: bool, cols: u64) -> Problem {
        let mut p = LayernormProblem::new(512, cols);
        p.residual = residual;
        p.bias = bias;
        Problem::Layernorm(p)
    }

    fn tile(n: &str) -> RowExpr {
        RowExpr::Tile(n.into())
    }
    fn row(n: &str) -> RowExpr {
        RowExpr::Row(n.into())
    }

    #[test]
    fn fused_operands_add_their_maps() {
        let config = TEMPLATE
            .config(&[2, 128, 4], &problem(true, true, 768))
            .unwrap();
        let ir = TEMPLATE.build(&config).unwrap();
        assert_eq!(
            ir.body[..4],
            [
                Stmt::Rows(RowTile {
                    name: "h".into(),
                    rows: 2,
                    threads: 128,
                    vector: 4
                }),
                Stmt::RowLoad {
                    dst: "h".into(),
                    src: Operand::X
                },
                Stmt::Map {
                    dst: "h".into(),
                    expr: RowExpr::bin(BinOp::Add, tile("h"), RowExpr::At(Operand::Residual))
                },
                Stmt::Map {
                    dst: "h".into(),
                    expr: RowExpr::bin(BinOp::Add, tile("h"), RowExpr::Col(Operand::Bias))
                },
            ]
        );
        assert_eq!(ir.threads(32), 256);
        let plain = TEMPLATE
            .config(&[2, 128, 4], &problem(false, false, 768))
            .unwrap();
        let plain = TEMPLATE.build(&plain).unwrap();
        assert_eq!(plain.body.len(), ir.body.len() - 2);
        assert_eq!(plain.body[2..], ir.body[4..]);
    }

    #[test]
    fn statistics_follow_the_template() {
        let config = TEMPLATE
            .config(&[1, 256, 8], &problem(false, false, 1024))
            .unwrap();
        let ir = TEMPLATE.build(&config).unwrap();
        let rstd = RowExpr::Call(
            RowFn::Rsqrt,
            Box::new(RowExpr::bin(
                BinOp::Add,
                RowExpr::bin(BinOp::Div, row("squares"), RowExpr::Extent),
                RowExpr::Arg("eps".into()),
            )),
        );
        assert_eq!(
            ir.body[2..],
            [
                Stmt::RowReduce {
                    dst: "total".into(),
                    op: ReduceOp::Sum,
                    expr: tile("h")
                },
                Stmt::RowLet {
                    dst: "mean".into(),
                    expr: RowExpr::bin(BinOp::Div, row("total"), RowExpr::Extent)
                },
                Stmt::Map {
                    dst: "h".into(),
                    expr: RowExpr::bin(BinOp::Sub, tile("h"), row("mean"))
                },
                Stmt::RowReduce {
                    dst: "squares".into(),
                    op: ReduceOp::Sum,
                    expr: RowExpr::bin(BinOp::Mul, tile("h"), tile("h"))
                },
                Stmt::RowLet {
                    dst: "rstd".into(),
                    expr: rstd
                },
                Stmt::Map {
                    dst: "h".into(),
                    expr: RowExpr::bin(
                        BinOp::Add,
                        RowExpr::bin(
                            BinOp::Mul,
                            RowExpr::bin(BinOp::Mul, tile("h"), row("rstd")),
                            RowExpr::Col(Operand::Gamma)
                        ),
                        RowExpr::Col(Operand::Beta)
                    )
                },
                Stmt::RowStore {
                    src: "h".into(),
                    dst: Operand::Y
                },
            ]
        );
    }

    #[test]
    fn long_rows_on_few_threads_are_rejected() {
        let caps = Target::Sm90a.nominal_caps();
        let p = problem(false, false, 16384);
        // 16384 / (32 · 2) = 256 vectors of 2 per thread: 512 values.
        let config = TEMPLATE.config(&[2, 32, 2], &p).unwrap();
        let reject = TEMPLATE.check(&config, &p, &caps).unwrap_err();
        assert_eq!(reject.kind, RejectKind::Resources);
        assert!(
            reject.reason.contains("512 f32 values"),
            "{}",
            reject.reason
        );
        // 16384 / (1024 · 8) = 2 vectors of 8: 16 values.
        let config = TEMPLATE.config(&[1, 1024, 8], &p).unwrap();
        TEMPLATE.check(&config, &p, &caps).unwrap();
        // 768 / (32 · 8) = 3 vectors of 8: 24 values.
        let p = problem(false, false, 768);
        let config = TEMPLATE.config(&[2, 32, 8], &p).unwrap();
        TEMPLATE.check(&config, &p, &caps).unwrap();
    }

    #[test]
    fn large_blocks_hold_fewer_values_per_thread() {
        let caps = Target::Sm90a.nominal_caps();
        let p = problem(false, false, 4096);
        // 1024 threads (64 registers each): 4 vectors of 8 = 32 values is too many
        let config = TEMPLATE.config(&[8, 128, 8], &p).unwrap();
        let r = TEMPLATE.check(&config, &p, &caps).unwrap_err();
        assert_eq!(r.kind, RejectKind::Resources);
        assert!(r.reason.contains("limit 24 with 1024 threads"), "{r}");
        // the same row on 512 threads (128 registers each) fits
        let config = TEMPLATE.config(&[4, 128, 8], &p).unwrap();
        TEMPLATE.check(&config, &p, &caps).unwrap();
    }
}
