//! Helpers shared by the executor tests (simulated device and GPU): an f64 forward pass of a
//! BERT checkpoint (the reference a whole run is checked against), plan weights decoded, and a
//! plan edit that leaves only kernel launches.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use tessera_cache::Cache;
use tessera_compiler::fixture::Fixture;
use tessera_compiler::import::safetensors::SafetensorsFile;
use tessera_compiler::{compile, Inputs, Lookup, Mode, Options, Output, Plan};
use tessera_device::Device;
use tessera_dsl::DType;
use tessera_library::host::HostTensor;
use tessera_tuner::sweep::{device_fingerprint, Silent};

/// Packed buckets under each padded bucket of the test plans (the tiny buckets' token counts
/// are under one granule, so each gets one: all of its tokens).
pub const PACKED_STEPS: u64 = 2;

/// The tiny random BERT written to `dir` and compiled without tuning for `device` (buckets
/// 1–2 × 16–32, and the packed ones under them) into `dir/model.tsr`.
pub fn compile_tiny(device: &dyn Device, dir: &Path) -> std::path::PathBuf {
    compile_tiny_with(device, dir, &[1, 2], &[16, 32], (PACKED_STEPS, 0))
}

/// [`compile_tiny`] with these buckets, packed steps and fill granule.
pub fn compile_tiny_with(
    device: &dyn Device,
    dir: &Path,
    batches: &[u64],
    seqs: &[u64],
    (packed_steps, packed_granule): (u64, u64),
) -> std::path::PathBuf {
    Fixture::tiny().write(dir).unwrap();
    let caps = device.caps().clone();
    let fingerprint = device_fingerprint(&device.info(), caps.target);
    let cache = Cache::open(dir.join("tune.db")).unwrap();
    let lookup = Lookup {
        cache: &cache,
        fingerprint: &fingerprint,
        caps: &caps,
    };
    let options = Options {
        model_dir: dir.to_path_buf(),
        dtype: DType::F16,
        batches: batches.to_vec(),
        seqs: seqs.to_vec(),
        packed_steps,
        packed_granule,
        fill_configs: tessera_compiler::tuning::FillConfigs::Borrow,
        dump_graph: None,
    };
    let compiled = compile(&options, &lookup, Mode::NoTune, &mut Silent).unwrap();
    let plan = dir.join("model.tsr");
    compiled.write(&plan).unwrap();
    plan
}

