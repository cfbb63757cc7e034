//! GPU tests for the CUDA device (`cargo test -p tessera-device --features gpu`), run on the
//! GPU machine. Kernel sources are self-contained (no #include).
#![cfg(feature = "gpu")]

use std::sync::atomic::{AtomicU64, Ordering};
use tessera_device::cuda::{self, CudaDevice};
use tessera_device::{
    ArgValue, CacheOutcome, CompileRequest, Device, DeviceConfig, DeviceError, Launch,
};
use tessera_dsl::ir::Arg;
use tessera_dsl::DType;

const AXPY: &str = r#"
extern "C" __global__ void axpy(float a, const float* x, float* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}
"#;

/// Reverses each block of `n` floats through dynamic shared memory (sized by the launch).
const REVERSE: &str = r#"
extern "C" __global__ void reverse_smem(const float* x, float* y, int n) {
    extern __shared__ float buf[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = x[i];
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = buf[n - 1 - i];
}
"#;

fn axpy_abi() -> Vec<Arg> {
    vec![
        Arg::F32("a"),
        Arg::Ptr {
            name: "x",
            dtype: DType::F32,
            written: false,
        },
        Arg::Ptr {
            name: "y",
            dtype: DType::F32,
            written: true,
        },
        Arg::I32("n"),
    ]
}

fn reverse_abi() -> Vec<Arg> {
    vec![
        Arg::Ptr {
            name: "x",
            dtype: DType::F32,
            written: false,
        },
        Arg::Ptr {
            name: "y",
            dtype: DType::F32,
            written: true,
        },
        Arg::I32("n"),
    ]
}

fn temp_cache() -> DeviceConfig {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tessera-gpu-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    DeviceConfig {
        module_cache_dir: Some(dir),
        ..DeviceConfig::default()
    }
}

fn open() -> CudaDevice {
    CudaDevice::open(&DeviceConfig::without_cache()).expect("a GPU")
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn gpu_info_and_list() {
    let d = open();
    let info = d.info();
    eprintln!("{info:?}\n{:?}", d.caps());
    assert!(!info.simulated);
    assert!(info.target.is_some());
    assert!(info.toolchain.starts_with("nvrtc "), "{}", info.toolchain);
    assert!(info.memory_bytes > 1 << 30);
    assert!(d.caps().sm_count > 0 && d.caps().l2_bytes > 0);
    let all = cuda::list().unwrap();
    assert!(!all.is_empty());
    assert_eq!(all[0].name, info.name);
}

#[test]
fn gpu_alloc_copy_round_trip() {
    let d = open();
    let n = (1 << 20) + 3;
    let b = d.alloc(n).unwrap();
    let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    d.upload(&b, &data).unwrap();
    let mut out = vec![0u8; n as usize];
    d.download(&b, &mut out).unwrap();
    assert_eq!(out, data);
    d.fill(&b, 0xAB).unwrap();
    d.download(&b, &mut out).unwrap();
    assert!(out.iter().all(|&x| x == 0xAB));
    assert!(matches!(
        d.upload(&b, &data[..10]),
        Err(DeviceError::SizeMismatch { .. })
    ));
    d.free(b).unwrap();
    assert_eq!(
        d.download(&b, &mut out),
        Err(DeviceError::InvalidBuffer { id: b.id() })
    );
    // Too big is an error, not a panic: beyond the device, and beyond what is free.
    assert!(matches!(
        d.alloc(u64::MAX / 2),
        Err(DeviceError::OutOfMemory { .. })
    ));
    let most = d.info().memory_bytes - (1 << 20);
    let big = d.alloc(most);
    assert!(
        matches!(big, Err(DeviceError::OutOfMemory { .. })),
        "{big:?}"
    );
    let empty = d.alloc(0).unwrap();
    d.upload(&empty, &[]).unwrap();
    d.free(empty).unwrap();
}

#[test]
fn gpu_kernel_launches_and_computes() {
    let config = temp_cache();
    let d = CudaDevice::open(&config).unwrap();
    let target = d.caps().target;
    let req = CompileRequest::new("axpy", AXPY, target, axpy_abi());
    let m = d.compile(&req).unwrap();
    let r = m.report();
    eprintln!(
        "axpy on {}: {:?}, {:.3}s, {:?}",
        d.arch(),
        r.usage,
        r.compile_seconds,
        r.cache
    );
    assert_eq!(r.cache, CacheOutcome::Miss);
    assert!(r.usage.registers.unwrap() > 0);
    assert_eq!(r.usage.spill_bytes(), Some(0));
    assert!(
        r.log.contains("Used"),
        "no ptxas -v output in the log:\n{}",
        r.log
    );

    let n = 10_000usize;
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let (bx, by) = (
        d.alloc(4 * n as u64).unwrap(),
        d.alloc(4 * n as u64).unwrap(),
    );
    d.upload(&bx, &f32_bytes(&x)).unwrap();
    d.upload(&by, &f32_bytes(&y)).unwrap();
    let launch = Launch::new([n.div_ceil(256) as u32, 1, 1], [256, 1, 1]);
    let args = [
        2.0f32.into(),
        ArgValue::ptr(&bx),
        ArgValue::ptr(&by),
        (n as i32).into(),
    ];
    d.launch(&m, &launch, &args).unwrap();
    let mut out = vec![0u8; 4 * n];
    d.download(&by, &mut out).unwrap();
    let got = bytes_f32(&out);
    for i in 0..n {
        assert_eq!(got[i], 2.0 * x[i] + y[i], "y[{i}]");
    }

    // Wrong argument kinds are caught before the driver sees them.
    let bad = [
        ArgValue::ptr(&bx),
        ArgValue::ptr(&bx),
        ArgValue::ptr(&by),
        (n as i32).into(),
    ];
    match d.launch(&m, &launch, &bad) {
        Err(DeviceError::ArgMismatch { kernel, message }) => {
            assert_eq!(kernel, "axpy");
            assert!(message.contains("`a`"), "{message}");
        }
        other => panic!("expected ArgMismatch, got {other:?}"),
    }
    // Too many threads per block: a launch error naming the kernel.
    let e = d
        .launch(&m, &Launch::new([1, 1, 1], [2048, 1, 1]), &args)
        .unwrap_err();
    assert!(
        matches!(&e, DeviceError::Launch { kernel, .. } if kernel == "axpy"),
        "{e}"
    );

    // A second device with the same cache compiles nothing.
    let d2 = CudaDevice::open(&config).unwrap();
    let m2 = d2.compile(&req).unwrap();
    assert_eq!(m2.report().cache, CacheOutcome::Hit);
    assert_eq!(m2.report().usage.registers, r.usage.registers);
    d.unload(&m).unwrap();
    assert!(matches!(
        d.launch(&m, &launch, &args),
        Err(DeviceError::UnknownModule { .. })
    ));
    // A compile error is typed and carries the log.
    let broken = CompileRequest::new(
        "broken",
        "extern \"C\" __global__ void broken() { nope(); }",
        target,
        vec![],
    );
    assert!(matches!(
        d.compile(&broken),
        Err(DeviceError::Compile { .. })
    ));
    if let Some(dir) = &config.module_cache_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[test]
fn gpu_dynamic_shared_memory_above_48k() {
    let d = open();
    let m = d
        .compile(&CompileRequest::new(
            "reverse_smem",
            REVERSE,
            d.caps().target,
            reverse_abi(),
        ))
        .unwrap();
    let n = 30_000usize; // 120,000 bytes of dynamic shared memory
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let (bx, by) = (
        d.alloc(4 * n as u64).unwrap(),
        d.alloc(4 * n as u64).unwrap(),
    );
    d.upload(&bx, &f32_bytes(&x)).unwrap();
    d.fill(&by, 0xFF).unwrap();
    let launch = Launch::new([1, 1, 1], [512, 1, 1]).with_dynamic_smem(4 * n as u32);
    d.launch(
        &m,
        &launch,
        &[ArgValue::ptr(&bx), ArgValue::ptr(&by), (n as i32).into()],
    )
    .unwrap();
    let mut out = vec![0u8; 4 * n];
    d.download(&by, &mut out).unwrap();
    let got = bytes_f32(&out);
    assert_eq!(got[0], (n - 1) as f32);
    assert_eq!(got[n - 1], 0.0);
    // More than the device has: a launch error, not a crash.
    let too_much =
        Launch::new([1, 1, 1], [512, 1, 1]).with_dynamic_smem(d.caps().smem_per_block + 1);
    let e = d
        .launch(
            &m,
            &too_much,
            &[ArgValue::ptr(&bx), ArgValue::ptr(&by), (n as i32).into()],
        )
        .unwrap_err();
    assert!(matches!(e, DeviceError::Launch { .. }), "{e}");
}

#[test]
fn gpu_event_timing_is_positive() {
    let d = open();
    let m = d
        .compile(&CompileRequest::new(
            "axpy",
            AXPY,
            d.caps().target,
            axpy_abi(),
        ))
        .unwrap();
    let n = 1usize << 24;
    let (bx, by) = (
        d.alloc(4 * n as u64).unwrap(),
        d.alloc(4 * n as u64).unwrap(),
    );
    d.fill(&bx, 0).unwrap();
    d.fill(&by, 0).unwrap();
    let launch = Launch::new([(n / 256) as u32, 1, 1], [256, 1, 1]);
    let args = [
        1.0f32.into(),
        ArgValue::ptr(&bx),
        ArgValue::ptr(&by),
        (n as i32).into(),
    ];
    for flush in [false, true] {
        let t = d.time(&m, &launch, &args, 3, 20, flush).unwrap();
        assert!(!t.simulated());
        assert_eq!(t.l2_flushed(), flush);
        assert_eq!(t.samples_ms().len(), 20);
        assert!(t.samples_ms().iter().all(|&s| s > 0.0));
        // 3 × 64 MiB moved: at most a few TB/s, so well above 20 µs.
        assert!(t.median() > 0.02, "{}", t.median());
        let gbs = 3.0 * 4.0 * n as f64 / (t.median() * 1e-3) / 1e9;
        eprintln!(
            "axpy 16M (flush {flush}): median {:.4} ms, p10 {:.4}, p90 {:.4}, {gbs:.0} GB/s",
            t.median(),
            t.p10(),
            t.p90()
        );
    }
    d.synchronize().unwrap();
}

/// Views as arguments, a created stream, view copies on it, capture of two launches into a
/// graph, replays that compute what eager launches compute, and event timing of a replay.
#[test]
fn gpu_views_streams_and_graph_replay() {
    let d = open();
    let m = d
        .compile(&CompileRequest::new(
            "axpy",
            AXPY,
            d.caps().target,
            axpy_abi(),
        ))
        .unwrap();
    let n = 1000usize;
    // one buffer: x at 0, y at 4096 (views), a 16-byte-misaligned view is refused
    let buf = d.alloc(8192).unwrap();
    let (xv, yv) = (buf.view(0, 4000).unwrap(), buf.view(4096, 4000).unwrap());
    let s = d.create_stream().unwrap();
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    d.upload_view(&s, &xv, &f32_bytes(&x)).unwrap();
    d.upload_view(&s, &yv, &f32_bytes(&vec![1.0; n])).unwrap();
    let launch = Launch::new([4, 1, 1], [256, 1, 1]);
    let args = [
        2.0f32.into(),
        ArgValue::view(xv),
        ArgValue::view(yv),
        (n as i32).into(),
    ];
    let bad = [
        2.0f32.into(),
        ArgValue::view(buf.view(2, 4000).unwrap()),
        ArgValue::view(yv),
        (n as i32).into(),
    ];
    assert!(matches!(
        d.launch_async(&s, &m, &launch, &bad),
        Err(DeviceError::InvalidView { .. })
    ));
    d.launch_async(&s, &m, &launch, &args).unwrap();
    let mut out = vec![0u8; 4000];
    d.download_view(&s, &yv, &mut out).unwrap();
    let want1: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect();
    assert_eq!(bytes_f32(&out), want1);
    // x untouched, the gap between the views untouched
    let mut whole = vec![0u8; 8192];
    d.download_view(&s, &buf.whole(), &mut whole).unwrap();
    assert_eq!(bytes_f32(&whole[..4000]), x);
    d.begin_capture(&s).unwrap();
    d.launch_async(&s, &m, &launch, &args).unwrap();
    d.launch_async(&s, &m, &launch, &args).unwrap();
    assert!(
        d.upload_view(&s, &yv, &out).is_err(),
        "no copies while capturing"
    );
    let g = d.end_capture(&s).unwrap();
    // capturing ran nothing
    d.download_view(&s, &yv, &mut out).unwrap();
    assert_eq!(bytes_f32(&out), want1);
    let t0 = d.record_event(&s).unwrap();
    d.launch_graph(&g, &s).unwrap();
    let t1 = d.record_event(&s).unwrap();
    d.synchronize_stream(&s).unwrap();
    d.download_view(&s, &yv, &mut out).unwrap();
    let want3: Vec<f32> = x.iter().map(|v| 6.0 * v + 1.0).collect();
    assert_eq!(bytes_f32(&out), want3);
    let ms = d.elapsed_ms(&t0, &t1).unwrap();
    eprintln!("graph of 2 axpy launches: {ms:.4} ms");
    assert!(ms > 0.0 && ms < 100.0);
    for e in [t0, t1] {
        d.destroy_event(e).unwrap();
    }
    d.destroy_graph(g).unwrap();
    assert!(d.launch_graph(&g, &s).is_err());
    d.destroy_stream(s).unwrap();
    assert!(d.synchronize_stream(&s).is_err());
}
