//! The simulated device's analytic timing: a roofline plus a fixed launch overhead, with small,
//! deterministic pseudo-noise seeded from the kernel name, so near-tie and noise handling in
//! the tuner can be tested reproducibly.
//!
//! `time_ms = max(flops / (peak · efficiency), bytes / bandwidth) · 1e3 + overhead`, then each
//! sample is scaled by `1 + NOISE · u` with `u` in [0, 1) from a hash of (kernel name, sample
//! index), so a sample is never faster than the model.
//!
//! This module depends on `tessera-dsl` (device caps) and `sha2` (the seed hash).

use crate::launch::Cost;
use sha2::{Digest, Sha256};
use tessera_dsl::DeviceCaps;

/// Fixed cost of one launch, milliseconds (about what a real launch costs).
pub const LAUNCH_OVERHEAD_MS: f64 = 0.003;
/// Largest relative noise added to a sample.
pub const NOISE: f64 = 0.01;

/// The noise-free model time of one launch, milliseconds.
pub fn model_ms(caps: &DeviceCaps, cost: &Cost) -> f64 {
    let peak_flops = caps.peak_tflops_f16 * 1e12 * cost.efficiency;
    let bandwidth = caps.mem_bandwidth_gbs * 1e9;
    let compute_s = if peak_flops > 0.0 {
        cost.flops / peak_flops
    } else {
        0.0
    };
    let memory_s = if bandwidth > 0.0 {
        cost.bytes / bandwidth
    } else {
        0.0
    };
    compute_s.max(memory_s) * 1e3 + LAUNCH_OVERHEAD_MS
}

/// A 64-bit seed from the kernel name.
pub fn seed(kernel: &str) -> u64 {
    let d = Sha256::digest(kernel.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// splitmix64: a well-mixed, deterministic sequence from a seed.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Uniform in [0, 1) for sample `i` of a kernel.
pub fn unit_noise(seed: u64, i: u64) -> f64 {
    (splitmix(seed ^ splitmix(i)) >> 11) as f64 / (1u64 << 53) as f64
}

/// `iters` deterministic samples of one launch, milliseconds.
pub fn samples_ms(caps: &DeviceCaps, cost: &Cost, kernel: &str, iters: u32) -> Vec<f64> {
    let base = model_ms(caps, cost);
    let s = seed(kernel);
    (0..u64::from(iters))
        .map(|i| base * (1.0 + NOISE * unit_noise(s, i)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::Target;

    #[test]
    fn compute_and_memory_bound() {
        let caps = Target::Sm90a.nominal_caps();
        // 989 TFLOP at efficiency 1 for 989e9 flops is 1 ms.
        let c = Cost::new(989e9, 0.0, 1.0);
        assert!((model_ms(&caps, &c) - (1.0 + LAUNCH_OVERHEAD_MS)).abs() < 1e-9);
        let half = Cost::new(989e9, 0.0, 0.5);
        assert!((model_ms(&caps, &half) - (2.0 + LAUNCH_OVERHEAD_MS)).abs() < 1e-9);
        // 3350 GB/s moving 3.35 GB is 1 ms, and the max of the two wins.
        let m = Cost::new(1.0, 3.35e9, 1.0);
        assert!((model_ms(&caps, &m) - (1.0 + LAUNCH_OVERHEAD_MS)).abs() < 1e-9);
        let empty = Cost::new(0.0, 0.0, 1.0);
        assert_eq!(model_ms(&caps, &empty), LAUNCH_OVERHEAD_MS);
    }

    #[test]
    fn noise_is_small_deterministic_and_per_kernel() {
        let caps = Target::Sm80.nominal_caps();
        let c = Cost::new(1e12, 1e9, 0.7);
        let a = samples_ms(&caps, &c, "gemm_a", 50);
        assert_eq!(a, samples_ms(&caps, &c, "gemm_a", 50));
        let b = samples_ms(&caps, &c, "gemm_b", 50);
        assert_ne!(a, b);
        let base = model_ms(&caps, &c);
        for s in a.iter().chain(&b) {
            assert!(*s >= base && *s < base * (1.0 + NOISE));
        }
        // Samples differ from one another (there is noise to measure).
        assert!(a.iter().any(|s| (s - a[0]).abs() > 0.0));
    }
}
