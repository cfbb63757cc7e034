//! `tessera run` and `tessera bench`: a compiled plan loaded by the executor and run on inputs
//! from a safetensors file, or timed on one bucket or on a batch of given lengths (graph replay
//! or the eager launch list, by device events, median; plus each launch timed alone, eagerly,
//! summed per kernel kind). `--padding` picks padded or packed buckets, or lets the executor
//! choose by the times it measures at load.
//!
//! It owns argument parsing, the input/output files and the report; everything that runs is
//! `tessera_compiler::executor`'s.

use crate::usage::usage;
use anyhow::Context;
use clap::Args as ClapArgs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tessera_compiler::bucket::Bucket;
use tessera_compiler::executor::{ExecError, Padding};
use tessera_compiler::import::safetensors::{self, SafetensorsFile};
use tessera_compiler::{ExecOptions, Executor, Inputs, Plan};
use tessera_device::cuda::CudaDevice;
use tessera_device::hip::HipDevice;
use tessera_device::{Device, DeviceConfig, SimDevice};
use tessera_dsl::{DType, Target};
use tessera_library::host::HostTensor;

#[derive(ClapArgs)]
pub struct RunArgs {
    /// The plan directory `tessera compile` wrote.
    pub plan: PathBuf,
    /// A safetensors file with `input_ids` [batch, seq] (I64 or I32), and optionally
    /// `attention_mask` and `token_type_ids` of the same shape.
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write `last_hidden_state` [batch, seq, hidden] (F32; zeros past each
    /// sequence's length).
    #[arg(short = 'o', long)]
    pub out: PathBuf,
    /// Write the real tokens only: `last_hidden_state` [tokens, hidden] and `cu_seqlens`
    /// [batch + 1] (I64 offsets where each sequence starts, then the total).
    #[arg(long)]
    pub packed_output: bool,
    #[command(flatten)]
    pub padding: PaddingArg,
    /// Run the launch list eagerly instead of replaying the bucket's CUDA graph.
    #[arg(long)]
    pub no_graph: bool,
    /// Synchronize after every launch (a fault names its node) and write every node's output
    /// to `<out>.nodes/` (also when a later node fails).
    #[arg(long)]
    pub debug_nodes: bool,
    /// Run on the simulated device (for plans compiled with --sim).
    #[arg(long)]
    pub sim: bool,
}

/// `--padding`, shared by run and bench.
#[derive(ClapArgs)]
pub struct PaddingArg {
    /// Run a batch padded to a (batch, seq) bucket, packed (its real tokens only, in a
    /// token-count bucket), or `auto`: the packed bucket that fits it when that replayed at
    /// least 3 % faster than the padded one when the plan was loaded, else the padded one.
    #[arg(long, value_enum, default_value = "auto")]
    pub padding: PaddingChoice,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PaddingChoice {
    Padded,
    Packed,
    Auto,
}

impl PaddingArg {
    fn get(&self) -> Padding {
        match self.padding {
            PaddingChoice::Padded => Padding::Padded,
            PaddingChoice::Packed => Padding::Packed,
            PaddingChoice::Auto => Padding::Auto,
        }
    }
}

#[derive(ClapArgs)]
pub struct BenchArgs {
    /// The plan directory `tessera compile` wrote.
    pub plan: PathBuf,
    /// Batch size of the padded bucket to time.
    #[arg(long, required_unless_present = "lens", conflicts_with = "lens")]
    pub batch: Option<u64>,
    /// Sequence length of the bucket to time (with --lens: the batch's padded length).
    #[arg(long)]
    pub seq: u64,
    /// Time a batch of sequences of these lengths (comma separated, each in 1..=seq) in the
    /// bucket `--padding` picks for it, on those lengths.
    #[arg(long, value_delimiter = ',')]
    pub lens: Option<Vec<u64>>,
    #[command(flatten)]
    pub padding: PaddingArg,
    /// Timed runs (median reported).
    #[arg(long, default_value_t = 50, value_parser = crate::settings::at_least_one)]
    pub iters: u32,
    /// Time the eager launch list instead of the graph.
    #[arg(long)]
    pub no_graph: bool,
    /// With --lens: also time the padded and the packed bucket that hold the batch (the two
    /// `auto` weighs) in the same process, in interleaved rounds, on the batch's lengths.
    #[arg(long)]
    pub candidates: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Run on the simulated device (for plans compiled with --sim).
    #[arg(long)]
    pub sim: bool,
}

/// The device a plan runs on: the simulated one of the plan's target, or GPU 0 (AMD GPU 0
/// through the HIP runtime for a plan compiled for an AMD target).
fn open_device(plan_dir: &Path, sim: bool) -> anyhow::Result<Box<dyn Device>> {
    if sim {
        let plan = Plan::load(plan_dir)?;
        let target: Target = plan.device.arch.parse().map_err(|_| {
            usage(format!(
                "the plan's arch `{}` is not a target",
                plan.device.arch
            ))
        })?;
        // the simulated model the plan was compiled for (an H200's plan on a simulated H200)
        return Ok(Box::new(
            match tessera_dsl::GpuModel::from_device_name(&plan.device.name) {
                Some(model) if model.target() == target => SimDevice::for_model(model),
                _ => SimDevice::new(target),
            },
        ));
    }
    let amd = Plan::load(plan_dir)
        .ok()
        .and_then(|plan| plan.device.arch.parse::<Target>().ok())
        .is_some_and(|t| t.vendor() == tessera_dsl::Vendor::Amd);
    if amd {
        return Ok(Box::new(HipDevice::open(&DeviceConfig::default())?));
    }
    Ok(Box::new(CudaDevice::open(&DeviceConfig::default())?))
}

fn exec_error(e: ExecError) -> anyhow::Error {
    match e {
        ExecError::Input(_) | ExecError::Bucket(_) => usage(e),
        e => anyhow::Error::new(e),
    }
}

/// An integer tensor of the input file as i64, with its shape.
fn ints(f: &SafetensorsFile, name: &str) -> anyhow::Result<Option<(Vec<u64>, Vec<i64>)>> {
    let Some(info) = f.tensors.get(name) else {
        return Ok(None);
    };
    let raw = f.raw(info);
    let values: Vec<i64> = match info.dtype_name.as_str() {
        "I64" => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        "I32" => raw
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        other => {
            return Err(usage(format!(
                "{}: `{name}` is {other}; use I64 or I32",
                f.path.display()
            )))
        }
    };
    Ok(Some((info.shape.clone(), values)))
}

fn read_inputs(path: &Path) -> anyhow::Result<Inputs> {
    let f = SafetensorsFile::open(path).map_err(usage)?;
    let (shape, ids) = ints(&f, "input_ids")?
        .ok_or_else(|| usage(format!("{}: no `input_ids` tensor", path.display())))?;
    let [batch, seq] = shape[..] else {
        return Err(usage(format!(
            "{}: `input_ids` has shape {shape:?}; expected [batch, seq]",
            path.display()
        )));
    };
    let same = |name: &str| -> anyhow::Result<Option<Vec<i64>>> {
        match ints(&f, name)? {
            None => Ok(None),
            Some((s, v)) if s == shape => Ok(Some(v)),
            Some((s, _)) => Err(usage(format!(
                "{}: `{name}` has shape {s:?}, `input_ids` {shape:?}",
                path.display()
            ))),
        }
    };
    Ok(Inputs {
        batch,
        seq,
        input_ids: ids,
        attention_mask: same("attention_mask")?,
        token_type_ids: same("token_type_ids")?,
    })
}

fn write_f32(path: &Path, name: &str, shape: Vec<u64>, values: Vec<f32>) -> anyhow::Result<()> {
    let tensors = BTreeMap::from([(
        name.to_string(),
        HostTensor {
            dtype: DType::F32,
            values,
        },
    )]);
    let shapes = BTreeMap::from([(name.to_string(), shape)]);
    std::fs::write(path, safetensors::to_bytes(&tensors, &shapes))
        .with_context(|| format!("writing {}", path.display()))
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let inputs = read_inputs(&args.input)?;
    let device = open_device(&args.plan, args.sim)?;
    let options = ExecOptions {
        graphs: !args.no_graph,
        debug_nodes: args.debug_nodes,
        padding: args.padding.get(),
    };
    let exec = Executor::load(&args.plan, device.as_ref(), options).map_err(exec_error)?;
    let (nodes, result) = exec.run_debug(&inputs);
    if args.debug_nodes {
        let dir = PathBuf::from(format!("{}.nodes", args.out.display()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let dtype = exec.plan().dtype;
        for (i, (node, bytes)) in nodes.iter().enumerate() {
            let values = tessera_compiler::executor::decode(dtype, bytes).unwrap_or_default();
            let n = values.len() as u64;
            write_f32(
                &dir.join(format!("{i:03}-{node}.safetensors")),
                node,
                vec![n],
                values,
            )?;
        }
        eprintln!("{} node outputs in {}", nodes.len(), dir.display());
    }
    let out = result.map_err(exec_error)?;
    if args.packed_output {
        let (rows, offsets) = out.packed();
        let total = offsets.last().copied().unwrap_or(0);
        let name = "last_hidden_state".to_string();
        let tensors = BTreeMap::from([(
            name.clone(),
            HostTensor {
                dtype: DType::F32,
                values: rows,
            },
        )]);
        let shapes = BTreeMap::from([(name, vec![total, out.hidden])]);
        let ints = BTreeMap::from([(
            "cu_seqlens".to_string(),
            offsets.iter().map(|&o| o as i64).collect(),
        )]);
        std::fs::write(
            &args.out,
            safetensors::to_bytes_with_ints(&tensors, &shapes, &ints),
        )
        .with_context(|| format!("writing {}", args.out.display()))?;
    } else {
        write_f32(
            &args.out,
            "last_hidden_state",
            vec![out.batch, out.seq, out.hidden],
            out.last_hidden_state,
        )?;
    }
    if let Some(why) = auto_report(&exec, &inputs) {
        eprintln!("{}", why.0);
    }
    eprintln!(
        "ran batch {} × seq {} in bucket {} (padding {}, {}){}; wrote {}",
        out.batch,
        out.seq,
        out.bucket,
        options.padding.name(),
        if options.graphs && !options.debug_nodes {
            "graph"
        } else {
            "eager"
        },
        if device.info().simulated {
            " on a SIMULATED device"
        } else {
            ""
        },
        args.out.display()
    );
    Ok(())
}

/// With `--padding auto`: the two candidates for `x` with their replay times measured at load,
/// as a sentence and as JSON.
fn auto_report(exec: &Executor, x: &Inputs) -> Option<(String, serde_json::Value)> {
    if exec.options().padding != Padding::Auto {
        return None;
    }
    let lens = exec.check_inputs(x).ok()?;
    let c = exec.auto_choice(x, &lens).ok()?;
    let side = |s: Option<(Bucket, Option<f64>)>| match s {
        Some((b, Some(ms))) => (
            format!("{b} ({ms:.4} ms)"),
            serde_json::json!({"bucket": b.to_string(), "load_ms": ms}),
        ),
        Some((b, None)) => (
            format!("{b} (not measured)"),
            serde_json::json!({"bucket": b.to_string()}),
        ),
        None => ("none fits".to_string(), serde_json::Value::Null),
    };
    let (padded, pj) = side(c.padded);
    let (packed, kj) = side(c.packed);
    Some((
        format!(
            "padding auto, by the replay times measured at load: padded {padded}, packed {packed} -> {}",
            c.chosen
        ),
        serde_json::json!({"padded": pj, "packed": kj, "chosen": c.chosen.to_string()}),
    ))
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let device = open_device(&args.plan, args.sim)?;
    let options = ExecOptions {
        graphs: !args.no_graph,
        debug_nodes: false,
        padding: args.padding.get(),
    };
    if args.candidates && args.lens.is_none() {
        return Err(usage(
            "--candidates times the buckets that hold a batch of --lens: give --lens",
        ));
    }
    if let Some(lens) = &args.lens {
        if let Some(&bad) = lens.iter().find(|&&l| l == 0 || l > args.seq) {
            return Err(usage(format!(
                "--lens: length {bad} is outside 1..={} (--seq)",
                args.seq
            )));
        }
    }
    let exec = Executor::load(&args.plan, device.as_ref(), options).map_err(exec_error)?;
    let mut auto = None;
    let (bucket, t) = match (&args.lens, args.batch) {
        (Some(lens), _) => {
            let x = Inputs::with_lengths(args.seq, lens);
            auto = auto_report(&exec, &x);
            exec.time_input(&x, 5, args.iters).map_err(exec_error)?
        }
        (None, Some(batch)) => {
            let bucket = Bucket::padded(batch, args.seq);
            if !exec.plan().bucket_list().contains(&bucket) {
                return Err(usage(format!(
                    "the plan has no bucket {bucket}; it has {}",
                    exec.plan()
                        .bucket_list()
                        .iter()
                        .filter(|b| !b.is_packed())
                        .map(|b| format!("{}x{}", b.batch, b.seq))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            (
                bucket,
                exec.time(bucket, 5, args.iters).map_err(exec_error)?,
            )
        }
        (None, None) => return Err(usage("give --batch or --lens")),
    };
    let candidates = match (&args.lens, args.candidates) {
        (Some(lens), true) => candidates(&exec, &Inputs::with_lengths(args.seq, lens), args.iters)?,
        _ => Vec::new(),
    };
    let breakdown = exec.breakdown(bucket, 5).map_err(exec_error)?;
    let parts = breakdown.by_kind();
    let sum = breakdown.total_ms();
    let simulated = device.info().simulated;
    let mode = if options.graphs { "graph" } else { "eager" };
    if args.json {
        let kinds: serde_json::Map<String, serde_json::Value> = parts
            .iter()
            .map(|(k, v)| (k.name().to_string(), serde_json::json!(v)))
            .collect();
        let v = serde_json::json!({
            "batch": args.batch.unwrap_or(bucket.batch),
            "seq": args.seq,
            "bucket": bucket.to_string(),
            "packed_tokens": bucket.packed_tokens,
            "padding": options.padding.name(),
            "lens": args.lens,
            "auto": auto.as_ref().map(|a| a.1.clone()),
            "candidates": candidates
                .iter()
                .map(|(b, t)| serde_json::json!({
                    "bucket": b.to_string(),
                    "packed": b.is_packed(),
                    "median_ms": t.median(),
                    "p10_ms": t.p10(),
                    "p90_ms": t.p90(),
                    "samples": t.samples_ms().len(),
                }))
                .collect::<Vec<_>>(),
            "mode": mode,
            "iters": args.iters,
            "median_ms": t.median(),
            "p10_ms": t.p10(),
            "p90_ms": t.p90(),
            "kernel_sum_ms": sum,
            "by_kind_ms": kinds,
            "by_kernel": breakdown
                .by_kernel()
                .iter()
                .map(|k| serde_json::json!({
                    "kernel": k.kernel,
                    "kind": k.kind.name(),
                    "launches": k.launches,
                    "total_ms": k.total_ms,
                }))
                .collect::<Vec<_>>(),
            "device": device.info().name,
            "simulated": simulated,
        });
        println!("{v}");
    } else {
        if let Some((why, _)) = &auto {
            println!("{why}");
        }
        for (b, t) in &candidates {
            println!(
                "candidate {b}: median {:.4} ms over {} replays in {CANDIDATE_ROUNDS} interleaved rounds",
                t.median(),
                t.samples_ms().len()
            );
        }
        println!(
            "bucket {bucket}: {mode} median {:.4} ms (p10 {:.4}, p90 {:.4}){}",
            t.median(),
            t.p10(),
            t.p90(),
            if simulated { " SIMULATED" } else { "" }
        );
        for (k, v) in &parts {
            println!(
                "  {:<10} {:>9.4} ms  {:>5.1}%",
                k.name(),
                v,
                100.0 * v / sum.max(f64::MIN_POSITIVE)
            );
        }
        println!("  launches alone sum to {sum:.4} ms; by kernel:");
        for k in breakdown.by_kernel() {
            println!("  {:>9.4} ms  {:>3}x  {}", k.total_ms, k.launches, k.kernel);
        }
    }
    Ok(())
}

/// Rounds of `bench --candidates`: each bucket's replays are split over this many rounds,
/// bucket after bucket, so drift in the device's clocks reaches both alike.
const CANDIDATE_ROUNDS: u32 = 5;

/// The padded and the packed bucket that hold `x` (those that exist), timed in
/// [`CANDIDATE_ROUNDS`] interleaved rounds of about `iters / rounds` replays each.
fn candidates(
    exec: &Executor,
    x: &Inputs,
    iters: u32,
) -> anyhow::Result<Vec<(Bucket, tessera_device::Timing)>> {
    let lens = exec.check_inputs(x).map_err(exec_error)?;
    let c = exec.auto_choice(x, &lens).map_err(exec_error)?;
    let buckets: Vec<Bucket> = [c.padded, c.packed]
        .into_iter()
        .flatten()
        .map(|(b, _)| b)
        .collect();
    let per_round = iters.div_ceil(CANDIDATE_ROUNDS).max(1);
    let timings = exec
        .time_input_rounds(x, &buckets, 2, per_round, CANDIDATE_ROUNDS)
        .map_err(exec_error)?;
    Ok(buckets.into_iter().zip(timings).collect())
}
