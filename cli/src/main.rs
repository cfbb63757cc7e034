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
    about = "Write, tune and ship fast GPU kernels for transformer inference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List templates with their parameters and space sizes.
    Templates(templates::Args),
    /// Tune templates for the problems of a shapes file on a GPU; results go to the cache.
    Tune(Box<tune::Args>),
    /// Inspect and share tuning caches: ls, why, export, import, merge, diff, gc.
    Cache(cache::Args),
    /// Draw tuning results: sweep, roofline, compare.
    Plot(plot::Args),
    /// Internal: the worker process `tessera tune` starts.
    #[command(hide = true)]
    Worker(worker::Args),
    /// List GPUs with name, arch, SM count, memory, driver and NVRTC version.
    Devices(devices::Args),
    /// Compile a model (BERT: config.json + model.safetensors) into a plan of tuned kernels.
    Compile(Box<compile::Args>),
    /// Show a compiled plan: buckets, kernels and their tuning, memory plan.
    Inspect(inspect::Args),
    /// Run a compiled plan on inputs from a safetensors file.
    Run(Box<run::RunArgs>),
    /// Time a compiled plan on one bucket (graph replay or eager), with a per-kind breakdown.
    Bench(Box<run::BenchArgs>),
    /// Print the source of one kernel (exactly what the snapshot holds); --compile compiles it.
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
