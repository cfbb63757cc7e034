//! `#[gpu_template]` for row-wise ops end to end: every row-expression form (numbers, unary
//! minus, `sqrt`, `max(a, b)`, runtime arguments, `cols`) lowers to the `RowExpr` it names.

use tessera_dsl::ir::{BinOp, Operand, ReduceOp, RowExpr, RowFn, Stmt};
use tessera_dsl::{gpu_template, Problem, SoftmaxProblem, Template};

/// Every row-expression form in one kernel.
#[gpu_template(name = "test_rows", op = softmax, label = "t{threads}")]
mod test_rows {
    params! { threads in [64, 128] }
    dtypes! { input: [f16], acc: f32, output: [f16] }
    kernel! {
        rows s: x[1] threads threads vector 4;
        s = max(s, -2.5) * scale;
        reduce top = max(-s);
        let root = sqrt(top / cols + 1);
        s = (s - root) / 2.0;
        store s -> y;
    }
}

#[test]
fn every_form_lowers_to_its_row_expr() {
    let t = &test_rows::TEMPLATE;
    let problem = Problem::Softmax(SoftmaxProblem::new(64, 1000));
    let config = t.config(&[128], &problem).unwrap();
    let ir = t.build(&config).unwrap();
    let s = || RowExpr::Tile("s".into());
    let bin = RowExpr::bin;
    assert_eq!(ir.variant.extent, 1000);
    assert_eq!(ir.threads(32), 128);
    assert_eq!(
        ir.body[2..],
        [
            Stmt::Map {
                dst: "s".into(),
                expr: bin(
                    BinOp::Mul,
                    bin(BinOp::Max, s(), RowExpr::Lit(-2.5)),
                    RowExpr::Arg("scale".into())
                )
            },
            Stmt::RowReduce {
                dst: "top".into(),
                op: ReduceOp::Max,
                expr: bin(BinOp::Sub, RowExpr::Lit(0.0), s())
            },
            Stmt::RowLet {
                dst: "root".into(),
                expr: RowExpr::Call(
                    RowFn::Sqrt,
                    Box::new(bin(
                        BinOp::Add,
                        bin(BinOp::Div, RowExpr::Row("top".into()), RowExpr::Extent),
                        RowExpr::Lit(1.0)
                    ))
                )
            },
            Stmt::Map {
                dst: "s".into(),
                expr: bin(
                    BinOp::Div,
                    bin(BinOp::Sub, s(), RowExpr::Row("root".into())),
                    RowExpr::Lit(2.0)
                )
            },
            Stmt::RowStore {
                src: "s".into(),
                dst: Operand::Y
            },
        ]
    );
}
