//! The BERT recipe: Hugging Face `BertModel` tensor names to an op-level graph that mirrors the
//! PyTorch module (separate Q, K, V projections, bias adds, head reshapes, dropout, residual
//! adds, layernorms): the passes, not the importer, do the fusing.
//!
//! Accepted checkpoints: a bare `BertModel`, or one that wraps it under a `bert.` prefix
//! (`BertForMaskedLM`, `BertForSequenceClassification`, ...); heads (`cls.*`, `classifier.*`),
//! `position_ids` buffers and other extras are ignored. Old checkpoints' layernorm
//! `gamma`/`beta` names are accepted for `weight`/`bias`. The pooler is optional and not compiled
//! (plans return the last hidden state).

use super::config::BertConfig;
use super::safetensors::{FileDType, SafetensorsFile};
use super::ImportError;
use crate::graph::{
    AttentionQkv, AttentionStore, Dim, Elem, Graph, InputKind, LinearStore, Op, OutputKind,
    ValueId, ValueKind,
};
use crate::weights::WeightStore;
use tessera_dsl::DType;

/// The prefix a wrapping checkpoint puts before the `BertModel` names.
const WRAPPED_PREFIX: &str = "bert.";

/// Reads named tensors out of the file, checking dtype and shape, into the weight store.
struct Loader<'a> {
    file: &'a SafetensorsFile,
    prefix: &'static str,
    graph: &'a mut Graph,
    weights: &'a mut WeightStore,
}

impl Loader<'_> {
    /// The stored name for `name`: with the wrapper prefix, and the layernorm aliases.
    fn stored_name(&self, name: &str) -> Option<String> {
        let mut candidates = vec![format!("{}{name}", self.prefix)];
        if name.contains("LayerNorm.") {
            let alias = name
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            candidates.push(format!("{}{alias}", self.prefix));
        }
        candidates
            .into_iter()
            .find(|c| self.file.tensors.contains_key(c))
    }

    /// Load `name` (as `BertModel` calls it), which must have `shape`, as a graph value.
    fn weight(&mut self, name: &str, shape: &[u64]) -> Result<ValueId, ImportError> {
        let file = self.file.path.clone();
        let stored = self
            .stored_name(name)
            .ok_or_else(|| ImportError::MissingTensor {
                file: file.clone(),
                name: format!("{}{name}", self.prefix),
            })?;
        let info = &self.file.tensors[&stored];
        if info.shape != shape {
            return Err(ImportError::MisshapenTensor {
                file,
                name: stored,
                found: info.shape.clone(),
                expected: shape.to_vec(),
            });
        }
        let tensor = match info.dtype {
            FileDType::Float(_) => self.file.decode(info),
            FileDType::Other => None,
        }
        .ok_or_else(|| ImportError::TensorDType {
            file,
            name: stored.clone(),
            found: info.dtype_name.clone(),
        })?;
        let id = self.weights.add(name, shape.to_vec(), &tensor.values);
        let dims = shape.iter().map(|&d| Dim::Fixed(d)).collect();
        Ok(self.graph.add_value(
            name,
            dims,
            Elem::Float(self.weights.dtype),
            ValueKind::Weight(id),
        ))
    }
}

fn tokens(n: u64) -> Vec<Dim> {
    vec![Dim::Batch, Dim::Seq, Dim::Fixed(n)]
}

impl Loader<'_> {
    /// A node writing an activation in the weights' dtype.
    fn node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: Vec<ValueId>,
        shape: Vec<Dim>,
    ) -> ValueId {
        let elem = Elem::Float(self.weights.dtype);
        self.graph.add_node(name, op, inputs, shape, elem)
    }

    fn input(&mut self, kind: InputKind, name: &str, shape: Vec<Dim>) -> ValueId {
        self.graph
            .add_value(name, shape, Elem::I32, ValueKind::Input(kind))
    }

    /// `x · Wᵀ + bias` as PyTorch's `nn.Linear` computes it (two nodes), W `[out, in]` and the
    /// bias read from `{prefix}weight` and `{prefix}bias`.
    fn dense(
        &mut self,
        name: &str,
        prefix: &str,
        x: ValueId,
        shape: [u64; 2],
    ) -> Result<ValueId, ImportError> {
        let weight = self.weight(&format!("{prefix}weight"), &shape)?;
        let bias = self.weight(&format!("{prefix}bias"), &shape[..1])?;
        let plain = Op::Linear {
            epilogue: vec![],
            store: LinearStore::Rows,
        };
        let y = self.node(name, plain, vec![x, weight], tokens(shape[0]));
        Ok(self.node(
            format!("{name}.bias"),
            Op::BiasAdd,
            vec![y, bias],
            tokens(shape[0]),
        ))
    }
}

/// Build the graph and weights of a `BertModel` with geometry `c` from `file`.
pub fn build(
    c: &BertConfig,
    file: &SafetensorsFile,
    dtype: DType,
) -> Result<(Graph, WeightStore), ImportError> {
    let mut graph = Graph::default();
    let mut weights = WeightStore::new(dtype);
    let prefix = if file.tensors.keys().any(|k| k.starts_with(WRAPPED_PREFIX)) {
        WRAPPED_PREFIX
    } else {
        ""
    };
    let mut w = Loader {
        file,
        prefix,
        graph: &mut graph,
        weights: &mut weights,
    };
    let mut x = embeddings(&mut w, c)?;
    let lens = w.input(InputKind::SeqLens, "seq_lens", vec![Dim::Lens]);
    for l in 0..c.layers {
        x = encoder_layer(&mut w, c, l, x, lens)?;
    }
    w.graph.outputs.push((OutputKind::LastHiddenState, x));
    // The pooler (`pooler.dense`, tanh of the first token's projection) is recognised and
    // not compiled: there is no kernel for it yet, and a plan returns the last hidden state.
    Ok((graph, weights))
}

