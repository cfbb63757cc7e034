//! Parameter values a template offers on sm_90a alone (`+ sm_90a [..]`) exist for its TMA +
//! `wgmma` pipeline: a config that carries one, and that the pipeline cannot serve, has no
//! pipeline to run on. Shared by every template whose space has such values (GEMM, attention);
//! each states why its own pipeline refused. Depends on the DSL only.

use tessera_dsl::{Config, ParamSpace, Reject, RejectKind, Target};

/// Reject `config` if it sets a value only sm_90a offers; `why` says why the TMA pipeline cannot
/// serve it (called only then). Values other targets offer alone (AMD's `mfma = 32`) are not
/// TMA values.
pub(crate) fn reject_unserved(
    space: &ParamSpace,
    config: &Config,
    why: impl FnOnce() -> String,
) -> Result<(), Reject> {
    let Some((p, value)) = space.params.iter().zip(config.values()).find(|(p, value)| {
        p.only_on(*value)
            .is_some_and(|on| on.iter().all(|t| *t == Target::Sm90a))
    }) else {
        return Ok(());
    };
    Err(Reject::new(
        RejectKind::Unsupported,
        format!(
            "{} = {value} is a TMA-pipeline value, and that pipeline cannot serve this config: {}",
            p.name,
            why()
        ),
    ))
}
