//! The layernorm template: per row, `h = x (+ residual) (+ bias)`, then
//! `y = (h − mean(h)) · rsqrt(var(h) + eps) · gamma + beta` with the population variance, all
//! in f32 over the `cols` elements of the row. A block handles `rows_per_block` rows, each
//! spread over `threads_per_row` threads that access `vector` contiguous elements at a time;
//! the row stays in registers between the two reductions.

use tessera_dsl::{gpu_template, Config, Reject, RejectKind};

/// Layernorm with an optional fused residual and bias: one register-resident row per thread group.
#[gpu_template(name = "layernorm", op = layernorm, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod layernorm {
    params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
    constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows h: x[rows_per_block] threads threads_per_row vector vector;
        when residual { h = h + residual; }
        when bias { h = h + bias; }
        reduce total = sum(h);
        let mean = total / cols;
        h = h - mean;
        reduce squares = sum(h * h);
        let rstd = rsqrt(squares / cols + eps);
        h = h * rstd * gamma + beta;
        store h -> y;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject};

    /// A thread keeps its share of the row in registers: more than
    /// [`crate::layernorm::MAX_ROW_VALUES`] f32 values would spill.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        crate::layernorm::check_row_values(config)
    }
}

/// f32 values of the row one thread may hold in registers before it spills.
pub const MAX_ROW_VALUES: i64 = 64;

/// Reject, as [`RejectKind::Resources`], configs where a thread would hold more than
/// [`MAX_ROW_VALUES`] values of the row: `ceil(cols / (threads_per_row·vector))·vector`.
pub fn check_row_values(config: &Config) -> Result<(), Reject> {
    let (Some(threads), Some(vector)) = (config.get("threads_per_row"), config.get("vector"))
    else {
        return Err(Reject::new(
            RejectKind::OutsideSpace,
            "a row-wise config needs `threads_per_row` and `vector`",
        ));
    };
    let per_step = (threads * vector).max(1);
    let cols = i64::from(config.variant.extent);
    let values = (cols + per_step - 1) / per_step * vector;
    if values > MAX_ROW_VALUES {
        return Err(Reject::new(
            RejectKind::Resources,
            format!(
                "each thread would hold {values} f32 values of the {cols}-element row (limit \
                 {MAX_ROW_VALUES}); use more threads per row"
            ),
        ));
    }
    Ok(())
}
