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
