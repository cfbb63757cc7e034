//! The GEMM flow on the simulated device (CI, no GPU): candidates from the real template are
//! generated, compiled (recorded), run through the emulation, verified and timed; planted
//! defects are caught before timing.

use tessera_device::{Device, SimDevice};
use tessera_dsl::{DType, EpilogueOp, GemmProblem, Layout, Problem, Target, Template};
use tessera_tuner::emulation::Fault;
use tessera_tuner::measure::{measure, TimingPlan};
use tessera_tuner::{shortlist, Candidate, Outcome, Workload};

fn gemm() -> &'static dyn Template {
    tessera_library::templates();
    tessera_dsl::find("gemm").expect("gemm template registered")
}

fn candidates(p: &Problem, device: &dyn Device, n: usize) -> Vec<Candidate> {
    let t = gemm();
    shortlist::points(t, p)
        .into_iter()
        .filter_map(|v| t.config(&v, p).ok())
        .filter(|c| t.validate(c, p, device.caps()).is_ok())
        .take(n)
        .map(|c| Candidate::new(t, c, device.caps().target).expect("codegen"))
        .collect()
}

#[test]
fn sim_gemm_candidates_verify_and_time() {
    let device = SimDevice::new(Target::Sm90a);
    let mut problems = vec![
        GemmProblem::new(384, 768, 768),
        GemmProblem::new(1, 768, 768),
        GemmProblem::new(257, 382, 520),
    ];
    let mut bf = GemmProblem::new(96, 200, 64);
    bf.input = DType::BF16;
    bf.output = DType::F32;
    bf.layout_b = Layout::Row;
    bf.epilogue = vec![EpilogueOp::Bias, EpilogueOp::Gelu, EpilogueOp::Residual];
    problems.push(bf);
    // QKV projection writing Q, K, V per head: batch 2 × seq 48, 2 heads × 64, N = 3·2·64
    let mut qkv = GemmProblem::new(96, 384, 128);
    qkv.epilogue = vec![EpilogueOp::Bias];
    qkv.store = tessera_dsl::Store::Heads {
        heads: 2,
        head_dim: 64,
        seq: 48,
    };
    problems.push(qkv);
    for g in problems {
        let p = Problem::Gemm(g.clone());
        let w = Workload::new(&device, &p, 42).unwrap();
        let cands = candidates(&p, &device, 4);
        assert!(!cands.is_empty(), "{p}");
        for c in &cands {
            let m = measure(&device, c, &w, TimingPlan::default(), None).unwrap();
            assert_eq!(
                m.outcome,
                Outcome::Ok,
                "{} on {p}: {:?}",
                c.name(),
                m.outcome
            );
            let v = m.verdict.unwrap();
            assert!(v.pass && v.checked > 0);
            let t = m.timing.unwrap();
            assert!(t.simulated() && t.median() > 0.0);
        }
        w.free(&device).unwrap();
    }
}

#[test]
fn sim_planted_wrong_result_is_rejected_before_timing() {
    let device = SimDevice::new(Target::Sm90a);
    let g = GemmProblem::new(128, 256, 64);
    let p = Problem::Gemm(g.clone());
    let w = Workload::new(&device, &p, 7).unwrap();
    let c = &candidates(&p, &device, 1)[0];
    let m = measure(
        &device,
        c,
        &w,
        TimingPlan::default(),
        Some(Fault::WrongValue),
    )
    .unwrap();
    assert!(
        matches!(m.outcome, Outcome::WrongResult(_)),
        "{:?}",
        m.outcome
    );
    assert!(m.timing.is_none(), "a wrong kernel must never be timed");
    let m = measure(
        &device,
        c,
        &w,
        TimingPlan::default(),
        Some(Fault::LaunchFailure),
    )
    .unwrap();
    assert!(
        matches!(m.outcome, Outcome::LaunchError(ref r) if r.contains(&c.name())),
        "{:?}",
        m.outcome
    );
}
