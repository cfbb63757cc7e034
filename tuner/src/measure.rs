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
use tessera_dsl::{Problem, Target, Vendor};
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
/// serialized its `wgmma` pipeline, or (NVIDIA targets) it spilled registers. Every sm_80 and
/// sm_90a config of the spaces compiles without spills by its pipeline's register budget (CI
/// compiles them all with NVRTC and fails on a spill: `tests/tests/nvrtc_space.rs`), so a spill
/// means a compiler that allocates differently, and local-memory traffic in the mainloop that
/// the timing would only confirm. AMD spaces carry no such guarantee: their spills are recorded
/// (`spill_bytes`) and timed like any other candidate.
pub fn compile_rejection(target: Target, report: &ModuleReport) -> Option<String> {
    if let Some(line) = tessera_device::cuda::ptxas_log::serialized_wgmma(&report.log) {
        return Some(format!("ptxas serialized the wgmma pipeline: {line}"));
    }
    let spilled = report.usage.spill_bytes().unwrap_or(0);
    if target.vendor() == Vendor::Nvidia && spilled > 0 {
        return Some(format!(
            "spilled registers ({} bytes stored, {} loaded); the {} spaces are spill-free with CI's NVRTC ({})",
            report.usage.spill_store_bytes.unwrap_or(0),
            report.usage.spill_load_bytes.unwrap_or(0),
            target.name(),
            report.toolchain
        ));
    }
    None
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
    if let Some(why) = compile_rejection(c.source.target, report) {
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
    fn a_spilling_nvidia_candidate_is_rejected_with_its_bytes() {
        for target in [Target::Sm80, Target::Sm90a] {
            let why = compile_rejection(target, &report(28, 40, "")).expect("rejected");
            assert!(why.contains("28 bytes stored, 40 loaded"), "{why}");
            assert!(
                why.contains(target.name()) && why.contains("nvrtc 13.0"),
                "{why}"
            );
        }
        assert_eq!(compile_rejection(Target::Sm90a, &report(0, 0, "")), None);
        // a store-only spill counts too
        assert!(compile_rejection(Target::Sm90a, &report(4, 0, "")).is_some());
    }

    #[test]
    fn amd_spills_are_timed_and_an_unknown_spill_count_is_no_spill() {
        assert_eq!(compile_rejection(Target::Gfx90a, &report(64, 64, "")), None);
        assert_eq!(compile_rejection(Target::Gfx942, &report(64, 64, "")), None);
        let mut unknown = report(0, 0, "");
        unknown.usage.spill_store_bytes = None;
        unknown.usage.spill_load_bytes = None;
        assert_eq!(compile_rejection(Target::Sm90a, &unknown), None);
    }

    #[test]
    fn serialized_wgmma_is_rejected_before_spills_are_looked_at() {
        let log = "ptxas /tmp/k.ptx, line 9; warning : (C7515) Potential Performance Loss: wgmma.mma_async instructions are serialized due to non wgmma instructions defining accumulator registers of a wgmma between start and end of the pipeline stage in the function 'k'\n";
        let why = compile_rejection(Target::Sm90a, &report(8, 8, log)).expect("rejected");
        assert!(
            why.starts_with("ptxas serialized the wgmma pipeline"),
            "{why}"
        );
    }
}
