//! `tessera devices`: the GPUs present, or one sentence saying why there are none (exit 0).
//! With `--json`, stdout is always JSON (`[]` when there are none; the reason goes to stderr).
//! NVIDIA GPUs come from the CUDA driver, AMD ones from the HIP runtime (when it loads).

use tessera_device::{cuda, hip, DeviceError, DeviceInfo};

/// AMD GPUs, when the HIP runtime is here; no ROCm is the usual case and says nothing.
fn amd_gpus() -> Vec<DeviceInfo> {
    match hip::list() {
        Ok(list) => list,
        Err(DeviceError::NoHipRuntime { .. }) => Vec::new(),
        Err(e) => {
            eprintln!("AMD GPUs cannot be listed: {e}");
            Vec::new()
        }
    }
}

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  tessera devices\n  tessera devices --json | jq '.[].name'")]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let amd = amd_gpus();
    let list = match cuda::list() {
        Ok(mut list) => {
            list.extend(amd);
            list
        }
        Err(_) if !amd.is_empty() => amd,
        Err(e) if args.json => {
            eprintln!("no GPU available: {e}");
            println!("[]");
            return Ok(());
        }
        Err(e) => {
            println!("no GPU available: {e}");
            return Ok(());
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no GPU available: the NVIDIA driver reports no device");
    }
    for d in list {
        println!(
            "{}: {}  arch {}  target {}  {} SMs  {:.1} GiB  driver {}  {}",
            d.ordinal,
            d.name,
            d.arch,
            d.target.map_or("unsupported", |t| t.name()),
            d.sm_count,
            d.memory_bytes as f64 / (1u64 << 30) as f64,
            d.driver_version,
            d.toolchain
        );
    }
    Ok(())
}
