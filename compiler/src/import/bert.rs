//! The BERT recipe: Hugging Face `BertModel` tensor names to an op-level graph that mirrors the
//! PyTorch module (separate Q, K, V projections, bias adds, head reshapes, dropout, residual
//! adds, layernorms): the passes, not the importer, do the fusing.
//!
//! Accepted checkpoints: a bare `BertModel`, or one that wraps it under a `bert.` prefix
//! (`BertForMaskedLM`, `BertForSequenceClassification`, ...); heads (`cls.*`, `classifier.*`),
//! `position_ids` buffers and other extras are ignored. Old checkpoints' layernorm
//! `gamma`/`beta` names are accepted for `weight`/`bias`. The pooler is optional.

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

    fn has(&self, name: &str) -> bool {
        self.stored_name(name).is_some()
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
    let (h, i) = (c.hidden, c.intermediate);
    let act = Elem::Float(dtype);
    let tokens = |n: u64| vec![Dim::Batch, Dim::Seq, Dim::Fixed(n)];
    let heads_shape = vec![
        Dim::Batch,
        Dim::Fixed(c.heads),
        Dim::Seq,
        Dim::Fixed(c.head_dim),
    ];

    let ids = w.graph.add_value(
        "input_ids",
        vec![Dim::Batch, Dim::Seq],
        Elem::I32,
        ValueKind::Input(InputKind::InputIds),
    );
    let types = w.graph.add_value(
        "token_type_ids",
        vec![Dim::Batch, Dim::Seq],
        Elem::I32,
        ValueKind::Input(InputKind::TokenTypeIds),
    );
    let lens = w.graph.add_value(
        "seq_lens",
        vec![Dim::Batch],
        Elem::I32,
        ValueKind::Input(InputKind::SeqLens),
    );

    let emb_inputs = vec![
        ids,
        types,
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
    let emb = w.graph.add_node(
        "embeddings",
        Op::Embedding {
            eps: c.layer_norm_eps,
        },
        emb_inputs,
        tokens(h),
        act,
    );
    let mut x = w.graph.add_node(
        "embeddings.dropout",
        Op::Dropout { p: 0.1 },
        vec![emb],
        tokens(h),
        act,
    );

    for l in 0..c.layers {
        let p = format!("encoder.layer.{l}.");
        let n = |s: &str| format!("layer{l}.{s}");
        let head = |w: &mut Loader, part: &str| -> Result<ValueId, ImportError> {
            let weight = w.weight(&format!("{p}attention.self.{part}.weight"), &[h, h])?;
            let bias = w.weight(&format!("{p}attention.self.{part}.bias"), &[h])?;
            let y = w.graph.add_node(
                n(part),
                Op::Linear {
                    epilogue: vec![],
                    store: LinearStore::Rows,
                },
                vec![x, weight],
                tokens(h),
                act,
            );
            let y = w.graph.add_node(
                n(&format!("{part}.bias")),
                Op::BiasAdd,
                vec![y, bias],
                tokens(h),
                act,
            );
            let split = Op::SplitHeads {
                heads: c.heads,
                head_dim: c.head_dim,
                parts: 1,
            };
            Ok(w.graph.add_node(
                n(&format!("{part}.heads")),
                split,
                vec![y],
                heads_shape.clone(),
                act,
            ))
        };
        let q = head(&mut w, "query")?;
        let k = head(&mut w, "key")?;
        let v = head(&mut w, "value")?;
        let attention = Op::Attention {
            heads: c.heads,
            head_dim: c.head_dim,
            scale: 1.0 / (c.head_dim as f64).sqrt(),
            qkv: AttentionQkv::Separate,
            store: AttentionStore::Heads,
        };
        let ctx = w.graph.add_node(
            n("attention"),
            attention,
            vec![q, k, v, lens],
            heads_shape.clone(),
            act,
        );
        let merge = Op::MergeHeads {
            heads: c.heads,
            head_dim: c.head_dim,
        };
        let ctx = w
            .graph
            .add_node(n("attention.merge"), merge, vec![ctx], tokens(h), act);
        let x1 = sublayer(
            &mut w,
            &format!("{p}attention.output."),
            &n("attention.output"),
            ctx,
            x,
            [h, h],
            c.layer_norm_eps,
        )?;

        let up_w = w.weight(&format!("{p}intermediate.dense.weight"), &[i, h])?;
        let up_b = w.weight(&format!("{p}intermediate.dense.bias"), &[i])?;
        let up = w.graph.add_node(
            n("ffn_up"),
            Op::Linear {
                epilogue: vec![],
                store: LinearStore::Rows,
            },
            vec![x1, up_w],
            tokens(i),
            act,
        );
        let up = w.graph.add_node(
            n("ffn_up.bias"),
            Op::BiasAdd,
            vec![up, up_b],
            tokens(i),
            act,
        );
        let up = w.graph.add_node(
            n("ffn_up.act"),
            Op::Activation(c.activation),
            vec![up],
            tokens(i),
            act,
        );
        x = sublayer(
            &mut w,
            &format!("{p}output."),
            &n("ffn_down"),
            up,
            x1,
            [h, i],
            c.layer_norm_eps,
        )?;
    }
    w.graph.outputs.push((OutputKind::LastHiddenState, x));

    if w.has("pooler.dense.weight") || w.has("pooler.dense.bias") {
        let pw = w.weight("pooler.dense.weight", &[h, h])?;
        let pb = w.weight("pooler.dense.bias", &[h])?;
        let pooled = w.graph.add_node(
            "pooler",
            Op::Pooler,
            vec![x, pw, pb],
            vec![Dim::Batch, Dim::Fixed(h)],
            act,
        );
        w.graph.outputs.push((OutputKind::PooledOutput, pooled));
    }
    Ok((graph, weights))
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
    let act = Elem::Float(w.weights.dtype);
    let out = vec![Dim::Batch, Dim::Seq, Dim::Fixed(shape[0])];
    let weight = w.weight(&format!("{prefix}dense.weight"), &shape)?;
    let bias = w.weight(&format!("{prefix}dense.bias"), &shape[..1])?;
    let gamma = w.weight(&format!("{prefix}LayerNorm.weight"), &shape[..1])?;
    let beta = w.weight(&format!("{prefix}LayerNorm.bias"), &shape[..1])?;
    let y = w.graph.add_node(
        name,
        Op::Linear {
            epilogue: vec![],
            store: LinearStore::Rows,
        },
        vec![input, weight],
        out.clone(),
        act,
    );
    let y = w.graph.add_node(
        format!("{name}.bias"),
        Op::BiasAdd,
        vec![y, bias],
        out.clone(),
        act,
    );
    let y = w.graph.add_node(
        format!("{name}.dropout"),
        Op::Dropout { p: 0.1 },
        vec![y],
        out.clone(),
        act,
    );
    let y = w.graph.add_node(
        format!("{name}.residual"),
        Op::Add,
        vec![y, residual],
        out.clone(),
        act,
    );
    let ln = Op::LayerNorm {
        eps,
        residual: false,
    };
    Ok(w.graph.add_node(
        format!("{name}.layernorm"),
        ln,
        vec![y, gamma, beta],
        out,
        act,
    ))
}
