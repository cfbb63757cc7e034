//! Fold what follows a linear layer into its GEMM epilogue, in chain order: `BiasAdd` →
//! `bias`, an activation → `gelu` / `gelu_tanh` / `relu`, an `Add` of a value computed before
//! the GEMM → `residual`. Each op fuses only when the GEMM's result has no other reader, and
//! each epilogue op at most once (the problem type's rule).

use crate::graph::{Graph, Op, ValueId};
use crate::import::Activation;
use crate::weights::{ConcatError, WeightStore};
use tessera_dsl::EpilogueOp;

/// The epilogue op (and its extra operand) node `j` becomes when fused after a GEMM whose
/// result is `out`, computed at node `at`.
fn fusible(
    graph: &Graph,
    at: usize,
    out: ValueId,
    j: usize,
) -> Option<(EpilogueOp, Option<ValueId>)> {
    let node = &graph.nodes[j];
    match &node.op {
        Op::BiasAdd if node.inputs[0] == out => Some((EpilogueOp::Bias, Some(node.inputs[1]))),
        Op::Activation(a) => Some((
            match a {
                Activation::Gelu => EpilogueOp::Gelu,
                Activation::GeluTanh => EpilogueOp::GeluTanh,
                Activation::Relu => EpilogueOp::Relu,
            },
            None,
        )),
        Op::Add => {
            let other = if node.inputs[0] == out {
                node.inputs[1]
            } else {
                node.inputs[0]
            };
            // the residual must exist when the GEMM runs
            let ready = graph.producer(other).is_none_or(|p| p < at);
            (other != out && ready).then_some((EpilogueOp::Residual, Some(other)))
        }
        _ => None,
    }
}

pub fn run(graph: &mut Graph, _weights: &mut WeightStore) -> Result<usize, ConcatError> {
    let mut fused = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let Op::Linear {
            mut epilogue,
            store,
        } = graph.nodes[i].op.clone()
        else {
            i += 1;
            continue;
        };
        let out = graph.nodes[i].output;
        let next = graph
            .single_use(out)
            .and_then(|j| fusible(graph, i, out, j).map(|f| (j, f)))
            .filter(|(_, (op, _))| !epilogue.contains(op));
        let Some((j, (op, operand))) = next else {
            i += 1;
            continue;
        };
        epilogue.push(op);
        let replaced = graph.nodes[j].output;
        let node = &mut graph.nodes[i];
        node.op = Op::Linear { epilogue, store };
        node.inputs.extend(operand);
        graph.replace_uses(replaced, out);
        graph.remove_nodes(&[j]);
        fused += 1;
    }
    Ok(fused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{Dim, Elem, LinearStore, ValueKind};
    use tessera_dsl::DType;

    fn tokens() -> Vec<Dim> {
        vec![Dim::Batch, Dim::Seq, Dim::Fixed(8)]
    }

    /// x → linear → bias_add, plus whatever `tail` appends; returns (graph, linear output).
    fn chain(tail: impl FnOnce(&mut Graph, ValueId, ValueId)) -> Graph {
        let mut g = Graph::default();
        let f = Elem::Float(DType::F16);
        let x = g.add_value("x", tokens(), f, ValueKind::Activation);
        let w = g.add_value(
            "w",
            vec![Dim::Fixed(8), Dim::Fixed(8)],
            f,
            ValueKind::Activation,
        );
        let b = g.add_value("b", vec![Dim::Fixed(8)], f, ValueKind::Activation);
        // make x, w, b defined: they stand in for inputs and weights
        for v in [x, w, b] {
            g.values[v.0].kind = ValueKind::Input(crate::graph::InputKind::InputIds);
        }
        let plain = Op::Linear {
            epilogue: vec![],
            store: LinearStore::Rows,
        };
        let y = g.add_node("lin", plain, vec![x, w], tokens(), f);
        let y = g.add_node("bias", Op::BiasAdd, vec![y, b], tokens(), f);
        tail(&mut g, x, y);
        g
    }

    fn store() -> WeightStore {
        WeightStore::new(DType::F16)
    }

    #[test]
    fn bias_activation_and_residual_fuse_in_order() {
        let mut g = chain(|g, x, y| {
            let f = Elem::Float(DType::F16);
            let y = g.add_node(
                "act",
                Op::Activation(Activation::GeluTanh),
                vec![y],
                tokens(),
                f,
            );
            let y = g.add_node("res", Op::Add, vec![x, y], tokens(), f);
            g.outputs
                .push((crate::graph::OutputKind::LastHiddenState, y));
        });
        assert_eq!(run(&mut g, &mut store()).unwrap(), 3);
        g.check().unwrap();
        assert_eq!(g.nodes.len(), 1);
        let want = vec![EpilogueOp::Bias, EpilogueOp::GeluTanh, EpilogueOp::Residual];
        assert_eq!(
            g.nodes[0].op,
            Op::Linear {
                epilogue: want,
                store: LinearStore::Rows
            }
        );
        assert_eq!(g.nodes[0].inputs.len(), 4, "x, w, bias, residual");
        assert_eq!(g.outputs[0].1, g.nodes[0].output);
    }

    #[test]
    fn a_result_read_twice_or_a_later_residual_does_not_fuse() {
        // the biased value is read by the activation and is also a graph output
        let mut g = chain(|g, _, y| {
            let f = Elem::Float(DType::F16);
            g.add_node(
                "act",
                Op::Activation(Activation::Relu),
                vec![y],
                tokens(),
                f,
            );
            g.outputs
                .push((crate::graph::OutputKind::LastHiddenState, y));
        });
        assert_eq!(run(&mut g, &mut store()).unwrap(), 1, "only the bias");
        assert_eq!(g.count("activation"), 1);
        // the residual is computed after the GEMM: it cannot be an epilogue operand
        let mut g = chain(|g, x, y| {
            let f = Elem::Float(DType::F16);
            let later = g.add_node(
                "later",
                Op::Activation(Activation::Relu),
                vec![x],
                tokens(),
                f,
            );
            g.add_node("res", Op::Add, vec![y, later], tokens(), f);
        });
        run(&mut g, &mut store()).unwrap();
        g.check().unwrap();
        assert_eq!(g.count("add"), 1);
    }
}
