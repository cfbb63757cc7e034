//! Host tensors: values held as f32 that are exactly representable in the tensor's dtype, with
//! conversion to and from the device's byte representation, and seeded random fill.

use half::{bf16, f16};
use tessera_dsl::DType;

/// A dense host tensor whose values are rounded to `dtype`.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub values: Vec<f32>,
}

/// Bytes that are not a whole number of elements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes are not a whole number of {dtype} elements")]
pub struct BadLength {
    pub len: usize,
    pub dtype: DType,
}

/// Round one value to `dtype` (round to nearest even).
pub fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F16 => f16::from_f32(v).to_f32(),
        DType::BF16 => bf16::from_f32(v).to_f32(),
        DType::F32 => v,
    }
}

/// SplitMix64: a small, good, seedable generator (tests must be reproducible from the seed).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

impl HostTensor {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `len` random values in [-1, 1), rounded to `dtype`, never exactly zero.
    pub fn random(dtype: DType, len: usize, rng: &mut Rng) -> Self {
        let values = (0..len)
            .map(|_| loop {
                let v = round_to(dtype, rng.unit());
                if v != 0.0 {
                    break v;
                }
            })
            .collect();
        HostTensor { dtype, values }
    }

    /// The device representation (little-endian f16 / bf16 / f32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.values.len() * self.dtype.size_bytes() as usize);
        for &v in &self.values {
            match self.dtype {
                DType::F16 => out.extend_from_slice(&f16::from_f32(v).to_bits().to_le_bytes()),
                DType::BF16 => out.extend_from_slice(&bf16::from_f32(v).to_bits().to_le_bytes()),
                DType::F32 => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
        out
    }

    /// Read the device representation back.
    pub fn from_bytes(dtype: DType, bytes: &[u8]) -> Result<Self, BadLength> {
        let size = dtype.size_bytes() as usize;
        if !bytes.len().is_multiple_of(size) {
            return Err(BadLength {
                len: bytes.len(),
                dtype,
            });
        }
        let values = bytes
            .chunks_exact(size)
            .map(|c| match dtype {
                DType::F16 => f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
                DType::BF16 => bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
                DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
            })
            .collect();
        Ok(HostTensor { dtype, values })
    }
}

/// Element `index` of a device-representation buffer, decoded; `None` past the end.
pub fn decode_at(dtype: DType, bytes: &[u8], index: usize) -> Option<f32> {
    let size = dtype.size_bytes() as usize;
    let c = bytes.get(index.checked_mul(size)?..index.checked_mul(size)? + size)?;
    Some(match dtype {
        DType::F16 => f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
        DType::BF16 => bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32(),
        DType::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::{any, prop_assert_eq, proptest};

    #[test]
    fn random_is_seeded_and_never_zero() {
        let a = HostTensor::random(DType::F16, 10_000, &mut Rng::new(7));
        let b = HostTensor::random(DType::F16, 10_000, &mut Rng::new(7));
        assert_eq!(a, b);
        assert!(a
            .values
            .iter()
            .all(|&v| v != 0.0 && (-1.0..=1.0).contains(&v)));
        let c = HostTensor::random(DType::F16, 10_000, &mut Rng::new(8));
        assert_ne!(a, c);
    }

    proptest! {
        #[test]
        fn bytes_round_trip(seed in any::<u64>(), len in 0usize..64) {
            for d in DType::ALL {
                let t = HostTensor::random(d, len, &mut Rng::new(seed));
                let back = HostTensor::from_bytes(d, &t.to_bytes()).unwrap();
                prop_assert_eq!(&back, &t);
            }
        }
    }

    #[test]
    fn decode_at_matches_from_bytes() {
        for d in DType::ALL {
            let t = HostTensor::random(d, 17, &mut Rng::new(3));
            let bytes = t.to_bytes();
            for (i, v) in t.values.iter().enumerate() {
                assert_eq!(decode_at(d, &bytes, i), Some(*v));
            }
            assert_eq!(decode_at(d, &bytes, 17), None);
        }
    }

    #[test]
    fn poison_bytes_read_as_nan() {
        for d in DType::ALL {
            let bytes = vec![0xFFu8; d.size_bytes() as usize * 3];
            let t = HostTensor::from_bytes(d, &bytes).unwrap();
            assert!(t.values.iter().all(|v| v.is_nan()), "{d}");
        }
        assert!(HostTensor::from_bytes(DType::F32, &[0, 1, 2]).is_err());
    }
}
