//! Lowering: the optimized graph, bound to one shape bucket, becomes a launch list of steps.
//! A step is a kernel problem (`tessera_dsl::Problem`: GEMM with its epilogue and store,
//! attention with the key-padding mask, layernorm with the fused residual) or a glue step that
//! has no template yet (the embedding gather + layernorm, the pooler), with its operands named
//! as the kernel's ABI names them and given as views: a graph value and a byte offset in it.
//!
//! A node the passes left unfused (a lone bias add, say) has no kernel: that is an error
//! naming it, not a silent fallback.

use crate::bucket::Bucket;
use crate::graph::{AttentionQkv, AttentionStore, Dim, Graph, LinearStore, Node, Op, ValueId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_dsl::problem::ProblemError;
use tessera_dsl::{
    AttentionProblem, DType, EpilogueOp, GemmProblem, LayernormProblem, Layout, Mask, Problem,
    Store,
};

/// A step with no kernel template yet; an executor slots one in by this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Glue {
    /// Word + position + token-type gather, sum, layernorm (scalar `eps`).
    Embedding,
    /// `tanh(dense(h[:, 0]))`.
    Pooler,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Kernel(Problem),
    Glue(Glue),
}

/// One operand: the ABI name, the value, and the byte range of it the kernel sees (all of it,
/// or one of Q, K, V in a packed QKV).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand {
    pub name: String,
    pub value: ValueId,
    pub offset: u64,
    /// `None`: from `offset` to the end of the value.
    pub bytes: Option<u64>,
}

/// One launch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The graph node it computes.
    pub node: String,
    pub kind: StepKind,
    /// Read operands, then the written one (`d`, `o`, `y`).
    pub operands: Vec<Operand>,
    pub output: ValueId,
    /// Runtime scalars the problem does not fix (`eps`, `scale`).
    pub scalars: BTreeMap<String, f64>,
    /// Attention's output layout (`[b, h, s, d]` or token-major); `None` for other steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention_store: Option<AttentionStore>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LowerError {
    #[error("node `{node}` ({op}) has no kernel; a pass should have fused it")]
    NoKernel { node: String, op: &'static str },
    #[error("node `{node}` at {bucket}: {source}")]
    Problem {
        node: String,
        bucket: Bucket,
        source: ProblemError,
    },
    #[error("node `{node}`: unexpected operand shape {what}")]
    Shape { node: String, what: String },
}

fn fixed_last(graph: &Graph, node: &Node, v: ValueId) -> Result<u64, LowerError> {
    match graph.value(v).shape.last() {
        Some(Dim::Fixed(n)) => Ok(*n),
        other => Err(LowerError::Shape {
            node: node.name.clone(),
            what: format!("last dim {other:?} of `{}`", graph.value(v).name),
        }),
    }
}

fn operand(name: &str, value: ValueId) -> Operand {
    Operand {
        name: name.to_string(),
        value,
        offset: 0,
        bytes: None,
    }
}

/// The launch list of `graph` at `bucket`, activations in `dtype`.
pub fn lower(graph: &Graph, bucket: Bucket, dtype: DType) -> Result<Vec<Step>, LowerError> {
    let rows = bucket.tokens();
    let mut steps = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let mut scalars = BTreeMap::new();
        let mut attention_store = None;
        let ins = &node.inputs;
        let (kind, mut operands, written) = match &node.op {
            Op::Linear { epilogue, store } => {
                let k = fixed_last(graph, node, ins[0])?;
                let n = match graph.value(ins[1]).shape.first() {
                    Some(Dim::Fixed(n)) => *n,
                    _ => fixed_last(graph, node, node.output)?,
                };
                let mut g = GemmProblem::new(rows, n, k);
                g.input = dtype;
                g.output = dtype;
                g.layout_b = Layout::Col;
                g.epilogue = epilogue.clone();
                if let LinearStore::Heads { heads, head_dim } = *store {
                    g.store = Store::Heads {
                        heads,
                        head_dim,
                        seq: bucket.seq,
                    };
                }
                let mut ops = vec![operand("a", ins[0]), operand("b", ins[1])];
                let mut extra = ins[2..].iter();
                for e in epilogue {
                    let name = match e {
                        EpilogueOp::Bias => "bias",
                        EpilogueOp::Residual => "residual",
                        EpilogueOp::BetaC => "c",
                        _ => continue,
                    };
                    if let Some(&v) = extra.next() {
                        ops.push(operand(name, v));
                    }
                }
                (StepKind::Kernel(Problem::Gemm(g)), ops, "d")
            }
            &Op::Attention {
                heads,
                head_dim,
                scale,
                qkv,
                store,
            } => {
                let mut a = AttentionProblem::new(bucket.batch, heads, bucket.seq, head_dim);
                a.dtype = dtype;
                a.mask = Mask::Padding;
                scalars.insert("scale".into(), scale);
                attention_store = Some(store);
                let ops = match qkv {
                    AttentionQkv::Separate => vec![
                        operand("q", ins[0]),
                        operand("k", ins[1]),
                        operand("v", ins[2]),
                        operand("kv_lens", ins[3]),
                    ],
                    AttentionQkv::Packed => {
                        let part = bucket.batch
                            * heads
                            * bucket.seq
                            * head_dim
                            * u64::from(dtype.size_bytes());
                        let view = |name: &str, i: u64| Operand {
                            name: name.into(),
                            value: ins[0],
                            offset: i * part,
                            bytes: Some(part),
                        };
                        vec![
                            view("q", 0),
                            view("k", 1),
                            view("v", 2),
                            operand("kv_lens", ins[1]),
                        ]
                    }
                };
                (StepKind::Kernel(Problem::Attention(a)), ops, "o")
            }
            &Op::LayerNorm { eps, residual } => {
                let mut l = LayernormProblem::new(rows, fixed_last(graph, node, ins[0])?);
                l.dtype = dtype;
                l.residual = residual;
                scalars.insert("eps".into(), eps);
                let mut ops = vec![operand("x", ins[0])];
                let rest = if residual {
                    ops.push(operand("residual", ins[1]));
                    &ins[2..]
                } else {
                    &ins[1..]
                };
                ops.extend([operand("gamma", rest[0]), operand("beta", rest[1])]);
                (StepKind::Kernel(Problem::Layernorm(l)), ops, "y")
            }
            &Op::Embedding { eps } => {
                scalars.insert("eps".into(), eps);
                let names = [
                    "input_ids",
                    "token_type_ids",
                    "word",
                    "position",
                    "token_type",
                    "gamma",
                    "beta",
                ];
                let ops = names.iter().zip(ins).map(|(n, &v)| operand(n, v)).collect();
                (StepKind::Glue(Glue::Embedding), ops, "y")
            }
            Op::Pooler => {
                let ops = ["h", "weight", "bias"]
                    .iter()
                    .zip(ins)
                    .map(|(n, &v)| operand(n, v))
                    .collect();
                (StepKind::Glue(Glue::Pooler), ops, "y")
            }
            op => {
                return Err(LowerError::NoKernel {
                    node: node.name.clone(),
                    op: op.kind(),
                })
            }
        };
        if let StepKind::Kernel(p) = &kind {
            p.check().map_err(|source| LowerError::Problem {
                node: node.name.clone(),
                bucket,
                source,
            })?;
        }
        operands.push(operand(written, node.output));
        steps.push(Step {
            node: node.name.clone(),
            kind,
            operands,
            output: node.output,
            scalars,
            attention_store,
        });
    }
    Ok(steps)
}
