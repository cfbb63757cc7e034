//! Helpers shared by the executor tests: a host embedding (glue) in f64, plan weights decoded,
//! and the plan edit that leaves only launches this build has kernels for.
#![allow(dead_code)]

use std::path::Path;
use tessera_compiler::executor::GlueCall;
use tessera_compiler::Plan;
use tessera_dsl::DType;
use tessera_library::host::HostTensor;

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

/// BERT embeddings on the host in f64 (gather, sum, layernorm), as a glue implementation.
pub fn host_embedding(call: &GlueCall) -> Result<Vec<u8>, String> {
    let ids = i32s(&call.inputs["input_ids"]);
    let types = i32s(&call.inputs["token_type_ids"]);
    let word = f16s(&call.inputs["word"]);
    let pos = f16s(&call.inputs["position"]);
    let tt = f16s(&call.inputs["token_type"]);
    let gamma = f16s(&call.inputs["gamma"]);
    let beta = f16s(&call.inputs["beta"]);
    let h = gamma.len();
    let tokens = (call.output_bytes / 2) as usize / h;
    let seq = tokens / (tokens / ids.len().max(1)).max(1);
    let eps = call.scalars["eps"];
    let mut out = Vec::with_capacity(tokens * h);
    for t in 0..tokens {
        let p = t % seq;
        let x: Vec<f64> = (0..h)
            .map(|j| word[ids[t] as usize * h + j] + pos[p * h + j] + tt[types[t] as usize * h + j])
            .collect();
        let mean = x.iter().sum::<f64>() / h as f64;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / h as f64;
        for j in 0..h {
            out.push(((x[j] - mean) / (var + eps).sqrt() * gamma[j] + beta[j]) as f32);
        }
    }
    Ok(HostTensor {
        dtype: DType::F16,
        values: out,
    }
    .to_bytes())
}

/// Drop the plan's glue launches and store attention by heads: what the executor can run
/// with this build's kernels (the numbers are not BERT's; the launches, views and graphs are
/// the plan's).
pub fn all_kernel_plan(plan_path: &Path) {
    let file = plan_path.join("plan.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    for b in v["buckets"].as_array_mut().unwrap() {
        let launches = b["launches"].as_array_mut().unwrap();
        launches.retain(|l| l["callee"] != "glue");
        for l in launches.iter_mut() {
            if l.get("attention_store").is_some() {
                l["attention_store"] = "heads".into();
            }
        }
    }
    std::fs::write(&file, serde_json::to_string(&v).unwrap()).unwrap();
}
