//! The softmax template: per row, `s = x · scale (+ mask[(row / mask_period) · cols + col])`,
//! then `y = exp(s − max(s)) / Σ exp(s − max(s))`, all in f32 over the `cols` elements of the
//! row. A block handles `rows_per_block` rows, each spread over `threads_per_row` threads that
//! access `vector` contiguous elements at a time; the row stays in registers.

use tessera_dsl::gpu_template;

/// Scaled softmax with an optional additive mask: one register-resident row per thread group.
#[gpu_template(name = "softmax", op = softmax, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
pub mod softmax {
    params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
    constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        rows s: x[rows_per_block] threads threads_per_row vector vector;
        s = s * scale;
        when mask { s = s + mask; }
        reduce top = max(s);
        s = exp(s - top);
        reduce total = sum(s);
        s = s / total;
        store s -> y;
    }

    use tessera_dsl::{Config, DeviceCaps, Problem, Reject};

    /// A thread keeps its share of the row in registers: more than
    /// [`crate::layernorm::MAX_ROW_VALUES`] f32 values would spill.
    fn check(config: &Config, _problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        crate::layernorm::check_row_values(config)
    }
}
