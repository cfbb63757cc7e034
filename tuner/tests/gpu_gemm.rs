//! `gpu_*`: the GEMM template on a real GPU (run on the GPU machine with `--features gpu`).
//! Every config × shape × dtype × layout is verified against the CPU reference on fresh random
//! inputs with the output poisoned first.
#![cfg(feature = "gpu")]

mod gpu_common;

use gpu_common::{configs, report, spread, verify_points};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{DType, GemmProblem, Layout, Problem};
use tessera_tuner::Candidate;

#[test]
fn gpu_gemm_matches_reference() {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("open GPU 0");
    tessera_library::templates();
    let t = tessera_dsl::find("gemm").unwrap();
    let shapes: [(u64, u64, u64); 6] = [
        (1000, 1000, 1000),
        (1, 768, 768),
        (384, 3072, 768),
        (12288, 768, 3072),
        (4096, 4096, 4096),
        (257, 382, 520), // K not a multiple of tile_k, N only 2-aligned, ragged M and N
    ];
    let probe = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
    let points = configs(t, &device, &probe);
    assert!(points.len() >= 20, "only {} configs fit", points.len());
    let (mut runs, mut failures) = (0usize, Vec::new());
    for input in [DType::F16, DType::BF16] {
        for layout_b in [Layout::Col, Layout::Row] {
            for &(m, n, k) in &shapes {
                let g = GemmProblem {
                    m,
                    n,
                    k,
                    batch: 1,
                    input,
                    output: input,
                    layout_b,
                    epilogue: vec![],
                    store: Default::default(),
                };
                let (n, f) = verify_points(&device, t, &points, &Problem::Gemm(g), runs as u64 + 1);
                runs += n;
                failures.extend(f);
            }
        }
    }
    report("gpu_gemm_matches_reference", runs, points.len(), &failures);
}

/// Every config of the space that the sm_90a policy gives the warp-specialized TMA/wgmma
/// pipeline (not a sample), on shapes with M, N and K tails (K a multiple of 8, as TMA needs,
/// but not of tile_k), one and two batches, f16 and bf16, with and without an epilogue.
#[test]
fn gpu_gemm_hopper_pipeline_matches_reference() {
    use tessera_dsl::EpilogueOp::*;
    let Some((device, t)) = sm90a_gemm("gpu_gemm_hopper_pipeline_matches_reference") else {
        return;
    };
    // a large and a decode-shaped probe: deep K steps are offered to a small M only
    let probes = [
        Problem::Gemm(GemmProblem::new(4096, 4096, 4096)),
        Problem::Gemm(GemmProblem::new(1, 8192, 4096)),
    ];
    let points: Vec<Vec<i64>> = t
        .space()
        .enumerate()
        .into_iter()
        .filter(|v| {
            probes.iter().any(|probe| {
                t.config(v, probe).is_ok_and(|c| {
                    t.validate(&c, probe, device.caps()).is_ok()
                        && !Candidate::new(t, c, device.caps().target)
                            .expect("codegen")
                            .source
                            .tensor_maps
                            .is_empty()
                })
            })
        })
        .collect();
    // every point with the warpgroups' own stores and no cluster, and 64 spread over the
    // TMA-store twins and 64 over the B-multicast ones (the same mainloops; all of them would
    // take the check past one 10-minute GPU call)
    let knob = |name: &str| {
        t.space()
            .param_names()
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("the gemm space has {name}"))
    };
    let (bulk, mc) = (knob("tma_store"), knob("multicast"));
    let (multicast, points): (Vec<_>, Vec<_>) = points.into_iter().partition(|v| v[mc] > 1);
    let (twins, mut points): (Vec<_>, Vec<_>) = points.into_iter().partition(|v| v[bulk] == 1);
    let (all_twins, all_multicast) = (twins.len(), multicast.len());
    points.extend(spread(twins, 64));
    points.extend(spread(multicast, 64));
    eprintln!(
        "hopper check: {} points, {} of {all_twins} TMA-store twins, {} of {all_multicast} multicast twins",
        points.len(),
        all_twins.min(64),
        all_multicast.min(64)
    );
    assert!(points.len() >= 10, "only {} Hopper configs", points.len());
    // (1100 rows: an odd number of 128- and 256-row tiles, so a B-multicast cluster's last
    // block lies past M, in a problem large enough for multicast to be offered)
    let shapes: [(u64, u64, u64, u64); 7] = [
        (1, 768, 768, 1),
        (100, 200, 72, 2),
        (1000, 1000, 1000, 1),
        (1100, 4096, 264, 1),
        (257, 384, 520, 2),
        (384, 2304, 768, 1),
        (4096, 4096, 4096, 1),
    ];
    let (mut runs, mut failures) = verify_dtype_epilogue_grid(&device, t, &points, &shapes, 5);
    // QKV projections into heads (a staged epilogue leaves in 16-byte chunks, one head each):
    // BERT-base's 12 x 64, and 12 x 32 with a sequence that is no multiple of any tile
    for (m, seq, head_dim) in [(2 * 384u64, 384u64, 64u64), (3 * 77, 77, 32)] {
        let g = GemmProblem {
            m,
            n: 3 * 12 * head_dim,
            k: 768,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue: vec![Bias],
            store: tessera_dsl::Store::Heads {
                heads: 12,
                head_dim,
                seq,
            },
        };
        let (n, f) = verify_points(&device, t, &points, &Problem::Gemm(g), runs as u64 + 11);
        runs += n;
        failures.extend(f);
    }
    report(
        "gpu_gemm_hopper_pipeline_matches_reference",
        runs,
        points.len(),
        &failures,
    );
}

