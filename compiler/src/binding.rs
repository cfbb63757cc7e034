//! Binding a bucket's launch list to buffers: weights laid out in one blob (first-use order,
//! aligned), graph values' lifetimes over the launch order, arena offsets from [`memory`], and
//! the launches with their argument views. It knows graphs and steps; placement itself is
//! [`memory`]'s.

use crate::bucket::Bucket;
use crate::graph::{Graph, ValueId, ValueKind};
use crate::import;
use crate::lower::Step;
use crate::memory::{self, Lifetime, ALIGN};
use crate::plan::{
    self, BucketPlan, Buffer, Callee, InputSlot, Launch, LaunchArg, OutputSlot, View, WeightEntry,
    WeightTable,
};
use crate::weights::WeightStore;
use std::collections::BTreeMap;
use tessera_library::host::HostTensor;

/// The weights the graph reads, in first-use order, each at an aligned offset of one blob.
pub fn lay_out_weights(
    graph: &Graph,
    store: &WeightStore,
) -> (Vec<u8>, WeightTable, BTreeMap<ValueId, View>) {
    let mut blob = Vec::new();
    let mut tensors = Vec::new();
    let mut views = BTreeMap::new();
    for v in graph.nodes.iter().flat_map(|n| n.inputs.iter().copied()) {
        let ValueKind::Weight(id) = graph.value(v).kind else {
            continue;
        };
        if views.contains_key(&v) {
            continue;
        }
        let w = store.get(id);
        let bytes = HostTensor {
            dtype: store.dtype,
            values: w.values.clone(),
        }
        .to_bytes();
        let offset = memory::align_up(blob.len() as u64, ALIGN);
        blob.resize(offset as usize, 0);
        blob.extend_from_slice(&bytes);
        views.insert(
            v,
            View {
                buffer: Buffer::Weights,
                offset,
                bytes: bytes.len() as u64,
            },
        );
        tensors.push(WeightEntry {
            name: w.name.clone(),
            shape: w.shape.clone(),
            offset,
            bytes: bytes.len() as u64,
        });
    }
    let table = WeightTable {
        file: plan::WEIGHTS_FILE.to_string(),
        dtype: store.dtype,
        bytes: blob.len() as u64,
        sha256: import::sha256_hex(&blob),
        tensors,
    };
    (blob, table, views)
}

/// Liveness over the launch order, placement in the arena, and the launch list with views.
pub fn plan_bucket(
    graph: &Graph,
    b: Bucket,
    steps: &[Step],
    callees: &[Callee],
    weights: &BTreeMap<ValueId, View>,
) -> BucketPlan {
    let life = lifetimes(graph, b, steps);
    let ids: Vec<ValueId> = life.keys().copied().collect();
    let records: Vec<Lifetime> = life.values().copied().collect();
    let placement = memory::place(&records);
    let arena: BTreeMap<ValueId, u64> = ids
        .iter()
        .copied()
        .zip(placement.offsets.iter().copied())
        .collect();
    let view = |v: ValueId, offset: u64, bytes: Option<u64>| -> View {
        match weights.get(&v) {
            Some(w) => *w,
            None => View {
                buffer: Buffer::Arena,
                offset: arena.get(&v).copied().unwrap_or(0) + offset,
                bytes: bytes.unwrap_or_else(|| graph.value(v).bytes(&b).saturating_sub(offset)),
            },
        }
    };
    let shape = |v: ValueId| {
        graph
            .value(v)
            .shape
            .iter()
            .map(|d| d.bind(&b))
            .collect::<Vec<u64>>()
    };
    let inputs = graph
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, value)| match value.kind {
            ValueKind::Input(kind) if arena.contains_key(&ValueId(i)) => Some(InputSlot {
                kind,
                shape: shape(ValueId(i)),
                view: view(ValueId(i), 0, None),
            }),
            _ => None,
        })
        .collect();
    let outputs = graph
        .outputs
        .iter()
        .map(|&(kind, v)| OutputSlot {
            kind,
            shape: shape(v),
            view: view(v, 0, None),
        })
        .collect();
    let launches = steps
        .iter()
        .zip(callees)
        .map(|(s, &callee)| Launch {
            node: s.node.clone(),
            callee,
            args: s
                .operands
                .iter()
                .map(|o| LaunchArg {
                    name: o.name.clone(),
                    view: view(o.value, o.offset, o.bytes),
                })
                .collect(),
            scalars: s.scalars.clone(),
            attention_store: s.attention_store,
        })
        .collect();
    BucketPlan {
        bucket: b,
        arena_bytes: placement.arena_bytes,
        naive_bytes: memory::naive_bytes(&records),
        inputs,
        outputs,
        launches,
    }
}

/// Every non-weight value the steps touch, with the steps it must survive: from its first use
/// to its last. Inputs live through the whole list (uploaded before it, and never overwritten
/// by it, so a captured graph can be replayed again and again on the same inputs, as timing
/// does); graph outputs live to the end.
fn lifetimes(graph: &Graph, b: Bucket, steps: &[Step]) -> BTreeMap<ValueId, Lifetime> {
    let last_step = steps.len().saturating_sub(1);
    let mut life: BTreeMap<ValueId, Lifetime> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        for o in &s.operands {
            let value = graph.value(o.value);
            if matches!(value.kind, ValueKind::Weight(_)) {
                continue;
            }
            let (first, last) = if matches!(value.kind, ValueKind::Input(_)) {
                (0, last_step)
            } else {
                (i, i)
            };
            let l = life.entry(o.value).or_insert(Lifetime {
                first,
                last,
                bytes: value.bytes(&b),
            });
            l.first = l.first.min(first);
            l.last = l.last.max(last);
        }
    }
    for &(_, v) in &graph.outputs {
        if let Some(l) = life.get_mut(&v) {
            l.last = last_step;
        }
    }
    life
}
