//! Absorb reshapes and permutes into the stores around them: a head split after a linear
//! layer becomes the GEMM's head store (`Store::Heads`: Q, K, V written as
//! `[batch, heads, seq, head_dim]`), and a head merge after attention becomes attention's
//! token-major output (`[batch, seq, heads·head_dim]`, what the next GEMM reads).

use crate::graph::{AttentionStore, Dim, Graph, LinearStore, Op};
use crate::weights::{ConcatError, WeightStore};

pub fn run(graph: &mut Graph, _weights: &mut WeightStore) -> Result<usize, ConcatError> {
    let mut absorbed = 0;
    let mut i = 0;
    while i < graph.nodes.len() {
        let out = graph.nodes[i].output;
        let Some(j) = graph.single_use(out) else {
            i += 1;
            continue;
        };
        let width = match graph.value(out).shape.last() {
            Some(Dim::Fixed(n)) => *n,
            _ => 0,
        };
        let new_op = match (&graph.nodes[i].op, &graph.nodes[j].op) {
            (
                Op::Linear {
                    epilogue,
                    store: LinearStore::Rows,
                },
                &Op::SplitHeads {
                    heads,
                    head_dim,
                    parts,
                },
            ) if parts * heads * head_dim == width => Some(Op::Linear {
                epilogue: epilogue.clone(),
                store: LinearStore::Heads { heads, head_dim },
            }),
            (
                &Op::Attention {
                    heads,
                    head_dim,
                    scale,
                    qkv,
                    store: AttentionStore::Heads,
                },
                &Op::MergeHeads {
                    heads: h,
                    head_dim: d,
                },
            ) if (h, d) == (heads, head_dim) => Some(Op::Attention {
                heads,
                head_dim,
                scale,
                qkv,
                store: AttentionStore::Tokens,
            }),
            _ => None,
        };
        let Some(op) = new_op else {
            i += 1;
            continue;
        };
        // the producer now writes the consumer's layout: its value takes the consumer's shape
        let layout = graph.nodes[j].output;
        graph.values[out.0].shape = graph.value(layout).shape.clone();
        graph.nodes[i].op = op;
        graph.replace_uses(layout, out);
        graph.remove_nodes(&[j]);
        absorbed += 1;
    }
    Ok(absorbed)
}