/// `BertEmbeddings`: the gather + sum + layernorm node (the inputs and the three tables), then
/// dropout.
fn embeddings(w: &mut Loader, c: &BertConfig) -> Result<ValueId, ImportError> {
    let h = c.hidden;
    let ids = w.input(InputKind::InputIds, "input_ids", vec![Dim::Batch, Dim::Seq]);
    let types = w.input(
        InputKind::TokenTypeIds,
        "token_type_ids",
        vec![Dim::Batch, Dim::Seq],
    );
    let positions = w.input(
        InputKind::PositionIds,
        "position_ids",
        vec![Dim::Batch, Dim::Seq],
    );
    let inputs = vec![
        ids,
        types,
        positions,
        w.weight("embeddings.word_embeddings.weight", &[c.vocab, h])?,
        w.weight(
            "embeddings.position_embeddings.weight",
            &[c.max_positions, h],
        )?,
        w.weight(
            "embeddings.token_type_embeddings.weight",
            &[c.token_types, h],
        )?,
        w.weight("embeddings.LayerNorm.weight", &[h])?,
        w.weight("embeddings.LayerNorm.bias", &[h])?,
    ];
    let emb = w.node(
        "embeddings",
        Op::Embedding {
            eps: c.layer_norm_eps,
        },
        inputs,
        tokens(h),
    );
    Ok(w.node(
        "embeddings.dropout",
        Op::Dropout { p: 0.1 },
        vec![emb],
        tokens(h),
    ))
}

/// `BertLayer` `l`: self-attention (Q, K, V projections, head split, attention, head merge),
/// its output sublayer, the FFN up projection with the activation, the FFN output sublayer.
fn encoder_layer(
    w: &mut Loader,
    c: &BertConfig,
    l: u64,
    x: ValueId,
    lens: ValueId,
) -> Result<ValueId, ImportError> {
    let (h, p) = (c.hidden, format!("encoder.layer.{l}."));
    let n = |s: &str| format!("layer{l}.{s}");
    let heads_shape = vec![
        Dim::Batch,
        Dim::Fixed(c.heads),
        Dim::Seq,
        Dim::Fixed(c.head_dim),
    ];
    let mut qkv = Vec::with_capacity(4);
    for part in ["query", "key", "value"] {
        let y = w.dense(&n(part), &format!("{p}attention.self.{part}."), x, [h, h])?;
        let split = Op::SplitHeads {
            heads: c.heads,
            head_dim: c.head_dim,
            parts: 1,
        };
        qkv.push(w.node(
            n(&format!("{part}.heads")),
            split,
            vec![y],
            heads_shape.clone(),
        ));
    }
    qkv.push(lens);
    let attention = Op::Attention {
        heads: c.heads,
        head_dim: c.head_dim,
        scale: 1.0 / (c.head_dim as f64).sqrt(),
        qkv: AttentionQkv::Separate,
        store: AttentionStore::Heads,
    };
    let ctx = w.node(n("attention"), attention, qkv, heads_shape);
    let merge = Op::MergeHeads {
        heads: c.heads,
        head_dim: c.head_dim,
    };
    let ctx = w.node(n("attention.merge"), merge, vec![ctx], tokens(h));
    let x1 = sublayer(
        w,
        &format!("{p}attention.output."),
        &n("attention.output"),
        ctx,
        x,
        [h, h],
        c.layer_norm_eps,
    )?;
    let i = c.intermediate;
    let up = w.dense(&n("ffn_up"), &format!("{p}intermediate.dense."), x1, [i, h])?;
    let up = w.node(
        n("ffn_up.act"),
        Op::Activation(c.activation),
        vec![up],
        tokens(i),
    );
    sublayer(
        w,
        &format!("{p}output."),
        &n("ffn_down"),
        up,
        x1,
        [h, i],
        c.layer_norm_eps,
    )
}

/// `LayerNorm(dropout(dense(input) + bias) + residual)`, BERT's `*Output` modules.
/// `shape` is the dense weight's `[out, in]`.
fn sublayer(
    w: &mut Loader,
    prefix: &str,
    name: &str,
    input: ValueId,
    residual: ValueId,
    shape: [u64; 2],
    eps: f64,
) -> Result<ValueId, ImportError> {
    let out = tokens(shape[0]);
    let y = w.dense(name, &format!("{prefix}dense."), input, shape)?;
    let gamma = w.weight(&format!("{prefix}LayerNorm.weight"), &shape[..1])?;
    let beta = w.weight(&format!("{prefix}LayerNorm.bias"), &shape[..1])?;
    let y = w.node(
        format!("{name}.dropout"),
        Op::Dropout { p: 0.1 },
        vec![y],
        out.clone(),
    );
    let y = w.node(
        format!("{name}.residual"),
        Op::Add,
        vec![y, residual],
        out.clone(),
    );
    let ln = Op::LayerNorm {
        eps,
        residual: false,
    };
    Ok(w.node(format!("{name}.layernorm"), ln, vec![y, gamma, beta], out))
}
