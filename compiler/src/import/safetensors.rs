//! The safetensors format, read and written without a dependency: an 8-byte little-endian
//! header length, a JSON header (`name -> {dtype, shape, data_offsets}`, plus an optional
//! `__metadata__` map) and the raw little-endian data. Floating tensors of F32, F16 and BF16
//! are decoded; other dtypes (an `I64` `position_ids` buffer, say) are listed but not decoded.
//!
//! Every offset and size is checked against the file before any data is touched, so a
//! truncated or malformed file is an error that names the file and what is wrong.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tessera_dsl::DType;
use tessera_library::host::HostTensor;

/// Largest header we accept (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// A safetensors file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: truncated: {what}")]
    Truncated { path: PathBuf, what: String },
    #[error("{path}: malformed header: {what}")]
    Header { path: PathBuf, what: String },
}

/// A tensor's element type as the file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileDType {
    /// A floating type Tessera decodes.
    Float(DType),
    /// Anything else (`I64`, `U8`, ...): listed, never decoded.
    Other,
}

impl FileDType {
    fn parse(name: &str) -> (FileDType, u64) {
        match name {
            "F32" => (FileDType::Float(DType::F32), 4),
            "F16" => (FileDType::Float(DType::F16), 2),
            "BF16" => (FileDType::Float(DType::BF16), 2),
            "F64" | "I64" | "U64" => (FileDType::Other, 8),
            "I32" | "U32" => (FileDType::Other, 4),
            "I16" | "U16" => (FileDType::Other, 2),
            _ => (FileDType::Other, 1),
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub dtype: FileDType,
    /// The dtype's name as written in the file (`F32`, `I64`).
    pub dtype_name: String,
    pub shape: Vec<u64>,
    /// Byte range inside the data section.
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    pub fn elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// A whole safetensors file in memory, with a validated header.
#[derive(Debug)]
pub struct SafetensorsFile {
    pub path: PathBuf,
    pub tensors: BTreeMap<String, TensorInfo>,
    bytes: Vec<u8>,
    data_start: usize,
}

impl SafetensorsFile {
    pub fn open(path: &Path) -> Result<SafetensorsFile, SafetensorsError> {
        let bytes = std::fs::read(path).map_err(|source| SafetensorsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        SafetensorsFile::parse(path, bytes)
    }

    /// Validate the header of `bytes` (the whole file).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<SafetensorsFile, SafetensorsError> {
        let truncated = |what: String| SafetensorsError::Truncated {
            path: path.to_path_buf(),
            what,
        };
        let header_err = |what: String| SafetensorsError::Header {
            path: path.to_path_buf(),
            what,
        };
        let len_bytes: [u8; 8] =
            bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    truncated(format!(
                        "{} bytes, shorter than the 8-byte header length",
                        bytes.len()
                    ))
                })?;
        let header_len = u64::from_le_bytes(len_bytes);
        if header_len > MAX_HEADER {
            return Err(header_err(format!(
                "header length {header_len} is over the limit of {MAX_HEADER} bytes"
            )));
        }
        let file_len = bytes.len() as u64;
        let data_start = 8 + header_len;
        if data_start > file_len {
            return Err(truncated(format!(
                "the header needs {header_len} bytes, only {} follow the length",
                file_len - 8
            )));
        }
        let header: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes[8..data_start as usize])
                .map_err(|e| header_err(format!("not a JSON object: {e}")))?;
        let data_len = file_len - data_start;
        let mut tensors = BTreeMap::new();
        for (name, entry) in header {
            if name == "__metadata__" {
                continue;
            }
            let info =
                parse_entry(&entry).map_err(|what| header_err(format!("`{name}`: {what}")))?;
            if info.end > data_len {
                return Err(truncated(format!(
                    "tensor `{name}` ends at byte {} of the data, which has only {data_len} bytes",
                    info.end
                )));
            }
            tensors.insert(name, info);
        }
        Ok(SafetensorsFile {
            path: path.to_path_buf(),
            tensors,
            bytes,
            data_start: data_start as usize,
        })
    }

    /// The raw bytes of a tensor (bounds were checked when the header was read).
    pub fn raw(&self, info: &TensorInfo) -> &[u8] {
        let begin = self.data_start + info.begin as usize;
        let end = self.data_start + info.end as usize;
        &self.bytes[begin..end]
    }

    /// Decode a floating tensor to f32 values; `None` for a dtype Tessera does not decode.
    pub fn decode(&self, info: &TensorInfo) -> Option<HostTensor> {
        let FileDType::Float(dtype) = info.dtype else {
            return None;
        };
        HostTensor::from_bytes(dtype, self.raw(info)).ok()
    }
}

