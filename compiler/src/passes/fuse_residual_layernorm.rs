//! `LayerNorm(a + b)` → `LayerNorm{residual}(a, b)`: the layernorm kernel adds the residual
//! while it loads the row, so the sum never goes to memory.

use crate::graph::{Graph, Op};
use crate::weights::{ConcatError, WeightStore};

pub fn run(graph: &mut Graph, _weights: &mut WeightStore) -> Result<usize, ConcatError> {
    let mut dead = Vec::new();
    for i in 0..graph.nodes.len() {
        let Op::LayerNorm {
            eps,
            residual: false,
        } = graph.nodes[i].op
        else {
            continue;
        };
        let x = graph.nodes[i].inputs[0];
        let Some(add) = graph.producer(x).filter(|&p| graph.nodes[p].op == Op::Add) else {
            continue;
        };
        if graph.single_use(x) != Some(i) {
            continue;
        }
        let (a, b) = (graph.nodes[add].inputs[0], graph.nodes[add].inputs[1]);
        let node = &mut graph.nodes[i];
        node.op = Op::LayerNorm {
            eps,
            residual: true,
        };
        node.inputs.splice(0..1, [a, b]);
        dead.push(add);
    }
    graph.remove_nodes(&dead);
    Ok(dead.len())
}