/// Every split-K config (`split_k` 2 or 4, sm_90a) that a long-K problem with few tiles
/// admits, on shapes with M, N and K tails, two batches, f16 and bf16, with epilogues that read
/// a bias, C and a residual, and a QKV store into heads: the cluster's partials must add up
/// to the reference wherever its blocks' K shares end.
#[test]
fn gpu_gemm_split_k_matches_reference() {
    use tessera_dsl::EpilogueOp::*;
    let Some((device, t)) = sm90a_gemm("gpu_gemm_split_k_matches_reference") else {
        return;
    };
    let split = t
        .space()
        .params
        .iter()
        .position(|p| p.name == "split_k")
        .expect("a split_k knob");
    let probes = [
        Problem::Gemm(GemmProblem::new(128, 768, 3072)),
        Problem::Gemm(GemmProblem::new(384, 768, 3072)),
        Problem::Gemm(GemmProblem::new(1, 8192, 4096)),
    ];
    let valid: Vec<Vec<i64>> = t
        .space()
        .enumerate()
        .into_iter()
        .filter(|v| v[split] > 1)
        .filter(|v| {
            probes.iter().any(|probe| {
                t.config(v, probe)
                    .is_ok_and(|c| t.validate(&c, probe, device.caps()).is_ok())
            })
        })
        .collect();
    // 32 spread over them, and every split-K point of the benchmark's shortlist
    let mut points = spread(valid, 32);
    for p in tessera_tuner::shortlist::points(t, &probes[0]) {
        if p[split] > 1 && !points.contains(&p) {
            points.push(p);
        }
    }
    assert!(points.len() >= 24, "only {} split-K configs", points.len());
    let shapes: [(u64, u64, u64, u64); 6] = [
        (128, 768, 3072, 1),
        (384, 768, 3072, 1),
        (1, 768, 4096, 1),
        (257, 384, 2056, 2), // K steps that split unevenly, M and N tails
        (100, 296, 1032, 1),
        (128, 8192, 4096, 1),
    ];
    let (mut runs, mut failures) = verify_dtype_epilogue_grid(&device, t, &points, &shapes, 17);
    // a QKV projection of 77 tokens into 12 heads of 32, and an f32 output (direct stores)
    let mut qkv = GemmProblem::new(77, 3 * 12 * 32, 3072);
    qkv.epilogue = vec![Bias];
    qkv.store = tessera_dsl::Store::Heads {
        heads: 12,
        head_dim: 32,
        seq: 77,
    };
    let mut wide = GemmProblem::new(200, 512, 2048);
    wide.output = DType::F32;
    wide.epilogue = vec![Bias, Silu];
    for g in [qkv, wide] {
        let (n, f) = verify_points(&device, t, &points, &Problem::Gemm(g), runs as u64 + 23);
        runs += n;
        failures.extend(f);
    }
    assert!(runs >= 200, "only {runs} runs");
    report(
        "gpu_gemm_split_k_matches_reference",
        runs,
        points.len(),
        &failures,
    );
}

