//! The embedding template: per token `t`, `h = word[input_ids[t]] + position[position_ids[t]] +
//! token_type[token_type_ids[t]]`, then layernorm over the `hidden` elements of the row
//! (population variance, f32 statistics, `eps` a runtime scalar), stored in the tables' dtype.
//! The shape of the layernorm template (`crate::layernorm`): a block handles `rows_per_block`
//! tokens, each spread over `threads_per_row` threads with `vector`-element accesses, and the
//! row stays in registers between the two reductions; the three gathers are the row's loads.
//!
//! It depends on the DSL only; the f64 reference is `crate::reference::embedding_row`.

use tessera_dsl::gpu_template;

/// BERT's embedding step (three gathered rows summed, then layernorm) in one pass over memory.
#[gpu_template(name = "embedding", op = embedding, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod embedding {
    params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
    constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows h: word[input_ids][rows_per_block] threads threads_per_row vector vector;
        h = h + position[position_ids] + token_type[token_type_ids];
        reduce total = sum(h);
        let mean = total / cols;
        h = h - mean;
        reduce squares = sum(h * h);
        let rstd = rsqrt(squares / cols + eps);
        h = h * rstd * gamma + beta;
        store h -> y;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject};

    /// A thread keeps its share of the row in registers, as in layernorm.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        crate::layernorm::check_row_values(config)
    }
}

#[cfg(test)]
mod tests {
    use super::embedding::TEMPLATE;
    use tessera_dsl::ir::{BinOp, Operand, RowExpr, RowIndex, RowTile, Stmt};
    use tessera_dsl::{EmbeddingProblem, Problem, RejectKind, Target, Template};

    fn problem(hidden: u64) -> Problem {
        Problem::Embedding(EmbeddingProblem::new(8 * 128, hidden, 128))
    }

    #[test]
    fn gathers_three_rows_then_normalizes() {
        let config = TEMPLATE.config(&[2, 128, 4], &problem(768)).unwrap();
        assert_eq!(
            config.kernel_name(),
            "embedding_f16_f32acc_r2_t128_v4_h768_a8"
        );
        let ir = TEMPLATE.build(&config).unwrap();
        let gather = |table, index| RowExpr::Gather { table, index };
        assert_eq!(
            ir.body[..3],
            [
                Stmt::Rows(RowTile {
                    name: "h".into(),
                    rows: 2,
                    threads: 128,
                    vector: 4
                }),
                Stmt::Map {
                    dst: "h".into(),
                    expr: gather(Operand::Word, RowIndex::Ids(Operand::InputIds)),
                },
                Stmt::Map {
                    dst: "h".into(),
                    expr: RowExpr::bin(
                        BinOp::Add,
                        RowExpr::bin(
                            BinOp::Add,
                            RowExpr::Tile("h".into()),
                            gather(Operand::Position, RowIndex::Ids(Operand::PositionIds)),
                        ),
                        gather(Operand::TokenType, RowIndex::Ids(Operand::TokenTypeIds)),
                    ),
                },
            ]
        );
        // the layernorm tail: two reductions, the affine map and the store
        assert_eq!(ir.body.len(), 10);
        assert_eq!(
            ir.body[9],
            Stmt::RowStore {
                src: "h".into(),
                dst: Operand::Y
            }
        );
        // the tables and the output are tensors of the kernel's dtype; ids are not
        let globals: Vec<Operand> = ir.globals.iter().map(|g| g.operand).collect();
        assert_eq!(
            globals,
            [
                Operand::Word,
                Operand::Position,
                Operand::TokenType,
                Operand::Gamma,
                Operand::Beta,
                Operand::Y
            ]
        );
        TEMPLATE
            .validate(&config, &problem(768), &Target::Sm90a.nominal_caps())
            .unwrap();
    }

    #[test]
    fn long_rows_on_few_threads_are_rejected() {
        let caps = Target::Sm90a.nominal_caps();
        let p = problem(8192);
        let config = TEMPLATE.config(&[2, 32, 2], &p).unwrap();
        let reject = TEMPLATE.validate(&config, &p, &caps).unwrap_err();
        assert_eq!(reject.kind, RejectKind::Resources);
        let config = TEMPLATE.config(&[1, 1024, 8], &p).unwrap();
        TEMPLATE.validate(&config, &p, &caps).unwrap();
    }
}
