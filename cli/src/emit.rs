//! `tessera emit`: print (and optionally compile) the source of one kernel.

use crate::problem_args::ProblemArgs;
use crate::usage::usage;
use tessera_dsl::{Target, Template};

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
}

/// Resolve template, config and target from user input (every failure is a usage error).
pub fn resolve(
    template: &str,
    config: &str,
    target: &str,
    problem: &ProblemArgs,
) -> anyhow::Result<(&'static dyn Template, tessera_dsl::Config, Target, tessera_dsl::Problem)> {
    tessera_library::templates();
    let t = tessera_dsl::find(template).map_err(usage)?;
    let target: Target = target.parse().map_err(usage)?;
    let problem = problem.problem()?;
    let values = t.space().parse_point(config).map_err(usage)?;
    let config = t.config(&values, &problem).map_err(usage)?;
    t.validate(&config, &problem, &target.nominal_caps())
        .map_err(|r| usage(format!("{} cannot run on {target}: {r}", config.kernel_name())))?;
    Ok((t, config, target, problem))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let (t, config, target, _) = resolve(&args.template, &args.config, &args.target, &args.problem)?;
    let src = tessera_codegen::generate(t, &config, target)?;
    print!("{}", src.source);
    Ok(())
}
