//! Horizontal fusion of the Q, K and V projections (AITemplate's
//! `fuse_single_source_parallel_gemms`): three `Linear → BiasAdd → SplitHeads` chains on one
//! input that feed one attention become one `[3·hidden, hidden]` GEMM whose output is split into
//! three head tensors, and attention reads them packed. The weights and biases are concatenated
//! here, once, at compile time.

use crate::graph::{AttentionQkv, Dim, Graph, LinearStore, Node, Op, ValueId, ValueKind};
use crate::weights::{ConcatError, WeightId, WeightStore};

/// One projection chain: node indices and its weight and bias.
struct Chain {
    nodes: [usize; 3],
    weight: ValueId,
    bias: ValueId,
    input: ValueId,
}

/// The chain ending in the head tensor `v` (`Linear → BiasAdd → SplitHeads{parts: 1}`).
fn chain(graph: &Graph, v: ValueId, heads: u64, head_dim: u64) -> Option<Chain> {
    let split = graph.producer(v)?;
    if graph.nodes[split].op
        != (Op::SplitHeads {
            heads,
            head_dim,
            parts: 1,
        })
    {
        return None;
    }
    let biased = graph.nodes[split].inputs[0];
    let add = graph
        .producer(biased)
        .filter(|_| graph.single_use(biased) == Some(split))?;
    if graph.nodes[add].op != Op::BiasAdd {
        return None;
    }
    let projected = graph.nodes[add].inputs[0];
    let linear = graph
        .producer(projected)
        .filter(|_| graph.single_use(projected) == Some(add))?;
    let plain = Op::Linear {
        epilogue: vec![],
        store: LinearStore::Rows,
    };
    if graph.nodes[linear].op != plain || graph.single_use(v).is_none() {
        return None;
    }
    let n = &graph.nodes[linear];
    Some(Chain {
        nodes: [linear, add, split],
        weight: n.inputs[1],
        bias: graph.nodes[add].inputs[1],
        input: n.inputs[0],
    })
}

fn weight_id(graph: &Graph, v: ValueId) -> Option<WeightId> {
    match graph.value(v).kind {
        ValueKind::Weight(w) => Some(w),
        _ => None,
    }
}

