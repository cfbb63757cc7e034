//! The weight store: every constant the graph reads, converted once to the plan's dtype
//! (f16 or bf16). Passes may add derived weights (the concatenated QKV weight); only the
//! weights the final graph reads are written to the plan.

use serde::{Deserialize, Serialize};
use tessera_dsl::DType;
use tessera_library::host::round_to;

/// A weight in [`WeightStore::weights`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WeightId(pub usize);

/// One constant tensor, values already rounded to the store's dtype.
#[derive(Debug, Clone, PartialEq)]
pub struct Weight {
    pub name: String,
    pub shape: Vec<u64>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WeightStore {
    pub dtype: DType,
    pub weights: Vec<Weight>,
}

/// Weights that cannot be concatenated (a pass bug, never bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot concatenate {names:?}: shapes {shapes:?} differ past the first dimension")]
pub struct ConcatError {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<u64>>,
}

impl WeightStore {
    pub fn new(dtype: DType) -> WeightStore {
        WeightStore {
            dtype,
            weights: Vec::new(),
        }
    }

    pub fn get(&self, id: WeightId) -> &Weight {
        &self.weights[id.0]
    }

    /// Add a tensor, rounding its values to the store's dtype.
    pub fn add(&mut self, name: impl Into<String>, shape: Vec<u64>, values: &[f32]) -> WeightId {
        let values = values.iter().map(|&v| round_to(self.dtype, v)).collect();
        self.weights.push(Weight {
            name: name.into(),
            shape,
            values,
        });
        WeightId(self.weights.len() - 1)
    }

    /// A new weight: `parts` stacked along their first dimension.
    pub fn concat(
        &mut self,
        name: impl Into<String>,
        parts: &[WeightId],
    ) -> Result<WeightId, ConcatError> {
        let shapes: Vec<Vec<u64>> = parts.iter().map(|&p| self.get(p).shape.clone()).collect();
        let tail = shapes.first().map(|s| s.get(1..).unwrap_or(&[]).to_vec());
        if shapes.is_empty()
            || shapes
                .iter()
                .any(|s| s.is_empty() || Some(s[1..].to_vec()) != tail)
        {
            return Err(ConcatError {
                names: parts.iter().map(|&p| self.get(p).name.clone()).collect(),
                shapes,
            });
        }
        let mut shape = shapes[0].clone();
        shape[0] = shapes.iter().map(|s| s[0]).sum();
        let values = parts
            .iter()
            .flat_map(|&p| self.get(p).values.iter().copied())
            .collect();
        self.weights.push(Weight {
            name: name.into(),
            shape,
            values,
        });
        Ok(WeightId(self.weights.len() - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_stacks_rows_and_rounds_once() {
        let mut w = WeightStore::new(DType::F16);
        let a = w.add("a", vec![1, 2], &[1.0, 0.1]);
        let b = w.add("b", vec![2, 2], &[3.0, 4.0, 5.0, 6.0]);
        assert_eq!(w.get(a).values[1], round_to(DType::F16, 0.1));
        let c = w.concat("ab", &[a, b]).unwrap();
        assert_eq!(w.get(c).shape, vec![3, 2]);
        assert_eq!(w.get(c).values[2..], [3.0, 4.0, 5.0, 6.0]);
        let odd = w.add("odd", vec![1, 3], &[1.0, 2.0, 3.0]);
        assert!(w.concat("bad", &[a, odd]).is_err());
    }
}
