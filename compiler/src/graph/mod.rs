//! The op-level graph IR: a plain arena of values and nodes. Node order is the execution order
//! (always topological); passes rewrite the node list and redirect uses, values they orphan
//! simply stop being referenced.
//!
//! Shapes are over symbolic `Batch`, `Seq` and `Lens` dimensions, bound per shape bucket at
//! lowering ([`Dim::bind`]: a packed bucket's token-major values are `[1, tokens, ..]`). The
//! graph knows nothing of kernels, devices or files.

mod dump;
mod op;

pub use op::{AttentionQkv, AttentionStore, LinearStore, Op};

use crate::bucket::Bucket;
use crate::weights::WeightId;
use serde::{Deserialize, Serialize};
use tessera_dsl::DType;

/// A value in [`Graph::values`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueId(pub usize);

/// One dimension of a value's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Dim {
    Batch,
    Seq,
    /// One i32 per sequence: its length in a padded bucket; in a packed bucket the sequence
    /// offsets, one more (`cu_seqlens`).
    Lens,
    Fixed(u64),
}

impl Dim {
    /// The size in bucket `b`. A packed bucket binds `Batch` to 1 and `Seq` to its token
    /// capacity, so a `[batch, seq, hidden]` activation holds the packed tokens as rows.
    pub fn bind(self, b: &Bucket) -> u64 {
        match (self, b.packed_tokens) {
            (Dim::Batch, None) => b.batch,
            (Dim::Batch, Some(_)) => 1,
            (Dim::Seq, None) => b.seq,
            (Dim::Seq, Some(t)) => t,
            (Dim::Lens, None) => b.batch,
            (Dim::Lens, Some(_)) => b.batch + 1,
            (Dim::Fixed(n), _) => n,
        }
    }
}

/// A value's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Elem {
    Float(DType),
    I32,
}

impl Elem {
    pub fn bytes(self) -> u64 {
        match self {
            Elem::Float(d) => u64::from(d.size_bytes()),
            Elem::I32 => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Elem::Float(d) => d.name(),
            Elem::I32 => "i32",
        }
    }
}

/// The model inputs, each a value the caller fills before a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// Token ids, `[batch, seq]` i32 (padded positions hold any valid id).
    InputIds,
    /// Segment ids, `[batch, seq]` i32.
    TokenTypeIds,
    /// The attention mask as per-sequence lengths, `[batch]` i32 (a row of HF's 0/1
    /// `attention_mask` is `len` ones then zeros): attention's key-padding mask. A packed
    /// bucket holds the `batch + 1` sequence offsets instead ([`Dim::Lens`]).
    SeqLens,
    /// Each token's position, `[batch, seq]` i32 (`0..len` along a sequence).
    PositionIds,
}

/// The model outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// `[batch, seq, hidden]`.
    LastHiddenState,
    /// `[batch, hidden]`: `tanh(dense(h[:, 0]))`.
    PooledOutput,
}

/// Where a value's contents come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ValueKind {
    Input(InputKind),
    Weight(WeightId),
    /// Computed by a node.
    Activation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Value {
    pub name: String,
    pub shape: Vec<Dim>,
    pub elem: Elem,
    pub kind: ValueKind,
}

impl Value {
    /// Bytes in bucket `b`.
    pub fn bytes(&self, b: &Bucket) -> u64 {
        self.shape.iter().map(|d| d.bind(b)).product::<u64>() * self.elem.bytes()
    }
}

/// One operation: reads `inputs`, writes `output`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    pub values: Vec<Value>,
    pub nodes: Vec<Node>,
    pub outputs: Vec<(OutputKind, ValueId)>,
}

/// A graph that breaks an invariant (a pass bug, never bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("graph invariant broken at node `{node}`: {what}")]
pub struct GraphError {
    pub node: String,
    pub what: String,
}

impl Graph {
    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0]
    }

    pub fn add_value(
        &mut self,
        name: impl Into<String>,
        shape: Vec<Dim>,
        elem: Elem,
        kind: ValueKind,
    ) -> ValueId {
        self.values.push(Value {
            name: name.into(),
            shape,
            elem,
            kind,
        });
        ValueId(self.values.len() - 1)
    }

    /// Append a node writing a fresh activation of `shape` and `elem`.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        shape: Vec<Dim>,
        elem: Elem,
    ) -> ValueId {
        let name = name.into();
        let output = self.add_value(name.clone(), shape, elem, ValueKind::Activation);
        self.nodes.push(Node {
            name,
            op,
            inputs,
            output,
        });
        output
    }

    /// The index of the node writing `v`.
    pub fn producer(&self, v: ValueId) -> Option<usize> {
        self.nodes.iter().position(|n| n.output == v)
    }

    /// Indices of the nodes reading `v` (a node reading it twice is listed once).
    pub fn consumers(&self, v: ValueId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].inputs.contains(&v))
            .collect()
    }

    pub fn is_output(&self, v: ValueId) -> bool {
        self.outputs.iter().any(|&(_, o)| o == v)
    }

    /// `v` feeds exactly one node and is no graph output: a producer may fuse into it.
    pub fn single_use(&self, v: ValueId) -> Option<usize> {
        let c = self.consumers(v);
        (c.len() == 1 && !self.is_output(v)).then(|| c[0])
    }

    /// Make every reader of `old` (and the outputs) read `new` instead.
    pub fn replace_uses(&mut self, old: ValueId, new: ValueId) {
        for n in &mut self.nodes {
            for i in &mut n.inputs {
                if *i == old {
                    *i = new;
                }
            }
        }
        for (_, o) in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Drop the nodes whose indices are in `dead`.
    pub fn remove_nodes(&mut self, dead: &[usize]) {
        let mut i = 0;
        self.nodes.retain(|_| {
            let keep = !dead.contains(&i);
            i += 1;
            keep
        });
    }

    /// Nodes of one op kind (by [`Op::kind`] name), for tests and reports.
    pub fn count(&self, kind: &str) -> usize {
        self.nodes.iter().filter(|n| n.op.kind() == kind).count()
    }

    /// Every node reads as many operands as its op takes, each defined before it is read, and
    /// every value is written once.
    pub fn check(&self) -> Result<(), GraphError> {
        let mut defined = vec![false; self.values.len()];
        for (i, v) in self.values.iter().enumerate() {
            defined[i] = !matches!(v.kind, ValueKind::Activation);
        }
        for n in &self.nodes {
            let err = |what: String| GraphError {
                node: n.name.clone(),
                what,
            };
            if n.inputs.len() != n.op.arity() {
                return Err(err(format!(
                    "{} takes {} operands, the node has {}",
                    n.op.kind(),
                    n.op.arity(),
                    n.inputs.len()
                )));
            }
            for &i in &n.inputs {
                if !defined.get(i.0).copied().unwrap_or(false) {
                    return Err(err(format!(
                        "reads `{}` before it is written",
                        self.value(i).name
                    )));
                }
            }
            if defined[n.output.0] {
                return Err(err(format!("writes `{}` twice", self.value(n.output).name)));
            }
            defined[n.output.0] = true;
        }
        for &(k, o) in &self.outputs {
            if !defined[o.0] {
                return Err(GraphError {
                    node: format!("{k:?}"),
                    what: "output never written".into(),
                });
            }
        }
        Ok(())
    }
}
