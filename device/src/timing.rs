//! Timing results: every sample of a measurement, in milliseconds, and the order statistics the
//! tuner selects on (median, p10, p90). A [`Timing`] always says whether it was simulated.
//!
//! This module depends on nothing but `std` and this crate's error type.

use crate::error::DeviceError;

/// All samples of one measurement (never empty, every sample finite and non-negative).
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    samples_ms: Vec<f64>,
    simulated: bool,
    l2_flushed: bool,
}

impl Timing {
    /// Wrap samples; rejects an empty list and non-finite or negative samples.
    pub fn new(
        samples_ms: Vec<f64>,
        simulated: bool,
        l2_flushed: bool,
    ) -> Result<Timing, DeviceError> {
        if samples_ms.is_empty() {
            return Err(DeviceError::InvalidRequest {
                message: "a timing needs at least one sample".into(),
            });
        }
        if let Some(bad) = samples_ms.iter().find(|s| !s.is_finite() || **s < 0.0) {
            return Err(DeviceError::InvalidRequest {
                message: format!("timing sample {bad} ms is not a finite, non-negative time"),
            });
        }
        Ok(Timing {
            samples_ms,
            simulated,
            l2_flushed,
        })
    }

    /// Samples in measurement order, milliseconds.
    pub fn samples_ms(&self) -> &[f64] {
        &self.samples_ms
    }

    /// True when the times come from the simulated device's cost model, not a GPU.
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// True when L2 was flushed before every sample.
    pub fn l2_flushed(&self) -> bool {
        self.l2_flushed
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        s
    }

    /// The `q`-quantile (0 ≤ q ≤ 1, clamped), linear between closest ranks.
    pub fn quantile(&self, q: f64) -> f64 {
        let s = self.sorted();
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let pos = q * (s.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = pos.ceil() as usize;
        let frac = pos - lo as f64;
        s[lo] + (s[hi] - s[lo]) * frac
    }

    pub fn median(&self) -> f64 {
        self.quantile(0.5)
    }

    pub fn p10(&self) -> f64 {
        self.quantile(0.1)
    }

    pub fn p90(&self) -> f64 {
        self.quantile(0.9)
    }

    pub fn min(&self) -> f64 {
        self.samples_ms
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    }

    pub fn mean(&self) -> f64 {
        self.samples_ms.iter().sum::<f64>() / self.samples_ms.len() as f64
    }

    /// Relative spread `(p90 - p10) / median`, the noise figure the tuner records.
    pub fn spread(&self) -> f64 {
        let m = self.median();
        if m > 0.0 {
            (self.p90() - self.p10()) / m
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_statistics() {
        let t = Timing::new(vec![5.0, 1.0, 3.0, 2.0, 4.0], false, true).unwrap();
        assert_eq!(t.median(), 3.0);
        assert_eq!(t.min(), 1.0);
        assert_eq!(t.mean(), 3.0);
        assert!((t.p10() - 1.4).abs() < 1e-12);
        assert!((t.p90() - 4.6).abs() < 1e-12);
        assert!((t.spread() - 3.2 / 3.0).abs() < 1e-12);
        assert_eq!(t.samples_ms()[0], 5.0, "samples keep measurement order");
        let one = Timing::new(vec![2.5], true, false).unwrap();
        assert_eq!((one.median(), one.p10(), one.p90()), (2.5, 2.5, 2.5));
        assert!(one.simulated() && !one.l2_flushed());
    }

    #[test]
    fn rejects_empty_and_nan() {
        assert!(Timing::new(vec![], false, false).is_err());
        assert!(Timing::new(vec![1.0, f64::NAN], false, false).is_err());
        assert!(Timing::new(vec![-1.0], false, false).is_err());
    }
}
