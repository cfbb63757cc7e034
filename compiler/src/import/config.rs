//! A Hugging Face BERT `config.json`: the geometry the importer builds a graph for, checked
//! once here (every later stage trusts it).

use super::ImportError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The model types the importer understands.
pub const SUPPORTED_MODEL_TYPES: [&str; 1] = ["bert"];

/// The activation between the two FFN GEMMs (`hidden_act`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `gelu`: exact erf GELU.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: the tanh approximation.
    GeluTanh,
    Relu,
}

impl Activation {
    pub const SUPPORTED: &'static str = "gelu, gelu_new, gelu_pytorch_tanh, relu";

    fn parse(name: &str) -> Option<Activation> {
        match name {
            "gelu" => Some(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "relu" => Some(Activation::Relu),
            _ => None,
        }
    }
}

/// The geometry of a BERT encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub layers: u64,
    pub hidden: u64,
    pub heads: u64,
    pub head_dim: u64,
    pub intermediate: u64,
    pub activation: Activation,
    pub layer_norm_eps: f64,
    pub vocab: u64,
    pub max_positions: u64,
    pub token_types: u64,
}

/// The fields of `config.json` we read (others are ignored).
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    hidden_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    intermediate_size: Option<u64>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    vocab_size: Option<u64>,
    max_position_embeddings: Option<u64>,
    type_vocab_size: Option<u64>,
    position_embedding_type: Option<String>,
}

impl BertConfig {
    pub fn read(path: &Path) -> Result<BertConfig, ImportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        BertConfig::parse(&text)
    }

    pub fn parse(text: &str) -> Result<BertConfig, ImportError> {
        let raw: RawConfig = serde_json::from_str(text)
            .map_err(|e| ImportError::Config(format!("not a valid config.json: {e}")))?;
        let supported = SUPPORTED_MODEL_TYPES.join(", ");
        match raw.model_type.as_deref() {
            Some(t) if SUPPORTED_MODEL_TYPES.contains(&t) => {}
            found => {
                return Err(ImportError::UnsupportedModel {
                    found: found.unwrap_or("(none)").to_string(),
                    supported,
                })
            }
        }
        if let Some(p) = raw.position_embedding_type.as_deref() {
            if p != "absolute" {
                return Err(ImportError::Config(format!(
                    "position_embedding_type `{p}` is not supported; only `absolute`"
                )));
            }
        }
        let need = |v: Option<u64>, name: &str| -> Result<u64, ImportError> {
            match v {
                Some(n) if n > 0 => Ok(n),
                Some(_) => Err(ImportError::Config(format!("`{name}` must be positive"))),
                None => Err(ImportError::Config(format!("`{name}` is missing"))),
            }
        };
        let hidden = need(raw.hidden_size, "hidden_size")?;
        let heads = need(raw.num_attention_heads, "num_attention_heads")?;
        if hidden % heads != 0 {
            return Err(ImportError::Config(format!(
                "hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
            )));
        }
        let head_dim = hidden / heads;
        if !tessera_dsl::HEAD_DIMS.contains(&head_dim) {
            return Err(ImportError::Config(format!(
                "head size {head_dim} (hidden_size {hidden} / {heads} heads) is not supported; use {}",
                tessera_dsl::head_dims_text()
            )));
        }
        let act_name = raw.hidden_act.unwrap_or_else(|| "gelu".into());
        let activation =
            Activation::parse(&act_name).ok_or_else(|| ImportError::UnsupportedActivation {
                found: act_name.clone(),
                supported: Activation::SUPPORTED,
            })?;
        let layer_norm_eps = raw.layer_norm_eps.unwrap_or(1e-12);
        if !(layer_norm_eps > 0.0 && layer_norm_eps < 1.0) {
            return Err(ImportError::Config(format!(
                "layer_norm_eps {layer_norm_eps} must be in (0, 1)"
            )));
        }
        Ok(BertConfig {
            layers: need(raw.num_hidden_layers, "num_hidden_layers")?,
            hidden,
            heads,
            head_dim,
            intermediate: need(raw.intermediate_size, "intermediate_size")?,
            activation,
            layer_norm_eps,
            vocab: need(raw.vocab_size, "vocab_size")?,
            max_positions: need(
                raw.max_position_embeddings.or(Some(512)),
                "max_position_embeddings",
            )?,
            token_types: need(raw.type_vocab_size.or(Some(2)), "type_vocab_size")?,
        })
    }

    /// The config.json that describes this geometry (what Hugging Face writes, minus extras).
    pub fn to_json(&self) -> serde_json::Value {
        let act = match self.activation {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_new",
            Activation::Relu => "relu",
        };
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "intermediate_size": self.intermediate,
            "hidden_act": act,
            "layer_norm_eps": self.layer_norm_eps,
            "vocab_size": self.vocab,
            "max_position_embeddings": self.max_positions,
            "type_vocab_size": self.token_types,
            "position_embedding_type": "absolute",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"{"model_type":"bert","hidden_size":768,"num_hidden_layers":12,
        "num_attention_heads":12,"intermediate_size":3072,"hidden_act":"gelu",
        "layer_norm_eps":1e-12,"vocab_size":30522,"max_position_embeddings":512,"type_vocab_size":2}"#;

    #[test]
    fn reads_bert_base() {
        let c = BertConfig::parse(BASE).unwrap();
        assert_eq!((c.layers, c.hidden, c.heads, c.head_dim), (12, 768, 12, 64));
        assert_eq!(c.activation, Activation::Gelu);
        assert_eq!(BertConfig::parse(&c.to_json().to_string()).unwrap(), c);
    }

    #[test]
    fn unsupported_inputs_name_what_is_supported() {
        let gpt = BASE.replace("\"bert\"", "\"gpt2\"");
        let e = BertConfig::parse(&gpt).unwrap_err().to_string();
        assert!(e.contains("`gpt2`") && e.contains("bert"), "{e}");
        let swish = BASE.replace("\"gelu\"", "\"swish\"");
        let e = BertConfig::parse(&swish).unwrap_err().to_string();
        assert!(e.contains("`swish`") && e.contains("gelu_new"), "{e}");
        let odd = BASE.replace("\"num_attention_heads\":12", "\"num_attention_heads\":8");
        let e = BertConfig::parse(&odd).unwrap_err().to_string();
        assert!(e.contains("head size 96"), "{e}");
        let missing = BASE.replace("\"intermediate_size\":3072,", "");
        let e = BertConfig::parse(&missing).unwrap_err().to_string();
        assert!(e.contains("`intermediate_size` is missing"), "{e}");
    }
}
