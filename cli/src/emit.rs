//! `tessera emit`: print (and optionally compile) the source of one kernel.

use crate::problem_args::ProblemArgs;
use crate::usage::usage;
use tessera_device::cuda;
use tessera_device::hipcc::compile_amd;
use tessera_dsl::{Target, Template, Vendor};

#[derive(clap::Args)]
pub struct Args {
    /// Template name (see `tessera templates`).
    template: String,
    /// Parameter values: name=value,... (every parameter of the template).
    #[arg(long)]
    config: String,
    /// Target: sm_80, sm_90a, gfx90a or gfx942.
    #[arg(long, default_value = "sm_90a")]
    target: String,
    #[command(flatten)]
    problem: ProblemArgs,
    /// Compile the kernel (NVRTC for sm_*, hipcc for gfx*) and print its resource report
    /// (registers, shared memory, spills) instead of the source.
    #[arg(long)]
    compile: bool,
}

/// Resolve template, config and target from user input (every failure is a usage error).
pub fn resolve(
    template: &str,
    config: &str,
    target: &str,
    problem: &ProblemArgs,
) -> anyhow::Result<(
    &'static dyn Template,
    tessera_dsl::Config,
    Target,
    tessera_dsl::Problem,
)> {
    tessera_library::templates();
    let t = tessera_dsl::find(template).map_err(usage)?;
    let target: Target = target.parse().map_err(usage)?;
    let problem = problem.problem()?;
    let values = t.space().parse_point(config).map_err(usage)?;
    let config = t.config(&values, &problem).map_err(usage)?;
    t.validate(&config, &problem, &target.nominal_caps())
        .map_err(|r| {
            usage(format!(
                "{} cannot run on {target}: {r}",
                config.kernel_name()
            ))
        })?;
    Ok((t, config, target, problem))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (t, config, target, _) =
        resolve(&args.template, &args.config, &args.target, &args.problem)?;
    let src = tessera_codegen::generate(t, &config, target)?;
    if !args.compile {
        print!("{}", src.source);
        return Ok(());
    }
    let report = match target.vendor() {
        Vendor::Nvidia => {
            let r = cuda::nvrtc_compile(&src.source, &src.name, target, &[])?;
            let u = &r.usage;
            // the compiler's warnings (ptxas: wgmma serialization, stack frames) belong to the
            // resource report
            let warnings: Vec<&str> = r
                .log
                .lines()
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("warning") || l.contains("performance loss")
                })
                .collect();
            for w in &warnings {
                eprintln!("{w}");
            }
            format!(
                "{} registers, {} bytes spilled (stores {} / loads {}), {} bytes shared memory ({} dynamic + {} static), {} in {:.2} s",
                opt(u.registers),
                opt(u.spill_bytes()),
                opt(u.spill_store_bytes),
                opt(u.spill_load_bytes),
                src.smem_bytes + u.static_smem_bytes.unwrap_or(0),
                src.smem_bytes,
                opt(u.static_smem_bytes),
                r.toolchain,
                r.seconds
            )
        }
        Vendor::Amd => {
            let (tool, r) = compile_amd(&src.source, &src.name, target)?;
            format!(
                "{} VGPRs, {} AGPRs, {} SGPRs, spills {} VGPR / {} SGPR, scratch {} bytes/lane, {} bytes LDS ({} dynamic + {} static), occupancy {} waves/SIMD, {tool} in {:.2} s",
                opt(r.vgprs),
                opt(r.agprs),
                opt(r.sgprs),
                opt(r.vgpr_spills),
                opt(r.sgpr_spills),
                opt(r.scratch_bytes),
                src.smem_bytes + r.lds_bytes.unwrap_or(0),
                src.smem_bytes,
                opt(r.lds_bytes),
                opt(r.occupancy_waves),
                r.seconds
            )
        }
    };
    println!("{} ({target}, {} threads): {report}", src.name, src.threads);
    Ok(())
}

fn opt(v: Option<u32>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}
