//! Load a compiled plan and run it from Rust:
//! `cargo run --example run_plan -p tessera-compiler -- model.tsr [--sim]`.
//! Runs one sequence of 8 tokens and prints the first values of its last hidden state.

use tessera_compiler::{ExecOptions, Executor, Inputs, Plan};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig, SimDevice};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = std::path::PathBuf::from(args.first().map_or("model.tsr", String::as_str));
    let device: Box<dyn Device> = if args.iter().any(|a| a == "--sim") {
        Box::new(SimDevice::new(Plan::load(&dir)?.device.arch.parse()?))
    } else {
        Box::new(CudaDevice::open(&DeviceConfig::default())?)
    };
    let exec = Executor::load(&dir, device.as_ref(), ExecOptions::default())?;
    let out = exec.run(&Inputs {
        batch: 1,
        seq: 8,
        input_ids: vec![1, 5, 9, 2, 7, 3, 4, 6],
        attention_mask: None,
        token_type_ids: None,
    })?;
    println!("bucket {}: {:?}", out.bucket, &out.last_hidden_state[..8]);
    Ok(())
}
