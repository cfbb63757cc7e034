//! Drop what computes nothing at inference: dropout, and a head split (one part) straight
//! back into a head merge of the same geometry.

use crate::graph::{Graph, Op};
use crate::weights::{ConcatError, WeightStore};

pub fn run(graph: &mut Graph, _weights: &mut WeightStore) -> Result<usize, ConcatError> {
    let mut dead = Vec::new();
    for i in 0..graph.nodes.len() {
        let node = graph.nodes[i].clone();
        let source = match node.op {
            Op::Dropout { .. } => Some(node.inputs[0]),
            Op::MergeHeads { heads, head_dim } => graph.producer(node.inputs[0]).and_then(|p| {
                let split = &graph.nodes[p];
                (split.op
                    == Op::SplitHeads {
                        heads,
                        head_dim,
                        parts: 1,
                    })
                .then(|| split.inputs[0])
            }),
            _ => None,
        };
        if let Some(source) = source {
            graph.replace_uses(node.output, source);
            dead.push(i);
        }
    }
    graph.remove_nodes(&dead);
    Ok(dead.len())
}
