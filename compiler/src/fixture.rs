//! A tiny random BERT checkpoint as Hugging Face saves one (`config.json` +
//! `model.safetensors`), for tests and for trying the compiler without downloading a model.
//! The knobs break it on purpose (a dropped or misshapen tensor, a wrapping prefix) so tests
//! can check the importer's errors.

use crate::import::config::BertConfig;
use crate::import::safetensors;
use crate::import::{Activation, CONFIG_FILE, WEIGHTS_FILE};
use std::collections::BTreeMap;
use std::path::Path;
use tessera_dsl::DType;
use tessera_library::host::{HostTensor, Rng};

/// What to write.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub config: BertConfig,
    /// Dtype of the stored tensors.
    pub dtype: DType,
    /// Prefix every name (`bert.` as `BertForMaskedLM` does) and add a `cls.` head.
    pub wrapped: bool,
    pub pooler: bool,
    /// Leave this tensor out (its `BertModel` name).
    pub drop: Option<String>,
    /// Store this tensor (its `BertModel` name) with this shape instead.
    pub reshape: Option<(String, Vec<u64>)>,
    pub seed: u64,
}

impl Fixture {
    /// 2 layers, hidden 128, 2 heads of 64, FFN 256, vocab 100, 64 positions, gelu, with a pooler.
    pub fn tiny() -> Fixture {
        Fixture {
            config: BertConfig {
                layers: 2,
                hidden: 128,
                heads: 2,
                head_dim: 64,
                intermediate: 256,
                activation: Activation::Gelu,
                layer_norm_eps: 1e-12,
                vocab: 100,
                max_positions: 64,
                token_types: 2,
            },
            dtype: DType::F32,
            wrapped: false,
            pooler: true,
            drop: None,
            reshape: None,
            seed: 1,
        }
    }

    /// Every tensor of the `BertModel` with this geometry: (name, shape).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<u64>)> {
        let c = &self.config;
        let (h, i) = (c.hidden, c.intermediate);
        let mut t = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![c.vocab, h],
            ),
            (
                "embeddings.position_embeddings.weight".into(),
                vec![c.max_positions, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".into(),
                vec![c.token_types, h],
            ),
            ("embeddings.LayerNorm.weight".into(), vec![h]),
            ("embeddings.LayerNorm.bias".into(), vec![h]),
        ];
        for l in 0..c.layers {
            let p = format!("encoder.layer.{l}.");
            for part in ["query", "key", "value"] {
                t.push((format!("{p}attention.self.{part}.weight"), vec![h, h]));
                t.push((format!("{p}attention.self.{part}.bias"), vec![h]));
            }
            t.push((format!("{p}attention.output.dense.weight"), vec![h, h]));
            t.push((format!("{p}attention.output.dense.bias"), vec![h]));
            t.push((format!("{p}attention.output.LayerNorm.weight"), vec![h]));
            t.push((format!("{p}attention.output.LayerNorm.bias"), vec![h]));
            t.push((format!("{p}intermediate.dense.weight"), vec![i, h]));
            t.push((format!("{p}intermediate.dense.bias"), vec![i]));
            t.push((format!("{p}output.dense.weight"), vec![h, i]));
            t.push((format!("{p}output.dense.bias"), vec![h]));
            t.push((format!("{p}output.LayerNorm.weight"), vec![h]));
            t.push((format!("{p}output.LayerNorm.bias"), vec![h]));
        }
        if self.pooler {
            t.push(("pooler.dense.weight".into(), vec![h, h]));
            t.push(("pooler.dense.bias".into(), vec![h]));
        }
        t
    }

    /// Write `config.json` and `model.safetensors` into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(CONFIG_FILE), self.config.to_json().to_string())?;
        let mut rng = Rng::new(self.seed);
        let mut tensors = BTreeMap::new();
        let mut shapes = BTreeMap::new();
        let prefix = if self.wrapped { "bert." } else { "" };
        let mut all = self.tensor_shapes();
        if self.wrapped {
            let h = self.config.hidden;
            all.push(("cls.predictions.transform.dense.weight".into(), vec![h, h]));
        }
        for (name, mut shape) in all {
            if self.drop.as_deref() == Some(name.as_str()) {
                continue;
            }
            if let Some((_, s)) = self.reshape.as_ref().filter(|(n, _)| *n == name) {
                shape = s.clone();
            }
            let len = shape.iter().product::<u64>() as usize;
            let stored = if name.starts_with("cls.") {
                name
            } else {
                format!("{prefix}{name}")
            };
            let t = HostTensor::random(self.dtype, len, &mut rng);
            // scale like an initialised model so activations stay in range
            let values = t.values.iter().map(|v| v * 0.05).collect();
            tensors.insert(
                stored.clone(),
                HostTensor {
                    dtype: self.dtype,
                    values,
                },
            );
            shapes.insert(stored, shape);
        }
        std::fs::write(
            dir.join(WEIGHTS_FILE),
            safetensors::to_bytes(&tensors, &shapes),
        )
    }
}