#[test]
fn gpu_gemm_epilogues_match_reference() {
    use tessera_dsl::EpilogueOp::*;
    let device = CudaDevice::open(&DeviceConfig::default()).expect("open GPU 0");
    tessera_library::templates();
    let t = tessera_dsl::find("gemm").unwrap();
    let chains: [(DType, DType, Vec<tessera_dsl::EpilogueOp>); 6] = [
        (DType::F16, DType::F16, vec![Bias, Gelu]),
        (DType::F16, DType::F16, vec![Bias, GeluTanh]),
        (DType::BF16, DType::BF16, vec![Bias, Relu, Residual]),
        (DType::F16, DType::F32, vec![BetaC, Residual, Silu]),
        (DType::BF16, DType::F32, vec![BetaC, Bias]),
        (DType::F16, DType::BF16, vec![Silu]),
    ];
    let shapes: [(u64, u64, u64); 3] = [(384, 3072, 768), (257, 382, 520), (1, 768, 768)];
    let probe = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
    // every sampled point: with B row-major, the points that take sm_90a-only values (deep
    // rings, 96/160/192-wide tiles) have no pipeline, so every third point left too few runs
    let points = configs(t, &device, &probe);
    let (mut runs, mut failures) = (0usize, Vec::new());
    for (input, output, epilogue) in &chains {
        for layout_b in [Layout::Col, Layout::Row] {
            for &(m, n, k) in &shapes {
                let g = GemmProblem {
                    m,
                    n,
                    k,
                    batch: 2,
                    input: *input,
                    output: *output,
                    layout_b,
                    epilogue: epilogue.clone(),
                    store: Default::default(),
                };
                let (n, f) =
                    verify_points(&device, t, &points, &Problem::Gemm(g), runs as u64 + 99);
                runs += n;
                failures.extend(f);
            }
        }
    }
    // QKV projections that write Q, K and V as [batch, heads, seq, head_dim] (BERT-base: 12 × 64)
    for (m, seq) in [(2 * 384u64, 384u64), (3 * 128, 128), (77, 77)] {
        let g = GemmProblem {
            m,
            n: 3 * 768,
            k: 768,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue: vec![Bias],
            store: tessera_dsl::Store::Heads {
                heads: 12,
                head_dim: 64,
                seq,
            },
        };
        let (n, f) = verify_points(&device, t, &points, &Problem::Gemm(g), runs as u64 + 7);
        runs += n;
        failures.extend(f);
    }
    report(
        "gpu_gemm_epilogues_match_reference",
        runs,
        points.len(),
        &failures,
    );
    assert!(runs >= 200, "only {runs} runs");
}

/// Every point on every shape (M, N, K, batch), row-major A and K-major B, as f16 and bf16
/// without an epilogue, f16 with bias + GELU and bf16 with beta·C + residual: the grid the
/// Hopper pipeline's checks share. Each problem's inputs are seeded `seed` + the runs so far.
fn verify_dtype_epilogue_grid(
    device: &CudaDevice,
    t: &'static dyn tessera_dsl::Template,
    points: &[Vec<i64>],
    shapes: &[(u64, u64, u64, u64)],
    seed: u64,
) -> (usize, Vec<String>) {
    use tessera_dsl::EpilogueOp::*;
    let (mut runs, mut failures) = (0usize, Vec::new());
    for (input, epilogue) in [
        (DType::F16, vec![]),
        (DType::BF16, vec![]),
        (DType::F16, vec![Bias, Gelu]),
        (DType::BF16, vec![BetaC, Residual]),
    ] {
        for &(m, n, k, batch) in shapes {
            let g = GemmProblem {
                m,
                n,
                k,
                batch,
                input,
                output: input,
                layout_b: Layout::Col,
                epilogue: epilogue.clone(),
                store: Default::default(),
            };
            let (n, f) = verify_points(device, t, points, &Problem::Gemm(g), runs as u64 + seed);
            runs += n;
            failures.extend(f);
        }
    }
    (runs, failures)
}

/// GPU 0 and the gemm template, or `None` (after saying so) when GPU 0 is not sm_90a: the
/// Hopper pipeline's checks run there only.
fn sm90a_gemm(test: &str) -> Option<(CudaDevice, &'static dyn tessera_dsl::Template)> {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("open GPU 0");
    if device.caps().target != tessera_dsl::Target::Sm90a {
        eprintln!("{test}: not an sm_90a device; skipped");
        return None;
    }
    tessera_library::templates();
    Some((device, tessera_dsl::find("gemm").unwrap()))
}
