//! GPU tests for the HIP device (`cargo test -p tessera-device --features gpu gpu_hip_`), run on
//! a machine with an AMD gfx90a or gfx942 GPU and ROCm. They have never run here: no AMD GPU
//! is available to this project (`scripts/gpu-run.sh` on the NVIDIA machine skips them).
#![cfg(feature = "gpu")]

use tessera_device::hip::{self, HipDevice};
use tessera_device::{ArgValue, Device, DeviceConfig, DeviceError, Launch};
use tessera_device::{CacheOutcome, CompileRequest};
use tessera_dsl::ir::Arg;
use tessera_dsl::{DType, Vendor};

/// One row per block of 64 threads (one wavefront): mean and variance by a block reduction
/// through LDS, then `y = (x - mean) / sqrt(var + eps) * gamma + beta`.
const LAYERNORM: &str = r#"
#include <hip/hip_runtime.h>
extern "C" __global__ void __launch_bounds__(64) layernorm_f32(
    const float* x, const float* gamma, const float* beta, float* y, int hidden, float eps) {
    __shared__ float partial[64];
    const float* row = x + (long)blockIdx.x * hidden;
    float* out = y + (long)blockIdx.x * hidden;
    float s = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) s += row[i];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int k = 32; k > 0; k >>= 1) {
        if (threadIdx.x < k) partial[threadIdx.x] += partial[threadIdx.x + k];
        __syncthreads();
    }
    float mean = partial[0] / hidden;
    __syncthreads();
    float v = 0.0f;
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) { float d = row[i] - mean; v += d * d; }
    partial[threadIdx.x] = v;
    __syncthreads();
    for (int k = 32; k > 0; k >>= 1) {
        if (threadIdx.x < k) partial[threadIdx.x] += partial[threadIdx.x + k];
        __syncthreads();
    }
    float rstd = rsqrtf(partial[0] / hidden + eps);
    for (int i = threadIdx.x; i < hidden; i += blockDim.x)
        out[i] = (row[i] - mean) * rstd * gamma[i] + beta[i];
}
"#;

fn ptr(name: &'static str, written: bool) -> Arg {
    Arg::Ptr {
        name,
        dtype: DType::F32,
        written,
    }
}

fn abi() -> Vec<Arg> {
    vec![
        ptr("x", false),
        ptr("gamma", false),
        ptr("beta", false),
        ptr("y", true),
        Arg::I32("hidden"),
        Arg::F32("eps"),
    ]
}

fn open() -> HipDevice {
    HipDevice::open(&DeviceConfig::without_cache()).expect("an AMD gfx90a or gfx942 GPU")
}

fn bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|f| f.to_le_bytes()).collect()
}

fn floats(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Deterministic, non-zero, non-constant inputs.
fn inputs(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn reference(x: &[f32], gamma: &[f32], beta: &[f32], hidden: usize, eps: f32) -> Vec<f32> {
    x.chunks_exact(hidden)
        .flat_map(|row| {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / hidden as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / hidden as f64;
            let rstd = 1.0 / (var + f64::from(eps)).sqrt();
            row.iter()
                .zip(gamma.iter().zip(beta))
                .map(move |(&v, (&g, &b))| {
                    ((f64::from(v) - mean) * rstd * f64::from(g) + f64::from(b)) as f32
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn gpu_hip_lists_and_opens_an_amd_gpu() {
    let all = hip::list().expect("the HIP runtime");
    assert!(!all.is_empty(), "no AMD GPU listed");
    let d = open();
    let info = d.info();
    let caps = d.caps();
    assert_eq!(info.target.map(|t| t.vendor()), Some(Vendor::Amd));
    assert!(info.arch.starts_with("gfx"), "{}", info.arch);
    assert_eq!(caps.warp_size, 64);
    assert!(
        caps.sm_count > 0 && caps.smem_per_block >= 65_536,
        "{caps:?}"
    );
    assert!(!info.simulated);
    eprintln!("{info:?}");
}

/// Compile a layernorm with hiprtc, run it on fresh random inputs with the output poisoned
/// first, and check it against the f64 CPU reference; then time it with HIP events.
#[test]
fn gpu_hip_layernorm_compiles_launches_matches_and_times() {
    let d = open();
    let target = d.caps().target;
    let module = d
        .compile(&CompileRequest::new(
            "layernorm_f32",
            LAYERNORM,
            target,
            abi(),
        ))
        .expect("hiprtc compiles the layernorm");
    assert_eq!(module.report().cache, CacheOutcome::Disabled);
    eprintln!("{:?}", module.report().usage);

    let (rows, hidden, eps) = (37usize, 1000usize, 1e-5f32);
    let x = inputs(rows * hidden, 1);
    let gamma = inputs(hidden, 2);
    let beta = inputs(hidden, 3);
    let bufs: Vec<_> = [x.len(), hidden, hidden, x.len()]
        .iter()
        .map(|&n| d.alloc(4 * n as u64).unwrap())
        .collect();
    d.upload(&bufs[0], &bytes(&x)).unwrap();
    d.upload(&bufs[1], &bytes(&gamma)).unwrap();
    d.upload(&bufs[2], &bytes(&beta)).unwrap();
    d.fill(&bufs[3], 0xff).unwrap(); // NaN poison
    let args = [
        ArgValue::ptr(&bufs[0]),
        ArgValue::ptr(&bufs[1]),
        ArgValue::ptr(&bufs[2]),
        ArgValue::ptr(&bufs[3]),
        ArgValue::I32(hidden as i32),
        ArgValue::F32(eps),
    ];
    let launch = Launch::new([rows as u32, 1, 1], [64, 1, 1]);
    d.launch(&module, &launch, &args).unwrap();
    let mut out = vec![0u8; 4 * x.len()];
    d.download(&bufs[3], &mut out).unwrap();
    let got = floats(&out);
    let want = reference(&x, &gamma, &beta, hidden, eps);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.is_finite() && (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "element {i}: got {g}, want {w}"
        );
    }

    // the ABI is checked before anything reaches the runtime
    let e = d.launch(&module, &launch, &args[..5]).unwrap_err();
    assert!(matches!(e, DeviceError::ArgMismatch { .. }), "{e}");

    let t = d.time(&module, &launch, &args, 3, 20, true).unwrap();
    assert_eq!(t.samples_ms().len(), 20);
    assert!(
        t.samples_ms().iter().all(|&ms| ms > 0.0 && ms < 1000.0),
        "{t:?}"
    );
    assert!(!t.simulated() && t.l2_flushed());

    // events on a created stream
    let s = d.create_stream().unwrap();
    let start = d.record_event(&s).unwrap();
    d.launch_async(&s, &module, &launch, &args).unwrap();
    let end = d.record_event(&s).unwrap();
    let ms = d.elapsed_ms(&start, &end).unwrap();
    assert!(ms > 0.0 && ms < 1000.0, "{ms}");
    d.destroy_event(start).unwrap();
    d.destroy_event(end).unwrap();
    d.synchronize_stream(&s).unwrap();
    d.destroy_stream(s).unwrap();

    for b in bufs {
        d.free(b).unwrap();
    }
    d.unload(&module).unwrap();
    d.synchronize().unwrap();
}
