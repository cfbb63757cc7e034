//! Model import: a Hugging Face model directory (`config.json` + `model.safetensors`) to a
//! [`Graph`] and a [`WeightStore`]. BERT is the only family so far ([`bert`]); the
//! safetensors reader is our own ([`safetensors`]).
//!
//! Import checks everything it reads (the config's geometry, every tensor's presence, dtype and
//! shape) and names what is wrong; later stages trust its output.

pub mod bert;
pub mod config;
pub mod safetensors;

pub use config::{Activation, BertConfig};

use crate::graph::Graph;
use crate::weights::WeightStore;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tessera_dsl::DType;

/// Why a model directory cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("config.json: unsupported model_type `{found}`; supported: {supported}")]
    UnsupportedModel { found: String, supported: String },
    #[error("config.json: unsupported hidden_act `{found}`; supported: {supported}")]
    UnsupportedActivation {
        found: String,
        supported: &'static str,
    },
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafetensorsError),
    #[error("{file}: tensor `{name}` is missing")]
    MissingTensor { file: PathBuf, name: String },
    #[error("{file}: tensor `{name}` has shape {found:?}, expected {expected:?}")]
    MisshapenTensor {
        file: PathBuf,
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("{file}: tensor `{name}` has dtype {found}; supported: F32, F16, BF16")]
    TensorDType {
        file: PathBuf,
        name: String,
        found: String,
    },
}

/// Where the model came from: paths and content hashes (the plan records them).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Source {
    pub dir: String,
    pub config_sha256: String,
    pub weights_sha256: String,
}

/// An imported model.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: BertConfig,
    pub source: Source,
    pub graph: Graph,
    pub weights: WeightStore,
}

/// The two files a model directory must hold.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Import the BERT model in `dir`, converting its weights to `dtype` (f16 or bf16).
pub fn import(dir: &Path, dtype: DType) -> Result<Model, ImportError> {
    let config_path = dir.join(CONFIG_FILE);
    let weights_path = dir.join(WEIGHTS_FILE);
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| ImportError::Io {
            path: p.to_path_buf(),
            source,
        })
    };
    let config_bytes = read(&config_path)?;
    let config = BertConfig::parse(&String::from_utf8_lossy(&config_bytes))?;
    let weight_bytes = read(&weights_path)?;
    let source = Source {
        dir: dir.display().to_string(),
        config_sha256: sha256_hex(&config_bytes),
        weights_sha256: sha256_hex(&weight_bytes),
    };
    let file = safetensors::SafetensorsFile::parse(&weights_path, weight_bytes)?;
    let (graph, weights) = bert::build(&config, &file, dtype)?;
    Ok(Model {
        config,
        source,
        graph,
        weights,
    })
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
