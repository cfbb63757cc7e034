//! A candidate: one config of one template, with its generated source for a target.

use tessera_codegen::{CodegenError, KernelSource};
use tessera_device::{CompileRequest, Cost};
use tessera_dsl::ir::abi;
use tessera_dsl::{Config, Problem, Target, Template};

#[derive(Clone)]
pub struct Candidate {
    pub template: &'static dyn Template,
    pub config: Config,
    pub source: KernelSource,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("kernel", &self.name())
            .field("target", &self.source.target)
            .finish()
    }
}

impl Candidate {
    pub fn new(
        template: &'static dyn Template,
        config: Config,
        target: Target,
    ) -> Result<Candidate, CodegenError> {
        let source = tessera_codegen::generate(template, &config, target)?;
        Ok(Candidate {
            template,
            config,
            source,
        })
    }

    pub fn name(&self) -> String {
        self.config.kernel_name()
    }

    /// The compile request for this candidate (ABI from the op; sim cost from the problem).
    pub fn compile_request(&self, problem: &Problem) -> CompileRequest {
        let abi = abi(problem.op(), &self.config.variant);
        CompileRequest::new(
            self.name(),
            self.source.source.clone(),
            self.source.target,
            abi,
        )
        .with_tensor_maps(self.source.tensor_maps.clone())
        .with_cost(sim_cost(self, problem))
    }
}

/// The simulated device's cost for a candidate: the problem's FLOPs and bytes, with an
/// efficiency that favours larger warp tiles and deeper pipelines and penalises tile waste
/// on the edges (a crude but deterministic stand-in for a real device).
pub fn sim_cost(c: &Candidate, problem: &Problem) -> Cost {
    let (tm, tn) = (f64::from(c.source.tile_m), f64::from(c.source.tile_n));
    let stages = c.config.get("stages").unwrap_or(2) as f64;
    let mut eff = 0.35 + 0.1 * (tm * tn / (128.0 * 128.0)).min(2.0) + 0.04 * stages;
    let waste = |dim: u64, t: f64| {
        let tiles = (dim as f64 / t).ceil();
        dim as f64 / (tiles * t)
    };
    match problem {
        Problem::Gemm(g) => eff *= waste(g.m, tm) * waste(g.n, tn),
        Problem::Attention(a) => eff *= waste(a.seq_q, tm),
        // row-wise ops are bandwidth-bound: rows per block only matter at the last wave
        Problem::Layernorm(_) | Problem::Softmax(_) | Problem::Embedding(_) => {}
    }
    Cost::new(problem.flops(), problem.bytes(), eff.clamp(0.05, 0.95))
}
