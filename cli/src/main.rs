//! `tessera`: the command line over every Tessera crate.
//!
//! Each subcommand lives in its own module; this file only parses arguments and maps errors to
//! exit codes: 2 for bad input (with a message naming the valid choices), 1 for failures.
//! Everything printed to stdout goes through [`output`] (a closed pipe is a clean exit).

/// `print!` for this crate: stdout through [`output::write`] (no panic on a closed pipe).
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), false)
    };
}

/// `println!` for this crate: stdout through [`output::write`] (no panic on a closed pipe).
macro_rules! println {
    () => {
        $crate::output::write(format_args!(""), true)
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*), true)
    };
}

mod cache;
mod compile;
mod devices;
mod emit;
mod inspect;
mod output;
mod plot;
mod problem_args;
mod run;
mod settings;
mod templates;
mod tune;
mod usage;
mod worker;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tessera",
    version,
    about = "Write, tune and ship fast GPU kernels for transformer inference",
    after_help = "Examples:\n  tessera tune --gpu h100 --shapes examples/shapes/bert.yaml\n  tessera cache ls\n  tessera compile bert-base/ --gpu h100 --batch 1,8 --seq 128,384 -o bert.tsr\n  tessera bench bert.tsr --batch 8 --seq 384"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List templates with their parameters and space sizes.
    #[command(
        after_help = "Examples:\n  tessera templates\n  tessera templates --json | jq '.[].name'"
    )]
    Templates(templates::Args),
    /// Tune templates for the problems of a shapes file on a GPU; results go to the cache.
    #[command(
        after_help = "Examples:\n  tessera tune --gpu h100 --shapes examples/shapes/bert.yaml\n  tessera tune --gpu h100 --sim --shapes examples/shapes/bert.yaml --templates gemm --budget 60\n  tessera tune --gpu h100 --shapes examples/shapes/bert.yaml --resume\n  tessera tune --gpu h200 --shapes examples/shapes/bert.yaml --gpus 0,1\n  tessera tune --gpu h200 --shapes examples/shapes/bert.yaml --keep 4\n  tessera tune --gpu h200 --shapes examples/shapes/bert.yaml --cache full.db --prune-audit\n  tessera tune --gpu mi250 --compile-only --shapes examples/shapes/bert.yaml"
    )]
    Tune(Box<tune::Args>),
    /// Inspect and share tuning caches: ls, why, export, import, merge, diff, gc.
    #[command(
        after_help = "Examples:\n  tessera cache ls\n  tessera cache why 'm=384 n=768'\n  tessera cache export --device H100 -o h100.db\n  tessera cache merge mine.db theirs.db -o team.db"
    )]
    Cache(cache::Args),
    /// Draw tuning results: sweep, roofline, compare.
    #[command(
        after_help = "Examples:\n  tessera plot sweep --problem 'm=384 n=768 k=768' -o sweep.png\n  tessera plot roofline -o roofline.svg\n  tessera plot compare old.db new.db -o speedup.png"
    )]
    Plot(plot::Args),
    /// Internal: the worker process `tessera tune` starts.
    #[command(hide = true)]
    Worker(worker::Args),
    /// List GPUs with name, arch, SM count, memory, driver and NVRTC version.
    Devices(devices::Args),
    /// Compile a model (BERT: config.json + model.safetensors) into a plan of tuned kernels.
    #[command(
        after_help = "Examples:\n  tessera compile bert-base/ --gpu h100 --batch 1,8,32 --seq 128,384 -o bert.tsr\n  tessera compile bert-base/ --gpu h100 --sim --batch 1 --seq 128 --no-tune -o bert.tsr"
    )]
    Compile(Box<compile::Args>),
    /// Show a compiled plan: buckets, kernels and their tuning, memory plan.
    #[command(
        after_help = "Examples:\n  tessera inspect bert.tsr\n  tessera inspect bert.tsr --json\n  tessera inspect bert.tsr --shapes > bert-plan.yaml && tessera tune --gpu h200 --shapes bert-plan.yaml"
    )]
    Inspect(inspect::Args),
    /// Run a compiled plan on inputs from a safetensors file.
    #[command(
        after_help = "Examples:\n  tessera run bert.tsr --input in.safetensors -o out.safetensors\n  tessera run bert.tsr --input in.safetensors -o out.safetensors --sim --debug-nodes"
    )]
    Run(Box<run::RunArgs>),
    /// Time a compiled plan on one bucket (graph replay or eager), with a per-kind breakdown.
    #[command(
        after_help = "Examples:\n  tessera bench bert.tsr --batch 8 --seq 384\n  tessera bench bert.tsr --batch 8 --seq 384 --no-graph --json"
    )]
    Bench(Box<run::BenchArgs>),
    /// Print the source of one kernel (exactly what the snapshot holds); --compile compiles it.
    #[command(
        after_help = "Examples:\n  tessera emit gemm --config tile_m=128,tile_n=128,tile_k=32,warps_m=2,warps_n=2,stages=4 --target sm_90a\n  tessera emit layernorm --config rows_per_block=2,threads_per_row=128,vector=4 --problem '{op: layernorm, rows: 12288, cols: 768}'\n  tessera emit gemm --config tile_m=64,tile_n=64,tile_k=32,warps_m=2,warps_n=2,stages=2 --target sm_80 --compile"
    )]
    Emit(Box<emit::Args>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Templates(a) => templates::run(a),
        Command::Emit(a) => emit::run(*a),
        Command::Devices(a) => devices::run(a),
        Command::Tune(a) => tune::run(*a),
        Command::Worker(a) => worker::run(a),
        Command::Cache(a) => cache::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Compile(a) => compile::run(*a),
        Command::Inspect(a) => inspect::run(a),
        Command::Run(a) => run::run(*a),
        Command::Bench(a) => run::bench(*a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<usage::UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