/// The weight `name` of the plan, decoded.
pub fn weight(plan: &Plan, bytes: &[u8], name: &str) -> Vec<f64> {
    let w = plan
        .weights
        .tensors
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no weight {name}"));
    let range = w.offset as usize..(w.offset + w.bytes) as usize;
    HostTensor::from_bytes(plan.dtype, &bytes[range])
        .unwrap()
        .values
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

pub fn i32s(b: &[u8]) -> Vec<i32> {
    b.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn f16s(b: &[u8]) -> Vec<f64> {
    HostTensor::from_bytes(DType::F16, b)
        .unwrap()
        .values
        .iter()
        .map(|&v| f64::from(v))
        .collect()
}

/// Drop the plan's glue launches (the pooler, if any): a plan of kernel launches only. (Plans
/// of this build have none; the edit keeps the tests meaningful for a plan that has one.)
pub fn all_kernel_plan(plan_path: &Path) {
    let file = plan_path.join("plan.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for b in v["buckets"].as_array_mut().unwrap() {
        let launches = b["launches"].as_array_mut().unwrap();
        launches.retain(|l| l["callee"] != "glue");
    }
    std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
}

pub type W = BTreeMap<String, Vec<f64>>;

pub fn linear(x: &[f64], w: &[f64], b: &[f64], k: usize) -> Vec<f64> {
    let n = b.len();
    x.chunks(k)
        .flat_map(|row| {
            (0..n).map(move |j| (0..k).map(|i| row[i] * w[j * k + i]).sum::<f64>() + b[j])
        })
        .collect()
}

pub fn layernorm(x: &mut [f64], g: &[f64], b: &[f64], eps: f64) {
    let h = g.len();
    for row in x.chunks_mut(h) {
        let mean = row.iter().sum::<f64>() / h as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        for (j, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) / (var + eps).sqrt() * g[j] + b[j];
        }
    }
}

pub fn erf(x: f64) -> f64 {
    // The Chebyshev fit of erfc from Numerical Recipes (fractional error below 1.2e-7
    // everywhere): far below the f16 error this test allows.
    let t = 1.0 / (1.0 + 0.5 * x.abs());
    let y = 1.0
        - t * (-x * x - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// One sequence of `ids` (all real tokens) through the model, f64: `[len, hidden]`.
pub fn forward(w: &W, f: &Fixture, ids: &[i64], types: &[i64]) -> Vec<f64> {
    let c = &f.config;
    let (h, heads, hd) = (c.hidden as usize, c.heads as usize, c.head_dim as usize);
    let eps = c.layer_norm_eps;
    let len = ids.len();
    let mut x: Vec<f64> = (0..len)
        .flat_map(|t| {
            (0..h).map(move |j| {
                w["embeddings.word_embeddings.weight"][ids[t] as usize * h + j]
                    + w["embeddings.position_embeddings.weight"][t * h + j]
                    + w["embeddings.token_type_embeddings.weight"][types[t] as usize * h + j]
            })
        })
        .collect();
    layernorm(
        &mut x,
        &w["embeddings.LayerNorm.weight"],
        &w["embeddings.LayerNorm.bias"],
        eps,
    );
    for l in 0..c.layers {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        let proj = |s: &str, x: &[f64]| {
            linear(
                x,
                &w[&p(&format!("{s}.weight"))],
                &w[&p(&format!("{s}.bias"))],
                h,
            )
        };
        let (q, k, v) = (
            proj("attention.self.query", &x),
            proj("attention.self.key", &x),
            proj("attention.self.value", &x),
        );
        let mut ctx = vec![0f64; len * h];
        for hh in 0..heads {
            for i in 0..len {
                let s: Vec<f64> = (0..len)
                    .map(|j| {
                        (0..hd)
                            .map(|d| q[i * h + hh * hd + d] * k[j * h + hh * hd + d])
                            .sum::<f64>()
                            / (hd as f64).sqrt()
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    ctx[i * h + hh * hd + d] =
                        (0..len).map(|j| e[j] / z * v[j * h + hh * hd + d]).sum();
                }
            }
        }
        let mut a = proj("attention.output.dense", &ctx);
        a.iter_mut().zip(&x).for_each(|(o, r)| *o += r);
        layernorm(
            &mut a,
            &w[&p("attention.output.LayerNorm.weight")],
            &w[&p("attention.output.LayerNorm.bias")],
            eps,
        );
        let inter = c.intermediate as usize;
        let mut u = linear(
            &a,
            &w[&p("intermediate.dense.weight")],
            &w[&p("intermediate.dense.bias")],
            h,
        );
        u.iter_mut()
            .for_each(|v| *v = 0.5 * *v * (1.0 + erf(*v / std::f64::consts::SQRT_2)));
        let mut o = linear(
            &u,
            &w[&p("output.dense.weight")],
            &w[&p("output.dense.bias")],
            inter,
        );
        o.iter_mut().zip(&a).for_each(|(o, r)| *o += r);
        layernorm(
            &mut o,
            &w[&p("output.LayerNorm.weight")],
            &w[&p("output.LayerNorm.bias")],
            eps,
        );
        x = o;
    }
    x
}

/// The checkpoint's weights in `dir/model.safetensors`, as f64.
pub fn checkpoint(dir: &Path) -> W {
    let st = SafetensorsFile::open(&dir.join("model.safetensors")).unwrap();
    st.tensors
        .iter()
        .filter_map(|(n, info)| {
            st.decode(info)
                .map(|t| (n.clone(), t.values.iter().map(|&v| f64::from(v)).collect()))
        })
        .collect()
}

/// A padded batch of 2 × 20 (lengths 20 and 13, both token types, ids over the vocabulary).
pub fn padded_batch() -> (Inputs, Vec<usize>) {
    let (batch, seq) = (2u64, 20u64);
    let lens = vec![20usize, 13];
    let x = Inputs {
        batch,
        seq,
        input_ids: (0..batch * seq).map(|i| (i * 37 % 100) as i64).collect(),
        attention_mask: Some(
            (0..batch * seq)
                .map(|i| i64::from(((i % seq) as usize) < lens[(i / seq) as usize]))
                .collect(),
        ),
        token_type_ids: Some((0..batch * seq).map(|i| i64::from(i % seq >= 10)).collect()),
    };
    (x, lens)
}

/// `batch` sequences padded to `seq` with random lengths in 1..=seq (seeded), the first of
/// the full length and the second of length 1 (when there are two).
pub fn ragged_batch(batch: u64, seq: u64, seed: u64) -> (Inputs, Vec<usize>) {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let lens: Vec<usize> = (0..batch)
        .map(|i| match i {
            0 => seq as usize,
            1 => 1,
            _ => 1 + (next() % seq) as usize,
        })
        .collect();
    let n = batch * seq;
    let x = Inputs {
        batch,
        seq,
        input_ids: (0..n).map(|_| (next() % 100) as i64).collect(),
        attention_mask: Some(
            (0..n)
                .map(|i| i64::from(((i % seq) as usize) < lens[(i / seq) as usize]))
                .collect(),
        ),
        token_type_ids: Some((0..n).map(|_| (next() % 2) as i64).collect()),
    };
    (x, lens)
}

/// (worst per-token cosine, worst absolute error) of `out` against the f64 forward pass, over
/// the real tokens of each sequence.
pub fn against_reference(
    out: &Output,
    w: &W,
    fixture: &Fixture,
    x: &Inputs,
    lens: &[usize],
) -> (f64, f64) {
    let seq = x.seq;
    let ids = &x.input_ids;
    let types = x
        .token_type_ids
        .clone()
        .unwrap_or_else(|| vec![0; ids.len()]);
    let h = out.hidden as usize;
    let mut worst_cos = 1f64;
    let mut worst_err = 0f64;
    for (b, &len) in lens.iter().enumerate() {
        let r = b * seq as usize;
        let want = forward(w, fixture, &ids[r..r + len], &types[r..r + len]);
        for t in 0..len {
            let got = &out.last_hidden_state[(r + t) * h..(r + t + 1) * h];
            let want = &want[t * h..(t + 1) * h];
            let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(*a) * b).sum();
            let ng: f64 = got
                .iter()
                .map(|a| f64::from(*a).powi(2))
                .sum::<f64>()
                .sqrt();
            let nw: f64 = want.iter().map(|b| b * b).sum::<f64>().sqrt();
            worst_cos = worst_cos.min(dot / (ng * nw));
            for (a, b) in got.iter().zip(want) {
                worst_err = worst_err.max((f64::from(*a) - b).abs());
            }
        }
    }
    (worst_cos, worst_err)
}