pub fn run(graph: &mut Graph, weights: &mut WeightStore) -> Result<usize, ConcatError> {
    let mut merged = 0;
    let mut a = 0;
    while a < graph.nodes.len() {
        let Op::Attention {
            heads,
            head_dim,
            scale,
            qkv: AttentionQkv::Separate,
            store,
        } = graph.nodes[a].op
        else {
            a += 1;
            continue;
        };
        let inputs = graph.nodes[a].inputs.clone();
        let chains: Option<Vec<Chain>> = inputs[..3]
            .iter()
            .map(|&v| chain(graph, v, heads, head_dim))
            .collect();
        let Some(chains) = chains.filter(|c| c.iter().all(|x| x.input == c[0].input)) else {
            a += 1;
            continue;
        };
        let ids = |f: fn(&Chain) -> ValueId| -> Option<Vec<WeightId>> {
            chains.iter().map(|c| weight_id(graph, f(c))).collect()
        };
        let (Some(ws), Some(bs)) = (ids(|c| c.weight), ids(|c| c.bias)) else {
            a += 1;
            continue;
        };
        let layer = graph.nodes[a]
            .name
            .trim_end_matches(".attention")
            .to_string();
        let w = weights.concat(format!("{layer}.attention.qkv.weight"), &ws)?;
        let b = weights.concat(format!("{layer}.attention.qkv.bias"), &bs)?;
        let elem = graph.value(chains[0].weight).elem;
        let fixed = |s: &[u64]| s.iter().map(|&d| Dim::Fixed(d)).collect::<Vec<_>>();
        let wv = graph.add_value(
            weights.get(w).name.clone(),
            fixed(&weights.get(w).shape),
            elem,
            ValueKind::Weight(w),
        );
        let bv = graph.add_value(
            weights.get(b).name.clone(),
            fixed(&weights.get(b).shape),
            elem,
            ValueKind::Weight(b),
        );
        let width = 3 * heads * head_dim;
        let tokens = vec![Dim::Batch, Dim::Seq, Dim::Fixed(width)];
        let packed = vec![
            Dim::Fixed(3),
            Dim::Batch,
            Dim::Fixed(heads),
            Dim::Seq,
            Dim::Fixed(head_dim),
        ];
        let name = format!("{layer}.qkv");
        let y = graph.add_value(name.clone(), tokens.clone(), elem, ValueKind::Activation);
        let yb = graph.add_value(format!("{name}.bias"), tokens, elem, ValueKind::Activation);
        let yh = graph.add_value(format!("{name}.heads"), packed, elem, ValueKind::Activation);
        let new_nodes = [
            Node {
                name: name.clone(),
                op: Op::Linear {
                    epilogue: vec![],
                    store: LinearStore::Rows,
                },
                inputs: vec![chains[0].input, wv],
                output: y,
            },
            Node {
                name: format!("{name}.bias"),
                op: Op::BiasAdd,
                inputs: vec![y, bv],
                output: yb,
            },
            Node {
                name: format!("{name}.heads"),
                op: Op::SplitHeads {
                    heads,
                    head_dim,
                    parts: 3,
                },
                inputs: vec![yb],
                output: yh,
            },
        ];
        let attention = &mut graph.nodes[a];
        attention.op = Op::Attention {
            heads,
            head_dim,
            scale,
            qkv: AttentionQkv::Packed,
            store,
        };
        attention.inputs = vec![yh, inputs[3]];
        let mut dead: Vec<usize> = chains.iter().flat_map(|c| c.nodes).collect();
        dead.sort_unstable();
        // the merged chain runs where the first projection ran
        let at = dead[0];
        graph.nodes.splice(at..at, new_nodes);
        let dead: Vec<usize> = dead.iter().map(|&d| d + 3).collect();
        graph.remove_nodes(&dead);
        merged += 1;
        a = 0;
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;

    #[test]
    fn projections_of_different_inputs_are_not_merged() {
        let dir = tempfile::tempdir().unwrap();
        Fixture::tiny().write(dir.path()).unwrap();
        let mut m = crate::import::import(dir.path(), tessera_dsl::DType::F16).unwrap();
        // point layer 0's key projection at another input: no longer one source
        let key = m
            .graph
            .nodes
            .iter()
            .position(|n| n.name == "layer0.key")
            .unwrap();
        let other = m
            .graph
            .nodes
            .iter()
            .find(|n| n.name == "embeddings")
            .unwrap()
            .inputs[0];
        m.graph.nodes[key].inputs[0] = other;
        assert_eq!(
            run(&mut m.graph, &mut m.weights).unwrap(),
            1,
            "only layer 1 merges"
        );
        m.graph.check().unwrap();
        assert_eq!(
            m.graph.count("linear"),
            6 + 4,
            "q, k, v, out, up, down + qkv, out, up, down"
        );
        // the merged weight is the three projections stacked in Q, K, V order
        let w = m
            .weights
            .weights
            .iter()
            .find(|w| w.name == "layer1.attention.qkv.weight")
            .unwrap();
        let q = m
            .weights
            .weights
            .iter()
            .find(|w| w.name == "encoder.layer.1.attention.self.query.weight")
            .unwrap();
        let v = m
            .weights
            .weights
            .iter()
            .find(|w| w.name == "encoder.layer.1.attention.self.value.weight")
            .unwrap();
        assert_eq!(w.shape, vec![3 * 128, 128]);
        assert_eq!(w.values[..q.values.len()], q.values[..]);
        assert_eq!(w.values[2 * q.values.len()..], v.values[..]);
    }
}
