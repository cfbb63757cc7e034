//! Every config of the GEMM space compiled by NVRTC for sm_80 and sm_90a (all of the target's
//! points when it has at most 1000, else a deterministic sample of 1000), plus every representative
//! config × problem class. No kernel may fail, spill registers or exceed its target's shared
//! memory. The fused templates' spaces likewise, per fixture problem, with every sm_90a
//! attention config of the packed (`thd`) problems of the GPU check. Needs libnvrtc (the PyPI
//! wheel); CI sets TESSERA_REQUIRE_NVRTC.

use tessera_device::cuda::{nvrtc_available, nvrtc_compile};
use tessera_dsl::{Config, GemmProblem, Problem, Target, Template};
use tessera_tests::{
    config_for, fused_fixtures, gemm, required, valid_config, variants, REPRESENTATIVE,
};
use tessera_tuner::pool::{default_jobs, parallel_map};

#[test]
fn gemm_space_compiles_with_nvrtc_without_spills() {
    if !nvrtc_or_skip() {
        return;
    }
    let t = gemm();
    let space = t.space();
    let mut jobs = Vec::new();
    // per target: (points sampled, points valid for the large or the decode problem)
    let mut coverage = Vec::new();
    for target in [Target::Sm80, Target::Sm90a] {
        // the target's own space: knob values only AMD offers (`mfma = 32`) are no points of it
        let offered: Vec<Vec<i64>> = space
            .enumerate()
            .into_iter()
            .filter(|v| !space.foreign_knob(v, target))
            .collect();
        let points: Vec<&Vec<i64>> = if offered.len() <= 1000 {
            offered.iter().collect()
        } else {
            (0..1000)
                .map(|i| &offered[i * offered.len() / 1000])
                .collect()
        };
        let (sampled, before) = (points.len(), jobs.len());
        // a point the large problem rejects may serve a decode-shaped one (deep K steps)
        let plain = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
        let decode = Problem::Gemm(GemmProblem::new(1, 8192, 4096));
        for v in points {
            if let Some(c) =
                config_for(v, &plain, target).or_else(|| config_for(v, &decode, target))
            {
                jobs.push((c, target));
            }
        }
        coverage.push((target, sampled, jobs.len() - before));
        for (_, problem) in variants() {
            for v in REPRESENTATIVE {
                if let Some(c) = config_for(&v, &problem, target) {
                    jobs.push((c, target));
                }
            }
        }
    }
    let jobs: Vec<(&'static dyn Template, Config, Target)> =
        jobs.into_iter().map(|(c, target)| (t, c, target)).collect();
    let failures = compile_all(&jobs, &format!("space {} configs", space.len()));
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    // every K step a target serves yields kernels (a rule that rejected all of one would show
    // here): 32 and 64 everywhere, and the deep steps on sm_90a
    for (target, sampled, valid) in coverage {
        eprintln!("nvrtc: {target}: {valid} of {sampled} points are kernels");
        let mut steps: Vec<u32> = jobs
            .iter()
            .filter(|(_, _, t)| *t == target)
            .map(|(_, c, _)| {
                c.get("tile_k")
                    .and_then(|k| u32::try_from(k).ok())
                    .unwrap_or(0)
            })
            .collect();
        steps.sort_unstable();
        steps.dedup();
        let served: &[u32] = match target {
            Target::Sm90a => &[32, 64, 128, 256],
            _ => &[32, 64],
        };
        assert_eq!(steps, served, "{target}: K steps of the compiled kernels");
    }
}

/// Compile every job with NVRTC; the failures (errors, spills, shared memory over the limit).
fn compile_all(jobs: &[(&'static dyn Template, Config, Target)], what: &str) -> Vec<String> {
    let results = parallel_map(jobs, default_jobs(), |(t, c, target)| {
        let src = tessera_codegen::generate(*t, c, *target).expect("codegen");
        nvrtc_compile(&src.source, &src.name, *target, &[]).map(|r| (r, src.smem_bytes))
    });
    let mut failures = Vec::new();
    let mut seconds = Vec::new();
    for ((_, c, target), r) in jobs.iter().zip(&results) {
        let name = format!("{} ({target})", c.kernel_name());
        match r {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok((report, smem)) => {
                seconds.push(report.seconds);
                let spills = report.usage.spill_bytes();
                if spills != Some(0) {
                    failures.push(format!("{name}: spills {spills:?} bytes"));
                }
                let total = smem + report.usage.static_smem_bytes.unwrap_or(0);
                if total > target.nominal_caps().smem_per_block {
                    failures.push(format!("{name}: {total} bytes of shared memory"));
                }
                if let Some(line) = tessera_device::cuda::ptxas_log::serialized_wgmma(&report.log) {
                    failures.push(format!("{name}: {line}"));
                }
                if report.usage.registers.unwrap_or(0) == 0 {
                    failures.push(format!("{name}: no register count reported"));
                }
            }
        }
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0);
    println!(
        "nvrtc: {what}; compiled {} kernels (sm_80 + sm_90a), median {:.3} s per kernel",
        jobs.len(),
        median
    );
    failures
}

fn nvrtc_or_skip() -> bool {
    if nvrtc_available() {
        return true;
    }
    assert!(
        !required("NVRTC"),
        "TESSERA_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
    );
    eprintln!("skipped: libnvrtc not found (run scripts/test.sh to install it)");
    false
}

/// Every config of the layernorm, softmax and attention spaces that fits each fixture problem,
/// for sm_80 and sm_90a, and every sm_90a attention config that fits a packed problem of the
/// GPU check (`tessera_library::fixtures::packed_attention`).
#[test]
fn fused_spaces_compile_with_nvrtc_without_spills() {
    if !nvrtc_or_skip() {
        return;
    }
    tessera_library::templates();
    let mut jobs = Vec::new();
    for f in fused_fixtures() {
        let t = tessera_dsl::find(f.template).expect("registered");
        for target in [Target::Sm80, Target::Sm90a] {
            for (_, problem) in &f.problems {
                for v in t.space().enumerate() {
                    if let Some(c) = valid_config(t, &v, problem, target) {
                        jobs.push((t, c, target));
                    }
                }
            }
        }
    }
    // every sm_90a attention config a packed problem of the GPU check admits (the TMA +
    // wgmma pipeline's, persistent or not, and the multistage one's), once per kernel
    let attention = tessera_dsl::find("attention").expect("registered");
    let mut names: std::collections::BTreeSet<String> = jobs
        .iter()
        .map(|(_, c, target): &(_, Config, _)| format!("{} {target}", c.kernel_name()))
        .collect();
    let (mut packed, mut packed_tma) = (0, 0);
    for problem in tessera_library::fixtures::packed_attention() {
        for v in attention.space().enumerate() {
            if let Some(c) = valid_config(attention, &v, &problem, Target::Sm90a) {
                packed += 1;
                let tile = tessera_dsl::AttentionTile::of(&c);
                if tessera_dsl::AttentionPipeline::hopper_plan(&tile, &c.variant).is_ok() {
                    packed_tma += 1;
                }
                if names.insert(format!("{} {}", c.kernel_name(), Target::Sm90a)) {
                    jobs.push((attention, c, Target::Sm90a));
                }
            }
        }
    }
    println!("nvrtc: {packed} packed sm_90a attention configs, {packed_tma} of them TMA + wgmma");
    assert!(
        packed_tma >= 100 && packed_tma < packed,
        "{packed_tma} of {packed} packed sm_90a configs take the TMA pipeline"
    );
    // sm_90a's kernels whose names carry a knob's value
    let sm90a_named = |part: &str| {
        jobs.iter()
            .filter(|(_, c, target)| *target == Target::Sm90a && c.kernel_name().contains(part))
            .count()
    };
    // its persistent attention (`persistent = 1`) is part of its space
    let persistent = sm90a_named("_persistent1_");
    assert!(
        persistent >= 10,
        "only {persistent} persistent attention configs"
    );
    // and its split-KV attention (`split_kv` 2, 4, 8) for the decode fixtures
    let split = sm90a_named("_split_kv");
    assert!(split >= 10, "only {split} split-KV attention configs");
    // and grouped heads (`group_heads` 1) for the grouped decode fixtures
    let grouped = sm90a_named("_group_heads1");
    assert!(
        grouped >= 10,
        "only {grouped} grouped-heads attention configs"
    );
    let failures = compile_all(&jobs, "layernorm, softmax and attention spaces");
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    assert!(
        jobs.len() >= 100,
        "too few kernels compiled: {}",
        jobs.len()
    );
}
