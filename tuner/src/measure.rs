//! Compile → poison → launch → verify → time, for one candidate on one problem.
//!
//! Contract 3 and 4 of the design: per-candidate failures (compile errors, launch faults,
//! wrong results) are [`Outcome`]s, never errors; a candidate is timed only after its output
//! matched the reference on fresh random inputs with the output poisoned first.

use crate::candidate::Candidate;
use crate::emulation::{self, Fault};
use crate::error::TunerError;
use crate::workload::Workload;
use std::time::Instant;
use tessera_device::{Device, DeviceError, Module, ModuleReport, Timing};
use tessera_dsl::Problem;
use tessera_library::verify::{Expected, Verdict};

/// What happened to a candidate.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Verified and timed.
    Ok,
    CompileError(String),
    LaunchError(String),
    WrongResult(String),
    /// Verified, but its quick probe was over the early-stop limit: not timed in full.
    SkippedSlow(String),
}

impl Outcome {
    /// The cache's status word.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::CompileError(_) => "compile_error",
            Outcome::LaunchError(_) => "launch_error",
            Outcome::WrongResult(_) => "wrong_result",
            Outcome::SkippedSlow(_) => "skipped_slow",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Outcome::Ok => "",
            Outcome::CompileError(r)
            | Outcome::LaunchError(r)
            | Outcome::WrongResult(r)
            | Outcome::SkippedSlow(r) => r,
        }
    }
}

/// One candidate's full measurement.
#[derive(Debug, Clone)]
pub struct Measured {
    pub kernel: String,
    pub outcome: Outcome,
    pub verdict: Option<Verdict>,
    pub timing: Option<Timing>,
    pub registers: Option<u32>,
    pub spill_bytes: Option<u32>,
    /// Wall time of the compile call (NVRTC, or a module-cache hit and load).
    pub compile_s: f64,
    /// Wall time of poison + launch + read back + compare.
    pub verify_s: f64,
    /// Wall time of the probe and the timed runs.
    pub time_s: f64,
}

/// How to time.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TimingPlan {
    pub warmup: u32,
    pub iters: u32,
    pub l2_flush: bool,
}

impl Default for TimingPlan {
    fn default() -> Self {
        TimingPlan {
            warmup: 3,
            iters: 20,
            l2_flush: true,
        }
    }
}

/// Compile a candidate on a device (the simulated device gets the GEMM emulation).
pub fn compile(
    device: &dyn Device,
    c: &Candidate,
    problem: &Problem,
    fault: Option<Fault>,
) -> Result<Module, DeviceError> {
    let mut req = c.compile_request(problem);
    if device.info().simulated {
        req = req.with_emulation(match problem {
            Problem::Gemm(g) => emulation::gemm(g, fault),
            other => emulation::op(other, fault),
        });
    }
    device.compile(&req)
}

/// Poison the output, launch once, read back and compare with the reference.
pub fn verify(
    device: &dyn Device,
    module: &Module,
    c: &Candidate,
    w: &Workload,
) -> Result<Verdict, DeviceError> {
    verify_against(device, module, c, w, &w.expected())
}

/// [`verify`] against reference values computed once for the workload's inputs; only the
/// checked elements of the output are decoded.
pub fn verify_against(
    device: &dyn Device,
    module: &Module,
    c: &Candidate,
    w: &Workload,
    expected: &Expected,
) -> Result<Verdict, DeviceError> {
    w.poison(device)?;
    device.launch(module, &w.launch(c), &w.args())?;
    let out = w.read_output_bytes(device)?;
    Ok(w.check(expected, &out))
}

/// Why a compiled candidate is not worth verifying and timing, from its compile report: ptxas
/// serialized its `wgmma` pipeline (every `wgmma` waits for the one before, a cliff no tile
/// recovers from). A spill is no reason: it is recorded (`spill_bytes`) and the candidate timed
/// like any other on every target. The spaces are spill-free for their plain epilogues (CI
/// compiles them with NVRTC: `tests/tests/nvrtc_space.rs`), but a fused epilogue adds live
/// values: BERT's FFN-down GEMM with bias and residual at 128 × 160 × 32, 6 stages, spills 128
/// bytes (NVRTC 13.0) and was the H200's fastest kernel for 3072 rows (c8100b0); rejecting
/// spills (00e3235) left that problem with no candidate at all.
pub fn compile_rejection(report: &ModuleReport) -> Option<String> {
    tessera_device::cuda::ptxas_log::serialized_wgmma(&report.log)
        .map(|line| format!("ptxas serialized the wgmma pipeline: {line}"))
}

