//! Lowering: the optimized graph, bound to one shape bucket, becomes a launch list of steps.
//! A step is a kernel problem (`tessera_dsl::Problem`: the embedding gathers + layernorm, GEMM
//! with its epilogue and store, attention with the key-padding mask and the output layout the
//! graph asks for (token-major where `absorb_layout` folded the head merge into it), layernorm
//! with the fused residual) or a glue step that has no template yet (the pooler), with its
//! operands named as the kernel's ABI names them and given as views: a graph value and a byte
//! offset in it.
//!
//! A packed bucket lowers the same graph over its token capacity: the embedding, every GEMM
//! and every layernorm run on `tokens` rows (a head store writes `[parts, tokens, heads,
//! head_dim]`, which is `thd` per part), and attention is the packed (`cu_seqlens`) kernel over
//! the bucket's sequences, tuned at [`Bucket::representative_lens`]; the kernel reads the real
//! offsets at run time, so one launch serves every batch the bucket admits.
//!
//! A node the passes left unfused (a lone bias add, say) has no kernel: that is an error
//! naming it, not a silent fallback.

use crate::bucket::Bucket;
use crate::graph::{AttentionQkv, AttentionStore, Dim, Graph, LinearStore, Node, Op, ValueId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_dsl::problem::ProblemError;
use tessera_dsl::{
    AttentionLayout, AttentionProblem, DType, EmbeddingProblem, EpilogueOp, GemmProblem,
    LayernormProblem, Layout, Mask, Packing, Problem, Store,
};

/// A step with no kernel template yet; an executor slots one in by this name. (The embedding
/// was one; it is the `embedding` template's kernel now.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Glue {
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
    /// Attention's output layout (`[b, h, s, d]` or token-major); `None` for other steps. The
    /// kernel problem carries the same layout (`AttentionProblem::layout`, from
    /// [`attention_layout`]); this copy names it in the graph's terms for readers of the plan.
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
    #[error("node `{node}`: a packed bucket needs attention to write token-major rows (the `absorb_layout` pass makes it so); this graph's attention writes [batch, heads, seq, head_dim]")]
    PackedHeads { node: String },
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

/// A step before its written operand is appended.
struct Lowered {
    kind: StepKind,
    operands: Vec<Operand>,
    /// The ABI name of the written operand.
    written: &'static str,
    scalars: BTreeMap<String, f64>,
    attention_store: Option<AttentionStore>,
}

impl Lowered {
    fn new(kind: StepKind, operands: Vec<Operand>, written: &'static str) -> Lowered {
        Lowered {
            kind,
            operands,
            written,
            scalars: BTreeMap::new(),
            attention_store: None,
        }
    }
}

/// The launch list of `graph` at `bucket`, activations in `dtype`.
pub fn lower(graph: &Graph, bucket: Bucket, dtype: DType) -> Result<Vec<Step>, LowerError> {
    let mut steps = Vec::with_capacity(graph.nodes.len());
    for node in &graph.nodes {
        let ins = &node.inputs;
        let named = |names: &[&str]| names.iter().zip(ins).map(|(n, &v)| operand(n, v)).collect();
        let mut step = match &node.op {
            Op::Linear { epilogue, store } => linear(graph, node, epilogue, *store, bucket, dtype)?,
            &Op::Attention {
                heads,
                head_dim,
                scale,
                qkv,
                store,
            } => {
                if bucket.is_packed() && store != AttentionStore::Tokens {
                    return Err(LowerError::PackedHeads {
                        node: node.name.clone(),
                    });
                }
                let mut step = attention(ins, heads, head_dim, qkv, store, bucket, dtype);
                step.scalars.insert("scale".into(), scale);
                step.attention_store = Some(store);
                step
            }
            &Op::LayerNorm { eps, residual } => {
                let mut l =
                    LayernormProblem::new(bucket.tokens(), fixed_last(graph, node, ins[0])?);
                l.dtype = dtype;
                l.residual = residual;
                let names: &[&str] = if residual {
                    &["x", "residual", "gamma", "beta"]
                } else {
                    &["x", "gamma", "beta"]
                };
                let mut step =
                    Lowered::new(StepKind::Kernel(Problem::Layernorm(l)), named(names), "y");
                step.scalars.insert("eps".into(), eps);
                step
            }
            &Op::Embedding { eps } => {
                let e = embedding(graph, node, bucket, dtype)?;
                let names = [
                    "input_ids",
                    "token_type_ids",
                    "position_ids",
                    "word",
                    "position",
                    "token_type",
                    "gamma",
                    "beta",
                ];
                let mut step =
                    Lowered::new(StepKind::Kernel(Problem::Embedding(e)), named(&names), "y");
                step.scalars.insert("eps".into(), eps);
                step
            }
            Op::Pooler => Lowered::new(
                StepKind::Glue(Glue::Pooler),
                named(&["h", "weight", "bias"]),
                "y",
            ),
            op => {
                return Err(LowerError::NoKernel {
                    node: node.name.clone(),
                    op: op.kind(),
                })
            }
        };
        if let StepKind::Kernel(p) = &step.kind {
            p.check().map_err(|source| LowerError::Problem {
                node: node.name.clone(),
                bucket,
                source,
            })?;
        }
        step.operands.push(operand(step.written, node.output));
        steps.push(Step {
            node: node.name.clone(),
            kind: step.kind,
            operands: step.operands,
            output: node.output,
            scalars: step.scalars,
            attention_store: step.attention_store,
        });
    }
    Ok(steps)
}

/// The embedding over the bucket's tokens (positions below its longest sequence), table
/// sizes from the word, position and token-type tables (`[rows, hidden]`).
fn embedding(
    graph: &Graph,
    node: &Node,
    bucket: Bucket,
    dtype: DType,
) -> Result<EmbeddingProblem, LowerError> {
    let rows = |i: usize| -> Result<u64, LowerError> {
        let v = node
            .inputs
            .get(i)
            .copied()
            .ok_or_else(|| LowerError::Shape {
                node: node.name.clone(),
                what: format!("operand {i} is missing"),
            })?;
        match graph.value(v).shape.as_slice() {
            [Dim::Fixed(n), Dim::Fixed(_)] => Ok(*n),
            other => Err(LowerError::Shape {
                node: node.name.clone(),
                what: format!("{other:?} of table `{}`", graph.value(v).name),
            }),
        }
    };
    let mut e = EmbeddingProblem::new(
        bucket.tokens(),
        fixed_last(graph, node, node.output)?,
        bucket.longest(),
    );
    e.vocab = rows(3)?;
    e.positions = rows(4)?;
    e.types = rows(5)?;
    e.dtype = dtype;
    Ok(e)
}

/// `x · Wᵀ` over the bucket's tokens, W `[n, k]` row-major (`rcr`), epilogue operands in chain
/// order after `a` and `b`.
fn linear(
    graph: &Graph,
    node: &Node,
    epilogue: &[EpilogueOp],
    store: LinearStore,
    bucket: Bucket,
    dtype: DType,
) -> Result<Lowered, LowerError> {
    let ins = &node.inputs;
    let k = fixed_last(graph, node, ins[0])?;
    let n = match graph.value(ins[1]).shape.first() {
        Some(Dim::Fixed(n)) => *n,
        _ => fixed_last(graph, node, node.output)?,
    };
    let mut g = GemmProblem::new(bucket.tokens(), n, k);
    g.input = dtype;
    g.output = dtype;
    g.layout_b = Layout::Col;
    g.epilogue = epilogue.to_vec();
    if let LinearStore::Heads { heads, head_dim } = store {
        // packed: every token is a sequence of one here, so each part is [tokens, heads, head_dim]
        g.store = Store::Heads {
            heads,
            head_dim,
            seq: if bucket.is_packed() { 1 } else { bucket.seq },
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
    Ok(Lowered::new(StepKind::Kernel(Problem::Gemm(g)), ops, "d"))
}

/// The kernel's output layout for a graph attention store.
pub fn attention_layout(store: AttentionStore) -> AttentionLayout {
    match store {
        AttentionStore::Heads => AttentionLayout::Bhsd,
        AttentionStore::Tokens => AttentionLayout::Bshd,
    }
}

/// Attention with the key-padding mask (`seq_lens`) writing O as `store` asks, or, in a packed
/// bucket, over the sequences `seq_lens` holds the offsets of (both `cu_seqlens` operands); a
/// packed QKV is three consecutive views.
fn attention(
    ins: &[ValueId],
    heads: u64,
    head_dim: u64,
    qkv: AttentionQkv,
    store: AttentionStore,
    bucket: Bucket,
    dtype: DType,
) -> Lowered {
    let mut a = AttentionProblem::new(bucket.batch, heads, bucket.longest(), head_dim);
    a.dtype = dtype;
    if bucket.is_packed() {
        a = a.with_packing(Packing::uniform_self(bucket.representative_lens()));
    } else {
        a.mask = Mask::Padding;
        a.layout = attention_layout(store);
    }
    let lens = |v: ValueId| -> Vec<Operand> {
        if bucket.is_packed() {
            vec![operand("cu_seqlens_q", v), operand("cu_seqlens_kv", v)]
        } else {
            vec![operand("kv_lens", v)]
        }
    };
    let ops = match qkv {
        AttentionQkv::Separate => [
            vec![
                operand("q", ins[0]),
                operand("k", ins[1]),
                operand("v", ins[2]),
            ],
            lens(ins[3]),
        ]
        .concat(),
        AttentionQkv::Packed => {
            let part = bucket.tokens() * heads * head_dim * u64::from(dtype.size_bytes());
            let view = |name: &str, i: u64| Operand {
                name: name.into(),
                value: ins[0],
                offset: i * part,
                bytes: Some(part),
            };
            [vec![view("q", 0), view("k", 1), view("v", 2)], lens(ins[1])].concat()
        }
    };
    Lowered::new(StepKind::Kernel(Problem::Attention(a)), ops, "o")
}
