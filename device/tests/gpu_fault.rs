//! The GPU fault test, alone in its own test binary: an illegal address poisons the CUDA context
//! of the whole process, so it must not share a process with other GPU tests.
#![cfg(feature = "gpu")]

use tessera_device::cuda::CudaDevice;
use tessera_device::{ArgValue, CompileRequest, Device, DeviceConfig, DeviceError, Launch};
use tessera_dsl::ir::Arg;
use tessera_dsl::DType;

const WILD: &str = r#"
extern "C" __global__ void wild_store(float* y, long long offset) {
    y[offset + threadIdx.x] = 1.0f;
}
"#;

#[test]
fn gpu_out_of_bounds_write_is_a_launch_error_naming_the_kernel() {
    let d = CudaDevice::open(&DeviceConfig::without_cache()).expect("a GPU");
    let abi = vec![
        Arg::Ptr {
            name: "y",
            dtype: DType::F32,
            written: true,
        },
        Arg::I64("offset"),
    ];
    let m = d
        .compile(&CompileRequest::new(
            "wild_store",
            WILD,
            d.caps().target,
            abi,
        ))
        .unwrap();
    let y = d.alloc(1024).unwrap();
    let launch = Launch::new([1, 1, 1], [32, 1, 1]);
    // In bounds: fine.
    d.launch(&m, &launch, &[ArgValue::ptr(&y), 0i64.into()])
        .unwrap();
    // 1 TiB past the buffer.
    let e = d
        .launch(&m, &launch, &[ArgValue::ptr(&y), (1i64 << 38).into()])
        .unwrap_err();
    eprintln!("{e}");
    match &e {
        DeviceError::Launch { kernel, message } => {
            assert_eq!(kernel, "wild_store");
            assert!(
                message.contains("ILLEGAL_ADDRESS") || message.contains("illegal"),
                "{message}"
            );
        }
        other => panic!("expected a launch error, got {other:?}"),
    }
    assert!(e.to_string().contains("wild_store"));
    // The context is gone now: later calls fail with errors, not panics.
    let after = d.alloc(16);
    eprintln!("after the fault: {after:?}");
}