/// Compile, verify on `w`, and time a candidate. Infrastructure failures are errors; the
/// candidate's own failures are outcomes.
pub fn measure(
    device: &dyn Device,
    c: &Candidate,
    w: &Workload,
    plan: TimingPlan,
    fault: Option<Fault>,
) -> Result<Measured, TunerError> {
    measure_with(device, c, w, &w.expected(), plan, None, fault)
}

/// [`measure`] against precomputed reference values; with `stop_above_ms`, a candidate whose
/// 3-run probe is slower than that is not timed in full ([`Outcome::SkippedSlow`], carrying the
/// probe's timing).
pub fn measure_with(
    device: &dyn Device,
    c: &Candidate,
    w: &Workload,
    expected: &Expected,
    plan: TimingPlan,
    stop_above_ms: Option<f64>,
    fault: Option<Fault>,
) -> Result<Measured, TunerError> {
    let problem = w.problem();
    let mut m = Measured {
        kernel: c.name(),
        outcome: Outcome::Ok,
        verdict: None,
        timing: None,
        registers: None,
        spill_bytes: None,
        compile_s: 0.0,
        verify_s: 0.0,
        time_s: 0.0,
    };
    let started = Instant::now();
    let module = match compile(device, c, &problem, fault) {
        Ok(module) => module,
        Err(e) if e.is_infrastructure() => return Err(e.into()),
        Err(e) => {
            m.outcome = Outcome::CompileError(e.to_string());
            return Ok(m);
        }
    };
    m.compile_s = started.elapsed().as_secs_f64();
    let report = module.report();
    m.registers = report.usage.registers;
    m.spill_bytes = report.usage.spill_bytes();
    if let Some(why) = compile_rejection(report) {
        m.outcome = Outcome::CompileError(why);
        return Ok(m);
    }
    let result = (|| -> Result<(), DeviceError> {
        let started = Instant::now();
        let verdict = verify_against(device, &module, c, w, expected)?;
        m.verify_s = started.elapsed().as_secs_f64();
        let pass = verdict.pass;
        if !pass {
            m.outcome = Outcome::WrongResult(format!(
                "relative error {:.3e} > {:.0e} ({} non-finite of {} checked, worst at {:?})",
                verdict.rel_err,
                verdict.tolerance,
                verdict.nonfinite,
                verdict.checked,
                verdict.worst
            ));
        }
        m.verdict = Some(verdict);
        if !pass {
            return Ok(());
        }
        let started = Instant::now();
        let (launch, args) = (w.launch(c), w.args());
        if let Some(limit) = stop_above_ms {
            let probe = device.time(&module, &launch, &args, 1, 3, plan.l2_flush)?;
            if probe.median() > limit {
                m.outcome = Outcome::SkippedSlow(format!(
                    "probe {:.4} ms is over {:.4} ms (3x the best so far)",
                    probe.median(),
                    limit
                ));
                m.timing = Some(probe);
                m.time_s = started.elapsed().as_secs_f64();
                return Ok(());
            }
        }
        m.timing = Some(device.time(
            &module,
            &launch,
            &args,
            plan.warmup,
            plan.iters,
            plan.l2_flush,
        )?);
        m.time_s = started.elapsed().as_secs_f64();
        Ok(())
    })();
    let _ = device.unload(&module);
    match result {
        Ok(()) => Ok(m),
        Err(e) if e.is_infrastructure() => Err(e.into()),
        Err(e) => {
            m.outcome = Outcome::LaunchError(e.to_string());
            Ok(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_device::{CacheOutcome, ResourceUsage};

    fn report(stores: u32, loads: u32, log: &str) -> ModuleReport {
        ModuleReport {
            usage: ResourceUsage {
                registers: Some(168),
                spill_store_bytes: Some(stores),
                spill_load_bytes: Some(loads),
                ..ResourceUsage::default()
            },
            compile_seconds: 0.3,
            cache: CacheOutcome::Miss,
            toolchain: "nvrtc 13.0".into(),
            log: log.into(),
        }
    }

    #[test]
    fn spills_are_timed_on_every_target() {
        // the rule reads the compile report only, whatever the target
        assert_eq!(compile_rejection(&report(64, 64, "")), None);
        assert_eq!(compile_rejection(&report(0, 0, "")), None);
    }

    #[test]
    fn serialized_wgmma_is_rejected_spilling_or_not() {
        let log = "ptxas /tmp/k.ptx, line 9; warning : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function 'k'\n";
        for (stores, loads) in [(0, 0), (8, 8)] {
            let why = compile_rejection(&report(stores, loads, log)).expect("rejected");
            assert!(
                why.starts_with("ptxas serialized the wgmma pipeline") && why.contains("C7515"),
                "{why}"
            );
        }
        // other ptxas warnings are no reason
        let other = "ptxas warning : Registers are spilled to local memory in function 'k'\n";
        assert_eq!(compile_rejection(&report(8, 8, other)), None);
    }
}
