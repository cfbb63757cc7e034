//! Shared by the `gpu_*` test files (each file uses a part of it): which configs to test, and the verify loop (compile in
//! parallel, then poison → launch → compare with the reference, one candidate at a time).

#![allow(dead_code)]

use tessera_device::cuda::CudaDevice;
use tessera_device::Device;
use tessera_dsl::{Problem, Template};
use tessera_tuner::measure::{compile, verify};
use tessera_tuner::pool::{default_jobs, parallel_map};
use tessera_tuner::{Candidate, Workload};

/// Configs under test: 24 of the points that fit the problem on the device, spread evenly.
pub fn configs(t: &dyn Template, device: &dyn Device, p: &Problem) -> Vec<Vec<i64>> {
    // spread over the points valid for `p`, not over the space: a space with target-only and
    // problem-only values (deep K steps for a small M) has most of its points invalid for any
    // one problem, so a spread of the space would keep few
    let valid: Vec<Vec<i64>> = t
        .space()
        .enumerate()
        .into_iter()
        .filter(|v| {
            t.config(v, p)
                .map(|c| t.validate(&c, p, device.caps()).is_ok())
                .unwrap_or(false)
        })
        .collect();
    spread(valid, 24)
}

/// `n` of `points`, spread evenly over them (all of them if there are no more).
pub fn spread(points: Vec<Vec<i64>>, n: usize) -> Vec<Vec<i64>> {
    if points.len() <= n {
        return points;
    }
    (0..n)
        .map(|i| points[i * points.len() / n].clone())
        .collect()
}

/// Verify every point that fits `p` on fresh inputs (seed `seed`); returns (runs, failures).
pub fn verify_points(
    device: &CudaDevice,
    t: &'static dyn Template,
    points: &[Vec<i64>],
    p: &Problem,
    seed: u64,
) -> (usize, Vec<String>) {
    let p = p.clone();
    let cands: Vec<Candidate> = points
        .iter()
        .filter_map(|v| t.config(v, &p).ok())
        .filter(|c| t.validate(c, &p, device.caps()).is_ok())
        .map(|c| Candidate::new(t, c, device.caps().target).expect("codegen"))
        .collect();
    let modules = parallel_map(&cands, default_jobs(), |c| compile(device, c, &p, None));
    let w = Workload::new(device, &p, seed).expect("workload");
    let mut failures = Vec::new();
    for (c, module) in cands.iter().zip(modules) {
        let verdict = module
            .map_err(|e| format!("compile: {e}"))
            .and_then(|module| {
                let v = verify(device, &module, c, &w).map_err(|e| e.to_string());
                let _ = device.unload(&module);
                v
            });
        match verdict {
            Ok(v) if v.pass => {}
            Ok(v) => failures.push(format!(
                "{} on {p}: rel err {:.2e} (tol {:.0e}), {} non-finite, worst {:?}",
                c.name(),
                v.rel_err,
                v.tolerance,
                v.nonfinite,
                v.worst
            )),
            Err(e) => failures.push(format!("{} on {p}: {e}", c.name())),
        }
    }
    w.free(device).unwrap();
    (cands.len(), failures)
}

/// Print the summary line and fail with every failure listed.
pub fn report(test: &str, runs: usize, configs: usize, failures: &[String]) {
    println!(
        "{test}: {runs} runs over {configs} configs, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
