//! `tessera worker` (internal): the process `tessera tune` starts to compile or measure
//! candidates; it reads JSON requests on stdin and answers on stdout (see `tessera_tuner::worker`).

use tessera_device::cuda::CudaDevice;
use tessera_device::hip::HipDevice;
use tessera_device::module_cache::ModuleCache;
use tessera_device::{Device, DeviceConfig, SimDevice};
use tessera_dsl::{GpuModel, Target};
use tessera_tuner::worker::{serve, WorkerContext};

#[derive(clap::Args)]
pub struct Args {
    /// `cuda:ORDINAL`, `hip:ORDINAL`, `sim:MODEL` (`sim:h200`, or `sim:h200:1` for GPU 1 of a
    /// simulated host), `sim:TARGET` or `none` (compile only).
    #[arg(long)]
    device: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let config = DeviceConfig::default();
    let module_cache = config.module_cache_dir.clone().map(ModuleCache::new);
    let device: Option<Box<dyn Device>> = match args.device.split_once(':') {
        Some(("cuda", ordinal)) => {
            let ordinal: u32 = ordinal.parse()?;
            Some(Box::new(CudaDevice::open(&DeviceConfig {
                ordinal,
                ..config
            })?))
        }
        Some(("hip", ordinal)) => {
            let ordinal: u32 = ordinal.parse()?;
            Some(Box::new(HipDevice::open(&DeviceConfig {
                ordinal,
                ..config
            })?))
        }
        // `sim:h200` (a model) or `sim:sm_90a` (a target's reference model), optionally
        // `:N` for one GPU of a simulated multi-GPU host (all alike)
        Some(("sim", spec)) => Some(Box::new({
            let kind = match spec.rsplit_once(':') {
                Some((kind, n)) if n.parse::<u32>().is_ok() => kind,
                _ => spec,
            };
            match GpuModel::parse(kind) {
                Some(model) => SimDevice::for_model(model),
                None => SimDevice::new(kind.parse::<Target>()?),
            }
        })),
        None if args.device == "none" => None,
        _ => anyhow::bail!("worker: unknown --device `{}`", args.device),
    };
    let ctx = WorkerContext {
        device: device.as_deref(),
        module_cache,
        log: std::env::var_os("TESSERA_WORKER_LOG")
            .map(|p| (std::path::PathBuf::from(p), args.device.clone())),
    };
    let stdin = std::io::stdin();
    serve(&ctx, stdin.lock(), std::io::stdout())?;
    Ok(())
}