fn parse_entry(entry: &serde_json::Value) -> Result<TensorInfo, String> {
    let dtype_name = entry
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or("no `dtype` string")?
        .to_string();
    let shape: Vec<u64> = entry
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or("no `shape` array")?
        .iter()
        .map(|d| {
            d.as_u64()
                .ok_or("a shape entry is not a non-negative integer")
        })
        .collect::<Result<_, _>>()?;
    let offsets = entry
        .get("data_offsets")
        .and_then(|o| o.as_array())
        .filter(|o| o.len() == 2)
        .ok_or("no `data_offsets` pair")?;
    let begin = offsets[0]
        .as_u64()
        .ok_or("a data offset is not an integer")?;
    let end = offsets[1]
        .as_u64()
        .ok_or("a data offset is not an integer")?;
    let (dtype, size) = FileDType::parse(&dtype_name);
    let elements = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or("the shape overflows")?;
    let expected = elements.checked_mul(size).ok_or("the shape overflows")?;
    if end < begin || end - begin != expected {
        return Err(format!(
            "data_offsets [{begin}, {end}] hold {} bytes, shape {shape:?} of {dtype_name} needs {expected}",
            end.saturating_sub(begin)
        ));
    }
    Ok(TensorInfo {
        dtype,
        dtype_name,
        shape,
        begin,
        end,
    })
}

/// Serialize named tensors as a safetensors file (in name order, contiguous).
pub fn to_bytes(
    tensors: &BTreeMap<String, HostTensor>,
    shapes: &BTreeMap<String, Vec<u64>>,
) -> Vec<u8> {
    to_bytes_with_ints(tensors, shapes, &BTreeMap::new())
}

/// [`to_bytes`] plus one-dimensional I64 tensors (after the float ones).
pub fn to_bytes_with_ints(
    tensors: &BTreeMap<String, HostTensor>,
    shapes: &BTreeMap<String, Vec<u64>>,
    ints: &BTreeMap<String, Vec<i64>>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, t) in tensors {
        let bytes = t.to_bytes();
        let begin = data.len();
        data.extend_from_slice(&bytes);
        let dtype = match t.dtype {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
        };
        let shape = shapes
            .get(name)
            .cloned()
            .unwrap_or_else(|| vec![t.values.len() as u64]);
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    for (name, v) in ints {
        let begin = data.len();
        data.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "I64", "shape": [v.len()], "data_offsets": [begin, data.len()]}),
        );
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    // pad the header with spaces so the data starts 8-byte aligned, as the reference writer does
    while !(8 + text.len()).is_multiple_of(8) {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut tensors = BTreeMap::new();
        let mut shapes = BTreeMap::new();
        tensors.insert(
            "a".to_string(),
            HostTensor {
                dtype: DType::F32,
                values: vec![1.0, -2.0, 3.5, 0.25, 5.0, 6.0],
            },
        );
        shapes.insert("a".to_string(), vec![2, 3]);
        tensors.insert(
            "b".to_string(),
            HostTensor {
                dtype: DType::BF16,
                values: vec![0.5, 1.5],
            },
        );
        to_bytes(&tensors, &shapes)
    }

    #[test]
    fn round_trips_float_tensors() {
        let f = SafetensorsFile::parse(Path::new("x"), sample()).unwrap();
        let a = &f.tensors["a"];
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(f.decode(a).unwrap().values[2], 3.5);
        let b = &f.tensors["b"];
        assert_eq!(b.dtype, FileDType::Float(DType::BF16));
        assert_eq!(f.decode(b).unwrap().values, vec![0.5, 1.5]);
    }

    #[test]
    fn truncation_anywhere_is_an_error_never_a_panic() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            let e = SafetensorsFile::parse(Path::new("m.safetensors"), bytes[..cut].to_vec())
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("m.safetensors: "), "{e}");
        }
        let e = SafetensorsFile::parse(Path::new("m"), bytes[..bytes.len() - 1].to_vec())
            .unwrap_err()
            .to_string();
        assert!(e.contains("truncated") && e.contains("ends at byte"), "{e}");
    }

    #[test]
    fn inconsistent_offsets_are_named() {
        let header = br#"{"w":{"dtype":"F16","shape":[4],"data_offsets":[0,6]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]);
        let e = SafetensorsFile::parse(Path::new("m"), bytes)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`w`") && e.contains("needs 8"), "{e}");
    }
}
